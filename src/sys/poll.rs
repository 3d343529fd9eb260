//! Waiting for file descriptors to become readable, with an optional deadline.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Instant;

use rustix::event::{PollFd, PollFlags, Timespec};

/// Waits until at least one of `fds` is readable (or hung up), or until `deadline` passes.
///
/// Returns one flag per descriptor; all false means the deadline passed. `None` waits forever.
/// Interrupted waits are resumed with the time that is left, so a signal never shortens the wait
/// nor makes it return early with nothing ready.
pub(crate) fn wait_readable(fds: &[BorrowedFd<'_>], deadline: Option<Instant>) -> io::Result<Vec<bool>> {
    let fds: Vec<(BorrowedFd<'_>, Ready)> = fds.iter().map(|&fd| (fd, Ready::Read)).collect();
    wait_ready(&fds, deadline)
}

/// What a descriptor is waited for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ready {
    /// Readable (or hung up).
    Read,
    /// Writable (or hung up).
    Write,
}

/// As [`wait_readable`], each descriptor waited for as its [`Ready`] says.
pub(crate) fn wait_ready(fds: &[(BorrowedFd<'_>, Ready)], deadline: Option<Instant>) -> io::Result<Vec<bool>> {
    loop {
        let mut pollfds: Vec<PollFd<'_>> = fds
            .iter()
            .map(|(fd, ready)| PollFd::new(fd, if *ready == Ready::Read { PollFlags::IN } else { PollFlags::OUT }))
            .collect();
        let timeout = match deadline {
            None => None,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                Some(Timespec { tv_sec: left.as_secs() as i64, tv_nsec: i64::from(left.subsec_nanos()) })
            }
        };
        match rustix::event::poll(&mut pollfds, timeout.as_ref()) {
            Ok(_) => {
                let ready: Vec<bool> = pollfds.iter().map(|p| !p.revents().is_empty()).collect();
                // poll may return 0 a hair before the deadline because of rounding; only report a
                // timeout once the deadline has really passed, so callers see elapsed >= timeout.
                if ready.iter().any(|&r| r) || deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(ready);
                }
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether `fd` is readable right now (non-blocking check).
pub(crate) fn is_readable(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut pollfds = [PollFd::new(&fd, PollFlags::IN)];
    let zero = Timespec { tv_sec: 0, tv_nsec: 0 };
    loop {
        match rustix::event::poll(&mut pollfds, Some(&zero)) {
            Ok(_) => return Ok(!pollfds[0].revents().is_empty()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// A new event counter descriptor (close-on-exec, non-blocking): readable once written to, for
/// waking a thread that polls.
pub(crate) fn eventfd() -> io::Result<std::os::fd::OwnedFd> {
    use rustix::event::EventfdFlags;
    Ok(rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?)
}
