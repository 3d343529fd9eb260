//! Raw bounds, Rust only: what starting a process costs with nothing of multiproc around it.

use std::process::Command;

use super::{BoxError, Scenario, per_op};

/// Name of the `fork` baseline row.
pub const FORK: &str = "baseline: fork+_exit+waitpid";
/// Name of the `exec` baseline row.
pub const EXEC: &str = "baseline: exec same binary";
/// When set, the bench binary exits 0 as the very first thing `main` does (the exec baseline).
pub const EXIT_AT_ONCE: &str = "MULTIPROC_BENCH_EXIT_AT_ONCE";

/// The baseline rows.
pub fn scenarios() -> Vec<Scenario> {
    vec![Scenario::new(FORK, 1000, |n| per_op(n, fork_exit_wait)), Scenario::new(EXEC, 300, |n| per_op(n, exec_self))]
}

/// `fork()`; the child `_exit(0)`s at once; the parent `waitpid`s.
fn fork_exit_wait() -> Result<(), BoxError> {
    // SAFETY: the child calls only the async-signal-safe `_exit`, so the fork of a possibly
    // threaded parent cannot deadlock it.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: `_exit` ends the child without running anything of the parent's state.
        unsafe { libc::_exit(0) };
    }
    if pid < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let mut status = 0;
    loop {
        // SAFETY: `pid` is our child and `status` a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err.into());
        }
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(format!("forked child ended with status {status:#x}").into())
    }
}

/// Executes this very binary with [`EXIT_AT_ONCE`] set and waits for it.
fn exec_self() -> Result<(), BoxError> {
    let status = Command::new(std::env::current_exe()?).env(EXIT_AT_ONCE, "1").status()?;
    if status.success() { Ok(()) } else { Err(format!("re-executed bench ended with {status}").into()) }
}
