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

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::sys;
use crate::sys::futex::Wake;

/// A 32-bit atomic word: std's `AtomicU32` in shared memory, or loom's in the model checker.
pub(crate) trait Word: Send + Sync {
    fn new(value: u32) -> Self;
    fn load(&self, order: Ordering) -> u32;
    fn store(&self, value: u32, order: Ordering);
    fn swap(&self, value: u32, order: Ordering) -> u32;
    fn compare_exchange(&self, current: u32, new: u32, success: Ordering, failure: Ordering) -> Result<u32, u32>;
    fn fetch_add(&self, value: u32, order: Ordering) -> u32;
    fn fetch_sub(&self, value: u32, order: Ordering) -> u32;
}

impl Word for AtomicU32 {
    fn new(value: u32) -> Self {
        AtomicU32::new(value)
    }
    #[inline]
    fn load(&self, order: Ordering) -> u32 {
        AtomicU32::load(self, order)
    }
    #[inline]
    fn store(&self, value: u32, order: Ordering) {
        AtomicU32::store(self, value, order)
    }
    #[inline]
    fn swap(&self, value: u32, order: Ordering) -> u32 {
        AtomicU32::swap(self, value, order)
    }
    #[inline]
    fn compare_exchange(&self, current: u32, new: u32, success: Ordering, failure: Ordering) -> Result<u32, u32> {
        AtomicU32::compare_exchange(self, current, new, success, failure)
    }
    #[inline]
    fn fetch_add(&self, value: u32, order: Ordering) -> u32 {
        AtomicU32::fetch_add(self, value, order)
    }
    #[inline]
    fn fetch_sub(&self, value: u32, order: Ordering) -> u32 {
        AtomicU32::fetch_sub(self, value, order)
    }
}

/// What the state machines need from the world: words, futexes, identities, liveness, spinning.
/// [`Os`] is the real one; the loom model in the tests below is the other.
pub(crate) trait Platform: 'static {
    type Word: Word;
    /// This process's id.
    fn pid() -> u32;
    /// This thread's id.
    fn tid() -> u32;
    /// Whether process `pid` still runs.
    fn is_running(pid: u32) -> bool;
    /// Sleeps while `*word == expected` (see [`sys::futex::wait_until`]).
    fn wait(word: &Self::Word, expected: u32, deadline: Option<Instant>, slice: Duration) -> Wake;
    /// Wakes up to `count` sleepers.
    fn wake(word: &Self::Word, count: u32);
    /// Spins until `ready()` or `limit` passes (see [`spin`]).
    fn spin(limit: Duration, ready: impl FnMut() -> bool) -> bool;
    /// Orders a store before a later load (the semaphore's announce-then-check on both sides).
    fn store_load_fence();
    /// The clock that paces the checks for a dead holder.
    fn now() -> Instant {
        Instant::now()
    }
}

/// The real platform: shared memory, futexes, `/proc`.
pub(crate) struct Os;

impl Platform for Os {
    type Word = AtomicU32;
    #[inline]
    fn pid() -> u32 {
        sys::process::cached_pid()
    }
    #[inline]
    fn tid() -> u32 {
        sys::process::cached_tid()
    }
    fn is_running(pid: u32) -> bool {
        sys::process::is_running(pid)
    }
    fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>, slice: Duration) -> Wake {
        sys::futex::wait_until(word, expected, deadline, slice)
    }
    fn wake(word: &AtomicU32, count: u32) {
        sys::futex::wake(word, count);
    }
    fn spin(limit: Duration, ready: impl FnMut() -> bool) -> bool {
        spin(limit, ready)
    }
    #[inline]
    fn store_load_fence() {
        // Nothing to do: both sides' stores are SeqCst read-modify-writes and the releaser's
        // check is a SeqCst load, which the memory model already orders; the waiter's check is
        // made again by the kernel inside the futex call, a full barrier. (loom treats SeqCst
        // accesses as AcqRel, so its model needs a real fence here.)
    }
}

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

