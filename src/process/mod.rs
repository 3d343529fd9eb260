//! Processes: start a function in a child process, wait for it, signal it, get its result back.
//!
//! A [`Process`] runs a [`Task`] — a plain `fn` (or a closure that captures nothing) with
//! serde arguments — or a [`Run`] object in a child started by one of the [start
//! methods](StartMethod). The child's return value comes back through [`Process::join`]; a panic
//! comes back as [`JoinError::Panicked`] with its message, and a child that exits early or is
//! killed as [`JoinError::Exited`] with its [`ExitStatus`]. Nothing in the parent panics.
//!
//! Beyond Python, children die with a parent that is killed (see
//! [`ProcessBuilder::die_with_parent`]), every finished child is reaped, and at the program's end
//! daemonic children are terminated and the others joined (see `registry` for how the end of
//! the program is hooked).
//!
//! Which way the arrows go: this module uses `sys` (the platform), `entry` (code named by
//! offset), `handle` and `codec`, and names nothing above it — not the manager, not the pool.
//! A layer above that needs something done when a child starts registers it in `hooks`
//! (around a fork; data handed to a spawned child); a pool names its batches and a manager its
//! update functions by offset through `entry`, next to their own code.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::asyncio::{Step, Watch};
use crate::error::{Error, ErrorKind, Result};
use crate::handle;
use crate::sys;
use crate::sys::poll::Ready;

pub(crate) mod child;
pub(crate) mod hooks;
pub(crate) mod identity;
pub(crate) mod registry;
pub(crate) mod start;
pub(crate) mod task;

pub use start::{Context, StartMethod, UnknownStartMethod, get_start_method, set_start_method};
pub use task::{Run, Task};

use registry::{ChildState, lock};

/// A signal number, named the way `kill -l` names it.
///
/// ```
/// use multiproc::Signal;
/// assert_eq!(Signal::KILL.to_string(), "SIGKILL");
/// assert_eq!(Signal::from_raw(15), Signal::TERM);
/// ```
/// Python counterpart: `signal.Signals`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Signal(i32);

impl Signal {
    /// SIGINT, sent by [`Process::interrupt`] (and by Ctrl-C in a terminal).
    ///
    /// ```
    /// assert_eq!(multiproc::Signal::INT.name(), Some("SIGINT"));
    /// ```
    /// Python counterpart: `signal.SIGINT`.
    pub const INT: Signal = Signal(libc::SIGINT);
    /// SIGKILL, sent by [`Process::kill`]; cannot be caught.
    ///
    /// ```
    /// assert_eq!(multiproc::Signal::KILL.name(), Some("SIGKILL"));
    /// ```
    /// Python counterpart: `signal.SIGKILL`.
    pub const KILL: Signal = Signal(libc::SIGKILL);
    /// SIGTERM, sent by [`Process::terminate`].
    ///
    /// ```
    /// assert_eq!(multiproc::Signal::TERM.name(), Some("SIGTERM"));
    /// ```
    /// Python counterpart: `signal.SIGTERM`.
    pub const TERM: Signal = Signal(libc::SIGTERM);
    /// SIGABRT, raised by `std::process::abort`.
    ///
    /// ```
    /// assert_eq!(multiproc::Signal::ABRT.name(), Some("SIGABRT"));
    /// ```
    /// Python counterpart: `signal.SIGABRT`.
    pub const ABRT: Signal = Signal(libc::SIGABRT);
    /// SIGSEGV, an invalid memory access.
    ///
    /// ```
    /// assert_eq!(multiproc::Signal::SEGV.name(), Some("SIGSEGV"));
    /// ```
    /// Python counterpart: `signal.SIGSEGV`.
    pub const SEGV: Signal = Signal(libc::SIGSEGV);

    /// The signal with this number.
    ///
    /// ```
    /// assert_eq!(multiproc::Signal::from_raw(9), multiproc::Signal::KILL);
    /// ```
    /// Python counterpart: `signal.Signals(number)`.
    pub fn from_raw(number: i32) -> Signal {
        Signal(number)
    }

    /// The signal's number.
    ///
    /// ```
    /// assert_eq!(multiproc::Signal::TERM.as_raw(), 15);
    /// ```
    /// Python counterpart: `int(signal.SIGTERM)`.
    pub fn as_raw(self) -> i32 {
        self.0
    }

    /// The conventional name (`"SIGKILL"`), or `None` for a number without one.
    ///
    /// ```
    /// assert_eq!(multiproc::Signal::INT.name(), Some("SIGINT"));
    /// assert_eq!(multiproc::Signal::from_raw(1000).name(), None);
    /// ```
    /// Python counterpart: `signal.Signals(n).name`.
    pub fn name(self) -> Option<&'static str> {
        const NAMES: [&str; 32] = [
            "",
            "SIGHUP",
            "SIGINT",
            "SIGQUIT",
            "SIGILL",
            "SIGTRAP",
            "SIGABRT",
            "SIGBUS",
            "SIGFPE",
            "SIGKILL",
            "SIGUSR1",
            "SIGSEGV",
            "SIGUSR2",
            "SIGPIPE",
            "SIGALRM",
            "SIGTERM",
            "SIGSTKFLT",
            "SIGCHLD",
            "SIGCONT",
            "SIGSTOP",
            "SIGTSTP",
            "SIGTTIN",
            "SIGTTOU",
            "SIGURG",
            "SIGXCPU",
            "SIGXFSZ",
            "SIGVTALRM",
            "SIGPROF",
            "SIGWINCH",
            "SIGIO",
            "SIGPWR",
            "SIGSYS",
        ];
        usize::try_from(self.0).ok().and_then(|i| NAMES.get(i)).copied().filter(|n| !n.is_empty())
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.pad(name),
            None => f.pad(&format!("signal {}", self.0)),
        }
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signal({self})")
    }
}

/// How a process ended: an exit code, or the signal that killed it.
///
/// ```
/// use multiproc::{ExitStatus, Signal};
/// assert!(ExitStatus::Code(0).success());
/// assert_eq!(ExitStatus::Signal(Signal::KILL).python_exitcode(), -9);
/// assert_eq!(ExitStatus::Code(3).to_string(), "exit code 3");
/// ```
/// Python counterpart: `Process.exitcode` (an int, negative for a signal).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ExitStatus {
    /// The process exited with this code (0 after a task returned, 1 after a panic).
    Code(i32),
    /// The process was killed by this signal.
    Signal(Signal),
}

