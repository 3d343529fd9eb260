//! `Semaphore` and `BoundedSemaphore`.

use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::shm::{Shared, SharedState};
use crate::sync::deadline_after;
use crate::sync::raw::RawSemaphore;

#[repr(C)]
pub(crate) struct SemaphoreState {
    raw: RawSemaphore,
}

// SAFETY: repr(C), atomics and a plain integer, no destructor.
unsafe impl SharedState for SemaphoreState {
    const KIND: u32 = 3;
    const NAME: &'static str = "Semaphore";
}

/// Why a semaphore release was refused. Nothing changed.
///
/// ```
/// let sem = multiproc::BoundedSemaphore::new(1).unwrap();
/// assert!(sem.release().is_err());
/// ```
/// Python counterpart: `ValueError: semaphore or lock released too many times`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("semaphore or lock released too many times")]
pub struct SemaphoreReleaseError;

/// A counter of units shared between processes: `acquire` takes one (waiting while there are
/// none), `release` returns one.
///
/// The initial value is a `u32`: Python's `ValueError` for a negative value is a compile error
/// here.
///
/// ```compile_fail
/// let sem = multiproc::Semaphore::new(-1); // negative values do not type-check
/// ```
///
/// A unit held by a process that dies is lost, as in Python (see the [module docs](crate::sync)).
///
/// # Example
/// ```
/// use multiproc::Semaphore;
/// let room = Semaphore::new(2).unwrap();
/// assert!(room.try_acquire());
/// assert!(room.try_acquire());
/// assert!(!room.try_acquire());
/// assert!(!room.acquire_timeout(std::time::Duration::from_millis(10)));
/// room.release().unwrap();
/// assert_eq!(room.value(), 1);
/// ```
/// Python counterpart: `multiprocessing.Semaphore`.
#[derive(Clone, Serialize, Deserialize)]
pub struct Semaphore {
    state: Shared<SemaphoreState>,
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore").field("value", &self.value()).finish()
    }
}

impl Semaphore {
    /// A semaphore holding `value` units.
    ///
    /// # Errors
    /// [`ErrorKind::Os`](crate::ErrorKind::Os) if no shared memory can be had.
    ///
    /// ```
    /// let room = multiproc::Semaphore::new(4).unwrap();
    /// assert_eq!(room.value(), 4);
    /// ```
    /// Python counterpart: `multiprocessing.Semaphore(value)`.
    pub fn new(value: u32) -> Result<Semaphore> {
        Semaphore::with_bound(value, u32::MAX)
    }

    fn with_bound(value: u32, max: u32) -> Result<Semaphore> {
        Ok(Semaphore { state: Shared::new(SemaphoreState { raw: RawSemaphore::new(value, max) })? })
    }

    /// Takes a unit, waiting for as long as it takes.
    ///
    /// ```
    /// let room = multiproc::Semaphore::new(1).unwrap();
    /// room.acquire();
    /// assert_eq!(room.value(), 0);
    /// ```
    /// Python counterpart: `sem.acquire()`.
    #[inline]
    pub fn acquire(&self) {
        let _ = self.state.raw.acquire(None);
    }

    /// Takes a unit if one is there; whether it did.
    ///
    /// ```
    /// let room = multiproc::Semaphore::new(1).unwrap();
    /// assert!(room.try_acquire());
    /// assert!(!room.try_acquire());
    /// ```
    /// Python counterpart: `sem.acquire(block=False)`.
    pub fn try_acquire(&self) -> bool {
        self.state.raw.try_acquire()
    }

    /// Waits up to `timeout` for a unit; whether it got one.
    ///
    /// ```
    /// let room = multiproc::Semaphore::new(0).unwrap();
    /// assert!(!room.acquire_timeout(std::time::Duration::from_millis(10)));
    /// ```
    /// Python counterpart: `sem.acquire(timeout=t)`.
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.acquire_deadline(deadline_after(timeout))
    }

    /// Waits until `deadline` (`None`: forever) for a unit; whether it got one.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let room = multiproc::Semaphore::new(1).unwrap();
    /// assert!(room.acquire_deadline(Some(Instant::now() + Duration::from_secs(1))));
    /// ```
    /// Python counterpart: `sem.acquire(timeout=deadline - time.monotonic())`.
    pub fn acquire_deadline(&self, deadline: Option<Instant>) -> bool {
        self.state.raw.acquire(deadline).is_ok()
    }

    /// Returns a unit, waking one waiter.
    ///
    /// # Errors
    /// [`SemaphoreReleaseError`] if the value is already `u32::MAX`, the counter's limit
    /// (Python raises `OverflowError` at its own limit).
    ///
    /// ```
    /// let room = multiproc::Semaphore::new(0).unwrap();
    /// room.release().unwrap();
    /// assert_eq!(room.value(), 1);
    /// ```
    /// Python counterpart: `sem.release()`.
    #[inline]
    pub fn release(&self) -> std::result::Result<(), SemaphoreReleaseError> {
        if self.state.raw.release() { Ok(()) } else { Err(SemaphoreReleaseError) }
    }

    /// The units available right now (a snapshot: others may change it at once).
    ///
    /// ```
    /// assert_eq!(multiproc::Semaphore::new(3).unwrap().value(), 3);
    /// ```
    /// Python counterpart: `sem.get_value()`.
    #[doc(alias = "get_value")]
    pub fn value(&self) -> u32 {
        self.state.raw.value()
    }
}

