//! `Event`.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::asyncio::{Step, Watch};
use crate::error::Result;
use crate::shm::{Shared, SharedState};
use crate::sync::{deadline_after, raw};
use crate::sys;

/// The low bit of the flag word: the event is set. The bits above count the sets.
const SET: u32 = 1;

#[repr(C)]
pub(crate) struct EventState {
    /// `SET`, plus a generation bumped by every set: the futex word.
    flag: AtomicU32,
    /// Processes that may be asleep on `flag`.
    sleepers: AtomicU32,
}

// SAFETY: repr(C), made of atomics only, no destructor.
unsafe impl SharedState for EventState {
    const KIND: u32 = 4;
    const NAME: &'static str = "Event";
}

/// A flag that processes can wait for: `set` wakes every waiter; `clear` resets it.
///
/// # Example
/// ```
/// use std::time::Duration;
/// use multiproc::{Event, Process};
///
/// fn wait_for_green(light: Event) -> bool { light.wait_timeout(Duration::from_secs(30)) }
///
/// let light = Event::new().unwrap();
/// let mut car = Process::spawn(wait_for_green, (light.clone(),)).unwrap();
/// light.set();
/// assert!(car.join().unwrap());
/// assert!(light.is_set());
/// ```
/// Python counterpart: `multiprocessing.Event`.
#[derive(Clone, Serialize, Deserialize)]
pub struct Event {
    state: Shared<EventState>,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event").field("set", &self.is_set()).finish()
    }
}

impl Event {
    /// A new, clear event.
    ///
    /// # Errors
    /// [`ErrorKind::Os`](crate::ErrorKind::Os) if no shared memory can be had.
    ///
    /// ```
    /// let event = multiproc::Event::new().unwrap();
    /// assert!(!event.is_set());
    /// ```
    /// Python counterpart: `multiprocessing.Event()`.
    pub fn new() -> Result<Event> {
        Ok(Event { state: Shared::new(EventState { flag: AtomicU32::new(0), sleepers: AtomicU32::new(0) })? })
    }

    /// Sets the flag and wakes every waiter.
    ///
    /// ```
    /// let event = multiproc::Event::new().unwrap();
    /// event.set();
    /// assert!(event.is_set());
    /// ```
    /// Python counterpart: `event.set()`.
    pub fn set(&self) {
        let flag = &self.state.flag;
        let mut word = flag.load(Ordering::SeqCst);
        loop {
            if word & SET != 0 {
                return;
            }
            // A new generation with the flag up: waiters that slept through a set-then-clear
            // still see that a set happened.
            let next = ((word >> 1).wrapping_add(1) << 1) | SET;
            match flag.compare_exchange(word, next, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break,
                Err(seen) => word = seen,
            }
        }
        if self.state.sleepers.load(Ordering::SeqCst) > 0 {
            sys::futex::wake(flag, u32::MAX);
        }
    }

    /// Clears the flag. A process that was waiting when the flag was set returns `true` even if
    /// the flag is cleared again before it wakes up.
    ///
    /// ```
    /// let e = multiproc::Event::new().unwrap();
    /// e.set();
    /// e.clear();
    /// assert!(!e.is_set());
    /// ```
    /// Python counterpart: `event.clear()`.
    pub fn clear(&self) {
        self.state.flag.fetch_and(!SET, Ordering::SeqCst);
    }

    /// Whether the flag is set.
    ///
    /// ```
    /// let event = multiproc::Event::new().unwrap();
    /// assert!(!event.is_set());
    /// ```
    /// Python counterpart: `event.is_set()`.
    pub fn is_set(&self) -> bool {
        self.state.flag.load(Ordering::Acquire) & SET != 0
    }

    /// Waits until the flag is set.
    ///
    /// ```
    /// use multiproc::{Event, Process};
    /// fn go(green: Event) { green.set() }
    /// let green = Event::new().unwrap();
    /// let mut light = Process::spawn(go, (green.clone(),)).unwrap();
    /// green.wait();
    /// light.join().unwrap();
    /// ```
    /// Python counterpart: `event.wait()`.
    pub fn wait(&self) {
        self.wait_deadline(None);
    }

