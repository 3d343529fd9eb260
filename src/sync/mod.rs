//! Synchronization between processes: [`Lock`], [`RLock`], [`Semaphore`], [`BoundedSemaphore`],
//! [`Event`], [`Condition`] and [`Barrier`].
//!
//! Each primitive keeps its state in a small shared-memory segment and blocks on futexes, after a
//! short spin (tens of microseconds) that makes hand-offs between running processes fast. Handles
//! are `Clone` (clones in one process share the mapping) and can be passed in a [`Process`]'s
//! arguments under every start method; the child receives a handle to the same primitive.
//!
//! ```
//! use multiproc::{Lock, Process};
//!
//! fn count(lock: Lock, path: String) {
//!     for _ in 0..100 {
//!         let _guard = lock.acquire().unwrap();
//!         let n: u32 = std::fs::read_to_string(&path).unwrap().trim().parse().unwrap();
//!         std::fs::write(&path, (n + 1).to_string()).unwrap();
//!     }
//! }
//!
//! let path = std::env::temp_dir().join(format!("sync-doc-{}", std::process::id()));
//! std::fs::write(&path, "0").unwrap();
//! let lock = Lock::new().unwrap();
//! let path_text = path.to_string_lossy().into_owned();
//! let mut workers: Vec<_> = (0..3).map(|_| Process::spawn(count, (lock.clone(), path_text.clone())).unwrap()).collect();
//! for w in &mut workers { w.join().unwrap(); }
//! assert_eq!(std::fs::read_to_string(&path).unwrap(), "300");
//! # std::fs::remove_file(&path).unwrap();
//! ```
//!
//! # When a process dies holding a lock
//! Python's locks are POSIX semaphores: a process killed while holding one deadlocks everybody
//! else. Ours record the holder's pid. A waiter that has slept for a few milliseconds without
//! progress checks whether the holder still runs; if it does not, the waiter takes the lock over
//! and its `acquire` returns [`OwnerDied`], which carries the guard (like std's `PoisonError`): the
//! lock is held, the protected state may be half-updated, and the caller decides how to repair it.
//! Later acquirers see a normal lock. This holds for [`Lock`], [`RLock`] and the lock under a
//! [`Condition`], and for the internal lock of a [`Barrier`] (which then breaks).
//!
//! The check is by pid. If the dead holder's pid is reused by a new, unrelated process before a
//! waiter looks, the holder reads as alive and the lock is not recovered (Linux hands out pids
//! in order up to `pid_max`, 4 million by default, so this takes a wrap-around of the whole pid
//! space while the waiter sleeps). Mistaking a live holder for a dead one, which would give the
//! lock two owners, cannot happen: only "no such process" counts as dead.
//!
//! A [`Semaphore`] unit held by a process that dies is **lost**, as in Python: units are not
//! owned, so nobody can tell which process held one. A bounded semaphore's value then stays below
//! its bound until someone releases an extra unit.
//!
//! # Timeouts
//! Every blocking call has `_timeout` (a [`Duration`](std::time::Duration)) and `_deadline`
//! (an [`Instant`](std::time::Instant)) forms. A `Duration` cannot be negative, so Python's
//! negative timeouts cannot be expressed; a zero timeout makes one attempt without waiting, as
//! Python treats a negative one. A timed-out call returns at or after its deadline.
//!
//! [`Process`]: crate::Process

use std::fmt;

mod barrier;
mod condition;
mod event;
mod lock;
pub(crate) mod raw;
mod semaphore;

pub use barrier::{Barrier, BrokenBarrier};
pub use condition::{Condition, ConditionGuard, ConditionLock, NotOwner, WaitError};
pub use event::Event;
pub use lock::{Lock, LockGuard, RLock, RLockGuard};
pub use semaphore::{BoundedSemaphore, Semaphore, SemaphoreReleaseError};

/// The previous holder died while holding the lock; the lock is now held by the caller.
///
/// The guard inside is live: repair the protected state, then use or drop it. Python has no
/// counterpart (its locks deadlock instead); std's `PoisonError` is the model.
///
/// ```
/// use multiproc::{Lock, Process};
/// fn die_holding(lock: Lock) { let _g = lock.acquire().unwrap(); std::process::abort() }
///
/// let lock = Lock::new().unwrap();
/// let mut p = Process::spawn(die_holding, (lock.clone(),)).unwrap();
/// let _ = p.join();
/// let guard = match lock.acquire() {
///     Ok(guard) => guard,
///     Err(died) => {
///         assert_eq!(died.pid(), p.pid());
///         died.into_guard() // repair the shared state here
///     }
/// };
/// drop(guard);
/// assert!(!lock.locked());
/// ```
pub struct OwnerDied<G> {
    guard: G,
    pid: u32,
}

impl<G> OwnerDied<G> {
    pub(crate) fn new(guard: G, pid: u32) -> OwnerDied<G> {
        OwnerDied { guard, pid }
    }

