//! Start methods: how a child process comes to exist.
//!
//! The trade-offs and the child entry are documented on [`StartMethod`].

use std::ffi::OsString;
use std::fmt;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::error::{Error, ErrorKind, Result};
use crate::process::registry::Exit;
use crate::sys;

pub(crate) mod fork;
pub(crate) mod forkserver;
pub(crate) mod spawn;

/// How child processes are started.
///
/// | method | how | cost here | safe in a threaded parent |
/// |---|---|---|---|
/// | [`Fork`](StartMethod::Fork) | `fork()`; the child continues from the parent's memory | lowest | no (see below) |
/// | [`Spawn`](StartMethod::Spawn) | re-executes this program, which diverts to the child before `main` | highest | yes |
/// | [`ForkServer`](StartMethod::ForkServer) | a single-threaded server, spawned once, forks each child | between | yes |
///
/// **The default is `ForkServer`**, for the reason Python 3.14 made it the default on Linux:
/// forking a parent that runs other threads copies locks those threads hold (in allocators,
/// loggers, stdio, your own code) into a child where nobody will ever release them, and the child
/// can deadlock. A fork server is single-threaded, so forking it is always safe, and it is still
/// far cheaper than re-executing the program for every child (figures in `BENCHMARKS.md`). Pick
/// `Fork` when the parent is single-threaded and start-up latency matters most; pick `Spawn` when
/// each child should start from a fresh program.
///
/// # The child entry
/// Under `spawn` and `forkserver` the program is started again. A constructor in this crate (an
/// ELF `.init_array` entry, run before `main` and before the test harness of a `cargo test`
/// binary) looks for a marker in the environment; if it is there, the process becomes the child
/// (or the fork server) and never reaches `main`. Programs therefore need no line in `main` at
/// all, and test binaries work the same. The marker is removed at once, so programs the child
/// starts itself are not mistaken for children.
///
/// # Example
/// ```
/// use multiproc::StartMethod;
/// assert_eq!("spawn".parse::<StartMethod>().unwrap(), StartMethod::Spawn);
/// assert_eq!(StartMethod::ForkServer.to_string(), "forkserver");
/// ```
/// Python counterpart: the method names of `multiprocessing.get_context('fork' | 'spawn' |
/// 'forkserver')`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartMethod {
    /// `fork()` the calling process.
    Fork,
    /// Re-execute the program and run the task in the new process.
    Spawn,
    /// Ask a single-threaded fork server (started by spawn on first use) to fork the child.
    ForkServer,
}

impl StartMethod {
    /// Every start method, in Python's order of `get_all_start_methods()` on Linux.
    ///
    /// ```
    /// assert_eq!(multiproc::StartMethod::ALL.len(), 3);
    /// ```
    pub const ALL: [StartMethod; 3] = [StartMethod::ForkServer, StartMethod::Spawn, StartMethod::Fork];

    /// Python's name for the method.
    ///
    /// ```
    /// assert_eq!(multiproc::StartMethod::Fork.name(), "fork");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            StartMethod::Fork => "fork",
            StartMethod::Spawn => "spawn",
            StartMethod::ForkServer => "forkserver",
        }
    }
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// The error for a start-method name that is not one of `fork`, `spawn`, `forkserver`.
///
/// ```
/// let err = "vfork".parse::<multiproc::StartMethod>().unwrap_err();
/// assert_eq!(err.0, "vfork");
/// ```
/// Python counterpart: the `ValueError` of `get_context('nope')`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot find context for {0:?}")]
pub struct UnknownStartMethod(pub String);

impl FromStr for StartMethod {
    type Err = UnknownStartMethod;
    fn from_str(name: &str) -> std::result::Result<StartMethod, UnknownStartMethod> {
        StartMethod::ALL.into_iter().find(|m| m.name() == name).ok_or_else(|| UnknownStartMethod(name.to_owned()))
    }
}

/// The process-wide default: 0 while unset, else 1 + the method's index in [`StartMethod::ALL`].
static DEFAULT: AtomicU8 = AtomicU8::new(0);

fn method_code(method: StartMethod) -> u8 {
    1 + StartMethod::ALL.iter().position(|&m| m == method).expect("every method is in ALL") as u8
}

fn method_from_code(code: u8) -> StartMethod {
    StartMethod::ALL[usize::from(code - 1)]
}

/// In a child: its default start method is the one it was started with, as in Python (so a
/// child of a `fork` context forks its own children too), and it is fixed.
pub(crate) fn inherit_start_method(method: StartMethod) {
    DEFAULT.store(method_code(method), Ordering::SeqCst);
}

