//! `Barrier`.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::shm::{Shared, SharedState};
use crate::sync::deadline_after;
use crate::sync::raw::{Acquired, RawMutex};
use crate::sys;

/// A barrier's shared state, changed only under `mutex`.
///
/// Each cycle of the barrier is a generation; `generation` is also the futex word its waiters
/// sleep on. A generation ends when the last party arrives (released) or when the barrier breaks
/// (timeout, `abort`, `reset` with waiters, a failing action, a party that died inside the
/// barrier's own lock). Bit `g % 64` of `ended_broken` records how generation `g` ended, so a
/// waiter that wakes late still learns its own generation's fate.
/// How often a sleeping party looks whether the internal lock's holder is still alive.
const CHECK_SLICE: Duration = Duration::from_millis(100);

/// A hash of this build's fingerprint (see `BarrierState::build`).
fn build_hash() -> u64 {
    crate::sys::build_id::fingerprint()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

#[repr(C)]
pub(crate) struct BarrierState {
    mutex: RawMutex,
    generation: AtomicU32,
    count: AtomicU32,
    broken: AtomicU32,
    ended_broken: AtomicU64,
    parties: u32,
    has_action: u32,
    action: i64,
    /// A hash of the build fingerprint of the process that made the barrier: `action` is an
    /// offset into that build's code, and only the same build may call it.
    build: u64,
    /// The default timeout in nanoseconds; `u64::MAX` for none.
    timeout_ns: u64,
}

// SAFETY: repr(C), atomics and plain integers, no destructor.
unsafe impl SharedState for BarrierState {
    const KIND: u32 = 6;
    const NAME: &'static str = "Barrier";
}

/// The barrier is broken: a party timed out, it was aborted or reset while this party waited, or
/// its action panicked.
///
/// ```
/// let barrier = multiproc::Barrier::new(2).unwrap();
/// barrier.abort();
/// assert_eq!(barrier.wait(), Err(multiproc::sync::BrokenBarrier));
/// ```
/// Python counterpart: `threading.BrokenBarrierError`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("the barrier is broken")]
pub struct BrokenBarrier;

/// Makes `parties` processes wait for each other: each `wait` returns once all have arrived.
///
/// `wait` returns a unique index in `0..parties` per generation (the arrival order); the last to
/// arrive runs the optional action first. The barrier then starts over. A wait that times out
/// breaks the barrier for everyone until [`reset`](Self::reset), as in Python; so a party that
/// dies leaves the others with [`BrokenBarrier`] as soon as one of them times out.
///
/// # Example
/// ```
/// use multiproc::{Barrier, Process};
/// fn runner(start: Barrier) -> u32 { start.wait().unwrap() }
///
/// let start = Barrier::new(3).unwrap();
/// let mut runners: Vec<_> = (0..2).map(|_| Process::spawn(runner, (start.clone(),)).unwrap()).collect();
/// let mine = start.wait().unwrap();
/// let mut indexes: Vec<u32> = runners.iter_mut().map(|r| r.join().unwrap()).collect();
/// indexes.push(mine);
/// indexes.sort();
/// assert_eq!(indexes, [0, 1, 2]);
/// ```
/// Python counterpart: `multiprocessing.Barrier(parties, action, timeout)`.
#[derive(Clone, Serialize, Deserialize)]
pub struct Barrier {
    state: Shared<BarrierState>,
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties())
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.broken())
            .finish()
    }
}

impl Barrier {
    /// A barrier for `parties` processes, with no action and no default timeout.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if `parties` is 0 (Python's `ValueError`); [`ErrorKind::Os`] if no
    /// shared memory can be had.
    ///
    /// ```
    /// let barrier = multiproc::Barrier::new(1).unwrap();
    /// assert_eq!(barrier.wait(), Ok(0)); // one party: passes at once
    /// ```
    pub fn new(parties: u32) -> Result<Barrier> {
        Barrier::with(parties, None, None)
    }

    /// A barrier with an `action`, run by the last party to arrive before anyone is released,
    /// and a default `timeout` for [`wait`](Self::wait).
    ///
    /// The action is a plain `fn()`, so that every process can run it.
    ///
    /// # Errors
    /// As for [`new`](Self::new).
    ///
    /// ```
    /// fn announce() { println!("everyone is here") }
    /// let barrier = multiproc::Barrier::with(1, Some(announce), Some(std::time::Duration::from_secs(5))).unwrap();
    /// assert_eq!(barrier.wait(), Ok(0));
    /// ```
    /// Python counterpart: `Barrier(parties, action, timeout)`.
    pub fn with(parties: u32, action: Option<fn()>, timeout: Option<Duration>) -> Result<Barrier> {
        if parties == 0 {
            return Err(Error::new(ErrorKind::InvalidInput, "a barrier needs at least one party"));
        }
        let state = BarrierState {
            mutex: RawMutex::new(),
            generation: AtomicU32::new(0),
            count: AtomicU32::new(0),
            broken: AtomicU32::new(0),
            ended_broken: AtomicU64::new(0),
            parties,
            has_action: u32::from(action.is_some()),
            action: action.map_or(0, crate::entry::plain_fn_offset),
            build: build_hash(),
            timeout_ns: timeout.map_or(u64::MAX, |t| u64::try_from(t.as_nanos()).unwrap_or(u64::MAX - 1)),
        };
        Ok(Barrier { state: Shared::new(state)? })
    }

