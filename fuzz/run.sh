#!/usr/bin/env bash
# Runs one fuzz target under libFuzzer for a fixed time and prints its final stats.
# The working corpus is fuzz/run/corpus/TARGET (git-ignored), seeded from the committed
# fuzz/corpus/TARGET, so what libFuzzer adds never lands in the repo; crashes go to
# fuzz/artifacts/TARGET/.
#
#   fuzz/run.sh TARGET SECONDS [MAX_LEN]
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). No sanitizer
# (`-s none`): the crate forbids unsafe code, and ASan would halve the executions.
set -euo pipefail
cd "$(dirname "$0")"
target=$1
secs=$2
max_len=${3:-4096}
mkdir -p "run/corpus/$target" "artifacts/$target"
exec cargo +nightly fuzz run -s none "$target" "run/corpus/$target" "corpus/$target" -- \
  -max_total_time="$secs" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="artifacts/$target/"
