//! The `spawn` start method: re-execute the program and hand the child its task over a socket.

use std::os::fd::AsFd;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::process::registry::Exit;
use crate::process::start::{CHILD_MARKER, Job, Started, executable};
use crate::sys;

pub(crate) fn start(job: &Job<'_>) -> Result<Started> {
    let (ours, theirs) = sys::socket::stream_pair().map_err(|e| Error::os("socketpair", e))?;
    // The kernel's parent-death signal follows the forking thread; see `child::watch`.
    let from_main_thread = sys::process::is_main_thread();

    let mut cmd = Command::new(executable(job.executable));
    // If the constructor did not divert (it always should), the program sees an argument no
    // ordinary program accepts instead of running its `main` (or every test) again.
    // The channel goes in as stdin (see `sys::process::take_stdin`); the child puts /dev/null there.
    cmd.arg("--multiproc-child").env(CHILD_MARKER, "stdin").stdin(Stdio::from(theirs));
    let mut child = cmd.spawn().map_err(|e| Error::os("spawn", e))?;
    // The command still holds our copy of the child's end of the channel: without closing it, a
    // child that dies early would leave the bootstrap below blocked forever instead of failing
    // with EPIPE.
    drop(cmd);
    let pid = child.id();
    let pidfd = match sys::process::pidfd_open(pid) {
        Ok(pidfd) => pidfd,
        Err(err) => {
            // Unwatchable: end it now rather than leave an orphan nobody reaps.
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::os("pidfd_open", err));
        }
    };
    // std's handle neither waits nor kills when dropped; the registry reaps the child.
    drop(child);

    let boot = job.bootstrap(job.die_with_parent && !from_main_thread, job.die_with_parent && from_main_thread);
    // A child that died before reading shows up as EPIPE here; its exit status tells the story
    // at join, so the send error itself is not reported.
    let _ = crate::process::child::send_bootstrap(ours.as_fd(), &boot, job.parent_pidfd.as_fd(), job.handles);
    Ok(Started { pid, pidfd, channel: ours, exit: Exit::Direct })
}
