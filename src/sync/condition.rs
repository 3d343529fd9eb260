//! `Condition`.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::shm::{Shared, SharedState};
use crate::sync::raw::{self, Acquired, RawMutex};
use crate::sync::{AcquireTimeoutError, Lock, LockGuard, LockResult, RLock, RLockGuard, ReleaseError, deadline_after};
use crate::sys;

/// How many processes and threads may wait on one condition at the same moment, each in a slot
/// of its own. A waiter that finds every slot taken by a live waiter polls until one frees.
const SLOTS: usize = 1024;

/// A waiter slot's `state`: free, taken by a sleeping waiter, or chosen by a notify.
const FREE: u32 = 0;
const WAITING: u32 = 1;
const NOTIFIED: u32 = 2;

/// One waiter: who it is, when it started waiting, and the futex word it sleeps on.
#[repr(C)]
struct WaiterSlot {
    state: AtomicU32,
    pid: AtomicU32,
    ticket: AtomicU64,
}

/// The waiters' side of a condition, beside its lock.
///
/// Each waiter takes a slot **under the lock** before releasing it, and sleeps on that slot's own
/// word. `notify(n)` (also under the lock) turns the `n` oldest `WAITING` slots whose process is
/// still alive into `NOTIFIED`, so a notification goes only to a waiter that was waiting when it
/// was sent — never to a later `wait` of the notifier itself — and never to a dead process, whose
/// slot it frees instead. A waiter whose deadline passes withdraws by `WAITING → FREE`; if that
/// compare-and-swap fails, a notify chose it first and it reports being notified. Only the lock
/// holder moves a slot out of `FREE`, only its waiter moves it back (or a lock holder that found
/// its process dead), so no slot is ever shared by two waiters.
#[repr(C)]
pub(crate) struct ConditionState {
    /// Hands out tickets (FIFO order for notify); changed under the lock.
    next_ticket: AtomicU64,
    /// One past the highest slot ever taken: how far notify has to look.
    high: AtomicU32,
    slots: [WaiterSlot; SLOTS],
}

impl ConditionState {
    fn new() -> ConditionState {
        ConditionState {
            next_ticket: AtomicU64::new(0),
            high: AtomicU32::new(0),
            slots: std::array::from_fn(|_| WaiterSlot {
                state: AtomicU32::new(FREE),
                pid: AtomicU32::new(0),
                ticket: AtomicU64::new(0),
            }),
        }
    }

    /// Takes a free slot for the calling process (the caller holds the lock), reclaiming the slots
    /// of dead waiters on the way; `None` if every slot belongs to a live waiter.
    fn register(&self) -> Option<&WaiterSlot> {
        let me = sys::process::cached_pid();
        let high = self.high.load(Ordering::SeqCst) as usize;
        let mut found = self.slots[..high].iter().position(|slot| slot.state.load(Ordering::SeqCst) == FREE);
        if found.is_none() && high < SLOTS {
            found = Some(high);
            self.high.store(high as u32 + 1, Ordering::SeqCst);
        }
        if found.is_none() {
            // Full of waiters: free the slots of those that died, then look again.
            for slot in &self.slots {
                let seen = slot.state.load(Ordering::SeqCst);
                if seen != FREE && !sys::process::is_running(slot.pid.load(Ordering::SeqCst)) {
                    let _ = slot.state.compare_exchange(seen, FREE, Ordering::SeqCst, Ordering::SeqCst);
                }
            }
            found = self.slots.iter().position(|slot| slot.state.load(Ordering::SeqCst) == FREE);
        }
        let slot = &self.slots[found?];
        slot.pid.store(me, Ordering::SeqCst);
        slot.ticket.store(self.next_ticket.fetch_add(1, Ordering::SeqCst), Ordering::SeqCst);
        slot.state.store(WAITING, Ordering::SeqCst);
        Some(slot)
    }

    /// Notifies the `n` longest-waiting live waiters (the caller holds the lock).
    fn notify(&self, n: u32) {
        let high = self.high.load(Ordering::SeqCst) as usize;
        let mut waiting: Vec<(u64, &WaiterSlot)> = self.slots[..high]
            .iter()
            .filter(|slot| slot.state.load(Ordering::SeqCst) == WAITING)
            .map(|slot| (slot.ticket.load(Ordering::SeqCst), slot))
            .collect();
        waiting.sort_unstable_by_key(|&(ticket, _)| ticket);
        let mut left = n;
        for (_, slot) in waiting {
            if left == 0 {
                break;
            }
            let pid = slot.pid.load(Ordering::SeqCst);
            // A waiter killed while asleep must not swallow the notification: skip it, and free
            // its slot (if it is still the same waiter's: it cannot have changed, as it is dead).
            let next = if pid == sys::process::cached_pid() || sys::process::is_running(pid) { NOTIFIED } else { FREE };
            if slot.state.compare_exchange(WAITING, next, Ordering::SeqCst, Ordering::SeqCst).is_ok()
                && next == NOTIFIED
            {
                left -= 1;
                sys::futex::wake(&slot.state, 1);
            }
        }
    }
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
/// # Who a notification wakes
/// As in Python, `notify(n)` wakes the `n` waiters that have waited longest, and only waiters
/// that were already waiting when it was sent: a notifier that waits right after notifying cannot
/// take its own notification. A waiter killed while asleep is passed over (and forgotten), so a
/// notification never goes to the dead, and no wake-up is ever made up for a later waiter. A
/// notifier killed in the instant between choosing a waiter and waking it delays that waiter by
/// at most 100 ms. Up to 1,024 threads may wait at once; one more polls for a free place, and may
/// miss a notification sent while it does.
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
        let state = Shared::new(ConditionState::new())?;
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
        let slot = loop {
            if let Some(slot) = state.register() {
                break slot;
            }
            // Every slot holds a live waiter: step aside until one leaves.
            let levels = self.lock.release_all();
            std::thread::sleep(Duration::from_millis(1));
            let expired = deadline.is_some_and(|d| Instant::now() >= d);
            if let Acquired::OwnerDied(pid) = self.lock.restore(levels) {
                return Err(WaitError::OwnerDied { pid });
            }
            if expired {
                return Ok(false);
            }
        };
        let levels = self.lock.release_all();
        let notified = Self::sleep(slot, deadline);
        match self.lock.restore(levels) {
            Acquired::Clean => Ok(notified),
            Acquired::OwnerDied(pid) => Err(WaitError::OwnerDied { pid }),
        }
    }

    /// Sleeps on `slot` until a notify chooses it (true) or the deadline passes (false); frees it.
    fn sleep(slot: &WaiterSlot, deadline: Option<Instant>) -> bool {
        let chosen = || slot.state.load(Ordering::SeqCst) != WAITING;
        let mut notified = raw::spin(raw::spin_budget(deadline), chosen);
        while !notified {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                // Withdraw, unless a notify chose us in the meantime.
                if slot.state.compare_exchange(WAITING, FREE, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                    return false;
                }
                break;
            }
            // The slice bounds a sleep whose wake was lost to a notifier killed between its store
            // and its wake call.
            sys::futex::wait_until(&slot.state, WAITING, deadline, Duration::from_millis(100));
            notified = chosen();
        }
        slot.state.store(FREE, Ordering::SeqCst);
        true
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
        self.state.notify(n);
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
