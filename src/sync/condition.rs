//! `Condition`.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::shm::{Shared, SharedState};
use crate::sync::raw::{self, Acquired, RawMutex};
use crate::sync::{AcquireTimeoutError, Lock, LockGuard, LockResult, RLock, RLockGuard, ReleaseError, deadline_after};
use crate::sys;

/// The waiters' side of a condition, beside its lock.
///
/// `waiting` counts waiters that no notify has chosen yet; `tokens` (the futex word) counts
/// wake-ups handed out but not yet taken. Both change only under the lock (registration, notify)
/// or by compare-and-swap (taking a token, withdrawing on timeout), so `notify(n)` releases
/// exactly `min(n, waiting)` waiters, however they race.
#[repr(C)]
pub(crate) struct ConditionState {
    waiting: AtomicU32,
    tokens: AtomicU32,
}

// SAFETY: repr(C), made of atomics only, no destructor.
unsafe impl SharedState for ConditionState {
    const KIND: u32 = 5;
    const NAME: &'static str = "Condition";
}

/// The lock under a [`Condition`]: a [`Lock`] or an [`RLock`].
///
/// ```
/// use multiproc::{Condition, RLock};
/// let cond = Condition::with_lock(RLock::new().unwrap()).unwrap();
/// assert!(matches!(cond.lock(), multiproc::sync::ConditionLock::RLock(_)));
/// ```
/// Python counterpart: the `lock` argument of `Condition(lock)`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ConditionLock {
    /// A plain lock.
    Lock(Lock),
    /// A recursive lock (the default, as in Python).
    RLock(RLock),
}

impl From<Lock> for ConditionLock {
    fn from(lock: Lock) -> ConditionLock {
        ConditionLock::Lock(lock)
    }
}

impl From<RLock> for ConditionLock {
    fn from(lock: RLock) -> ConditionLock {
        ConditionLock::RLock(lock)
    }
}

impl ConditionLock {
    fn raw(&self) -> &RawMutex {
        match self {
            ConditionLock::Lock(lock) => lock.raw(),
            ConditionLock::RLock(lock) => &lock.state().raw,
        }
    }

    /// Releases the lock completely (every level of an RLock); returns what to restore.
    fn release_all(&self) -> u32 {
        let levels = match self {
            ConditionLock::Lock(_) => 1,
            ConditionLock::RLock(lock) => lock.state().count.swap(0, Ordering::Relaxed),
        };
        self.raw().unlock();
        levels
    }

    /// Takes the lock back with the levels `release_all` returned.
    fn restore(&self, levels: u32) -> Acquired {
        let how = self.raw().lock(None).unwrap_or(Acquired::Clean);
        if let ConditionLock::RLock(lock) = self {
            lock.state().count.store(levels, Ordering::Relaxed);
        }
        how
    }
}

/// The calling thread does not hold the condition's lock, which `wait` and `notify` require.
///
/// ```
/// let cond = multiproc::Condition::new().unwrap();
/// assert_eq!(cond.notify(1), Err(multiproc::sync::NotOwner));
/// ```
/// Python counterpart: the `RuntimeError` of `notify` without the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("cannot wait or notify on un-acquired lock")]
pub struct NotOwner;

/// Why a [`Condition::wait`] failed.
///
/// ```
/// let cond = multiproc::Condition::new().unwrap();
/// assert!(matches!(cond.wait(), Err(multiproc::sync::WaitError::NotOwner)));
/// ```
/// Python counterpart: the `RuntimeError` of `wait` without the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum WaitError {
    /// The caller did not hold the lock (nothing happened).
    #[error("cannot wait on un-acquired lock")]
    NotOwner,
    /// While we waited, a process died holding the lock; we hold it again now, and the state it
    /// protects may need repair.
    #[error("the lock's previous holder (pid {pid}) died while holding it")]
    OwnerDied {
        /// The pid of the process that died.
        pid: u32,
    },
}

/// Holds a [`Condition`]'s lock; releases it (one level, for an RLock) when dropped.
///
/// ```
/// let cond = multiproc::Condition::new().unwrap();
/// let guard = cond.acquire().unwrap();
/// cond.notify_all().unwrap();
/// drop(guard);
/// ```
/// Python counterpart: `with cond:`.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ConditionGuard<'a> {
    _inner: GuardInner<'a>,
}

enum GuardInner<'a> {
    Lock(#[allow(dead_code)] LockGuard<'a>),
    RLock(#[allow(dead_code)] RLockGuard<'a>),
}

impl fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConditionGuard")
    }
}

