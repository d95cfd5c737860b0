//! The `tokenhook` binary: a thin shell over the library's CLI.
#![forbid(unsafe_code)]

// jemalloc rather than glibc's malloc, for the sidecar and its hook workers alike: with
// glibc, every allocation of a KiB or more (pingora's header and body buffers, response
// bodies) first consolidates the free lists, and allocation was 12 % of the CPU time of a
// hooked token request; with jemalloc it is 6 % (BENCHMARKS.md).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    tokenhook::cli::main()
}
