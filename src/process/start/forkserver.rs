//! The `forkserver` start method: a clean, single-threaded server that forks children on request.
//!
//! # Protocol
//! The server is this same program, re-executed with a marker (see [`super`]) and one end of a
//! sequenced-packet socket pair: the control socket. For each child the client creates two more
//! pairs and sends one end of each over the control socket in a single packet:
//!
//! ```text
//! client -> server   control packet  "F" die_with_parent:u8      fds: [channel, status]
//! server -> client   status packet   pid:u32le                   fds: [pidfd]
//! client -> child    channel         bootstrap frame (as under spawn, see `process::child`)
//! child  -> client   channel         outcome frame
//! server -> client   status packet   exit status (8 bytes), once the server has reaped the child
//! ```
//!
//! The server forks, sends the child's pid and a pidfd back, and keeps the status socket until
//! it reaps the child. Each fork-server child then reads its bootstrap from its channel exactly as
//! a spawned child does, so the two methods share the child side and the fingerprint check.
//!
//! # Lifetime
//! The server lives as long as the client's control socket: when the client exits or is killed,
//! the socket reaches end-of-file and the server SIGKILLs the children that were to die with
//! their parent, then exits. Those children also watch their real parent's pidfd from a thread
//! (there is no parent-death signal tied to the server). The server's own death ends none of its
//! children: the client holds a pidfd of each, so it can still signal and join them, and reads
//! their exit status as a non-parent can (`sys::process::exit_status_of`). A client that finds
//! its server dead (a failed send, or end-of-file instead of a pid) starts a new one and retries
//! once. The server blocks SIGINT, so
//! that Ctrl-C in a terminal reaches the program and its children but not the machinery.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, ErrorKind, Result};
use crate::process::registry::{Exit, lock};
use crate::process::start::{Job, SERVER_MARKER, Started, executable};
use crate::process::{ExitStatus, Signal};
use crate::sys;
use crate::sys::process::Forked;

/// A running fork server, as its client sees it.
pub(crate) struct Server {
    /// The executable it runs (`None`: this program).
    executable: Option<PathBuf>,
    pid: u32,
    control: Arc<OwnedFd>,
}

/// The servers this process started, one per executable.
static SERVERS: Mutex<Vec<Server>> = Mutex::new(Vec::new());

/// Locks the server list (held across `fork` by the fork start method).
pub(crate) fn hold() -> MutexGuard<'static, Vec<Server>> {
    lock(&SERVERS)
}

/// In a freshly forked child: the parent's servers are not ours. Dropping our copies of their
/// control sockets lets a server see its real client go away.
pub(crate) fn forget_after_fork(mut servers: MutexGuard<'static, Vec<Server>>) {
    servers.clear();
}

fn connection(exe: Option<&PathBuf>) -> Result<Arc<OwnedFd>> {
    let mut servers = lock(&SERVERS);
    if let Some(server) = servers.iter().find(|s| s.executable.as_ref() == exe) {
        return Ok(server.control.clone());
    }
    let server = launch(exe)?;
    let control = server.control.clone();
    servers.push(server);
    Ok(control)
}

/// Forgets a server that stopped answering (and reaps it, if it has exited).
fn discard(control: &Arc<OwnedFd>) {
    let mut servers = lock(&SERVERS);
    if let Some(i) = servers.iter().position(|s| Arc::ptr_eq(&s.control, control)) {
        let server = servers.remove(i);
        let _ = sys::process::kill(server.pid, Signal::KILL.as_raw());
        let _ = sys::process::reap(server.pid);
    }
}

fn launch(exe: Option<&PathBuf>) -> Result<Server> {
    let (ours, theirs) = sys::socket::packet_pair().map_err(|e| Error::os("socketpair", e))?;
    let mut cmd = Command::new(executable(exe));
    // The control socket goes in as stdin (see `sys::process::take_stdin`). No parent-death
    // signal: the server watches its control socket instead, which also works when the client
    // started it from a thread that ends early.
    cmd.arg("--multiproc-forkserver").env(SERVER_MARKER, "stdin").stdin(Stdio::from(theirs));
    let child =
        cmd.spawn().map_err(|e| Error::with_source(ErrorKind::ForkServer, "could not start the fork server", e))?;
    crate::trace::event!(info, pid = child.id(), "the fork server was launched");
    Ok(Server { executable: exe.cloned(), pid: child.id(), control: Arc::new(ours) })
}