/// Sets the process-wide default start method, once, before any child is started with it.
///
/// # Errors
/// [`ErrorKind::StartMethodAlreadySet`] if it was set before or the default was already used.
///
/// # Example
/// ```
/// use multiproc::{StartMethod, set_start_method, get_start_method};
/// set_start_method(StartMethod::Spawn).unwrap();
/// assert_eq!(get_start_method(), StartMethod::Spawn);
/// assert!(set_start_method(StartMethod::Fork).is_err());
/// ```
/// Python counterpart: `multiprocessing.set_start_method(method)`.
pub fn set_start_method(method: StartMethod) -> Result<()> {
    match DEFAULT.compare_exchange(0, method_code(method), Ordering::SeqCst, Ordering::SeqCst) {
        Ok(_) => Ok(()),
        Err(current) => {
            Err(Error::new(ErrorKind::StartMethodAlreadySet, format!("it is {}", method_from_code(current))))
        }
    }
}

/// The process-wide default start method; reading it fixes it, as using it does in Python.
///
/// ```
/// let method = multiproc::get_start_method();
/// assert!(multiproc::StartMethod::ALL.contains(&method));
/// ```
/// Python counterpart: `multiprocessing.get_start_method()`.
pub fn get_start_method() -> StartMethod {
    let _ = DEFAULT.compare_exchange(0, method_code(StartMethod::ForkServer), Ordering::SeqCst, Ordering::SeqCst);
    method_from_code(DEFAULT.load(Ordering::SeqCst))
}

/// The whole process API bound to one start method.
///
/// # Example
/// ```
/// use multiproc::{Context, StartMethod};
/// fn square(x: u64) -> u64 { x * x }
/// let ctx = Context::new(StartMethod::Spawn);
/// let mut p = ctx.spawn(square, (7,)).unwrap();
/// assert_eq!(p.join().unwrap(), 49);
/// ```
/// Python counterpart: `multiprocessing.get_context(method)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    method: StartMethod,
}

impl Context {
    /// A context whose processes start with `method`.
    ///
    /// ```
    /// let ctx = multiproc::Context::new(multiproc::StartMethod::Fork);
    /// assert_eq!(ctx.start_method(), multiproc::StartMethod::Fork);
    /// ```
    /// Python counterpart: `multiprocessing.get_context(method)`.
    pub fn new(method: StartMethod) -> Context {
        Context { method }
    }

    /// The context of the process-wide default start method.
    ///
    /// ```
    /// let ctx = multiproc::Context::default_context();
    /// assert_eq!(ctx.start_method(), multiproc::get_start_method());
    /// ```
    /// Python counterpart: `multiprocessing.get_context()`.
    pub fn default_context() -> Context {
        Context::new(get_start_method())
    }

    /// This context's start method.
    ///
    /// ```
    /// let ctx = multiproc::Context::new(multiproc::StartMethod::Spawn);
    /// assert_eq!(ctx.start_method(), multiproc::StartMethod::Spawn);
    /// ```
    /// Python counterpart: `ctx.get_start_method()`.
    pub fn start_method(&self) -> StartMethod {
        self.method
    }

    /// A process builder that starts with this context's method.
    ///
    /// ```
    /// let ctx = multiproc::Context::new(multiproc::StartMethod::Fork);
    /// let mut p = ctx.process().name("forked").spawn(|| 2, ()).unwrap();
    /// assert_eq!(p.join().unwrap(), 2);
    /// ```
    /// Python counterpart: `ctx.Process(...)` with keyword arguments.
    pub fn process(&self) -> crate::ProcessBuilder {
        crate::Process::builder().start_method(self.method)
    }

    /// Starts `task(args...)` in a new process; see [`Process::spawn`](crate::Process::spawn).
    ///
    /// # Errors
    /// As for [`Process::spawn`](crate::Process::spawn).
    ///
    /// ```
    /// let ctx = multiproc::Context::new(multiproc::StartMethod::ForkServer);
    /// let mut p = ctx.spawn(|x: u8| x + 1, (1,)).unwrap();
    /// assert_eq!(p.join().unwrap(), 2);
    /// ```
    /// Python counterpart: `ctx.Process(target=f, args=args).start()`.
    pub fn spawn<F, A>(&self, task: F, args: A) -> Result<crate::Process<F::Output>>
    where
        F: crate::Task<A>,
        A: serde::Serialize + serde::de::DeserializeOwned,
        F::Output: serde::Serialize + serde::de::DeserializeOwned,
    {
        self.process().spawn(task, args)
    }

    /// Starts a class-style process; see [`Process::start`](crate::Process::start).
    ///
    /// # Errors
    /// As for [`Process::spawn`](crate::Process::spawn).
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// #[derive(Serialize, Deserialize)]
    /// struct Two;
    /// impl multiproc::Run for Two {
    ///     type Output = u8;
    ///     fn run(self) -> u8 { 2 }
    /// }
    /// let ctx = multiproc::Context::new(multiproc::StartMethod::Fork);
    /// assert_eq!(ctx.start(Two).unwrap().join().unwrap(), 2);
    /// ```
    /// Python counterpart: `MyProcess(...).start()` under `ctx`.
    pub fn start<T: crate::Run>(&self, object: T) -> Result<crate::Process<T::Output>> {
        self.process().start(object)
    }

