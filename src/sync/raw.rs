//! The raw state machines under every primitive: a robust mutex and a counting semaphore on
//! futex words in shared memory, plus the spin-then-sleep policy they share.
//!
//! # The mutex word
//!
//! | value | meaning |
//! |---|---|
//! | `0` | unlocked |
//! | `pid` | locked by process `pid`; nobody sleeps on it |
//! | `pid \| WAITERS` | locked by `pid`; somebody may be sleeping on the word |
//!
//! Acquiring is one compare-and-swap `0 → pid`. Releasing swaps in `0` and issues a futex wake
//! only when `WAITERS` was set. A waiter spins briefly, then sets `WAITERS` and sleeps on the word
//! in slices; after each slice without progress it checks whether the holder is still running
//! (`/proc/<pid>/stat`; a zombie counts as dead). If not, it swaps the dead holder's value for its
//! own — the lock changes hands without ever being unlocked — and reports that the owner died.
//! Next to the word, `owner_tid` records which thread of the holder took it, for `RLock` and
//! `Condition`, which must know whether the caller holds the lock.
//!
//! # The semaphore
//! `value` is the futex word; `waiters` counts processes that may be asleep, so that a release
//! with nobody waiting makes no system call. Both sides use sequentially consistent operations
//! (waiter: announce, then re-check; releaser: add, then look for waiters), so no wake-up is lost.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::sys;

/// Set in the mutex word while somebody may be asleep on it.
pub(crate) const WAITERS: u32 = 1 << 31;
const PID_MASK: u32 = !WAITERS;

/// How long to spin before sleeping. A wake-up from sleep costs ~60 µs on these machines, while a
/// spinning waiter answers in well under a microsecond (see DESIGN.md, "Latency").
pub(crate) const SPIN: Duration = Duration::from_micros(50);
/// The first sleep slice after which a waiter checks whether the holder still runs; slices double
/// up to [`MAX_SLICE`].
const FIRST_SLICE: Duration = Duration::from_millis(5);
const MAX_SLICE: Duration = Duration::from_millis(100);

/// Spins until `ready()` holds or `limit` passes; true if it held.
#[inline]
pub(crate) fn spin(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    let mut round = 0u32;
    loop {
        if ready() {
            return true;
        }
        round += 1;
        if round % 64 == 0 {
            if start.elapsed() >= limit {
                return false;
            }
            // Let a peer on this same CPU run: on two cores the holder may be waiting for it.
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// How a lock was acquired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// From an unlocked state.
    Clean,
    /// Taken over from process `pid`, which died holding it.
    OwnerDied(u32),
}

/// The deadline passed first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimedOut;

/// A robust, process-shared mutex word (see the module docs). Lives in shared memory.
#[repr(C)]
pub(crate) struct RawMutex {
    word: AtomicU32,
    owner_tid: AtomicU32,
}

impl RawMutex {
    /// An unlocked mutex.
    pub(crate) const fn new() -> RawMutex {
        RawMutex { word: AtomicU32::new(0), owner_tid: AtomicU32::new(0) }
    }

    #[inline]
    fn claimed(&self, how: Acquired) -> Acquired {
        self.owner_tid.store(sys::process::cached_tid(), Ordering::Relaxed);
        how
    }

    /// Takes the lock if it is free, or if its holder has died.
    #[inline]
    pub(crate) fn try_lock(&self) -> Option<Acquired> {
        let me = sys::process::cached_pid();
        match self.word.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => Some(self.claimed(Acquired::Clean)),
            Err(seen) => self.take_from_dead(seen, me),
        }
    }

    /// Takes the lock, waiting until `deadline` (`None`: for as long as it takes).
    #[inline]
    pub(crate) fn lock(&self, deadline: Option<Instant>) -> Result<Acquired, TimedOut> {
        let me = sys::process::cached_pid();
        if self.word.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            return Ok(self.claimed(Acquired::Clean));
        }
        self.lock_slow(me, deadline)
    }

    #[cold]
    fn lock_slow(&self, me: u32, deadline: Option<Instant>) -> Result<Acquired, TimedOut> {
        let spun = spin(SPIN, || {
            self.word.load(Ordering::Relaxed) == 0
                && self.word.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed).is_ok()
        });
        if spun {
            return Ok(self.claimed(Acquired::Clean));
        }
        let mut slice = FIRST_SLICE;
        loop {
            let seen = self.word.load(Ordering::Relaxed);
            if seen == 0 {
                // Others may still sleep: keep WAITERS so that our release wakes one of them.
                if self.word.compare_exchange(0, me | WAITERS, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                    return Ok(self.claimed(Acquired::Clean));
                }
                continue;
            }
            if seen & WAITERS == 0
                && self.word.compare_exchange(seen, seen | WAITERS, Ordering::Relaxed, Ordering::Relaxed).is_err()
            {
                continue;
            }
            let asleep = Instant::now();
            let woke = sys::futex::wait_until(&self.word, seen | WAITERS, deadline, slice);
            if woke == sys::futex::Wake::TimedOut {
                return self.try_lock().ok_or(TimedOut);
            }
            if asleep.elapsed() >= slice {
                // A whole slice without a wake-up: is the holder still there?
                if let Some(acquired) = self.take_from_dead(self.word.load(Ordering::Relaxed), me) {
                    return Ok(acquired);
                }
                slice = (slice * 2).min(MAX_SLICE);
            }
        }
    }

    /// If `seen` names a holder that is no longer running, takes the lock over from it.
    fn take_from_dead(&self, seen: u32, me: u32) -> Option<Acquired> {
        let holder = seen & PID_MASK;
        if holder == 0 || holder == me || sys::process::is_running(holder) {
            return None;
        }
        // Keep WAITERS as it was: sleepers must still be woken by our release.
        let ours = me | (seen & WAITERS);
        self.word
            .compare_exchange(seen, ours, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| self.claimed(Acquired::OwnerDied(holder)))
    }

    /// Releases the lock (whoever holds it); false if it was not locked.
    #[inline]
    pub(crate) fn unlock(&self) -> bool {
        self.owner_tid.store(0, Ordering::Relaxed);
        let previous = self.word.swap(0, Ordering::Release);
        if previous & WAITERS != 0 {
            sys::futex::wake(&self.word, 1);
        }
        previous != 0
    }

    /// Whether the lock is held by anybody.
    pub(crate) fn is_locked(&self) -> bool {
        self.word.load(Ordering::Relaxed) != 0
    }

    /// Whether the calling thread of this process holds the lock.
    pub(crate) fn held_by_me(&self) -> bool {
        self.word.load(Ordering::Relaxed) & PID_MASK == sys::process::cached_pid()
            && self.owner_tid.load(Ordering::Relaxed) == sys::process::cached_tid()
    }
}