impl From<sys::process::Ended> for ExitStatus {
    fn from(ended: sys::process::Ended) -> ExitStatus {
        match ended {
            sys::process::Ended::Code(code) => ExitStatus::Code(code),
            sys::process::Ended::Signal(signal) => ExitStatus::Signal(Signal::from_raw(signal)),
        }
    }
}

impl ExitStatus {
    /// Exit code 0.
    ///
    /// ```
    /// assert!(multiproc::ExitStatus::Code(0).success());
    /// assert!(!multiproc::ExitStatus::Code(3).success());
    /// ```
    /// Python counterpart: `p.exitcode == 0`.
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }

    /// The exit code, if the process exited rather than being killed.
    ///
    /// ```
    /// assert_eq!(multiproc::ExitStatus::Code(3).code(), Some(3));
    /// assert_eq!(multiproc::ExitStatus::Signal(multiproc::Signal::KILL).code(), None);
    /// ```
    /// Python counterpart: `p.exitcode` when it is not negative.
    pub fn code(self) -> Option<i32> {
        match self {
            ExitStatus::Code(code) => Some(code),
            ExitStatus::Signal(_) => None,
        }
    }

    /// The signal that killed the process, if one did.
    ///
    /// ```
    /// use multiproc::{ExitStatus, Signal};
    /// assert_eq!(ExitStatus::Signal(Signal::TERM).signal(), Some(Signal::TERM));
    /// ```
    /// Python counterpart: `-p.exitcode` when it is negative.
    pub fn signal(self) -> Option<Signal> {
        match self {
            ExitStatus::Signal(signal) => Some(signal),
            ExitStatus::Code(_) => None,
        }
    }

    /// Python's encoding: the exit code, or minus the signal number.
    ///
    /// ```
    /// use multiproc::{ExitStatus, Signal};
    /// assert_eq!(ExitStatus::Signal(Signal::KILL).python_exitcode(), -9);
    /// assert_eq!(ExitStatus::Code(2).python_exitcode(), 2);
    /// ```
    pub fn python_exitcode(self) -> i32 {
        match self {
            ExitStatus::Code(code) => code,
            ExitStatus::Signal(signal) => -signal.as_raw(),
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(code) => write!(f, "exit code {code}"),
            ExitStatus::Signal(signal) => write!(f, "killed by {signal}"),
        }
    }
}

/// Why [`Process::join`] (or [`join_timeout`](Process::join_timeout)) has no value to return.
///
/// ```
/// use multiproc::{JoinError, Process};
/// fn fail() -> u8 { panic!("out of tickets") }
/// let mut p = Process::spawn(fail, ()).unwrap();
/// match p.join() {
///     Err(JoinError::Panicked { message, .. }) => assert_eq!(message, "out of tickets"),
///     other => panic!("unexpected {other:?}"),
/// }
/// ```
/// Python counterpart: none — Python's `join` returns nothing and the caller inspects `exitcode`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The task panicked; the panic's message and where it happened.
    #[error("the task panicked: {message}{}", at(location))]
    Panicked {
        /// The panic message.
        message: String,
        /// `file:line:col` of the panic, followed by the child's backtrace when `RUST_BACKTRACE`
        /// was set in the child (Python's remote traceback); `None` if unknown.
        location: Option<String>,
    },
    /// The process ended without returning a value: `std::process::exit(n)`, a signal, an abort.
    #[error("the process ended without a result: {0}")]
    Exited(ExitStatus),
    /// The deadline of `join_timeout` passed while the process was still running; it still runs,
    /// and a later join can still collect its result.
    #[error("timed out waiting for the process")]
    Timeout,
    /// Something else failed: the OS, decoding the result, a child of another build, a second
    /// join. See [`Error::kind`].
    #[error(transparent)]
    Failed(#[from] Error),
}

/// `" at <location>"` for a panic's Display (the first line: a backtrace follows the location).
pub(crate) fn at(location: &Option<String>) -> String {
    location.as_deref().and_then(|l| l.lines().next()).map(|l| format!(" at {l}")).unwrap_or_default()
}

/// How long a join spins before it blocks (see `join_deadline`).
const SPIN: Duration = Duration::from_micros(200);

/// The parent's end of a child's channel: the outcome frame as it arrives. It lives in the
/// child's shared state, so that every wait for the child — `Process::join`, `ChildProcess`'s
/// join, the joins at the program's end — takes the result in while it waits: a child whose
/// result is larger than the socket's buffer cannot exit until someone reads it.
pub(crate) struct Channel {
    pub(crate) sock: Option<OwnedFd>,
    pub(crate) buf: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
}

impl Channel {
    pub(crate) fn new(sock: OwnedFd) -> Channel {
        Channel { sock: Some(sock), buf: Vec::new(), fds: Vec::new() }
    }