/// A [`Semaphore`] that refuses to be released above its initial value.
///
/// # Example
/// ```
/// use multiproc::BoundedSemaphore;
/// let sem = BoundedSemaphore::new(1).unwrap();
/// assert!(sem.release().is_err()); // already at its bound: nothing changes
/// sem.acquire();
/// sem.release().unwrap();
/// ```
/// Python counterpart: `multiprocessing.BoundedSemaphore`.
#[derive(Clone, Serialize, Deserialize)]
pub struct BoundedSemaphore {
    inner: Semaphore,
}

impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedSemaphore").field("value", &self.value()).finish()
    }
}

impl BoundedSemaphore {
    /// A semaphore holding `value` units, which is also its bound.
    ///
    /// # Errors
    /// [`ErrorKind::Os`](crate::ErrorKind::Os) if no shared memory can be had.
    ///
    /// ```
    /// let sem = multiproc::BoundedSemaphore::new(2).unwrap();
    /// assert_eq!(sem.value(), 2);
    /// ```
    /// Python counterpart: `multiprocessing.BoundedSemaphore(value)`.
    pub fn new(value: u32) -> Result<BoundedSemaphore> {
        Ok(BoundedSemaphore { inner: Semaphore::with_bound(value, value)? })
    }

    /// Takes a unit, waiting for as long as it takes.
    ///
    /// ```
    /// let sem = multiproc::BoundedSemaphore::new(1).unwrap();
    /// sem.acquire();
    /// assert_eq!(sem.value(), 0);
    /// ```
    /// Python counterpart: `sem.acquire()`.
    #[inline]
    pub fn acquire(&self) {
        self.inner.acquire()
    }

    /// Takes a unit if one is there; whether it did.
    ///
    /// ```
    /// let sem = multiproc::BoundedSemaphore::new(1).unwrap();
    /// assert!(sem.try_acquire());
    /// assert!(!sem.try_acquire());
    /// ```
    /// Python counterpart: `sem.acquire(False)`.
    pub fn try_acquire(&self) -> bool {
        self.inner.try_acquire()
    }

    /// Waits up to `timeout` for a unit; whether it got one.
    ///
    /// ```
    /// let sem = multiproc::BoundedSemaphore::new(1).unwrap();
    /// assert!(sem.acquire_timeout(std::time::Duration::from_secs(1)));
    /// ```
    /// Python counterpart: `sem.acquire(timeout=t)`.
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.inner.acquire_timeout(timeout)
    }

    /// Waits until `deadline` (`None`: forever) for a unit; whether it got one.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let sem = multiproc::BoundedSemaphore::new(1).unwrap();
    /// assert!(sem.acquire_deadline(Some(Instant::now() + Duration::from_secs(1))));
    /// ```
    /// Python counterpart: `sem.acquire(timeout=deadline - time.monotonic())`.
    pub fn acquire_deadline(&self, deadline: Option<Instant>) -> bool {
        self.inner.acquire_deadline(deadline)
    }

    /// Returns a unit.
    ///
    /// # Errors
    /// [`SemaphoreReleaseError`] if the value is already at its bound (Python's `ValueError`).
    ///
    /// ```
    /// let sem = multiproc::BoundedSemaphore::new(1).unwrap();
    /// assert!(sem.release().is_err()); // above its initial value
    /// sem.acquire();
    /// sem.release().unwrap();
    /// ```
    #[inline]
    pub fn release(&self) -> std::result::Result<(), SemaphoreReleaseError> {
        self.inner.release()
    }

    /// The units available right now.
    ///
    /// ```
    /// assert_eq!(multiproc::BoundedSemaphore::new(2).unwrap().value(), 2);
    /// ```
    /// Python counterpart: `sem.get_value()`.
    pub fn value(&self) -> u32 {
        self.inner.value()
    }
}
