//! `Lock` and `RLock`.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::shm::{Shared, SharedState};
use crate::sync::raw::{Acquired, RawMutex, TimedOut};
use crate::sync::{AcquireTimeoutError, LockResult, OwnerDied, ReleaseError, TryAcquireError, deadline_after};

#[repr(C)]
pub(crate) struct LockState {
    pub(crate) raw: RawMutex,
}

// SAFETY: repr(C), made of atomics only, no destructor.
unsafe impl SharedState for LockState {
    const KIND: u32 = 1;
    const NAME: &'static str = "Lock";
}

/// A lock shared between processes: one holder at a time, released by dropping its guard.
///
/// Any thread of any process may release a `Lock` (as in Python); it is not recursive: acquiring
/// it twice from one thread deadlocks until a timeout, as in Python.
///
/// # Example
/// ```
/// use multiproc::Lock;
/// let lock = Lock::new().unwrap();
/// {
///     let _guard = lock.acquire().unwrap();
///     assert!(lock.locked());
///     assert!(lock.try_acquire().is_err());
/// }
/// assert!(!lock.locked());
/// // The non-scoped form the tutorial uses:
/// assert!(lock.acquire_with(true, None).unwrap());
/// lock.release().unwrap();
/// assert!(lock.release().is_err()); // release unlocked lock
/// ```
/// Python counterpart: `multiprocessing.Lock`.
#[derive(Clone, Serialize, Deserialize)]
pub struct Lock {
    state: Shared<LockState>,
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock").field("locked", &self.locked()).finish()
    }
}

/// Holds a [`Lock`]; releases it when dropped.
///
/// ```
/// let lock = multiproc::Lock::new().unwrap();
/// {
///     let _guard = lock.acquire().unwrap();
///     assert!(lock.locked());
/// }
/// assert!(!lock.locked());
/// ```
/// Python counterpart: `with lock:`.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    /// Not `Send`: the hold belongs to this thread (as std's `MutexGuard`), and the drop
    /// releases only a hold of the dropping thread.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LockGuard")
    }
}

impl Drop for LockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // Only our own hold: the lock may have been released through `Lock::release` while the
        // guard lived, and taken by someone else since.
        self.lock.raw().unlock_if_mine();
    }
}

impl Lock {
    /// A new, unlocked lock.
    ///
    /// # Errors
    /// [`ErrorKind::Os`](crate::ErrorKind::Os) if no shared memory can be had.
    ///
    /// ```
    /// let lock = multiproc::Lock::new().unwrap();
    /// assert!(!lock.locked());
    /// ```
    /// Python counterpart: `multiprocessing.Lock()`.
    pub fn new() -> Result<Lock> {
        Ok(Lock { state: Shared::new(LockState { raw: RawMutex::new() })? })
    }

    #[inline]
    pub(crate) fn raw(&self) -> &RawMutex {
        &self.state.raw
    }