    /// Reads what is there without blocking; true once a whole frame has arrived.
    pub(crate) fn pump(&mut self) -> io::Result<bool> {
        while let Some(sock) = &self.sock {
            if self.complete() {
                return Ok(true);
            }
            let mut chunk = vec![0u8; self.wanted().clamp(4096, 1 << 20)];
            match sys::socket::recv_with_fds(sock.as_fd(), &mut chunk, &mut self.fds, true) {
                Ok(Some(0)) => self.sock = None,
                Ok(Some(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(None) => break,
                Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => self.sock = None,
                Err(e) => return Err(e),
            }
        }
        Ok(self.complete())
    }

    fn frame_len(&self) -> Option<usize> {
        let header: [u8; 8] = self.buf.get(..8)?.try_into().ok()?;
        Some(u64::from_le_bytes(header) as usize)
    }

    fn wanted(&self) -> usize {
        self.frame_len().map_or(8, |len| (8 + len).saturating_sub(self.buf.len()))
    }

    pub(crate) fn complete(&self) -> bool {
        self.frame_len().is_some_and(|len| self.buf.len() >= 8 + len)
    }
}

/// A child process started by multiproc, returning an `R` when its task is done.
///
/// # Example
/// ```
/// use std::time::Duration;
/// use multiproc::Process;
///
/// fn work(n: u64) -> u64 { (1..=n).sum() }
///
/// let mut p = Process::builder().name("summer").spawn(work, (100,)).unwrap();
/// assert_eq!(p.name(), "summer");
/// assert_eq!(p.join().unwrap(), 5050);
/// assert!(!p.is_alive());
/// assert!(p.exit_code().unwrap().success());
/// ```
/// Python counterpart: `multiprocessing.Process`.
pub struct Process<R = ()> {
    state: Arc<ChildState>,
    joined: bool,
    _result: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for Process<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("pid", &self.state.pid)
            .field("name", &self.state.name)
            .field("daemon", &self.state.daemon)
            .finish_non_exhaustive()
    }
}

impl Process<()> {
    /// A builder for a process with a name, the daemon flag, a start method and more.
    ///
    /// ```
    /// let mut p = multiproc::Process::builder().name("worker").spawn(|| 1, ()).unwrap();
    /// assert_eq!(p.name(), "worker");
    /// # p.join().unwrap();
    /// ```
    /// Python counterpart: the keyword arguments of `Process(...)`.
    pub fn builder() -> ProcessBuilder {
        ProcessBuilder::default()
    }
}

impl<R: DeserializeOwned> Process<R> {
    /// Starts `task(args...)` in a new child process with the default start method.
    ///
    /// `args` is a tuple that is unpacked into the task's parameters (`()` for none, `(x,)` for
    /// one). It is serialized for the child; handles inside it (such as an [`Fd`](crate::Fd))
    /// carry their descriptors along.
    ///
    /// # Errors
    /// [`ErrorKind::Encode`] if the arguments cannot be encoded (nothing is started),
    /// [`ErrorKind::DaemonChild`] in a daemon process, [`ErrorKind::Os`] or
    /// [`ErrorKind::ForkServer`] if the OS refuses.
    ///
    /// # Example
    /// ```
    /// use multiproc::Process;
    /// fn shout(word: String, times: usize) -> String { word.to_uppercase().repeat(times) }
    /// let mut p = Process::spawn(shout, ("ha".to_string(), 3)).unwrap();
    /// assert_eq!(p.join().unwrap(), "HAHAHA");
    /// ```
    /// Python counterpart: `p = Process(target=f, args=(a, b)); p.start()`.
    #[doc(alias = "start")]
    pub fn spawn<F, A>(task: F, args: A) -> Result<Process<R>>
    where
        F: Task<A, Output = R>,
        A: Serialize + DeserializeOwned,
        R: Serialize,
    {
        ProcessBuilder::default().spawn(task, args)
    }

    /// Starts `task(values)` in a new child: the task takes one parameter, the tuple `values`,
    /// whose type it is inferred from — what [`spawn!`](crate::spawn!) expands to, so that a
    /// closure's parameters need no types written out.
    ///
    /// # Errors
    /// As [`spawn`](Self::spawn).
    ///
    /// ```
    /// let mut p = multiproc::Process::spawn_with((2, 3), |(a, b)| a * b).unwrap();
    /// assert_eq!(p.join().unwrap(), 6);
    /// ```
    /// Python counterpart: `Process(target=f, args=(values,))`.
    pub fn spawn_with<F, A>(values: A, task: F) -> Result<Process<R>>
    where
        F: Fn(A) -> R + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize,
    {
        ProcessBuilder::default().spawn(task, (values,))
    }

    /// Waits for the process to end and returns its task's value.
    ///
    /// # Errors
    /// [`JoinError::Panicked`], [`JoinError::Exited`], or [`JoinError::Failed`] (including
    /// [`ErrorKind::AlreadyJoined`] on a second successful join).
    ///
    /// ```
    /// fn add(a: u32, b: u32) -> u32 { a + b }
    /// let mut p = multiproc::Process::spawn(add, (2, 3)).unwrap();
    /// assert_eq!(p.join().unwrap(), 5);
    /// ```
    /// Python counterpart: `Process.join()`.
    pub fn join(&mut self) -> Result<R, JoinError> {
        self.join_deadline(None)
    }

    /// Waits for the process to end and returns its task's value, as [`join`](Self::join) does,
    /// without blocking the thread: for async code, on any executor (see
    /// [`asyncio`](crate::asyncio)). Dropping the future leaves the child running and unjoined.
    ///
    /// # Errors
    /// As [`join`](Self::join).
    ///
    /// ```
    /// fn add(a: u32, b: u32) -> u32 { a + b }
    /// let mut p = multiproc::Process::spawn(add, (2, 3)).unwrap();
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// assert_eq!(rt.block_on(p.join_async()).unwrap(), 5);
    /// ```
    /// Python counterpart: none (`await loop.run_in_executor(None, p.join)`).
    pub async fn join_async(&mut self) -> Result<R, JoinError> {
        crate::asyncio::retry(|| match self.join_deadline(Some(Instant::now())) {
            Err(JoinError::Timeout) => match self.watched() {
                Ok(fds) => Step::Wait(Watch::fds(fds)),
                Err(e) => Step::Done(Err(JoinError::Failed(Error::os("watching the child", e)))),
            },
            outcome => Step::Done(outcome),
        })
        .await
    }

    /// Copies of the descriptors that a join waits on: the child's exit, and its result channel
    /// until the whole result is in (a big result is read while the child writes it).
    fn watched(&self) -> io::Result<Vec<(OwnedFd, Ready)>> {
        let channel = lock(&self.state.channel);
        let mut fds = vec![(self.state.exit_fd().try_clone_to_owned()?, Ready::Read)];
        if !channel.complete() {
            if let Some(sock) = &channel.sock {
                fds.push((sock.as_fd().try_clone_to_owned()?, Ready::Read));
            }
        }
        Ok(fds)
    }

    /// Like [`join`](Self::join), but gives up after `timeout` with [`JoinError::Timeout`].
    ///
    /// A real blocking wait on the child's descriptors, not polling with sleeps.
    ///
    /// # Example
    /// ```
    /// use std::time::Duration;
    /// use multiproc::{JoinError, Process};
    /// fn nap() { std::thread::sleep(Duration::from_secs(30)) }
    /// let mut p = Process::spawn(nap, ()).unwrap();
    /// assert!(matches!(p.join_timeout(Duration::from_millis(50)), Err(JoinError::Timeout)));
    /// p.kill().unwrap();
    /// assert!(matches!(p.join(), Err(JoinError::Exited(_))));
    /// ```
    /// Python counterpart: `Process.join(timeout)`.
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<R, JoinError> {
        // A timeout too long for an Instant is no deadline at all.
        self.join_deadline(crate::sync::deadline_after(timeout))
    }