/// How long to spin before sleeping: [`SPIN`], but never past the caller's deadline (a zero
/// timeout is one attempt, not 50 µs of spinning).
pub(crate) fn spin_budget(deadline: Option<Instant>) -> Duration {
    deadline.map_or(SPIN, |d| d.saturating_duration_since(Instant::now()).min(SPIN))
}

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
pub(crate) struct RawMutex<P: Platform = Os> {
    word: P::Word,
    owner_tid: P::Word,
    _platform: PhantomData<P>,
}

impl<P: Platform> RawMutex<P> {
    /// An unlocked mutex.
    pub(crate) fn new() -> RawMutex<P> {
        RawMutex { word: P::Word::new(0), owner_tid: P::Word::new(0), _platform: PhantomData }
    }

    #[inline]
    fn claimed(&self, how: Acquired) -> Acquired {
        self.owner_tid.store(P::tid(), Ordering::Relaxed);
        how
    }

    /// Takes the lock if it is free, or if its holder has died.
    #[inline]
    pub(crate) fn try_lock(&self) -> Option<Acquired> {
        let me = P::pid();
        match self.word.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => Some(self.claimed(Acquired::Clean)),
            Err(seen) => self.take_from_dead(seen, me),
        }
    }

    /// Takes the lock, waiting until `deadline` (`None`: for as long as it takes).
    #[inline]
    pub(crate) fn lock(&self, deadline: Option<Instant>) -> Result<Acquired, TimedOut> {
        let me = P::pid();
        if self.word.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            return Ok(self.claimed(Acquired::Clean));
        }
        self.lock_slow(me, deadline)
    }

    #[cold]
    fn lock_slow(&self, me: u32, deadline: Option<Instant>) -> Result<Acquired, TimedOut> {
        let spun = P::spin(spin_budget(deadline), || {
            self.word.load(Ordering::Relaxed) == 0
                && self.word.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed).is_ok()
        });
        if spun {
            return Ok(self.claimed(Acquired::Clean));
        }
        let mut slice = FIRST_SLICE;
        // When to look whether the holder still runs — by the clock, not by uninterrupted
        // sleeps: wake-ups meant for others (a busy lock) must not postpone the check forever.
        let mut next_check = P::now() + slice;
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
            let until_check = next_check.saturating_duration_since(P::now()).max(Duration::from_micros(100));
            let woke = P::wait(&self.word, seen | WAITERS, deadline, until_check);
            if woke == Wake::TimedOut {
                return self.try_lock().ok_or(TimedOut);
            }
            if P::now() >= next_check {
                // Is the holder still there?
                if let Some(acquired) = self.take_from_dead(self.word.load(Ordering::Relaxed), me) {
                    return Ok(acquired);
                }
                slice = (slice * 2).min(MAX_SLICE);
                next_check = P::now() + slice;
            }
        }
    }

    /// If `seen` names a holder that is no longer running, takes the lock over from it.
    fn take_from_dead(&self, seen: u32, me: u32) -> Option<Acquired> {
        let holder = seen & PID_MASK;
        if holder == 0 || holder == me || P::is_running(holder) {
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
        // Sequentially consistent, not only Release (the same instruction on x86): the queue
        // ring wakes its sleepers by reading their count after this, relying on its place in
        // the single total order (see `queue::ring`'s `wake_after_unlock`).
        let previous = self.word.swap(0, Ordering::SeqCst);
        if previous & WAITERS != 0 {
            P::wake(&self.word, 1);
        }
        previous != 0
    }

    /// Releases the lock if the calling thread of this process holds it; false (and nothing
    /// done) otherwise. What a guard's drop uses: if the lock was released another way meanwhile
    /// (Python-style `release`) and someone else took it, their hold must not be broken.
    ///
    /// "This process" only: a guard cannot move to another thread (it is not `Send`), so the
    /// thread check would cost a thread-local read on every release for nothing.
    #[inline]
    pub(crate) fn unlock_if_mine(&self) -> bool {
        let me = P::pid();
        // The common case in one atomic operation: held by us, nobody asleep.
        if self.word.compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed).is_ok() {
            return true;
        }
        // Held by us with sleepers (release and wake one), or not ours at all (leave it alone).
        // Nobody else can take the lock between the check and the release: if it is ours, we
        // hold it.
        self.word.load(Ordering::Relaxed) & PID_MASK == me && self.unlock()
    }

    /// Synchronizes with the last release of the lock (or a later lock operation): what its
    /// holders did before letting go is visible after this. For sleepers that a holder wakes
    /// after its unlock only if it sees them counted (the queue ring).
    #[inline]
    pub(crate) fn observe(&self) {
        self.word.load(Ordering::SeqCst);
    }

    /// Whether the lock is held by anybody.
    pub(crate) fn is_locked(&self) -> bool {
        self.word.load(Ordering::Relaxed) != 0
    }

    /// Whether the calling thread of this process holds the lock.
    pub(crate) fn held_by_me(&self) -> bool {
        self.word.load(Ordering::Relaxed) & PID_MASK == P::pid() && self.owner_tid.load(Ordering::Relaxed) == P::tid()
    }
}

