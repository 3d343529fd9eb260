//! The child's side: the bootstrap it receives, running the task, reporting the outcome, exiting.
//!
//! # The per-child channel
//! Every child gets one Unix stream socket to its parent. Under `spawn` and `forkserver` the
//! parent first writes a bootstrap frame on it (build fingerprint, entry offset, encoded
//! arguments, name, flags) with the descriptors of the argument handles attached, the parent's
//! own pidfd first. Under `fork` the child already has all of that in memory. Whatever the start
//! method, the child ends by writing one outcome frame and exiting:
//!
//! ```text
//! frame   = length:u64le body            (length counts the body)
//! outcome = 0 value-bytes                 the task returned (handle descriptors attached)
//!         | 1 utf8-message                the task panicked
//!         | 2 kind:u8 utf8-message        the child could not run the task
//! ```

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::ErrorKind;
use crate::process::StartMethod;
use crate::process::identity::{self, Parent};
use crate::process::registry;
use crate::process::task::{self, Outcome};
use crate::sys;

/// What the parent tells a spawned or fork-server child about its task.
#[derive(Serialize, Deserialize)]
pub(crate) struct Bootstrap {
    pub(crate) fingerprint: Vec<u8>,
    pub(crate) entry: i64,
    pub(crate) args: Vec<u8>,
    pub(crate) name: String,
    pub(crate) identity: Vec<u32>,
    pub(crate) daemon: bool,
    pub(crate) parent_pid: u32,
    pub(crate) parent_name: String,
    /// Watch the parent's pidfd from a thread and die with it (when a parent-death signal could
    /// not be used; see `start`).
    pub(crate) watch_parent: bool,
    /// Ask the kernel for SIGKILL when the parent (which started us from its main thread) dies.
    pub(crate) parent_death_signal: bool,
    /// The process tree's secret (see `identity`).
    pub(crate) authkey: [u8; 32],
    /// What the layers above handed the child, by name (see `hooks`).
    pub(crate) exports: Vec<(String, serde_bytes::ByteBuf)>,
    /// The method this child was started with.
    pub(crate) start_method: StartMethod,
    /// Ignore SIGINT.
    pub(crate) ignore_interrupts: bool,
    /// The parent's working directory, to start in.
    pub(crate) cwd: Option<std::path::PathBuf>,
}

/// Everything a child needs to run, however it was started.
pub(crate) struct Start {
    pub(crate) channel: OwnedFd,
    pub(crate) entry: i64,
    pub(crate) args: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
    pub(crate) name: String,
    pub(crate) identity: Vec<u32>,
    pub(crate) daemon: bool,
    pub(crate) parent: Option<Parent>,
    pub(crate) watch_parent: bool,
    pub(crate) authkey: [u8; 32],
    pub(crate) start_method: StartMethod,
    pub(crate) ignore_interrupts: bool,
}

/// Writes the bootstrap frame, with the parent's pidfd and the handles' descriptors attached.
pub(crate) fn send_bootstrap(
    channel: BorrowedFd<'_>,
    boot: &Bootstrap,
    parent_pidfd: BorrowedFd<'_>,
    handles: &[BorrowedFd<'_>],
) -> std::io::Result<()> {
    let body = postcard::to_stdvec(boot).map_err(std::io::Error::other)?;
    let mut fds = Vec::with_capacity(1 + handles.len());
    fds.push(parent_pidfd);
    fds.extend_from_slice(handles);
    sys::socket::send_with_fds(channel, &frame(&body), &fds)
}

/// Prefixes `body` with its length.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + body.len());
    frame.extend_from_slice(&(body.len() as u64).to_le_bytes());
    frame.extend_from_slice(body);
    frame
}