    /// The pid of the process that died holding the lock.
    ///
    /// ```
    /// use multiproc::{Lock, Process};
    /// fn die_holding(lock: Lock) { let _g = lock.acquire().unwrap(); std::process::abort() }
    /// let lock = Lock::new().unwrap();
    /// let mut p = Process::spawn(die_holding, (lock.clone(),)).unwrap();
    /// let _ = p.join();
    /// let died = lock.acquire().unwrap_err();
    /// assert_eq!(died.pid(), p.pid());
    /// ```
    /// Python counterpart: none (Python's locks deadlock instead).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The guard of the now-held lock.
    ///
    /// ```
    /// use multiproc::{Lock, Process};
    /// fn die_holding(lock: Lock) { let _g = lock.acquire().unwrap(); std::process::abort() }
    /// let lock = Lock::new().unwrap();
    /// let mut p = Process::spawn(die_holding, (lock.clone(),)).unwrap();
    /// let _ = p.join();
    /// let died = lock.acquire().unwrap_err();
    /// let guard = died.into_guard();
    /// assert!(lock.locked());
    /// drop(guard);
    /// ```
    /// Python counterpart: none.
    pub fn into_guard(self) -> G {
        self.guard
    }

    /// A reference to the guard.
    ///
    /// ```
    /// use multiproc::{Lock, Process};
    /// fn die_holding(lock: Lock) { let _g = lock.acquire().unwrap(); std::process::abort() }
    /// let lock = Lock::new().unwrap();
    /// let mut p = Process::spawn(die_holding, (lock.clone(),)).unwrap();
    /// let _ = p.join();
    /// let died = lock.acquire().unwrap_err();
    /// let _ = died.guard();
    /// ```
    /// Python counterpart: none.
    pub fn guard(&self) -> &G {
        &self.guard
    }

    /// Applies `f` to the guard.
    pub(crate) fn map<H>(self, f: impl FnOnce(G) -> H) -> OwnerDied<H> {
        OwnerDied { guard: f(self.guard), pid: self.pid }
    }
}

impl<G> fmt::Debug for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnerDied").field("pid", &self.pid).finish_non_exhaustive()
    }
}

impl<G> fmt::Display for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the previous holder (pid {}) died while holding the lock", self.pid)
    }
}

impl<G> std::error::Error for OwnerDied<G> {}

/// The result of a blocking acquire: the guard, or the guard with news of a dead previous holder.
///
/// ```
/// let lock = multiproc::Lock::new().unwrap();
/// let result: multiproc::sync::LockResult<multiproc::sync::LockGuard<'_>> = lock.acquire();
/// assert!(result.is_ok());
/// ```
/// Python counterpart: none (Python's `acquire` returns a bool).
pub type LockResult<G> = Result<G, OwnerDied<G>>;

/// Why [`try_acquire`](Lock::try_acquire) did not simply return a guard.
///
/// ```
/// let lock = multiproc::Lock::new().unwrap();
/// let _held = lock.acquire().unwrap();
/// assert!(matches!(lock.try_acquire(), Err(multiproc::sync::TryAcquireError::WouldBlock)));
/// ```
/// Python counterpart: `lock.acquire(False)` returning `False`.
#[derive(Debug)]
pub enum TryAcquireError<G> {
    /// Somebody else holds the lock.
    WouldBlock,
    /// The lock was taken over from a holder that died (see [`OwnerDied`]).
    OwnerDied(OwnerDied<G>),
}

/// Why a `_timeout`/`_deadline` acquire did not simply return a guard.
///
/// ```
/// let lock = multiproc::Lock::new().unwrap();
/// let _held = lock.acquire().unwrap();
/// let r = lock.acquire_timeout(std::time::Duration::from_millis(10));
/// assert!(matches!(r, Err(multiproc::sync::AcquireTimeoutError::Timeout)));
/// ```
/// Python counterpart: `lock.acquire(timeout=t)` returning `False`.
#[derive(Debug)]
pub enum AcquireTimeoutError<G> {
    /// The deadline passed while somebody else held the lock.
    Timeout,
    /// The lock was taken over from a holder that died (see [`OwnerDied`]).
    OwnerDied(OwnerDied<G>),
}

impl<G> fmt::Display for TryAcquireError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryAcquireError::WouldBlock => f.write_str("the lock is held"),
            TryAcquireError::OwnerDied(died) => died.fmt(f),
        }
    }
}

impl<G> fmt::Display for AcquireTimeoutError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcquireTimeoutError::Timeout => f.write_str("timed out waiting for the lock"),
            AcquireTimeoutError::OwnerDied(died) => died.fmt(f),
        }
    }
}

impl<G: fmt::Debug> std::error::Error for TryAcquireError<G> {}
impl<G: fmt::Debug> std::error::Error for AcquireTimeoutError<G> {}

/// Why a `release` was refused. Nothing changed.
///
/// ```
/// let lock = multiproc::Lock::new().unwrap();
/// assert_eq!(lock.release(), Err(multiproc::sync::ReleaseError::NotLocked));
/// ```
/// Python counterpart: the `ValueError`/`AssertionError` of releasing a lock not held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum ReleaseError {
    /// The lock was not held (Python: "release unlocked lock").
    #[error("release unlocked lock")]
    NotLocked,
    /// The caller is not the thread that holds the lock (Python: "cannot release un-acquired lock").
    #[error("cannot release un-acquired lock")]
    NotOwner,
}

pub(crate) fn deadline_after(timeout: std::time::Duration) -> Option<std::time::Instant> {
    // A timeout too large for an Instant means "no deadline".
    std::time::Instant::now().checked_add(timeout)
}