    /// Waits until the flag is set, without blocking the thread: for async code, on any
    /// executor (see [`asyncio`](crate::asyncio)). As [`wait`](Self::wait), a set that is
    /// cleared again before the task runs still ends the wait.
    ///
    /// ```
    /// use multiproc::{Event, Process};
    /// fn go(green: Event) { green.set() }
    /// let green = Event::new().unwrap();
    /// let mut light = Process::spawn(go, (green.clone(),)).unwrap();
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// rt.block_on(green.wait_async());
    /// assert!(green.is_set());
    /// light.join().unwrap();
    /// ```
    /// Python counterpart: none (`event.wait()` blocks).
    pub async fn wait_async(&self) {
        let start = self.state.flag.load(Ordering::SeqCst);
        let happened = move |word: u32| word & SET != 0 || (word >> 1) != (start >> 1);
        crate::asyncio::retry(|| {
            if happened(self.state.flag.load(Ordering::SeqCst)) {
                return Step::Done(());
            }
            let (sleeper, waker) = (self.state.clone(), self.state.clone());
            Step::Wait(Watch::start(
                move |stop| {
                    sleep_until(&sleeper, happened, None, stop.flag(), Duration::from_millis(100));
                },
                move || {
                    sys::futex::wake(&waker.flag, u32::MAX);
                },
            ))
        })
        .await
    }

    /// Waits up to `timeout` for the flag; whether it is set.
    ///
    /// ```
    /// let event = multiproc::Event::new().unwrap();
    /// assert!(!event.wait_timeout(std::time::Duration::from_millis(10)));
    /// ```
    /// Python counterpart: `event.wait(timeout)`.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_deadline(deadline_after(timeout))
    }

    /// Waits until `deadline` (`None`: forever) for the flag; whether it is set.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let event = multiproc::Event::new().unwrap();
    /// event.set();
    /// assert!(event.wait_deadline(Some(Instant::now() + Duration::from_secs(1))));
    /// ```
    /// Python counterpart: `event.wait(timeout=deadline - time.monotonic())`.
    pub fn wait_deadline(&self, deadline: Option<Instant>) -> bool {
        let state = &*self.state;
        let start = state.flag.load(Ordering::SeqCst);
        // Set now, or set at any moment since we started waiting (a new generation), even if
        // it has been cleared again since: Python's Event wakes every waiter of a set.
        let happened = |word: u32| word & SET != 0 || (word >> 1) != (start >> 1);
        if happened(start) || raw::spin(raw::spin_budget(deadline), || happened(state.flag.load(Ordering::SeqCst))) {
            return true;
        }
        sleep_until(state, happened, deadline, &AtomicBool::new(false), Duration::from_secs(3600))
    }
}

/// Sleeps on the flag (counted among its sleepers) until `happened` holds of it — then true —
/// or until `stop` is set or `deadline` passes — then false. `slice` bounds each sleep, for a
/// `stop` set between the look and the sleep (an event's word cannot be bumped to wake one
/// sleeper without waking the others falsely).
fn sleep_until(
    state: &EventState,
    happened: impl Fn(u32) -> bool,
    deadline: Option<Instant>,
    stop: &AtomicBool,
    slice: Duration,
) -> bool {
    loop {
        state.sleepers.fetch_add(1, Ordering::SeqCst);
        let word = state.flag.load(Ordering::SeqCst);
        let woke = if happened(word) || stop.load(Ordering::SeqCst) {
            sys::futex::Wake::Maybe
        } else {
            sys::futex::wait_until(&state.flag, word, deadline, slice)
        };
        state.sleepers.fetch_sub(1, Ordering::SeqCst);
        if happened(state.flag.load(Ordering::SeqCst)) {
            return true;
        }
        if stop.load(Ordering::SeqCst) || woke == sys::futex::Wake::TimedOut {
            return false;
        }
    }
}
