//! Futexes on shared memory: sleep until a 32-bit word changes, and wake its sleepers.
//!
//! Every call here leaves out `FUTEX_PRIVATE_FLAG`. std and parking_lot set it because their
//! words live in one process; ours live in `MAP_SHARED` segments that several processes map at
//! different addresses, and only shared futexes are keyed by the underlying page, not the address.

use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

use rustix::thread::futex;

/// Why [`wait`] returned. Callers re-check their word in every case; wake-ups may be spurious.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Woken, interrupted, or the word no longer held the expected value.
    Maybe,
    /// The timeout passed.
    TimedOut,
}

/// Sleeps while `*word == expected`, for at most `timeout` (`None`: no limit).
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Wake {
    let spec = timeout.map(|t| futex::Timespec { tv_sec: t.as_secs() as i64, tv_nsec: i64::from(t.subsec_nanos()) });
    match futex::wait(word, futex::Flags::empty(), expected, spec.as_ref()) {
        Err(rustix::io::Errno::TIMEDOUT) => Wake::TimedOut,
        _ => Wake::Maybe,
    }
}

/// Sleeps while `*word == expected`, until `deadline` at the latest; `slice` bounds one sleep so
/// that the caller gets control back now and then (to check whether a holder died).
pub(crate) fn wait_until(word: &AtomicU32, expected: u32, deadline: Option<Instant>, slice: Duration) -> Wake {
    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    match left {
        Some(left) if left.is_zero() => Wake::TimedOut,
        Some(left) if left <= slice => wait(word, expected, Some(left)),
        _ => match wait(word, expected, Some(slice)) {
            // The slice ended, not the caller's deadline.
            Wake::TimedOut => Wake::Maybe,
            Wake::Maybe => Wake::Maybe,
        },
    }
}

/// Wakes up to `count` sleepers on `word` (`u32::MAX`: all of them); returns how many were woken.
pub(crate) fn wake(word: &AtomicU32, count: u32) -> usize {
    // The kernel reads the count as a signed int, and a negative one wakes a single sleeper.
    let count = count.min(i32::MAX as u32);
    futex::wake(word, futex::Flags::empty(), count).unwrap_or(0)
}