    /// Like [`join`](Self::join), with an absolute deadline (`None`: no deadline).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let mut p = multiproc::Process::spawn(|| 7u8, ()).unwrap();
    /// assert_eq!(p.join_deadline(Some(Instant::now() + Duration::from_secs(30))).unwrap(), 7);
    /// ```
    /// Python counterpart: `p.join(timeout=deadline - time.monotonic())`.
    pub fn join_deadline(&mut self, deadline: Option<Instant>) -> Result<R, JoinError> {
        if self.joined {
            return Err(Error::new(ErrorKind::AlreadyJoined, format!("pid {}", self.state.pid)).into());
        }
        let os = |e| JoinError::Failed(Error::os("waiting for the child", e));
        // Spin briefly before blocking, and again once the result is in and the child is about to
        // exit: waking a blocked thread costs tens of microseconds on these machines, often more
        // than a short task's whole run (see DESIGN.md, "Latency").
        let mut spin_until = Instant::now() + SPIN;
        let mut had_result = false;
        let status = loop {
            let mut channel = lock(&self.state.channel);
            let complete = channel.pump().map_err(os)?;
            if let Some(status) = self.state.try_wait().map_err(os)? {
                channel.pump().map_err(os)?;
                break status;
            }
            if complete && !had_result {
                had_result = true;
                spin_until = Instant::now() + SPIN;
            }
            let now = Instant::now();
            if now < spin_until && deadline.is_none_or(|d| now < d) {
                drop(channel);
                std::thread::yield_now();
                continue;
            }
            let mut watched: Vec<BorrowedFd<'_>> = vec![self.state.exit_fd()];
            if !complete {
                watched.extend(channel.sock.as_ref().map(|s| s.as_fd()));
            }
            let ready = sys::poll::wait_readable(&watched, deadline).map_err(os)?;
            if !ready.iter().any(|&r| r) {
                return Err(JoinError::Timeout);
            }
        };
        // Reaped: the registry has nothing left to do for it, and must not keep its descriptors
        // open until the next start.
        registry::forget(&self.state);
        let mut channel = lock(&self.state.channel);
        self.joined = true;
        if !channel.complete() {
            return Err(JoinError::Exited(status));
        }
        let body = channel.buf.split_off(8);
        let fds = std::mem::take(&mut channel.fds);
        decode_outcome(&body, fds)
    }
}

fn decode_outcome<R: DeserializeOwned>(body: &[u8], fds: Vec<OwnedFd>) -> Result<R, JoinError> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match body.split_first() {
        Some((0, value)) => handle::provide(fds, || postcard::from_bytes(value)).map_err(|e| {
            Error::new(
                ErrorKind::Decode,
                format!("the task's result: {}", crate::codec::decode_failure::<R>(value, &e)),
            )
            .into()
        }),
        Some((1, panic)) => match postcard::from_bytes::<task::Panic>(panic) {
            Ok(task::Panic { message, location }) => Err(JoinError::Panicked { message, location }),
            Err(_) => Err(Error::new(ErrorKind::Decode, "malformed panic report from the child").into()),
        },
        Some((2, rest)) if !rest.is_empty() => Err(Error::new(child::kind_from_code(rest[0]), text(&rest[1..])).into()),
        _ => Err(Error::new(ErrorKind::Decode, "malformed outcome frame from the child").into()),
    }
}

impl<R> Process<R> {
    /// The child's process id.
    ///
    /// ```
    /// let mut p = multiproc::Process::spawn(std::process::id, ()).unwrap();
    /// let pid = p.pid();
    /// assert_eq!(p.join().unwrap(), pid);
    /// ```
    /// Python counterpart: `Process.pid`.
    pub fn pid(&self) -> u32 {
        self.state.pid
    }

    /// The child's name (`Process-N` unless one was given).
    ///
    /// ```
    /// let mut p = multiproc::Process::spawn(|| (), ()).unwrap();
    /// assert!(p.name().starts_with("Process-"));
    /// # p.join().unwrap();
    /// ```
    /// Python counterpart: `Process.name`.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Whether the child is a daemon.
    ///
    /// ```
    /// let mut p = multiproc::Process::builder().daemon(true).spawn(|| (), ()).unwrap();
    /// assert!(p.is_daemon());
    /// # p.join().unwrap();
    /// ```
    /// Python counterpart: `Process.daemon`.
    pub fn is_daemon(&self) -> bool {
        self.state.daemon
    }

    /// Whether the child is still running (reaping it if it has ended).
    ///
    /// ```
    /// let mut p = multiproc::Process::spawn(|| (), ()).unwrap();
    /// p.join().unwrap();
    /// assert!(!p.is_alive());
    /// ```
    /// Python counterpart: `Process.is_alive()`.
    pub fn is_alive(&self) -> bool {
        self.exit_code().is_none()
    }

    /// How the child ended, or `None` while it runs.
    ///
    /// ```
    /// let mut p = multiproc::Process::spawn(|| (), ()).unwrap();
    /// p.join().unwrap();
    /// assert!(p.exit_code().unwrap().success());
    /// ```
    /// Python counterpart: `Process.exitcode` (see [`ExitStatus::python_exitcode`]).
    #[doc(alias = "exitcode")]
    pub fn exit_code(&self) -> Option<ExitStatus> {
        // Take in what the child has written, so that a large result never keeps it from exiting.
        let _ = lock(&self.state.channel).pump();
        self.state.try_wait().ok().flatten()
    }

    /// Sends SIGTERM. A no-op for a child that has ended.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if the signal cannot be sent.
    ///
    /// ```
    /// fn nap() { std::thread::sleep(std::time::Duration::from_secs(60)) }
    /// let mut p = multiproc::Process::spawn(nap, ()).unwrap();
    /// p.terminate().unwrap();
    /// assert!(p.join().is_err());
    /// assert_eq!(p.exit_code().unwrap().signal(), Some(multiproc::Signal::TERM));
    /// ```
    /// Python counterpart: `Process.terminate()`.
    pub fn terminate(&self) -> Result<()> {
        self.signal(Signal::TERM)
    }

