//! The children this process started: their exit state, reaping, and what happens at exit.
//!
//! Every child is registered here when it starts and stays until it has been reaped, whether or
//! not its [`Process`](crate::Process) handle is still around, so no child is left a zombie:
//! finished children are reaped whenever a child is started or [`active_children`] is called,
//! and at the program's end.
//!
//! # The end of the program
//! The first start registers an `atexit` hook, which runs when `main` returns (std's runtime
//! returns into the C library, which calls `exit`) and on `std::process::exit`. Like Python's
//! `multiprocessing.util._exit_function`, it terminates the daemonic children (SIGTERM, then
//! SIGKILL for one that is still there after a second) and then joins every other child. A
//! child runs the same code when its task is done, for the children *it* started. Entries record
//! the pid of the process that started them, so a forked child never touches its siblings.
//!
//! [`active_children`]: crate::active_children

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use crate::process::Channel;
use crate::process::{ExitStatus, Signal};
use crate::sys;

/// How a child's exit status reaches us.
pub(crate) enum Exit {
    /// We forked or spawned it: `waitpid` on its pid.
    Direct,
    /// The fork server forked it: the server reaps it and sends its status on this socket.
    Server(OwnedFd),
}

/// One child, as shared by its handle and the registry.
pub(crate) struct ChildState {
    pub(crate) pid: u32,
    pub(crate) pidfd: OwnedFd,
    pub(crate) name: String,
    pub(crate) daemon: bool,
    /// The pid of the process that started it (see the module docs).
    creator: u32,
    exit: Exit,
    /// Set once a fork server went away without reporting this child's end: from then on the
    /// child is watched through its pidfd (see `try_wait`).
    server_gone: std::sync::atomic::AtomicBool,
    status: Mutex<Option<ExitStatus>>,
    /// The result channel (see `Channel`).
    pub(crate) channel: Mutex<Channel>,
}

impl ChildState {
    pub(crate) fn new(
        pid: u32,
        pidfd: OwnedFd,
        exit: Exit,
        channel: Channel,
        name: String,
        daemon: bool,
    ) -> ChildState {
        ChildState {
            pid,
            pidfd,
            name,
            daemon,
            creator: sys::process::getpid(),
            exit,
            server_gone: std::sync::atomic::AtomicBool::new(false),
            status: Mutex::new(None),
            channel: Mutex::new(channel),
        }
    }

    /// The descriptor that becomes readable once the exit status can be collected.
    pub(crate) fn exit_fd(&self) -> BorrowedFd<'_> {
        match &self.exit {
            Exit::Server(sock) if !self.server_gone.load(std::sync::atomic::Ordering::Relaxed) => sock.as_fd(),
            _ => self.pidfd.as_fd(),
        }
    }

    /// The exit status if the child has ended (reaping it), `None` while it runs.
    pub(crate) fn try_wait(&self) -> io::Result<Option<ExitStatus>> {
        // Held across the reap so that two threads cannot both reap (the second would fail).
        let mut status = lock(&self.status);
        if status.is_none() {
            *status = match &self.exit {
                Exit::Direct => sys::process::try_reap(self.pid)?.map(ExitStatus::from),
                Exit::Server(sock) => match self.server_gone.load(std::sync::atomic::Ordering::Relaxed) {
                    false => match server_status(sock.as_fd())? {
                        ServerReport::Exited(status) => Some(status),
                        ServerReport::Running => None,
                        ServerReport::ServerGone => {
                            self.server_gone.store(true, std::sync::atomic::Ordering::Relaxed);
                            crate::trace::event!(
                                warn,
                                pid = self.pid,
                                "the fork server is gone; its child is watched through its pidfd"
                            );
                            self.status_without_server()?
                        }
                    },
                    true => self.status_without_server()?,
                },
            };
            if let Some(ended) = *status {
                crate::trace::event!(debug, pid = self.pid, status = %ended, "a child's exit was seen");
                let _ = ended;
            }
        }
        Ok(*status)
    }

    /// The status of a fork-server child whose server died: the child lives on (it is watched
    /// through its pidfd), and once it has exited its status is read as a non-parent can.
    fn status_without_server(&self) -> io::Result<Option<ExitStatus>> {
        let status = sys::process::exit_status_of(self.pidfd.as_fd(), self.pid)?.map(ExitStatus::from);
        if status.is_none() && sys::poll::wait_readable(&[self.pidfd.as_fd()], Some(Instant::now()))?[0] {
            // Exited, but its status is not readable yet (the new parent is reaping it right
            // now): the pidfd stays readable, so do not let a caller's poll spin on it.
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(status)
    }

    /// Waits until the child ends or `deadline` passes; `None` on timeout. Takes in the child's
    /// result meanwhile, so that a large one cannot keep it from exiting.
    pub(crate) fn wait_deadline(&self, deadline: Option<Instant>) -> io::Result<Option<ExitStatus>> {
        loop {
            let complete = lock(&self.channel).pump()?;
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            let channel = lock(&self.channel);
            let mut watched = vec![self.exit_fd()];
            if !complete {
                watched.extend(channel.sock.as_ref().map(|s| s.as_fd()));
            }
            // The result socket is borrowed while the lock is held; a concurrent join (which
            // also needs the lock) simply waits its turn.
            let ready = sys::poll::wait_readable(&watched, deadline)?;
            drop(channel);
            if !ready.iter().any(|&r| r) {
                return Ok(None);
            }
        }
    }

    /// Sends `signal` (race-free against pid reuse: through the pidfd).
    pub(crate) fn signal(&self, signal: Signal) -> io::Result<()> {
        sys::process::pidfd_signal(self.pidfd.as_fd(), signal.as_raw())
    }
}