    /// The number of parties.
    ///
    /// ```
    /// assert_eq!(multiproc::Barrier::new(3).unwrap().parties(), 3);
    /// ```
    /// Python counterpart: `barrier.parties`.
    pub fn parties(&self) -> u32 {
        self.state.parties
    }

    /// How many parties are waiting in the current generation.
    ///
    /// ```
    /// assert_eq!(multiproc::Barrier::new(3).unwrap().n_waiting(), 0);
    /// ```
    /// Python counterpart: `barrier.n_waiting`.
    pub fn n_waiting(&self) -> u32 {
        if self.broken() { 0 } else { self.state.count.load(Ordering::Relaxed) }
    }

    /// Whether the barrier is broken.
    ///
    /// ```
    /// let barrier = multiproc::Barrier::new(2).unwrap();
    /// barrier.abort();
    /// assert!(barrier.broken());
    /// ```
    /// Python counterpart: `barrier.broken`.
    pub fn broken(&self) -> bool {
        self.state.broken.load(Ordering::Relaxed) != 0
    }

    /// Waits for all parties (up to the default timeout, if one was given); returns this party's
    /// index in `0..parties`.
    ///
    /// # Errors
    /// [`BrokenBarrier`] if the barrier is or becomes broken, or the default timeout passes.
    ///
    /// # Panics
    /// If the action panics, in the party that ran it (the barrier breaks for the others).
    ///
    /// ```
    /// use multiproc::{Barrier, Process};
    /// fn meet(barrier: Barrier) -> u32 { barrier.wait().unwrap() }
    /// let barrier = Barrier::new(2).unwrap();
    /// let mut other = Process::spawn(meet, (barrier.clone(),)).unwrap();
    /// let mine = barrier.wait().unwrap();
    /// let theirs = other.join().unwrap();
    /// assert_eq!(mine + theirs, 1); // indexes 0 and 1
    /// ```
    /// Python counterpart: `barrier.wait()`.
    pub fn wait(&self) -> std::result::Result<u32, BrokenBarrier> {
        let timeout = (self.state.timeout_ns != u64::MAX).then(|| Duration::from_nanos(self.state.timeout_ns));
        self.wait_deadline(timeout.and_then(deadline_after))
    }

    /// As [`wait`](Self::wait), with this timeout instead of the default one.
    ///
    /// # Errors
    /// As for [`wait`](Self::wait).
    ///
    /// ```
    /// use std::time::Duration;
    /// let barrier = multiproc::Barrier::new(2).unwrap();
    /// // Nobody else comes: the wait times out and breaks the barrier, as in Python.
    /// assert!(barrier.wait_timeout(Duration::from_millis(10)).is_err());
    /// assert!(barrier.broken());
    /// ```
    /// Python counterpart: `barrier.wait(timeout)`.
    pub fn wait_timeout(&self, timeout: Duration) -> std::result::Result<u32, BrokenBarrier> {
        self.wait_deadline(deadline_after(timeout))
    }

    /// As [`wait`](Self::wait), until `deadline` (`None`: no limit).
    ///
    /// # Errors
    /// As for [`wait`](Self::wait).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let barrier = multiproc::Barrier::new(1).unwrap();
    /// assert_eq!(barrier.wait_deadline(Some(Instant::now() + Duration::from_secs(1))), Ok(0));
    /// ```
    /// Python counterpart: `barrier.wait(timeout=deadline - time.monotonic())`.
    pub fn wait_deadline(&self, deadline: Option<Instant>) -> std::result::Result<u32, BrokenBarrier> {
        let state = &*self.state;
        self.lock()?;
        if state.broken.load(Ordering::Relaxed) != 0 {
            state.mutex.unlock();
            return Err(BrokenBarrier);
        }
        let generation = state.generation.load(Ordering::Relaxed);
        let index = state.count.fetch_add(1, Ordering::Relaxed);
        if index + 1 == state.parties {
            if state.has_action != 0 {
                if state.build != build_hash() {
                    // A barrier shared with a process of another build (over a connection): its
                    // action's offset means nothing here. Refuse to call it; break instead.
                    self.break_locked();
                    state.mutex.unlock();
                    return Err(BrokenBarrier);
                }
                // SAFETY: the offset was made by `plain_fn_offset` in a process of this very build
                // (checked just above through the fingerprint hash stored beside it).
                let action = unsafe { crate::entry::plain_fn_from_offset(state.action) };
                if let Err(panic) = catch_unwind(AssertUnwindSafe(action)) {
                    self.break_locked();
                    state.mutex.unlock();
                    resume_unwind(panic);
                }
            }
            self.start_generation(generation, false);
            state.mutex.unlock();
            return Ok(index);
        }
        state.mutex.unlock();
        loop {
            if let Some(outcome) = self.outcome(generation, index) {
                return outcome;
            }
            // In slices: between them, look whether a party died holding the internal lock.
            let woke = sys::futex::wait_until(&state.generation, generation, deadline, CHECK_SLICE);
            if woke != sys::futex::Wake::TimedOut && self.outcome(generation, index).is_none() {
                self.check_lock_holder();
            }
            if woke == sys::futex::Wake::TimedOut {
                if let Some(outcome) = self.outcome(generation, index) {
                    return outcome;
                }
                // Python: a timed-out wait breaks the barrier for everybody.
                if self.lock().is_ok() {
                    if state.generation.load(Ordering::Relaxed) == generation {
                        self.break_locked();
                    }
                    state.mutex.unlock();
                }
                return self.outcome(generation, index).unwrap_or(Err(BrokenBarrier));
            }
        }
    }

