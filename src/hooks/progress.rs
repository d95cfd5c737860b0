//! Which step of a flow a worker process is in, shared with the pool through a memfd,
//! so a call whose worker was killed or died is blamed on the step that was running.
//!
//! The whole flow is one call to one worker (D21) and its answer comes only at the end,
//! so without this a worker killed in the third Action (an uninterruptible regex) or
//! dying there (out of memory) showed as the first step's failure: its name in the
//! error and the log, its label in the metrics. A pipe frame per step would wake the
//! pool on every step; here the worker writes eight bytes (`pwrite`, no wake-up) when
//! a step after the first starts, and the pool reads them only when a call is lost.
//!
//! Layout: the call's ordinal on this worker (1 for its first call, counted by both
//! sides) and the step's index in the flow, each a little-endian u32. A call for which
//! the worker wrote nothing was in its first step.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

/// The environment variable that tells a worker the page's inherited descriptor.
pub const ENV: &str = "TOKENHOOK_WORKER_PROGRESS_FD";
/// The memfd's name; the worker checks it before writing to what it was given.
const NAME: &str = "tokenhook-progress";

/// The pool's side: one page per worker process.
#[derive(Debug)]
pub struct Page {
    file: File,
}

impl Page {
    /// Linux only (memfd, and /proc for the worker to open it): elsewhere there is no
    /// page, and a lost call is blamed on the first step.
    pub fn new() -> std::io::Result<Page> {
        #[cfg(target_os = "linux")]
        {
            let fd = rustix::fs::memfd_create(NAME, rustix::fs::MemfdFlags::CLOEXEC)?;
            let file = File::from(fd);
            file.set_len(8)?;
            Ok(Page { file })
        }
        #[cfg(not(target_os = "linux"))]
        Err(std::io::ErrorKind::Unsupported.into())
    }

    /// Lets the next process spawned inherit the page; the descriptor's number is what
    /// the worker is told in [`ENV`]. [`Page::unshare`] once it is spawned, so workers
    /// started later do not inherit it too.
    pub fn share(&self) -> std::io::Result<i32> {
        rustix::io::fcntl_setfd(&self.file, rustix::io::FdFlags::empty())?;
        Ok(self.file.as_raw_fd())
    }

    pub fn unshare(&self) {
        let _ = rustix::io::fcntl_setfd(&self.file, rustix::io::FdFlags::CLOEXEC);
    }

    /// The step the worker was in during its call `ordinal`: 0 when it wrote nothing
    /// for that call (or the page cannot be read).
    pub fn step_of(&self, ordinal: u32) -> usize {
        let mut b = [0u8; 8];
        match self.file.read_exact_at(&mut b, 0) {
            Ok(()) if u32::from_le_bytes([b[0], b[1], b[2], b[3]]) == ordinal => {
                u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as usize
            }
            _ => 0,
        }
    }
}

/// The worker's side.
pub struct Mark {
    file: File,
}

impl Mark {
    /// The page the pool shared, if it did (a worker started by hand has none).
    pub fn from_env() -> Option<Mark> {
        Mark::open(std::env::var(ENV).ok()?.parse().ok()?)
    }

    /// Opens inherited descriptor `fd` anew through /proc, which needs no unsafe code,
    /// and only if it is the pool's page: a wrong number must not make the worker write
    /// into another file it holds.
    pub fn open(fd: i32) -> Option<Mark> {
        let path = format!("/proc/self/fd/{fd}");
        let target = std::fs::read_link(&path).ok()?;
        if !target.to_str()?.starts_with(&format!("/memfd:{NAME} ")) {
            return None;
        }
        let file = std::fs::OpenOptions::new().write(true).open(&path).ok()?;
        Some(Mark { file })
    }

    /// The worker is in step `step` of its call `ordinal`.
    pub fn mark(&self, ordinal: u32, step: usize) {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&ordinal.to_le_bytes());
        b[4..].copy_from_slice(&(step as u32).to_le_bytes());
        let _ = self.file.write_all_at(&b, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Breaks if a mark does not reach the page, if a mark of another call is taken
    /// for this one's, or if a descriptor that is not the page is written to.
    #[test]
    #[cfg(target_os = "linux")]
    fn a_mark_reaches_the_page_and_only_the_page() {
        let page = Page::new().unwrap();
        let fd = page.share().unwrap();
        let mark = Mark::open(fd).expect("the page opens by its descriptor");
        page.unshare();
        assert_eq!(page.step_of(1), 0, "nothing written yet");
        mark.mark(1, 2);
        assert_eq!(page.step_of(1), 2);
        assert_eq!(page.step_of(2), 0, "call 2 wrote nothing: its first step");
        mark.mark(2, 1);
        assert_eq!((page.step_of(1), page.step_of(2)), (0, 1));

        let other = tempfile::tempfile().unwrap();
        assert!(Mark::open(other.as_raw_fd()).is_none(), "not the page");
        assert!(Mark::open(-1).is_none());
        // A memfd of another name is not the page either.
        let stranger = File::from(
            rustix::fs::memfd_create("tokenhook-progressx", rustix::fs::MemfdFlags::CLOEXEC)
                .unwrap(),
        );
        assert!(Mark::open(stranger.as_raw_fd()).is_none());
    }
}