/// A counting semaphore on a futex word (see the module docs). Lives in shared memory.
#[repr(C)]
pub(crate) struct RawSemaphore {
    value: AtomicU32,
    waiters: AtomicU32,
    /// Releases beyond this value are refused (`u32::MAX`: unbounded).
    max: u32,
}

impl RawSemaphore {
    /// A semaphore holding `value` units, refusing to grow beyond `max`.
    pub(crate) const fn new(value: u32, max: u32) -> RawSemaphore {
        RawSemaphore { value: AtomicU32::new(value), waiters: AtomicU32::new(0), max }
    }

    /// Takes a unit if one is there.
    #[inline]
    pub(crate) fn try_acquire(&self) -> bool {
        let mut value = self.value.load(Ordering::Relaxed);
        while value > 0 {
            match self.value.compare_exchange_weak(value, value - 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(seen) => value = seen,
            }
        }
        false
    }

    /// Takes a unit, waiting until `deadline` (`None`: for as long as it takes).
    #[inline]
    pub(crate) fn acquire(&self, deadline: Option<Instant>) -> Result<(), TimedOut> {
        if self.try_acquire() {
            return Ok(());
        }
        self.acquire_slow(deadline)
    }

    #[cold]
    fn acquire_slow(&self, deadline: Option<Instant>) -> Result<(), TimedOut> {
        if spin(SPIN, || self.try_acquire()) {
            return Ok(());
        }
        loop {
            self.waiters.fetch_add(1, Ordering::SeqCst);
            if self.try_acquire() {
                self.waiters.fetch_sub(1, Ordering::SeqCst);
                return Ok(());
            }
            let woke = sys::futex::wait_until(&self.value, 0, deadline, MAX_SLICE);
            self.waiters.fetch_sub(1, Ordering::SeqCst);
            if self.try_acquire() {
                return Ok(());
            }
            if woke == sys::futex::Wake::TimedOut {
                return Err(TimedOut);
            }
        }
    }

    /// Returns a unit; false (and nothing changes) if that would exceed the maximum.
    #[inline]
    pub(crate) fn release(&self) -> bool {
        let mut value = self.value.load(Ordering::Relaxed);
        loop {
            if value >= self.max {
                return false;
            }
            match self.value.compare_exchange_weak(value, value + 1, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => break,
                Err(seen) => value = seen,
            }
        }
        if self.waiters.load(Ordering::SeqCst) > 0 {
            sys::futex::wake(&self.value, 1);
        }
        true
    }

    /// The number of units available now.
    pub(crate) fn value(&self) -> u32 {
        self.value.load(Ordering::Relaxed)
    }
}