    /// If a party died holding the internal lock (say, killed while running the action), breaks
    /// the generation so that nobody waits for it forever. Called by sleepers between slices.
    fn check_lock_holder(&self) {
        let state = &*self.state;
        if !state.mutex.is_locked() {
            return;
        }
        match state.mutex.try_lock() {
            Some(Acquired::OwnerDied(_)) => {
                self.break_locked();
                state.mutex.unlock();
            }
            // Free after all: we took it by accident; give it back.
            Some(Acquired::Clean) => {
                state.mutex.unlock();
            }
            None => {}
        }
    }

    /// How `generation` ended, once it has.
    fn outcome(&self, generation: u32, index: u32) -> Option<std::result::Result<u32, BrokenBarrier>> {
        let state = &*self.state;
        if state.generation.load(Ordering::Acquire) == generation {
            return None;
        }
        let broken = state.ended_broken.load(Ordering::Acquire) & (1 << (generation % 64)) != 0;
        Some(if broken { Err(BrokenBarrier) } else { Ok(index) })
    }

    /// Takes the internal lock; a party that died holding it leaves the state suspect, so the
    /// barrier breaks (and the lock stays held by the caller).
    fn lock(&self) -> std::result::Result<(), BrokenBarrier> {
        match self.state.mutex.lock(None) {
            Ok(Acquired::Clean) | Err(_) => Ok(()),
            Ok(Acquired::OwnerDied(_)) => {
                self.break_locked();
                self.state.mutex.unlock();
                Err(BrokenBarrier)
            }
        }
    }

    /// Ends `generation` and starts the next one, waking every waiter. Under the lock.
    fn start_generation(&self, generation: u32, broken: bool) {
        let state = &*self.state;
        let next = generation.wrapping_add(1);
        let mut bits = state.ended_broken.load(Ordering::Relaxed) & !(1 << (next % 64));
        if broken {
            bits |= 1 << (generation % 64);
        } else {
            bits &= !(1 << (generation % 64));
        }
        state.ended_broken.store(bits, Ordering::Release);
        state.count.store(0, Ordering::Relaxed);
        state.generation.store(next, Ordering::Release);
        sys::futex::wake(&state.generation, u32::MAX);
    }

    /// Breaks the barrier: the current generation ends broken, and so will later waits until
    /// `reset`. Under the lock.
    fn break_locked(&self) {
        let state = &*self.state;
        state.broken.store(1, Ordering::Relaxed);
        self.start_generation(state.generation.load(Ordering::Relaxed), true);
    }

    /// Breaks the barrier: current and future waiters get [`BrokenBarrier`] until [`reset`](Self::reset).
    ///
    /// ```
    /// let barrier = multiproc::Barrier::new(2).unwrap();
    /// barrier.abort();
    /// assert!(barrier.wait().is_err());
    /// ```
    /// Python counterpart: `barrier.abort()`.
    pub fn abort(&self) {
        if self.lock().is_ok() {
            self.break_locked();
            self.state.mutex.unlock();
        }
    }

    /// Returns the barrier to its empty, unbroken state; parties waiting now get [`BrokenBarrier`].
    ///
    /// ```
    /// let barrier = multiproc::Barrier::new(2).unwrap();
    /// barrier.abort();
    /// barrier.reset();
    /// assert!(!barrier.broken());
    /// ```
    /// Python counterpart: `barrier.reset()`.
    pub fn reset(&self) {
        let state = &*self.state;
        // A dead holder of the internal lock breaks the barrier, and a reset repairs that too.
        let _ = state.mutex.lock(None);
        if state.count.load(Ordering::Relaxed) > 0 {
            self.start_generation(state.generation.load(Ordering::Relaxed), true);
        }
        state.broken.store(0, Ordering::Relaxed);
        state.count.store(0, Ordering::Relaxed);
        state.mutex.unlock();
    }
}