    #[inline]
    fn guard(&self, how: Acquired) -> LockResult<LockGuard<'_>> {
        let guard = LockGuard { lock: self, _not_send: std::marker::PhantomData };
        match how {
            Acquired::Clean => Ok(guard),
            Acquired::OwnerDied(pid) => Err(OwnerDied::new(guard, pid)),
        }
    }

    /// Blocks until the lock is ours.
    ///
    /// # Errors
    /// [`OwnerDied`] (carrying the guard: the lock *is* held) if the previous holder died holding it.
    ///
    /// ```
    /// let lock = multiproc::Lock::new().unwrap();
    /// let guard = lock.acquire().unwrap();
    /// drop(guard);
    /// ```
    /// Python counterpart: `lock.acquire()` / `with lock:`.
    #[inline]
    pub fn acquire(&self) -> LockResult<LockGuard<'_>> {
        let how = self.raw().lock(None).unwrap_or(Acquired::Clean);
        self.guard(how)
    }

    /// Takes the lock if nobody holds it, without waiting.
    ///
    /// # Errors
    /// [`TryAcquireError::WouldBlock`] if it is held; [`TryAcquireError::OwnerDied`] as for
    /// [`acquire`](Self::acquire).
    ///
    /// ```
    /// let lock = multiproc::Lock::new().unwrap();
    /// let held = lock.try_acquire().unwrap();
    /// assert!(lock.try_acquire().is_err());
    /// drop(held);
    /// ```
    /// Python counterpart: `lock.acquire(block=False)`.
    pub fn try_acquire(&self) -> Result<LockGuard<'_>, TryAcquireError<LockGuard<'_>>> {
        match self.raw().try_lock() {
            None => Err(TryAcquireError::WouldBlock),
            Some(how) => self.guard(how).map_err(TryAcquireError::OwnerDied),
        }
    }

    /// Waits up to `timeout` for the lock.
    ///
    /// # Errors
    /// [`AcquireTimeoutError::Timeout`] once the timeout has passed; `OwnerDied` as above.
    ///
    /// ```
    /// use std::time::Duration;
    /// let lock = multiproc::Lock::new().unwrap();
    /// let held = lock.acquire().unwrap();
    /// assert!(lock.acquire_timeout(Duration::from_millis(10)).is_err());
    /// drop(held);
    /// ```
    /// Python counterpart: `lock.acquire(timeout=t)`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<LockGuard<'_>, AcquireTimeoutError<LockGuard<'_>>> {
        self.acquire_deadline(deadline_after(timeout))
    }

    /// Waits until `deadline` (`None`: forever) for the lock.
    ///
    /// # Errors
    /// As for [`acquire_timeout`](Self::acquire_timeout).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let lock = multiproc::Lock::new().unwrap();
    /// assert!(lock.acquire_deadline(Some(Instant::now() + Duration::from_secs(1))).is_ok());
    /// ```
    /// Python counterpart: `lock.acquire(timeout=deadline - time.monotonic())`.
    pub fn acquire_deadline(
        &self,
        deadline: Option<Instant>,
    ) -> Result<LockGuard<'_>, AcquireTimeoutError<LockGuard<'_>>> {
        match self.raw().lock(deadline) {
            Err(TimedOut) => Err(AcquireTimeoutError::Timeout),
            Ok(how) => self.guard(how).map_err(AcquireTimeoutError::OwnerDied),
        }
    }

    /// Python's `acquire(block=True, timeout=None)`, for code that is not scope-shaped: returns
    /// whether the lock was taken; pair it with [`release`](Self::release).
    ///
    /// # Errors
    /// [`OwnerDied`] (with no guard: the lock *is* held and must be released) if the previous
    /// holder died holding it.
    ///
    /// ```
    /// let lock = multiproc::Lock::new().unwrap();
    /// assert!(lock.acquire_with(true, None).unwrap()); // lock.acquire()
    /// assert!(!lock.acquire_with(false, None).unwrap()); // lock.acquire(False)
    /// lock.release().unwrap();
    /// ```
    /// Python counterpart: `lock.acquire(block, timeout)`.
    pub fn acquire_with(&self, block: bool, timeout: Option<Duration>) -> Result<bool, OwnerDied<()>> {
        let result = if block {
            self.raw().lock(timeout.and_then(deadline_after))
        } else {
            self.raw().try_lock().ok_or(TimedOut)
        };
        match result {
            Err(TimedOut) => Ok(false),
            Ok(Acquired::Clean) => Ok(true),
            Ok(Acquired::OwnerDied(pid)) => Err(OwnerDied::new((), pid)),
        }
    }

    /// Releases the lock, whoever holds it (Python allows any process to).
    ///
    /// # Errors
    /// [`ReleaseError::NotLocked`] if it was not locked.
    ///
    /// ```
    /// let lock = multiproc::Lock::new().unwrap();
    /// assert!(lock.release().is_err()); // not locked
    /// lock.acquire_with(true, None).unwrap();
    /// lock.release().unwrap();
    /// ```
    /// Python counterpart: `lock.release()`.
    pub fn release(&self) -> std::result::Result<(), ReleaseError> {
        if self.raw().unlock() { Ok(()) } else { Err(ReleaseError::NotLocked) }
    }

    /// Whether anybody holds the lock right now.
    ///
    /// ```
    /// let lock = multiproc::Lock::new().unwrap();
    /// let _g = lock.acquire().unwrap();
    /// assert!(lock.locked());
    /// ```
    /// Python counterpart: `lock._semlock._count() != 0` (Python's `Lock` has no public `locked()`;
    /// `threading.Lock.locked()` is the model).
    pub fn locked(&self) -> bool {
        self.raw().is_locked()
    }
}

#[repr(C)]
pub(crate) struct RLockState {
    pub(crate) raw: RawMutex,
    /// Recursion depth; only its holder touches it.
    pub(crate) count: AtomicU32,
}

// SAFETY: repr(C), made of atomics only, no destructor.
unsafe impl SharedState for RLockState {
    const KIND: u32 = 2;
    const NAME: &'static str = "RLock";
}