    /// Sends SIGKILL. A no-op for a child that has ended.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if the signal cannot be sent.
    ///
    /// ```
    /// fn nap() { std::thread::sleep(std::time::Duration::from_secs(60)) }
    /// let mut p = multiproc::Process::spawn(nap, ()).unwrap();
    /// p.kill().unwrap();
    /// assert!(p.join().is_err());
    /// assert_eq!(p.exit_code().unwrap().signal(), Some(multiproc::Signal::KILL));
    /// ```
    /// Python counterpart: `Process.kill()`.
    pub fn kill(&self) -> Result<()> {
        self.signal(Signal::KILL)
    }

    /// Sends SIGINT. A no-op for a child that has ended.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if the signal cannot be sent.
    ///
    /// ```
    /// fn nap() { std::thread::sleep(std::time::Duration::from_secs(60)) }
    /// let mut p = multiproc::Process::spawn(nap, ()).unwrap();
    /// p.interrupt().unwrap();
    /// assert!(p.join().is_err());
    /// assert_eq!(p.exit_code().unwrap().signal(), Some(multiproc::Signal::INT));
    /// ```
    /// Python counterpart: `Process.interrupt()` (3.14).
    pub fn interrupt(&self) -> Result<()> {
        self.signal(Signal::INT)
    }

    /// Sends any signal, race-free against pid reuse (through a pidfd).
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if the signal cannot be sent.
    ///
    /// ```
    /// fn nap() { std::thread::sleep(std::time::Duration::from_secs(60)) }
    /// let mut p = multiproc::Process::spawn(nap, ()).unwrap();
    /// p.signal(multiproc::Signal::KILL).unwrap();
    /// assert!(p.join().is_err());
    /// ```
    /// Python counterpart: `os.kill(p.pid, signal)`.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        self.state.signal(signal).map_err(|e| Error::os("sending a signal", e))
    }

    /// A descriptor (a pidfd) that becomes readable when the child ends: for `poll`, and for the
    /// crate's `wait` over several objects.
    ///
    /// ```
    /// use multiproc::connection::{Waitable, wait};
    /// let mut p = multiproc::Process::spawn(|| (), ()).unwrap();
    /// assert_eq!(wait(&[&p as &dyn Waitable], None).unwrap(), [0]); // ready once it ends
    /// p.join().unwrap();
    /// ```
    /// Python counterpart: `Process.sentinel`.
    pub fn sentinel(&self) -> BorrowedFd<'_> {
        self.state.pidfd.as_fd()
    }
}

impl<R> AsFd for Process<R> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sentinel()
    }
}

/// Options for a new process: name, daemon flag, start method, parent-death behaviour.
///
/// # Example
/// ```
/// use multiproc::{Process, StartMethod};
/// fn id() -> u32 { std::process::id() }
/// let mut p = Process::builder()
///     .name("worker")
///     .daemon(true)
///     .start_method(StartMethod::Fork)
///     .spawn(id, ())
///     .unwrap();
/// assert!(p.is_daemon());
/// assert_eq!(p.join().unwrap(), p.pid());
/// ```
/// Python counterpart: `Process(name=..., daemon=...)` and `get_context(method).Process`.
#[derive(Clone, Debug, Default)]
pub struct ProcessBuilder {
    name: Option<String>,
    daemon: bool,
    method: Option<StartMethod>,
    keep_on_parent_death: bool,
    executable: Option<PathBuf>,
    ignore_interrupts: bool,
    daemon_may_start_children: bool,
}

impl ProcessBuilder {
    /// The child's name (default: `Process-N`, numbered as Python numbers them).
    ///
    /// ```
    /// let mut p = multiproc::Process::builder().name("emperor").spawn(|| (), ()).unwrap();
    /// assert_eq!(p.name(), "emperor");
    /// # p.join().unwrap();
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> ProcessBuilder {
        self.name = Some(name.into());
        self
    }

    /// Makes the child a daemon: terminated when this program ends instead of waited for, and not
    /// allowed to start children of its own.
    ///
    /// ```
    /// let mut p = multiproc::Process::builder().daemon(true).spawn(|| (), ()).unwrap();
    /// assert!(p.is_daemon());
    /// # p.join().unwrap();
    /// ```
    /// Python counterpart: `Process(daemon=True)`.
    pub fn daemon(mut self, daemon: bool) -> ProcessBuilder {
        self.daemon = daemon;
        self
    }

    /// The start method (default: [`get_start_method`]).
    ///
    /// ```
    /// use multiproc::{Process, StartMethod};
    /// let mut p = Process::builder().start_method(StartMethod::Spawn).spawn(|| 4, ()).unwrap();
    /// assert_eq!(p.join().unwrap(), 4);
    /// ```
    /// Python counterpart: `get_context(method).Process(...)`.
    pub fn start_method(mut self, method: StartMethod) -> ProcessBuilder {
        self.method = Some(method);
        self
    }

    /// Whether the child is killed (SIGKILL) when this process dies, even by SIGKILL
    /// (default: `true`). Python has no such option: its children outlive a killed parent.
    ///
    /// ```
    /// let mut p = multiproc::Process::builder().die_with_parent(false).spawn(|| (), ()).unwrap();
    /// # p.join().unwrap();
    /// ```
    pub fn die_with_parent(mut self, die: bool) -> ProcessBuilder {
        self.keep_on_parent_death = !die;
        self
    }

    /// For executor workers: terminated at exit like a daemon, yet allowed to start children.
    pub(crate) fn daemon_may_start_children(mut self, allowed: bool) -> ProcessBuilder {
        self.daemon_may_start_children = allowed;
        self
    }

    /// Whether the child ignores SIGINT (default: `false`, as in Python).
    ///
    /// Under every start method a child is in its parent's process group, so **a Ctrl-C in the
    /// terminal reaches every child as well as the parent**, and by default it ends them
    /// (Python's children raise `KeyboardInterrupt` instead). With `true`, the child ignores it
    /// and Ctrl-C is the parent's alone to handle — say, by asking its children to stop, or
    /// terminating them. Pool and executor workers always ignore it. The fork server blocks it,
    /// so that it survives to serve the next start.
    ///
    /// ```
    /// use multiproc::Process;
    /// fn interrupt_myself() -> bool {
    ///     // SAFETY (in a doc test): raise(2) has no preconditions.
    ///     unsafe { libc::raise(libc::SIGINT) };
    ///     true // still here
    /// }
    /// let mut p = Process::builder().ignore_interrupts(true).spawn(interrupt_myself, ()).unwrap();
    /// assert!(p.join().unwrap());
    /// ```
    /// Python counterpart: none (Python users install `signal.signal(SIGINT, SIG_IGN)` in the
    /// target, as pool initializers often do).
    pub fn ignore_interrupts(mut self, ignore: bool) -> ProcessBuilder {
        self.ignore_interrupts = ignore;
        self
    }