    /// The affinity- and quota-aware CPU count; see [`cpu_count`](crate::cpu_count).
    ///
    /// ```
    /// assert!(multiproc::Context::default_context().cpu_count() >= 1);
    /// ```
    /// Python counterpart: `ctx.cpu_count()`.
    pub fn cpu_count(&self) -> usize {
        crate::cpu_count()
    }
}

/// What the start methods need to know about one child.
pub(crate) struct Job<'a> {
    pub(crate) entry: i64,
    pub(crate) args: &'a [u8],
    pub(crate) handles: &'a [BorrowedFd<'a>],
    pub(crate) name: String,
    pub(crate) identity: Vec<u32>,
    pub(crate) daemon: bool,
    pub(crate) die_with_parent: bool,
    pub(crate) executable: Option<&'a PathBuf>,
    pub(crate) parent_name: String,
    pub(crate) parent_pidfd: std::sync::Arc<OwnedFd>,
    pub(crate) authkey: [u8; 32],
    /// The method it is started with (its own default from then on).
    pub(crate) start_method: StartMethod,
    /// Whether it ignores SIGINT (see `ProcessBuilder::ignore_interrupts`).
    pub(crate) ignore_interrupts: bool,
}

/// A started child, before it is registered.
pub(crate) struct Started {
    pub(crate) pid: u32,
    pub(crate) pidfd: OwnedFd,
    pub(crate) channel: OwnedFd,
    pub(crate) exit: Exit,
}

/// Starts `job` with `method`.
pub(crate) fn start(method: StartMethod, job: &Job<'_>) -> Result<Started> {
    match method {
        StartMethod::Fork => fork::start(job),
        StartMethod::Spawn => spawn::start(job),
        StartMethod::ForkServer => forkserver::start(job),
    }
}

impl Job<'_> {
    /// The bootstrap that tells a re-executed or fork-server child what to run.
    pub(crate) fn bootstrap(&self, watch_parent: bool, parent_death_signal: bool) -> crate::process::child::Bootstrap {
        crate::process::child::Bootstrap {
            fingerprint: sys::build_id::fingerprint().to_vec(),
            entry: self.entry,
            args: self.args.to_vec(),
            name: self.name.clone(),
            identity: self.identity.clone(),
            daemon: self.daemon,
            parent_pid: sys::process::getpid(),
            parent_name: self.parent_name.clone(),
            watch_parent,
            parent_death_signal,
            authkey: self.authkey,
            exports: crate::process::hooks::exports()
                .into_iter()
                .map(|(name, bytes)| (name, serde_bytes::ByteBuf::from(bytes)))
                .collect(),
            start_method: self.start_method,
            ignore_interrupts: self.ignore_interrupts,
            // A fork-server child starts where the server was launched; Python sends the
            // parent's directory along, and so do we (a spawned child has it already).
            cwd: std::env::current_dir().ok(),
        }
    }
}

/// The environment marker of a re-executed child, whose channel is its stdin.
pub(crate) const CHILD_MARKER: &str = "MULTIPROC_CHILD";
/// The environment marker of the fork server, whose control socket is its stdin.
pub(crate) const SERVER_MARKER: &str = "MULTIPROC_FORKSERVER";

/// The executable a re-executed process runs: the given one, or this very program.
pub(crate) fn executable(given: Option<&PathBuf>) -> OsString {
    given.map_or_else(|| OsString::from("/proc/self/exe"), |p| p.clone().into_os_string())
}

/// Runs before `main` (and before the test harness) in every program linked with multiproc.
///
/// In an ordinary start it finds no marker and returns at once. In a re-executed child or fork
/// server it takes the process over and never returns.
#[ctor::ctor(unsafe)]
fn divert() {
    if sys::process::take_env_before_main(CHILD_MARKER).is_some() {
        sys::process::ignore_broken_pipes();
        match sys::process::take_stdin() {
            Ok(channel) => {
                sys::process::close_all_but(channel.as_raw_fd());
                crate::process::child::run_from_channel(channel)
            }
            Err(_) => sys::process::exit_now(1),
        }
    }
    #[cfg(feature = "cluster")]
    if let Some(url) = sys::process::take_env_before_main(crate::cluster::NODE_VAR) {
        crate::cluster::node::run(url)
    }
    if sys::process::take_env_before_main(SERVER_MARKER).is_some() {
        sys::process::ignore_broken_pipes();
        match sys::process::take_stdin() {
            Ok(control) => {
                // Every child the server forks would otherwise inherit them too.
                sys::process::close_all_but(control.as_raw_fd());
                forkserver::serve(control)
            }
            Err(_) => sys::process::exit_now(1),
        }
    }
}