/// A recursive lock: the thread (of a process) that holds it may acquire it again; it is free
/// once released as many times as acquired. Only the holder may release it.
///
/// # Example
/// ```
/// use multiproc::RLock;
/// let lock = RLock::new().unwrap();
/// let outer = lock.acquire().unwrap();
/// let inner = lock.acquire().unwrap(); // same thread: fine
/// drop(inner);
/// assert!(lock.locked());
/// drop(outer);
/// assert!(!lock.locked());
/// assert!(lock.release().is_err()); // not held
/// ```
/// Python counterpart: `multiprocessing.RLock`.
#[derive(Clone, Serialize, Deserialize)]
pub struct RLock {
    state: Shared<RLockState>,
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock").field("locked", &self.locked()).finish()
    }
}

/// Holds one level of an [`RLock`]; releases that level when dropped. Not `Send`: the level
/// belongs to the thread that took it.
///
/// ```
/// let rlock = multiproc::RLock::new().unwrap();
/// let outer = rlock.acquire().unwrap();
/// let inner = rlock.acquire().unwrap(); // the same thread may take it again
/// drop((inner, outer));
/// ```
/// Python counterpart: `with rlock:`.
#[must_use = "the level is released as soon as the guard is dropped"]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RLockGuard")
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        // The guard's existence proves this thread holds a level.
        let _ = self.lock.release();
    }
}

impl RLock {
    /// A new, unlocked recursive lock.
    ///
    /// # Errors
    /// [`ErrorKind::Os`](crate::ErrorKind::Os) if no shared memory can be had.
    ///
    /// ```
    /// let rlock = multiproc::RLock::new().unwrap();
    /// assert!(!rlock.locked());
    /// ```
    /// Python counterpart: `multiprocessing.RLock()`.
    pub fn new() -> Result<RLock> {
        Ok(RLock { state: Shared::new(RLockState { raw: RawMutex::new(), count: AtomicU32::new(0) })? })
    }

    pub(crate) fn state(&self) -> &RLockState {
        &self.state
    }

    /// Enters one level if this thread already holds the lock.
    fn reenter(&self) -> bool {
        if self.state.raw.held_by_me() {
            self.state.count.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    fn first_level(&self, how: Acquired) -> LockResult<RLockGuard<'_>> {
        self.state.count.store(1, Ordering::Relaxed);
        let guard = RLockGuard { lock: self, _not_send: PhantomData };
        match how {
            Acquired::Clean => Ok(guard),
            Acquired::OwnerDied(pid) => Err(OwnerDied::new(guard, pid)),
        }
    }

    /// Blocks until this thread holds the lock (at once if it already does).
    ///
    /// # Errors
    /// [`OwnerDied`] (carrying the guard) if the previous holder died holding it.
    ///
    /// ```
    /// let rlock = multiproc::RLock::new().unwrap();
    /// let _a = rlock.acquire().unwrap();
    /// let _b = rlock.acquire().unwrap();
    /// assert!(rlock.is_owned());
    /// ```
    /// Python counterpart: `rlock.acquire()`.
    pub fn acquire(&self) -> LockResult<RLockGuard<'_>> {
        if self.reenter() {
            return Ok(RLockGuard { lock: self, _not_send: PhantomData });
        }
        let how = self.state.raw.lock(None).unwrap_or(Acquired::Clean);
        self.first_level(how)
    }

    /// Takes the lock if it is free or already ours, without waiting.
    ///
    /// # Errors
    /// [`TryAcquireError::WouldBlock`] if another thread holds it; `OwnerDied` as above.
    ///
    /// ```
    /// let rlock = multiproc::RLock::new().unwrap();
    /// assert!(rlock.try_acquire().is_ok());
    /// ```
    /// Python counterpart: `rlock.acquire(block=False)`.
    pub fn try_acquire(&self) -> Result<RLockGuard<'_>, TryAcquireError<RLockGuard<'_>>> {
        if self.reenter() {
            return Ok(RLockGuard { lock: self, _not_send: PhantomData });
        }
        match self.state.raw.try_lock() {
            None => Err(TryAcquireError::WouldBlock),
            Some(how) => self.first_level(how).map_err(TryAcquireError::OwnerDied),
        }
    }