/// What the fork server's status socket says about a child.
enum ServerReport {
    Running,
    Exited(ExitStatus),
    /// The server ended without reporting: it was killed. The child was not (see
    /// `start::forkserver`): it is watched through its pidfd from now on.
    ServerGone,
}

/// Reads a status the fork server sent, without blocking.
fn server_status(sock: BorrowedFd<'_>) -> io::Result<ServerReport> {
    let mut buf = [0u8; 8];
    let mut fds = Vec::new();
    Ok(match sys::socket::recv_with_fds(sock, &mut buf, &mut fds, true) {
        Ok(None) => ServerReport::Running,
        Ok(Some(8)) => ServerReport::Exited(ExitStatus::decode(buf)),
        Ok(Some(_)) => ServerReport::ServerGone,
        Err(err) if err.raw_os_error() == Some(libc::ECONNRESET) => ServerReport::ServerGone,
        Err(err) => return Err(err),
    })
}

static CHILDREN: Mutex<Vec<Arc<ChildState>>> = Mutex::new(Vec::new());

/// Locks a mutex, ignoring poisoning: the data behind ours stays consistent through any panic.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The registry lock, held by the fork start method across `fork` so that the child never
/// inherits it locked by a thread that does not exist there.
pub(crate) fn hold() -> MutexGuard<'static, Vec<Arc<ChildState>>> {
    lock(&CHILDREN)
}

/// Records a new child; reaps finished ones first, as Python does on each start.
pub(crate) fn register(child: Arc<ChildState>) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| sys::process::at_exit(exit_hook));
    let mut children = lock(&CHILDREN);
    reap_finished(&mut children);
    children.push(child);
}

/// Drops a child whose status its handle has collected.
pub(crate) fn forget(child: &Arc<ChildState>) {
    lock(&CHILDREN).retain(|c| !Arc::ptr_eq(c, child));
}

fn reap_finished(children: &mut Vec<Arc<ChildState>>) {
    let me = sys::process::getpid();
    children.retain(|c| c.creator == me && matches!(c.try_wait(), Ok(None)));
}

/// The children started by this process that are still running (finished ones are reaped).
pub(crate) fn active() -> Vec<Arc<ChildState>> {
    let mut children = lock(&CHILDREN);
    reap_finished(&mut children);
    children.clone()
}

/// How long a daemon gets between SIGTERM and SIGKILL at exit.
const DAEMON_GRACE: Duration = Duration::from_secs(1);

/// Terminates daemonic children and joins the others; see the module docs.
pub(crate) fn finish_children() {
    let children = active();
    if !children.is_empty() {
        crate::trace::event!(
            info,
            daemons = children.iter().filter(|c| c.daemon).count(),
            others = children.iter().filter(|c| !c.daemon).count(),
            "at exit: terminating daemonic children and joining the others"
        );
    }
    for child in children.iter().filter(|c| c.daemon) {
        let _ = child.signal(Signal::TERM);
    }
    let grace = Instant::now() + DAEMON_GRACE;
    for child in &children {
        if child.daemon {
            if let Ok(None) = child.wait_deadline(Some(grace)) {
                let _ = child.signal(Signal::KILL);
            }
        }
        let _ = child.wait_deadline(None);
    }
    lock(&CHILDREN).retain(|c| !children.iter().any(|d| Arc::ptr_eq(c, d)));
}

extern "C" fn exit_hook() {
    // A panic must not unwind into the C library's exit.
    let _ = std::panic::catch_unwind(finish_children);
}