    /// The program a `spawn` or `forkserver` child runs (default: this program).
    ///
    /// It must be the very same build; a different one refuses the task and the join reports
    /// [`ErrorKind::BuildMismatch`]. Give only a program you trust: it is handed the task's
    /// arguments, and the process tree's key ([`CurrentProcess::authkey`]), before it can refuse.
    ///
    /// ```
    /// let builder = multiproc::Process::builder().executable(std::env::current_exe().unwrap());
    /// let mut p = builder.start_method(multiproc::StartMethod::Spawn).spawn(|| 1, ()).unwrap();
    /// assert_eq!(p.join().unwrap(), 1);
    /// ```
    /// Python counterpart: `multiprocessing.set_executable(path)`.
    pub fn executable(mut self, path: impl Into<PathBuf>) -> ProcessBuilder {
        self.executable = Some(path.into());
        self
    }

    /// Starts `task(args...)`; see [`Process::spawn`].
    ///
    /// # Errors
    /// As for [`Process::spawn`].
    ///
    /// ```
    /// let mut p = multiproc::Process::builder().name("adder").spawn(|a: i32, b: i32| a + b, (1, 2)).unwrap();
    /// assert_eq!(p.join().unwrap(), 3);
    /// ```
    /// Python counterpart: `Process(target=f, args=args, name=..., daemon=...).start()`.
    pub fn spawn<F, A>(self, _task: F, args: A) -> Result<Process<F::Output>>
    where
        F: Task<A>,
        A: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        let entry = task::entry_offset::<F, A>();
        let (encoded, handles) = handle::encode(&args).map_err(|e| {
            Error::new(ErrorKind::Encode, format!("the task's arguments: {}", crate::codec::encode_failure(&args, &e)))
        })?;
        if handles.len() >= sys::socket::MAX_FDS {
            return Err(Error::new(ErrorKind::TooManyHandles, format!("{} descriptors", handles.len())));
        }
        let (identity, default_name, parent_name, parent_pidfd, authkey) = {
            let mut state = identity::hold();
            if state.daemon {
                return Err(Error::new(ErrorKind::DaemonChild, state.name()));
            }
            let pidfd = state.own_pidfd().map_err(|e| Error::os("pidfd_open", e))?;
            let authkey = state.authkey().map_err(|e| Error::os("reading random bytes", e))?;
            let (identity, name) = state.next_child();
            (identity, name, state.name(), pidfd, authkey)
        };
        let name = self.name.unwrap_or(default_name);
        let job = start::Job {
            entry,
            args: &encoded,
            handles: &handles,
            name: name.clone(),
            identity,
            daemon: self.daemon && !self.daemon_may_start_children,
            die_with_parent: !self.keep_on_parent_death,
            executable: self.executable.as_ref(),
            parent_name,
            parent_pidfd,
            authkey,
            start_method: self.method.unwrap_or_else(get_start_method),
            ignore_interrupts: self.ignore_interrupts,
        };
        let started = start::start(job.start_method, &job)?;
        crate::trace::event!(debug, pid = started.pid, name = %name, method = ?job.start_method, "child started");
        let channel = Channel::new(started.channel);
        let state = Arc::new(ChildState::new(started.pid, started.pidfd, started.exit, channel, name, self.daemon));
        registry::register(state.clone());
        Ok(Process { state, joined: false, _result: PhantomData })
    }

    /// Starts a class-style process; see [`Process::start`].
    ///
    /// # Errors
    /// As for [`Process::spawn`].
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// #[derive(Serialize, Deserialize)]
    /// struct Count { to: u32 }
    /// impl multiproc::Run for Count {
    ///     type Output = u32;
    ///     fn run(self) -> u32 { (1..=self.to).sum() }
    /// }
    /// let mut p = multiproc::Process::builder().name("counter").start(Count { to: 4 }).unwrap();
    /// assert_eq!(p.join().unwrap(), 10);
    /// ```
    /// Python counterpart: `MyProcess(...).start()` with `name=`/`daemon=` set.
    pub fn start<T: Run>(self, object: T) -> Result<Process<T::Output>> {
        self.spawn(task::run_object::<T>, (object,))
    }
}

impl<T: DeserializeOwned> Process<T> {
    /// Starts a class-style process: `object.run()` in a new child (see [`Run`]).
    ///
    /// # Errors
    /// As for [`Process::spawn`].
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// #[derive(Serialize, Deserialize)]
    /// struct Hello;
    /// impl multiproc::Run for Hello {
    ///     type Output = String;
    ///     fn run(self) -> String { "hello".into() }
    /// }
    /// let mut p = multiproc::Process::start(Hello).unwrap();
    /// assert_eq!(p.join().unwrap(), "hello");
    /// ```
    /// Python counterpart: `MyProcess(...).start()` for a subclass of `Process`.
    pub fn start<O: Run<Output = T>>(object: O) -> Result<Process<T>> {
        ProcessBuilder::default().start(object)
    }
}

/// A child as [`active_children`] lists it: everything but the typed result.
///
/// ```
/// fn nap() { std::thread::sleep(std::time::Duration::from_secs(60)) }
/// let p = multiproc::Process::spawn(nap, ()).unwrap();
/// let child = multiproc::active_children().into_iter().find(|c| c.pid() == p.pid()).unwrap();
/// child.kill().unwrap();
/// assert!(child.join_timeout(None).unwrap().is_some());
/// ```
/// Python counterpart: the `Process` objects in `active_children()`.
#[derive(Clone)]
pub struct ChildProcess {
    state: Arc<ChildState>,
}

impl fmt::Debug for ChildProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildProcess").field("pid", &self.state.pid).field("name", &self.state.name).finish()
    }
}