pub(crate) fn start(job: &Job<'_>) -> Result<Started> {
    let mut last = None;
    for _attempt in 0..2 {
        let control = connection(job.executable)?;
        match request(&control, job) {
            Ok(started) => return Ok(started),
            // Our side failed (out of descriptors, say) or the server could not fork: the server
            // is fine and keeps serving every child it started.
            Err(RequestError::Failed(err)) => return Err(Error::os("starting a child through the fork server", err)),
            // Only a server that is gone is replaced — killing a live one would take along every
            // child it started that is to die with its client.
            Err(RequestError::ServerGone(err)) => {
                discard(&control);
                last = Some(err);
            }
        }
    }
    Err(Error::with_source(ErrorKind::ForkServer, "the fork server did not answer", last.expect("two attempts")))
}

/// Why a request to the fork server failed.
enum RequestError {
    /// The control socket is broken or the server hung up without an answer: it is gone.
    ServerGone(std::io::Error),
    /// The request could not be made here, or the server answered with an error.
    Failed(std::io::Error),
}

/// The reply a server sends instead of a pid when it cannot start the child: `E` and an errno.
const FAILED_REPLY: u8 = b'E';

/// One request.
fn request(control: &OwnedFd, job: &Job<'_>) -> std::result::Result<Started, RequestError> {
    let (ours, theirs) = sys::socket::stream_pair().map_err(RequestError::Failed)?;
    let (status, status_theirs) = sys::socket::packet_pair().map_err(RequestError::Failed)?;
    let request = [b'F', u8::from(job.die_with_parent)];
    sys::socket::send_packet(control.as_fd(), &request, &[theirs.as_fd(), status_theirs.as_fd()]).map_err(|err| {
        match err.raw_os_error() {
            Some(libc::EPIPE) | Some(libc::ECONNRESET) | Some(libc::ENOTCONN) | Some(libc::ECONNREFUSED) => {
                RequestError::ServerGone(err)
            }
            _ => RequestError::Failed(err),
        }
    })?;
    drop((theirs, status_theirs));

    // The bootstrap goes out before the pid comes back, so that it is waiting in the channel when
    // the child starts. A child that died early is reported by its exit status at join.
    // A child to die with its parent watches the parent's pidfd from a thread: the kernel's
    // parent-death signal would follow the server, whose death must not end it.
    let boot = job.bootstrap(job.die_with_parent, false);
    let _ = crate::process::child::send_bootstrap(ours.as_fd(), &boot, job.parent_pidfd.as_fd(), job.handles);

    let mut reply = [0u8; 8];
    let mut fds = Vec::new();
    // The server answers within a fork's time: spin on the reply briefly before blocking on it.
    let spin_until = std::time::Instant::now() + REPLY_SPIN;
    let mut got = None;
    while got.is_none() && std::time::Instant::now() < spin_until {
        got =
            sys::socket::recv_with_fds(status.as_fd(), &mut reply, &mut fds, true).map_err(RequestError::ServerGone)?;
        if got.is_none() {
            std::thread::yield_now();
        }
    }
    let got = match got {
        Some(n) => Some(n),
        None => {
            sys::socket::recv_with_fds(status.as_fd(), &mut reply, &mut fds, false).map_err(RequestError::ServerGone)?
        }
    };
    match got {
        Some(4) if fds.len() == 1 => {
            let pid = u32::from_le_bytes([reply[0], reply[1], reply[2], reply[3]]);
            let pidfd = fds.pop().expect("one pidfd");
            Ok(Started { pid, pidfd, channel: ours, exit: Exit::Server(status) })
        }
        Some(5) if reply[0] == FAILED_REPLY => {
            let errno = i32::from_le_bytes([reply[1], reply[2], reply[3], reply[4]]);
            Err(RequestError::Failed(std::io::Error::from_raw_os_error(errno)))
        }
        _ => Err(RequestError::ServerGone(std::io::ErrorKind::UnexpectedEof.into())),
    }
}

/// How long a request spins on the server's reply before blocking on it.
const REPLY_SPIN: std::time::Duration = std::time::Duration::from_micros(200);

/// A child the server forked and has not reaped yet.
struct Kid {
    pid: u32,
    pidfd: OwnedFd,
    status: OwnedFd,
    die_with_client: bool,
}