/// A counting semaphore on a futex word (see the module docs). Lives in shared memory.
#[repr(C)]
pub(crate) struct RawSemaphore<P: Platform = Os> {
    value: P::Word,
    waiters: P::Word,
    /// Releases beyond this value are refused (`u32::MAX`: unbounded).
    max: u32,
    _platform: PhantomData<P>,
}

impl<P: Platform> RawSemaphore<P> {
    /// A semaphore holding `value` units, refusing to grow beyond `max`.
    pub(crate) fn new(value: u32, max: u32) -> RawSemaphore<P> {
        RawSemaphore { value: P::Word::new(value), waiters: P::Word::new(0), max, _platform: PhantomData }
    }

    /// Takes a unit if one is there.
    #[inline]
    pub(crate) fn try_acquire(&self) -> bool {
        let mut value = self.value.load(Ordering::Relaxed);
        while value > 0 {
            match self.value.compare_exchange(value, value - 1, Ordering::Acquire, Ordering::Relaxed) {
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
        if P::spin(spin_budget(deadline), || self.try_acquire()) {
            return Ok(());
        }
        loop {
            self.waiters.fetch_add(1, Ordering::SeqCst);
            P::store_load_fence();
            if self.try_acquire() {
                self.waiters.fetch_sub(1, Ordering::SeqCst);
                return Ok(());
            }
            let woke = P::wait(&self.value, 0, deadline, MAX_SLICE);
            self.waiters.fetch_sub(1, Ordering::SeqCst);
            if self.try_acquire() {
                return Ok(());
            }
            if woke == Wake::TimedOut {
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
            match self.value.compare_exchange(value, value + 1, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => break,
                Err(seen) => value = seen,
            }
        }
        P::store_load_fence();
        if self.waiters.load(Ordering::SeqCst) > 0 {
            P::wake(&self.value, 1);
        }
        true
    }

    /// The number of units available now.
    pub(crate) fn value(&self) -> u32 {
        self.value.load(Ordering::Relaxed)
    }
}

/// Model checks of the two state machines with loom: every interleaving of a few threads (each
/// playing a process) over a futex model in which checking the word and going to sleep is one
/// step with respect to wake-ups, as in the kernel. A lost wake-up shows up as a deadlock that
/// loom reports; a broken exclusion as a failed assertion.
#[cfg(test)]
mod model {
    use std::cell::Cell;

    use loom::sync::atomic::AtomicU32 as LoomU32;
    use loom::sync::{Arc, Condvar, Mutex};

    use super::*;

    /// The sleepers of one futex word: who is asleep, and who has been chosen by a wake.
    struct Sleepers {
        next: u64,
        asleep: Vec<u64>,
        woken: Vec<u64>,
    }

    struct ModelWord {
        value: LoomU32,
        sleepers: Mutex<Sleepers>,
        wakeup: Condvar,
    }

    impl Word for ModelWord {
        fn new(value: u32) -> Self {
            ModelWord {
                value: LoomU32::new(value),
                sleepers: Mutex::new(Sleepers { next: 0, asleep: Vec::new(), woken: Vec::new() }),
                wakeup: Condvar::new(),
            }
        }
        fn load(&self, order: Ordering) -> u32 {
            self.value.load(order)
        }
        fn store(&self, value: u32, order: Ordering) {
            self.value.store(value, order)
        }
        fn swap(&self, value: u32, order: Ordering) -> u32 {
            self.value.swap(value, order)
        }
        fn compare_exchange(&self, current: u32, new: u32, success: Ordering, failure: Ordering) -> Result<u32, u32> {
            self.value.compare_exchange(current, new, success, failure)
        }
        fn fetch_add(&self, value: u32, order: Ordering) -> u32 {
            self.value.fetch_add(value, order)
        }
        fn fetch_sub(&self, value: u32, order: Ordering) -> u32 {
            self.value.fetch_sub(value, order)
        }
    }

    loom::thread_local! {
        static PROCESS: Cell<u32> = Cell::new(0);
    }

    fn as_process(id: u32) {
        PROCESS.with(|p| p.set(id));
    }

    struct Model;

    impl Platform for Model {
        type Word = ModelWord;
        fn pid() -> u32 {
            PROCESS.with(|p| p.get())
        }
        fn tid() -> u32 {
            1
        }
        fn is_running(_: u32) -> bool {
            true
        }
        fn wait(word: &ModelWord, expected: u32, _: Option<Instant>, _: Duration) -> Wake {
            // A system call is a full barrier.
            loom::sync::atomic::fence(Ordering::SeqCst);
            let mut sleepers = word.sleepers.lock().unwrap();
            if word.value.load(Ordering::SeqCst) != expected {
                return Wake::Maybe;
            }
            let me = sleepers.next;
            sleepers.next += 1;
            sleepers.asleep.push(me);
            loop {
                if let Some(i) = sleepers.woken.iter().position(|&w| w == me) {
                    sleepers.woken.swap_remove(i);
                    return Wake::Maybe;
                }
                sleepers = word.wakeup.wait(sleepers).unwrap();
            }
        }
        fn wake(word: &ModelWord, count: u32) {
            let mut sleepers = word.sleepers.lock().unwrap();
            let n = (count as usize).min(sleepers.asleep.len());
            let chosen: Vec<u64> = sleepers.asleep.drain(..n).collect();
            sleepers.woken.extend(chosen);
            drop(sleepers);
            word.wakeup.notify_all();
        }
        fn spin(_: Duration, mut ready: impl FnMut() -> bool) -> bool {
            // One look: the sleeping path is the one worth exploring.
            ready()
        }
        fn store_load_fence() {
            loom::sync::atomic::fence(Ordering::SeqCst);
        }
        /// A clock that stands still: every holder here is alive, and a real clock would make
        /// the explored paths depend on how loaded the machine is (loom needs them the same on
        /// every run).
        fn now() -> Instant {
            static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
            *START.get_or_init(Instant::now)
        }
    }

    #[test]
    fn mutex_excludes_and_never_loses_a_wakeup() {
        loom::model(|| {
            let mutex = Arc::new(RawMutex::<Model>::new());
            let inside = Arc::new(LoomU32::new(0));
            let threads: Vec<_> = (1..=2)
                .map(|id| {
                    let (mutex, inside) = (mutex.clone(), inside.clone());
                    loom::thread::spawn(move || {
                        as_process(id);
                        assert_eq!(mutex.lock(None), Ok(Acquired::Clean));
                        assert!(mutex.held_by_me());
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders at once");
                        inside.fetch_sub(1, Ordering::SeqCst);
                        assert!(mutex.unlock());
                    })
                })
                .collect();
            for thread in threads {
                thread.join().unwrap();
            }
            assert!(!mutex.is_locked());
            assert!(!mutex.unlock(), "unlocking an unlocked mutex reports it");
        });
    }

    #[test]
    fn semaphore_counts_and_never_loses_a_wakeup() {
        loom::model(|| {
            let sem = Arc::new(RawSemaphore::<Model>::new(1, 1));
            let inside = Arc::new(LoomU32::new(0));
            let threads: Vec<_> = (1..=2)
                .map(|id| {
                    let (sem, inside) = (sem.clone(), inside.clone());
                    loom::thread::spawn(move || {
                        as_process(id);
                        assert_eq!(sem.acquire(None), Ok(()));
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders of one unit");
                        inside.fetch_sub(1, Ordering::SeqCst);
                        assert!(sem.release());
                    })
                })
                .collect();
            for thread in threads {
                thread.join().unwrap();
            }
            assert_eq!(sem.value(), 1);
            assert!(!sem.release(), "a bounded semaphore refuses to exceed its bound");
        });
    }
}