impl ChildProcess {
    /// The child's process id.
    ///
    /// ```
    /// fn nap() { std::thread::sleep(std::time::Duration::from_secs(60)) }
    /// let p = multiproc::Process::builder().name("napper").spawn(nap, ()).unwrap();
    /// let child = multiproc::active_children().into_iter().find(|c| c.pid() == p.pid()).unwrap();
    /// assert_eq!(child.pid(), p.pid());
    /// # child.kill().unwrap();
    /// ```
    /// Python counterpart: `child.pid`.
    pub fn pid(&self) -> u32 {
        self.state.pid
    }

    /// The child's name.
    ///
    /// ```
    /// fn nap() { std::thread::sleep(std::time::Duration::from_secs(60)) }
    /// let p = multiproc::Process::builder().name("napper").spawn(nap, ()).unwrap();
    /// let child = multiproc::active_children().into_iter().find(|c| c.pid() == p.pid()).unwrap();
    /// assert_eq!(child.name(), "napper");
    /// # child.kill().unwrap();
    /// ```
    /// Python counterpart: `child.name`.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Whether the child is a daemon.
    ///
    /// ```
    /// fn nap() { std::thread::sleep(std::time::Duration::from_secs(60)) }
    /// let p = multiproc::Process::builder().name("napper").spawn(nap, ()).unwrap();
    /// let child = multiproc::active_children().into_iter().find(|c| c.pid() == p.pid()).unwrap();
    /// assert!(!child.is_daemon());
    /// # child.kill().unwrap();
    /// ```
    /// Python counterpart: `child.daemon`.
    pub fn is_daemon(&self) -> bool {
        self.state.daemon
    }

    /// Whether the child is still running.
    ///
    /// ```
    /// fn nap() { std::thread::sleep(std::time::Duration::from_secs(60)) }
    /// let p = multiproc::Process::builder().name("napper").spawn(nap, ()).unwrap();
    /// let child = multiproc::active_children().into_iter().find(|c| c.pid() == p.pid()).unwrap();
    /// assert!(child.is_alive());
    /// # child.kill().unwrap();
    /// ```
    /// Python counterpart: `child.is_alive()`.
    pub fn is_alive(&self) -> bool {
        matches!(self.state.try_wait(), Ok(None))
    }

    /// Sends SIGTERM.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if the signal cannot be sent.
    ///
    /// ```
    /// fn nap() { std::thread::sleep(std::time::Duration::from_secs(60)) }
    /// let p = multiproc::Process::builder().name("napper").spawn(nap, ()).unwrap();
    /// let child = multiproc::active_children().into_iter().find(|c| c.pid() == p.pid()).unwrap();
    /// child.terminate().unwrap();
    /// assert!(child.join_timeout(None).unwrap().is_some());
    /// ```
    /// Python counterpart: `child.terminate()`.
    pub fn terminate(&self) -> Result<()> {
        self.state.signal(Signal::TERM).map_err(|e| Error::os("sending a signal", e))
    }

    /// Sends SIGKILL.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if the signal cannot be sent.
    ///
    /// ```
    /// fn nap() { std::thread::sleep(std::time::Duration::from_secs(60)) }
    /// let p = multiproc::Process::builder().name("napper").spawn(nap, ()).unwrap();
    /// let child = multiproc::active_children().into_iter().find(|c| c.pid() == p.pid()).unwrap();
    /// child.kill().unwrap();
    /// assert!(child.join_timeout(None).unwrap().is_some());
    /// ```
    /// Python counterpart: `child.kill()`.
    pub fn kill(&self) -> Result<()> {
        self.state.signal(Signal::KILL).map_err(|e| Error::os("sending a signal", e))
    }

    /// Waits for the child to end, up to `timeout` (`None`: no limit); `None` on timeout. Its task's
    /// value stays with its [`Process`] handle.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if waiting fails.
    ///
    /// ```
    /// fn nap() { std::thread::sleep(std::time::Duration::from_secs(60)) }
    /// let p = multiproc::Process::builder().name("napper").spawn(nap, ()).unwrap();
    /// let child = multiproc::active_children().into_iter().find(|c| c.pid() == p.pid()).unwrap();
    /// assert_eq!(child.join_timeout(Some(std::time::Duration::from_millis(10))).unwrap(), None);
    /// child.kill().unwrap();
    /// ```
    /// Python counterpart: `child.join(timeout)`.
    pub fn join_timeout(&self, timeout: Option<Duration>) -> Result<Option<ExitStatus>> {
        let deadline = timeout.and_then(crate::sync::deadline_after);
        self.state.wait_deadline(deadline).map_err(|e| Error::os("waiting for the child", e))
    }
}

/// The children of this process that are still running; finished ones are reaped.
///
/// # Example
/// ```
/// use multiproc::{Process, active_children};
/// fn nap() { std::thread::sleep(std::time::Duration::from_secs(30)) }
/// let p = Process::spawn(nap, ()).unwrap();
/// assert!(active_children().iter().any(|c| c.pid() == p.pid()));
/// p.kill().unwrap();
/// ```
/// Python counterpart: `multiprocessing.active_children()`.
pub fn active_children() -> Vec<ChildProcess> {
    registry::active().into_iter().map(|state| ChildProcess { state }).collect()
}

/// What [`current_process`] says about this process.
///
/// ```
/// let me = multiproc::current_process();
/// assert_eq!(me.name(), "MainProcess");
/// ```
/// Python counterpart: the object `multiprocessing.current_process()` returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentProcess {
    name: String,
    pid: u32,
    daemon: bool,
}

impl CurrentProcess {
    /// `"MainProcess"` in the main program, the child's name in a child.
    ///
    /// ```
    /// assert_eq!(multiproc::current_process().name(), "MainProcess");
    /// ```
    /// Python counterpart: `current_process().name`.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// This process's id.
    ///
    /// ```
    /// assert_eq!(multiproc::current_process().pid(), std::process::id());
    /// ```
    /// Python counterpart: `current_process().pid`.
    pub fn pid(&self) -> u32 {
        self.pid
    }
    /// Whether this process is a daemon child.
    ///
    /// ```
    /// assert!(!multiproc::current_process().is_daemon());
    /// ```
    /// Python counterpart: `current_process().daemon`.
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// The secret this process shares with the whole tree of processes its main program
    /// started: made at random in the main process, inherited by every child, and the key of
    /// every private [`Manager`](crate::Manager) the tree starts. It never travels anywhere else.
    ///
    /// # Panics
    /// In the main process, if the key is not made yet and the kernel gives no random bytes.
    ///
    /// ```
    /// fn key() -> [u8; 32] { multiproc::current_process().authkey() }
    /// let mut child = multiproc::Process::spawn(key, ()).unwrap();
    /// assert_eq!(child.join().unwrap(), multiproc::current_process().authkey());
    /// ```
    /// Python counterpart: `current_process().authkey`.
    pub fn authkey(&self) -> [u8; 32] {
        identity::hold().authkey().expect("random bytes for the process tree's key")
    }
}