/// Lets processes wait, under a lock, until another process notifies them that something changed.
///
/// Acquire the lock ([`acquire`](Self::acquire)), check the shared state, and
/// [`wait`](Self::wait) (which releases the lock while asleep and takes it back before it
/// returns) until it is as needed; a process that changes the state notifies the waiters under
/// the same lock. [`wait_for`](Self::wait_for) waits **until** its predicate is true;
/// [`wait_while`](Self::wait_while) waits **while** its condition is true.
///
/// # When a process dies
/// A notification wakes *some* waiter, not a named one: a waiter that was killed while asleep
/// takes no notification away from the live ones. It does stay counted, so a later notification
/// may find nobody to wake, and the token it leaves lets a future `wait` return at once (a
/// spurious wake-up; [`wait_for`](Self::wait_for) and [`wait_while`](Self::wait_while) re-check
/// and wait again). A notifier killed in the instant between counting its waiters and handing
/// them their tokens leaves them to their timeouts; a waiter without a timeout would wait on.
///
/// # Example
/// ```
/// use std::time::Duration;
/// use multiproc::{Condition, Process};
/// fn ready(cond: Condition, path: String) {
///     let _g = cond.acquire().unwrap();
///     std::fs::write(&path, "ready").unwrap();
///     cond.notify_all().unwrap();
/// }
///
/// let path = std::env::temp_dir().join(format!("cond-doc-{}", std::process::id()));
/// let cond = Condition::new().unwrap();
/// let _g = cond.acquire().unwrap();
/// let mut p = Process::spawn(ready, (cond.clone(), path.to_string_lossy().into_owned())).unwrap();
/// let done = cond.wait_for(|| path.exists(), Some(Duration::from_secs(30))).unwrap();
/// assert!(done);
/// drop(_g);
/// p.join().unwrap();
/// # std::fs::remove_file(&path).unwrap();
/// ```
/// Python counterpart: `multiprocessing.Condition`.
#[derive(Clone, Serialize, Deserialize)]
pub struct Condition {
    lock: ConditionLock,
    state: Shared<ConditionState>,
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition").field("lock", &self.lock).finish_non_exhaustive()
    }
}

impl Condition {
    /// A condition over a new [`RLock`] (Python's default).
    ///
    /// # Errors
    /// [`ErrorKind::Os`](crate::ErrorKind::Os) if no shared memory can be had.
    ///
    /// ```
    /// let cond = multiproc::Condition::new().unwrap();
    /// assert!(matches!(cond.lock(), multiproc::sync::ConditionLock::RLock(_)));
    /// ```
    pub fn new() -> Result<Condition> {
        Condition::with_lock(RLock::new()?)
    }

    /// A condition over an existing [`Lock`] or [`RLock`].
    ///
    /// # Errors
    /// [`ErrorKind::Os`](crate::ErrorKind::Os) if no shared memory can be had.
    ///
    /// ```
    /// let lock = multiproc::Lock::new().unwrap();
    /// let cond = multiproc::Condition::with_lock(lock.clone()).unwrap();
    /// let _g = cond.acquire().unwrap();
    /// assert!(lock.locked());
    /// ```
    /// Python counterpart: `Condition(lock)`.
    pub fn with_lock(lock: impl Into<ConditionLock>) -> Result<Condition> {
        let state = Shared::new(ConditionState { waiting: AtomicU32::new(0), tokens: AtomicU32::new(0) })?;
        Ok(Condition { lock: lock.into(), state })
    }

    /// The lock under this condition.
    ///
    /// ```
    /// let cond = multiproc::Condition::new().unwrap();
    /// let _ = cond.lock();
    /// ```
    /// Python counterpart: `cond._lock` (private in Python).
    pub fn lock(&self) -> &ConditionLock {
        &self.lock
    }