/// Reads a bootstrap from `channel` and runs the task: the life of a spawned or fork-server child.
pub(crate) fn run_from_channel(channel: OwnedFd) -> ! {
    let mut header = [0u8; 8];
    let mut fds = Vec::new();
    if sys::socket::recv_exact(channel.as_fd(), &mut header, &mut fds).is_err() {
        // The parent is gone before telling us anything: there is nobody to report to.
        sys::process::exit_now(1);
    }
    let mut body = vec![0u8; u64::from_le_bytes(header) as usize];
    let boot: Result<Bootstrap, String> = sys::socket::recv_exact(channel.as_fd(), &mut body, &mut fds)
        .map_err(|e| e.to_string())
        .and_then(|()| postcard::from_bytes(&body).map_err(|e| e.to_string()));
    let boot = match boot {
        Ok(boot) => boot,
        Err(err) => finish(&channel, Outcome::Failed(ErrorKind::ChildStartup, format!("bad bootstrap: {err}"))),
    };
    let ours = sys::build_id::fingerprint();
    if boot.fingerprint != ours {
        let message = format!(
            "this executable (build {}) is not the parent's (build {}); refusing to run the task",
            hex(ours),
            hex(&boot.fingerprint)
        );
        finish(&channel, Outcome::Failed(ErrorKind::BuildMismatch, message));
    }
    // Checked after asking: a parent that died before the request is no longer our parent.
    if boot.parent_death_signal && !sys::process::die_with_parent(boot.parent_pid) {
        sys::process::exit_now(1);
    }
    crate::process::hooks::set_imports(
        boot.exports.into_iter().map(|(name, bytes)| (name, bytes.into_vec())).collect(),
    );
    if let Some(dir) = &boot.cwd {
        // A directory that is gone by now leaves us where we are, as Python's spawn would fail
        // only on a relative path the task then uses.
        let _ = std::env::set_current_dir(dir);
    }
    let mut fds = fds.into_iter();
    let parent =
        fds.next().map(|pidfd| Parent { pid: boot.parent_pid, name: boot.parent_name, pidfd: Arc::new(pidfd) });
    run(Start {
        channel,
        entry: boot.entry,
        args: boot.args,
        fds: fds.collect(),
        name: boot.name,
        identity: boot.identity,
        daemon: boot.daemon,
        parent,
        watch_parent: boot.watch_parent,
        authkey: boot.authkey,
        start_method: boot.start_method,
        ignore_interrupts: boot.ignore_interrupts,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs the task and exits: the common end of every start method.
pub(crate) fn run(start: Start) -> ! {
    let Start {
        channel,
        entry,
        args,
        fds,
        name,
        identity,
        daemon,
        parent,
        watch_parent,
        authkey,
        start_method,
        ignore_interrupts,
    } = start;
    task::record_panic_locations();
    if ignore_interrupts {
        sys::process::ignore_interrupts();
    }
    crate::process::start::inherit_start_method(start_method);
    if watch_parent {
        if let Some(parent) = &parent {
            watch(parent.pidfd.clone());
        }
    }
    // `ps`, `top` and `/proc/<pid>/comm` show the child's name rather than the executable's.
    if !name.is_empty() {
        sys::process::set_name(&name);
    }
    identity::hold().become_child(identity::Child { name, identity, daemon, parent, authkey });
    // SAFETY: the offset came from `entry_offset` in our parent, which is this same build: under
    // fork the very same image, otherwise checked through the fingerprint just above.
    let entry = unsafe { task::entry_from_offset(entry) };
    let outcome = entry(&args, fds);
    finish(&channel, outcome)
}

/// Sends the outcome, lets our own children finish as Python does, and exits.
fn finish(channel: &OwnedFd, outcome: Outcome) -> ! {
    let code = if matches!(outcome, Outcome::Returned(..)) { 0 } else { 1 };
    let (body, fds) = encode_outcome(outcome);
    // A parent that no longer listens (it dropped our handle) is not our problem: EPIPE is fine.
    let _ = sys::socket::send_with_fds(channel.as_fd(), &frame(&body), &sys::socket::borrow_all(&fds));
    registry::finish_children();
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    sys::process::exit_now(code)
}

fn encode_outcome(outcome: Outcome) -> (Vec<u8>, Vec<OwnedFd>) {
    match outcome {
        Outcome::Returned(bytes, fds) => ([&[0u8][..], &bytes].concat(), fds),
        Outcome::Panicked(panic) => {
            ([&[1u8][..], &postcard::to_stdvec(&panic).unwrap_or_default()].concat(), Vec::new())
        }
        Outcome::Failed(kind, message) => ([&[2u8, kind_code(kind)][..], message.as_bytes()].concat(), Vec::new()),
    }
}

/// Stable wire codes for the error kinds a child can report.
const KINDS: [ErrorKind; 4] = [ErrorKind::ChildStartup, ErrorKind::BuildMismatch, ErrorKind::Decode, ErrorKind::Encode];

fn kind_code(kind: ErrorKind) -> u8 {
    KINDS.iter().position(|&k| k == kind).unwrap_or(0) as u8
}

/// The error kind for a wire code.
pub(crate) fn kind_from_code(code: u8) -> ErrorKind {
    KINDS.get(usize::from(code)).copied().unwrap_or(ErrorKind::ChildStartup)
}

/// Kills this process when the parent behind `pidfd` exits (used when `PR_SET_PDEATHSIG` would
/// fire at the wrong time: the parent started us from a thread that may end before it does).
fn watch(pidfd: Arc<OwnedFd>) {
    let spawned = std::thread::Builder::new().name("multiproc-parent-watch".into()).spawn(move || {
        if sys::poll::wait_readable(&[pidfd.as_fd()], None).is_ok() {
            let _ = sys::process::kill(sys::process::getpid(), crate::process::Signal::KILL.as_raw());
        }
    });
    if spawned.is_err() {
        // Without a watcher the promise cannot be kept; refuse to run rather than outlive.
        sys::process::exit_now(1);
    }
}
