//! Locks, semaphores and events: uncontended costs, two processes contending, and ping-pong.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use multiproc::{Barrier, Context, Event, Fd, Lock, Semaphore, StartMethod};

use super::{BoxError, Scenario, Target, per_op};

const FUTEX_MUTEX: &str = "baseline: futex mutex lock+unlock";
const FUTEX_PINGPONG: &str = "baseline: futex ping-pong (blocking)";
const LOCK_UNCONTENDED: &str = "lock acquire+release (uncontended)";

/// The sync rows.
pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario::new(FUTEX_MUTEX, 5_000_000, |n| {
            let mutex = std::sync::Mutex::new(());
            per_op(n, || {
                drop(std::hint::black_box(mutex.lock().unwrap()));
                Ok(())
            })
        }),
        Scenario::new(FUTEX_PINGPONG, 3_000, futex_pingpong),
        Scenario::new(LOCK_UNCONTENDED, 5_000_000, |n| {
            let lock = Lock::new()?;
            per_op(n, || {
                drop(std::hint::black_box(lock.acquire().map_err(|e| e.to_string())?));
                Ok(())
            })
        })
        .python("lock_uncontended", 1_000_000)
        .target(Target::FasterThanCpython(10.0))
        .target(Target::AtMostTimes(1.3, FUTEX_MUTEX.into())),
        Scenario::new("semaphore acquire+release (uncontended)", 5_000_000, |n| {
            let sem = Semaphore::new(1)?;
            per_op(n, || {
                sem.acquire();
                sem.release()?;
                Ok(())
            })
        })
        .python("semaphore_uncontended", 1_000_000)
        .target(Target::FasterThanCpython(10.0))
        .target(Target::AtMostTimes(1.3, FUTEX_MUTEX.into())),
        Scenario::new("lock contended: 2 processes incrementing a counter", 400_000, lock_contended)
            .python("lock_contended", 100_000)
            .target(Target::FasterThanCpython(10.0)),
        Scenario::new("event ping-pong round trip (2 processes)", 20_000, event_pingpong)
            .python("event_pingpong", 2_000)
            .target(Target::FasterThanCpython(5.0))
            .target(Target::AtMostTimes(1.0, FUTEX_PINGPONG.into())),
    ]
}

/// A `u64` in a shared memfd mapping, for the contended counter.
struct SharedU64 {
    fd: Fd,
    ptr: *mut u64,
}

impl SharedU64 {
    fn new() -> Result<SharedU64, BoxError> {
        // SAFETY: memfd_create with a NUL-terminated name; the result is checked.
        let raw = unsafe { libc::memfd_create(c"bench-counter".as_ptr(), libc::MFD_CLOEXEC) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd: std::os::fd::OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(raw) };
        // SAFETY: ftruncate on the descriptor we own.
        if unsafe { libc::ftruncate(raw, 4096) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        SharedU64::map(Fd::from(fd))
    }

    fn map(fd: Fd) -> Result<SharedU64, BoxError> {
        use std::os::fd::AsRawFd;
        // SAFETY: a fresh shared mapping of the first page of a memfd that is at least a page long.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(SharedU64 { fd, ptr: ptr.cast() })
    }

    fn share(&self) -> Result<Fd, BoxError> {
        use std::os::fd::AsFd;
        Ok(Fd::from(self.fd.as_fd().try_clone_to_owned()?))
    }

    /// A plain increment: only a lock makes it safe.
    fn bump(&self) {
        // SAFETY: the mapping is valid and aligned for the life of `self`; callers hold a lock.
        unsafe { self.ptr.write_volatile(self.ptr.read_volatile() + 1) }
    }

    fn get(&self) -> u64 {
        // SAFETY: as above.
        unsafe { self.ptr.read_volatile() }
    }

    fn word(&self, index: usize) -> &AtomicU32 {
        // SAFETY: the page is 4096 bytes; words 2.. are past the u64 and 4-byte aligned, and are
        // only ever used atomically.
        unsafe { &*self.ptr.cast::<AtomicU32>().add(2 + index) }
    }
}

fn count_under_lock(lock: Lock, start: Barrier, counter: Fd, rounds: u64) {
    let counter = SharedU64::map(counter).expect("map the counter");
    start.wait().expect("start barrier");
    for _ in 0..rounds {
        let _guard = lock.acquire().expect("lock");
        counter.bump();
    }
}

/// Two processes take turns on one lock, `n` increments in all; checks the count is exact.
fn lock_contended(n: u64) -> Result<f64, BoxError> {
    let lock = Lock::new()?;
    let start = Barrier::new(3)?;
    let counter = SharedU64::new()?;
    let ctx = Context::new(StartMethod::Fork);
    let half = n / 2;
    let mut workers = Vec::new();
    for _ in 0..2 {
        workers.push(ctx.spawn(count_under_lock, (lock.clone(), start.clone(), counter.share()?, half))?);
    }
    start.wait()?;
    let began = Instant::now();
    for worker in &mut workers {
        worker.join()?;
    }
    let elapsed = began.elapsed();
    if counter.get() != 2 * half {
        return Err(format!("count {} instead of {}", counter.get(), 2 * half).into());
    }
    Ok(elapsed.as_secs_f64() / (2 * half) as f64)
}

fn pong(ping: Event, pong: Event, rounds: u64) {
    for _ in 0..rounds {
        ping.wait();
        ping.clear();
        pong.set();
    }
}

/// `n` round trips: set the other side's event, wait for ours.
fn event_pingpong(n: u64) -> Result<f64, BoxError> {
    let (ping, back) = (Event::new()?, Event::new()?);
    let mut other = Context::new(StartMethod::Fork).spawn(pong, (ping.clone(), back.clone(), n + 1))?;
    // One untimed round trip, so the other side is up and running.
    ping.set();
    back.wait();
    back.clear();
    let began = Instant::now();
    for _ in 0..n {
        ping.set();
        back.wait();
        back.clear();
    }
    let elapsed = began.elapsed();
    other.join()?;
    Ok(elapsed.as_secs_f64() / n as f64)
}

pub(super) fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: FUTEX_WAIT (shared: the word is in a MAP_SHARED page) on a valid aligned word with
    // no timeout; it only reads the word.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT, expected, 0usize, 0usize, 0u32) };
}

pub(super) fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE of one sleeper on a valid aligned word.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1, 0usize, 0usize, 0u32) };
}

/// The raw bound: two processes hand a turn back and forth through two futex words, always
/// sleeping (no spin), so every hand-off is a blocking wake-up.
fn futex_pingpong(n: u64) -> Result<f64, BoxError> {
    let shared = SharedU64::new()?;
    let rounds = n + 1;
    // SAFETY: the child only touches the shared mapping and the futex syscall, then `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let (ping, pong) = (shared.word(0), shared.word(1));
        for round in 1..=rounds as u32 {
            while ping.load(Ordering::Acquire) != round {
                futex_wait(ping, round - 1);
            }
            pong.store(round, Ordering::Release);
            futex_wake(pong);
        }
        // SAFETY: ends the child at once.
        unsafe { libc::_exit(0) };
    }
    let (ping, pong) = (shared.word(0), shared.word(1));
    let mut began = Instant::now();
    for round in 1..=rounds as u32 {
        if round == 2 {
            began = Instant::now();
        }
        ping.store(round, Ordering::Release);
        futex_wake(ping);
        while pong.load(Ordering::Acquire) != round {
            futex_wait(pong, round - 1);
        }
    }
    let elapsed = began.elapsed();
    let mut status = 0;
    // SAFETY: reaps the child we forked.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    Ok(elapsed.as_secs_f64() / n as f64)
}