    /// Takes the lock.
    ///
    /// # Errors
    /// [`OwnerDied`](crate::OwnerDied) (carrying the guard) if its previous holder died holding it.
    ///
    /// ```
    /// let cond = multiproc::Condition::new().unwrap();
    /// let _guard = cond.acquire().unwrap();
    /// cond.notify(1).unwrap();
    /// ```
    /// Python counterpart: `cond.acquire()` / `with cond:`.
    pub fn acquire(&self) -> LockResult<ConditionGuard<'_>> {
        match &self.lock {
            ConditionLock::Lock(lock) => {
                lock.acquire().map(|g| wrap(GuardInner::Lock(g))).map_err(|d| d.map(|g| wrap(GuardInner::Lock(g))))
            }
            ConditionLock::RLock(lock) => {
                lock.acquire().map(|g| wrap(GuardInner::RLock(g))).map_err(|d| d.map(|g| wrap(GuardInner::RLock(g))))
            }
        }
    }

    /// Waits up to `timeout` for the lock.
    ///
    /// # Errors
    /// [`AcquireTimeoutError::Timeout`] once it has passed; `OwnerDied` as for [`acquire`](Self::acquire).
    ///
    /// ```
    /// let cond = multiproc::Condition::new().unwrap();
    /// assert!(cond.acquire_timeout(std::time::Duration::from_secs(1)).is_ok());
    /// ```
    /// Python counterpart: `cond.acquire(timeout=t)`.
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<ConditionGuard<'_>, AcquireTimeoutError<ConditionGuard<'_>>> {
        fn lift<'a, G>(
            r: std::result::Result<G, AcquireTimeoutError<G>>,
            f: impl Fn(G) -> ConditionGuard<'a>,
        ) -> std::result::Result<ConditionGuard<'a>, AcquireTimeoutError<ConditionGuard<'a>>> {
            match r {
                Ok(g) => Ok(f(g)),
                Err(AcquireTimeoutError::Timeout) => Err(AcquireTimeoutError::Timeout),
                Err(AcquireTimeoutError::OwnerDied(d)) => Err(AcquireTimeoutError::OwnerDied(d.map(f))),
            }
        }
        match &self.lock {
            ConditionLock::Lock(lock) => lift(lock.acquire_timeout(timeout), |g| wrap(GuardInner::Lock(g))),
            ConditionLock::RLock(lock) => lift(lock.acquire_timeout(timeout), |g| wrap(GuardInner::RLock(g))),
        }
    }

    /// Releases the lock taken with the non-scoped [`Lock::acquire_with`]/[`RLock::acquire_with`].
    ///
    /// # Errors
    /// As the lock's own `release`.
    ///
    /// ```
    /// let cond = multiproc::Condition::new().unwrap();
    /// std::mem::forget(cond.acquire().unwrap()); // hold it without a guard, Python style
    /// cond.release().unwrap();
    /// ```
    /// Python counterpart: `cond.release()`.
    pub fn release(&self) -> std::result::Result<(), ReleaseError> {
        match &self.lock {
            ConditionLock::Lock(lock) => lock.release(),
            ConditionLock::RLock(lock) => lock.release(),
        }
    }

    /// Releases the lock, sleeps until notified, and takes the lock back.
    ///
    /// # Errors
    /// [`WaitError::NotOwner`] if the caller does not hold the lock; [`WaitError::OwnerDied`] if,
    /// while it slept, a process died holding the lock (which the caller now holds again).
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::{Condition, Process};
    /// fn ring(cond: Condition) {
    ///     let _g = cond.acquire().unwrap();
    ///     cond.notify_all().unwrap();
    /// }
    /// let cond = Condition::new().unwrap();
    /// let guard = cond.acquire().unwrap();
    /// let mut ringer = Process::spawn(ring, (cond.clone(),)).unwrap();
    /// cond.wait().unwrap(); // the lock is released while asleep; the ringer can notify
    /// drop(guard);
    /// ringer.join().unwrap();
    /// ```
    /// Python counterpart: `cond.wait()`.
    pub fn wait(&self) -> std::result::Result<(), WaitError> {
        self.wait_deadline(None).map(|_| ())
    }

    /// As [`wait`](Self::wait), for at most `timeout`; true if notified, false on timeout.
    ///
    /// # Errors
    /// As for [`wait`](Self::wait).
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::{Condition, Process};
    /// fn ring(cond: Condition) {
    ///     let _g = cond.acquire().unwrap();
    ///     cond.notify_all().unwrap();
    /// }
    /// let cond = Condition::new().unwrap();
    /// let guard = cond.acquire().unwrap();
    /// let mut ringer = Process::spawn(ring, (cond.clone(),)).unwrap();
    /// assert!(cond.wait_timeout(Duration::from_secs(30)).unwrap());
    /// drop(guard);
    /// ringer.join().unwrap();
    /// ```
    /// Python counterpart: `cond.wait(timeout)`.
    pub fn wait_timeout(&self, timeout: Duration) -> std::result::Result<bool, WaitError> {
        self.wait_deadline(deadline_after(timeout))
    }

    /// As [`wait`](Self::wait), until `deadline` (`None`: forever); true if notified.
    ///
    /// # Errors
    /// As for [`wait`](Self::wait).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let cond = multiproc::Condition::new().unwrap();
    /// let _g = cond.acquire().unwrap();
    /// assert_eq!(cond.wait_deadline(Some(Instant::now() + Duration::from_millis(10))), Ok(false));
    /// ```
    /// Python counterpart: `cond.wait(timeout=deadline - time.monotonic())`.
    pub fn wait_deadline(&self, deadline: Option<Instant>) -> std::result::Result<bool, WaitError> {
        if !self.lock.raw().held_by_me() {
            return Err(WaitError::NotOwner);
        }
        let state = &*self.state;
        state.waiting.fetch_add(1, Ordering::SeqCst);
        let levels = self.lock.release_all();
        let notified = self.sleep(deadline);
        match self.lock.restore(levels) {
            Acquired::Clean => Ok(notified),
            Acquired::OwnerDied(pid) => Err(WaitError::OwnerDied { pid }),
        }
    }

    /// Takes a token (true), or withdraws at the deadline (false).
    fn sleep(&self, deadline: Option<Instant>) -> bool {
        let state = &*self.state;
        let take = || {
            let tokens = state.tokens.load(Ordering::SeqCst);
            tokens > 0 && state.tokens.compare_exchange(tokens, tokens - 1, Ordering::SeqCst, Ordering::SeqCst).is_ok()
        };
        if raw::spin(raw::spin_budget(deadline), take) {
            return true;
        }
        loop {
            if take() {
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                // Withdraw, unless a notify has already counted us: then its token is on its way.
                let mut waiting = state.waiting.load(Ordering::SeqCst);
                while waiting > 0 {
                    match state.waiting.compare_exchange(waiting, waiting - 1, Ordering::SeqCst, Ordering::SeqCst) {
                        Ok(_) => return false,
                        Err(seen) => waiting = seen,
                    }
                }
                let grace = Instant::now() + Duration::from_secs(1);
                while Instant::now() < grace {
                    if take() {
                        return true;
                    }
                    sys::futex::wait_until(&state.tokens, 0, Some(grace), Duration::from_millis(10));
                }
                return false;
            }
            sys::futex::wait_until(&state.tokens, 0, deadline, Duration::from_secs(3600));
        }
    }

    /// Waits until `predicate()` is true, checking it under the lock before each wait; returns its
    /// last value (false only if `timeout` passed first).
    ///
    /// # Errors
    /// As for [`wait`](Self::wait).
    ///
    /// ```
    /// use std::time::Duration;
    /// let cond = multiproc::Condition::new().unwrap();
    /// let _g = cond.acquire().unwrap();
    /// assert_eq!(cond.wait_for(|| true, Some(Duration::from_secs(1))), Ok(true)); // already true
    /// ```
    /// Python counterpart: `cond.wait_for(predicate, timeout)`.
    pub fn wait_for(
        &self,
        mut predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> std::result::Result<bool, WaitError> {
        let deadline = timeout.and_then(deadline_after);
        loop {
            if predicate() {
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            self.wait_deadline(deadline)?;
        }
    }

    /// Waits while `condition()` is true (std's sense: the opposite of [`wait_for`](Self::wait_for));
    /// returns true once it is false, false if `timeout` passed first.
    ///
    /// # Errors
    /// As for [`wait`](Self::wait).
    ///
    /// ```
    /// use std::time::Duration;
    /// let cond = multiproc::Condition::new().unwrap();
    /// let _g = cond.acquire().unwrap();
    /// assert_eq!(cond.wait_while(|| false, Some(Duration::from_secs(1))), Ok(true)); // nothing to wait for
    /// ```
    /// Python counterpart: `cond.wait_for(lambda: not condition(), timeout)`.
    pub fn wait_while(
        &self,
        mut condition: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> std::result::Result<bool, WaitError> {
        self.wait_for(|| !condition(), timeout)
    }

    /// Wakes up to `n` waiters. The caller must hold the lock.
    ///
    /// # Errors
    /// [`NotOwner`] if it does not.
    ///
    /// ```
    /// let cond = multiproc::Condition::new().unwrap();
    /// let _g = cond.acquire().unwrap();
    /// cond.notify(2).unwrap(); // nobody waits: a no-op
    /// ```
    /// Python counterpart: `cond.notify(n)`.
    pub fn notify(&self, n: u32) -> std::result::Result<(), NotOwner> {
        if !self.lock.raw().held_by_me() {
            return Err(NotOwner);
        }
        let state = &*self.state;
        let mut waiting = state.waiting.load(Ordering::SeqCst);
        let chosen = loop {
            let chosen = n.min(waiting);
            if chosen == 0 {
                return Ok(());
            }
            match state.waiting.compare_exchange(waiting, waiting - chosen, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break chosen,
                Err(seen) => waiting = seen,
            }
        };
        state.tokens.fetch_add(chosen, Ordering::SeqCst);
        sys::futex::wake(&state.tokens, chosen);
        Ok(())
    }

    /// Wakes every waiter. The caller must hold the lock.
    ///
    /// # Errors
    /// [`NotOwner`] if it does not.
    ///
    /// ```
    /// let cond = multiproc::Condition::new().unwrap();
    /// let _g = cond.acquire().unwrap();
    /// cond.notify_all().unwrap();
    /// ```
    /// Python counterpart: `cond.notify_all()`.
    pub fn notify_all(&self) -> std::result::Result<(), NotOwner> {
        self.notify(u32::MAX)
    }
}

fn wrap(inner: GuardInner<'_>) -> ConditionGuard<'_> {
    ConditionGuard { _inner: inner }
}