    /// Waits up to `timeout` for the lock.
    ///
    /// # Errors
    /// [`AcquireTimeoutError::Timeout`] once the timeout has passed; `OwnerDied` as above.
    ///
    /// ```
    /// let rlock = multiproc::RLock::new().unwrap();
    /// assert!(rlock.acquire_timeout(std::time::Duration::from_secs(1)).is_ok());
    /// ```
    /// Python counterpart: `rlock.acquire(timeout=t)`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<RLockGuard<'_>, AcquireTimeoutError<RLockGuard<'_>>> {
        self.acquire_deadline(deadline_after(timeout))
    }

    /// Waits until `deadline` (`None`: forever) for the lock.
    ///
    /// # Errors
    /// As for [`acquire_timeout`](Self::acquire_timeout).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let rlock = multiproc::RLock::new().unwrap();
    /// assert!(rlock.acquire_deadline(Some(Instant::now() + Duration::from_secs(1))).is_ok());
    /// ```
    /// Python counterpart: `rlock.acquire(timeout=deadline - time.monotonic())`.
    pub fn acquire_deadline(
        &self,
        deadline: Option<Instant>,
    ) -> Result<RLockGuard<'_>, AcquireTimeoutError<RLockGuard<'_>>> {
        if self.reenter() {
            return Ok(RLockGuard { lock: self, _not_send: PhantomData });
        }
        match self.state.raw.lock(deadline) {
            Err(TimedOut) => Err(AcquireTimeoutError::Timeout),
            Ok(how) => self.first_level(how).map_err(AcquireTimeoutError::OwnerDied),
        }
    }

    /// Python's `acquire(block=True, timeout=None)`: whether a level was taken; pair it with
    /// [`release`](Self::release).
    ///
    /// # Errors
    /// [`OwnerDied`] (the lock *is* held) if the previous holder died holding it.
    ///
    /// ```
    /// let rlock = multiproc::RLock::new().unwrap();
    /// assert!(rlock.acquire_with(true, None).unwrap());
    /// assert!(rlock.acquire_with(false, None).unwrap()); // the owner may take it again
    /// rlock.release().unwrap();
    /// rlock.release().unwrap();
    /// ```
    pub fn acquire_with(&self, block: bool, timeout: Option<Duration>) -> Result<bool, OwnerDied<()>> {
        let taken = match (block, timeout) {
            (false, _) => self.try_acquire().map_err(|e| match e {
                TryAcquireError::WouldBlock => None,
                TryAcquireError::OwnerDied(d) => Some(d.map(std::mem::forget)),
            }),
            (true, timeout) => self.acquire_deadline(timeout.and_then(deadline_after)).map_err(|e| match e {
                AcquireTimeoutError::Timeout => None,
                AcquireTimeoutError::OwnerDied(d) => Some(d.map(std::mem::forget)),
            }),
        };
        match taken {
            Ok(guard) => {
                // The level stays taken until `release`.
                std::mem::forget(guard);
                Ok(true)
            }
            Err(None) => Ok(false),
            Err(Some(died)) => Err(died),
        }
    }

    /// Releases one level; the lock is free when every level is released.
    ///
    /// # Errors
    /// [`ReleaseError::NotOwner`] if this thread does not hold it (Python: "cannot release
    /// un-acquired lock").
    ///
    /// ```
    /// let rlock = multiproc::RLock::new().unwrap();
    /// assert!(rlock.release().is_err()); // not the owner
    /// rlock.acquire_with(true, None).unwrap();
    /// rlock.release().unwrap();
    /// ```
    /// Python counterpart: `rlock.release()`.
    pub fn release(&self) -> std::result::Result<(), ReleaseError> {
        if !self.state.raw.held_by_me() {
            return Err(ReleaseError::NotOwner);
        }
        if self.state.count.fetch_sub(1, Ordering::Relaxed) <= 1 {
            self.state.count.store(0, Ordering::Relaxed);
            self.state.raw.unlock();
        }
        Ok(())
    }

    /// Whether any thread of any process holds the lock.
    ///
    /// ```
    /// let rlock = multiproc::RLock::new().unwrap();
    /// let _g = rlock.acquire().unwrap();
    /// assert!(rlock.locked());
    /// ```
    /// Python counterpart: `rlock._semlock._count() != 0` (no public form in Python).
    pub fn locked(&self) -> bool {
        self.state.raw.is_locked()
    }

    /// Whether the calling thread holds the lock.
    ///
    /// ```
    /// let rlock = multiproc::RLock::new().unwrap();
    /// assert!(!rlock.is_owned());
    /// let _g = rlock.acquire().unwrap();
    /// assert!(rlock.is_owned());
    /// ```
    /// Python counterpart: `rlock._is_owned()`.
    pub fn is_owned(&self) -> bool {
        self.state.raw.held_by_me()
    }
}