/// This process: its name, pid and daemon flag.
///
/// ```
/// let me = multiproc::current_process();
/// assert_eq!(me.name(), "MainProcess");
/// assert_eq!(me.pid(), std::process::id());
/// ```
/// Python counterpart: `multiprocessing.current_process()`.
pub fn current_process() -> CurrentProcess {
    let state = identity::hold();
    CurrentProcess { name: state.name(), pid: sys::process::getpid(), daemon: state.daemon }
}

/// The process that started this one, as seen from a child.
///
/// ```
/// fn parent_info() -> (u32, bool) {
///     let parent = multiproc::parent_process().expect("started by multiproc");
///     (parent.pid(), parent.is_alive())
/// }
/// let mut p = multiproc::Process::spawn(parent_info, ()).unwrap();
/// assert_eq!(p.join().unwrap(), (std::process::id(), true));
/// ```
/// Python counterpart: the object `multiprocessing.parent_process()` returns.
#[derive(Clone)]
pub struct ParentProcess {
    parent: identity::Parent,
}

impl fmt::Debug for ParentProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParentProcess").field("pid", &self.parent.pid).field("name", &self.parent.name).finish()
    }
}

impl ParentProcess {
    /// The parent's process id.
    ///
    /// ```
    /// fn parent_info() -> (u32, bool) {
    ///     let parent = multiproc::parent_process().expect("started by multiproc");
    ///     (parent.pid(), true)
    /// }
    /// let mut p = multiproc::Process::spawn(parent_info, ()).unwrap();
    /// assert_eq!(p.join().unwrap().0, std::process::id());
    /// ```
    /// Python counterpart: `parent_process().pid`.
    pub fn pid(&self) -> u32 {
        self.parent.pid
    }
    /// The parent's name.
    ///
    /// ```
    /// fn parent_name() -> String {
    ///     multiproc::parent_process().unwrap().name().to_string()
    /// }
    /// let mut p = multiproc::Process::spawn(parent_name, ()).unwrap();
    /// assert_eq!(p.join().unwrap(), "MainProcess");
    /// ```
    /// Python counterpart: `parent_process().name`.
    pub fn name(&self) -> &str {
        &self.parent.name
    }
    /// Whether the parent is still running.
    ///
    /// ```
    /// fn parent_info() -> (u32, bool) {
    ///     let parent = multiproc::parent_process().expect("started by multiproc");
    ///     (parent.pid(), parent.is_alive())
    /// }
    /// let mut p = multiproc::Process::spawn(parent_info, ()).unwrap();
    /// assert!(p.join().unwrap().1);
    /// ```
    /// Python counterpart: `parent_process().is_alive()`.
    pub fn is_alive(&self) -> bool {
        !sys::poll::is_readable(self.parent.pidfd.as_fd()).unwrap_or(true)
    }
    /// Waits until the parent has exited.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if waiting fails.
    ///
    /// ```
    /// // A child that waits for its parent to end would outlive this example; see join_timeout.
    /// assert!(multiproc::parent_process().is_none()); // the main process has no multiproc parent
    /// ```
    /// Python counterpart: `parent_process().join()`.
    pub fn join(&self) -> Result<()> {
        self.join_timeout(None).map(|_| ())
    }
    /// Waits until the parent has exited or `timeout` passes; true if it exited.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if waiting fails.
    ///
    /// ```
    /// fn parent_still_there() -> bool {
    ///     let parent = multiproc::parent_process().unwrap();
    ///     !parent.join_timeout(Some(std::time::Duration::from_millis(10))).unwrap()
    /// }
    /// let mut p = multiproc::Process::spawn(parent_still_there, ()).unwrap();
    /// assert!(p.join().unwrap());
    /// ```
    /// Python counterpart: `parent_process().join(timeout)`.
    pub fn join_timeout(&self, timeout: Option<Duration>) -> Result<bool> {
        let deadline = timeout.and_then(crate::sync::deadline_after);
        let ready = sys::poll::wait_readable(&[self.parent.pidfd.as_fd()], deadline)
            .map_err(|e| Error::os("waiting for the parent", e))?;
        Ok(ready[0])
    }
}

/// The process that started this one, or `None` in the main program.
///
/// ```
/// assert!(multiproc::parent_process().is_none());
/// fn parent_pid() -> u32 { multiproc::parent_process().unwrap().pid() }
/// let mut p = multiproc::Process::spawn(parent_pid, ()).unwrap();
/// assert_eq!(p.join().unwrap(), std::process::id());
/// ```
/// Python counterpart: `multiprocessing.parent_process()`.
pub fn parent_process() -> Option<ParentProcess> {
    identity::hold().parent.clone().map(|parent| ParentProcess { parent })
}

/// The build fingerprint that children check before they run a task: the executable's GNU
/// build-id, or a hash of the executable file when it was linked without one.
///
/// Two programs with the same fingerprint are the same build, so a function named in one can be
/// run by the other (see [`Task`]).
///
/// ```
/// assert!(!multiproc::process::build_fingerprint().is_empty());
/// ```
/// Python counterpart: none — Python sends functions by module and name, so any interpreter that
/// can import them will run them.
pub fn build_fingerprint() -> &'static [u8] {
    sys::build_id::fingerprint()
}

/// The number of CPUs this process may use: its CPU affinity, and cgroup CPU quotas, both honoured.
///
/// ```
/// assert!(multiproc::cpu_count() >= 1);
/// ```
/// Python counterpart: `os.process_cpu_count()` (which honours affinity; `cpu_count()` does not).
pub fn cpu_count() -> usize {
    // std reads sched_getaffinity and the cgroup v1/v2 CPU quota of this process.
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