/// The server's main loop; never returns.
pub(crate) fn serve(control: OwnedFd) -> ! {
    sys::process::block_interrupts(true);
    let mut kids: Vec<Kid> = Vec::new();
    loop {
        let mut watched = vec![control.as_fd()];
        watched.extend(kids.iter().map(|k| k.pidfd.as_fd()));
        let ready = match sys::poll::wait_readable(&watched, None) {
            Ok(ready) => ready,
            Err(_) => shutdown(&kids),
        };
        let exited: Vec<usize> = (0..kids.len()).filter(|&i| ready[i + 1]).collect();
        for i in exited.into_iter().rev() {
            if let Ok(Some(status)) = sys::process::try_reap(kids[i].pid).map(|s| s.map(ExitStatus::from)) {
                let kid = kids.remove(i);
                let _ = sys::socket::send_packet(kid.status.as_fd(), &status.encode(), &[]);
            }
        }
        if !ready[0] {
            continue;
        }
        let mut packet = [0u8; 16];
        let mut fds = Vec::new();
        match sys::socket::recv_with_fds(control.as_fd(), &mut packet, &mut fds, false) {
            Ok(Some(2)) if packet[0] == b'F' && fds.len() == 2 => {
                let status = fds.pop().expect("two fds");
                let channel = fds.pop().expect("two fds");
                let die_with_client = packet[1] != 0;
                // SAFETY: the server is single-threaded, so no lock can be held by another
                // thread at the fork; the child goes straight to reading its bootstrap.
                match unsafe { sys::process::fork() } {
                    Ok(Forked::Child) => {
                        drop(control);
                        drop(kids);
                        drop(status);
                        sys::process::block_interrupts(false);
                        // No parent-death signal tied to the server: a child must outlive the
                        // server's death (it watches its real parent's pidfd instead, told so in
                        // its bootstrap), and the client keeps watching it through its pidfd.
                        crate::process::child::run_from_channel(channel);
                    }
                    Ok(Forked::Parent(pid)) => match sys::process::pidfd_open(pid) {
                        Ok(pidfd) => {
                            let _ = sys::socket::send_packet(status.as_fd(), &pid.to_le_bytes(), &[pidfd.as_fd()]);
                            kids.push(Kid { pid, pidfd, status, die_with_client });
                        }
                        // Without a pidfd the child cannot be watched: end it rather than leave
                        // an orphan, and tell the client why.
                        Err(err) => {
                            let _ = sys::process::kill(pid, Signal::KILL.as_raw());
                            let _ = sys::process::reap(pid);
                            fail(&status, &err);
                        }
                    },
                    Err(err) => fail(&status, &err),
                }
            }
            Ok(Some(0)) | Err(_) => shutdown(&kids),
            // A malformed request: drop it (the client sees end-of-file) and keep serving.
            Ok(Some(_)) | Ok(None) => continue,
        }
    }
}

/// Tells the client its child could not be started, and why.
fn fail(status: &OwnedFd, err: &std::io::Error) {
    let errno = err.raw_os_error().unwrap_or(libc::EIO);
    let mut reply = [FAILED_REPLY, 0, 0, 0, 0];
    reply[1..].copy_from_slice(&errno.to_le_bytes());
    let _ = sys::socket::send_packet(status.as_fd(), &reply, &[]);
}

/// The client is gone: take the children that were to die with it along, then exit.
fn shutdown(kids: &[Kid]) -> ! {
    for kid in kids.iter().filter(|k| k.die_with_client) {
        let _ = sys::process::pidfd_signal(kid.pidfd.as_fd(), Signal::KILL.as_raw());
    }
    sys::process::exit_now(0)
}

impl ExitStatus {
    /// The 8-byte form the fork server sends.
    pub(crate) fn encode(self) -> [u8; 8] {
        let (kind, value) = match self {
            ExitStatus::Code(code) => (0i32, code),
            ExitStatus::Signal(signal) => (1, signal.as_raw()),
        };
        let mut out = [0u8; 8];
        out[..4].copy_from_slice(&kind.to_le_bytes());
        out[4..].copy_from_slice(&value.to_le_bytes());
        out
    }

    /// Reads the form [`encode`](Self::encode) wrote.
    pub(crate) fn decode(bytes: [u8; 8]) -> ExitStatus {
        let kind = i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let value = i32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        if kind == 0 { ExitStatus::Code(value) } else { ExitStatus::Signal(Signal::from_raw(value)) }
    }
}
