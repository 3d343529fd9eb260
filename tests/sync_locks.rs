//! Lock, RLock and the semaphores across processes: exclusion, timeouts, Python's semantics,
//! and a holder that dies.

mod common;

use std::time::{Duration, Instant};

use common::{Counter, watchdog};
use multiproc::{
    AcquireTimeoutError, BoundedSemaphore, Context, Event, Fd, JoinError, Lock, Process, RLock, ReleaseError,
    Semaphore, StartMethod, TryAcquireError,
};

const WORKERS: usize = 4;
const ROUNDS: u64 = 3000;

fn bump_under_lock(lock: Lock, counter: Fd) {
    let counter = Counter::map(counter);
    for _ in 0..ROUNDS {
        let _guard = lock.acquire().unwrap();
        counter.bump();
    }
}

fn bump_under_rlock(lock: RLock, counter: Fd) {
    let counter = Counter::map(counter);
    for _ in 0..ROUNDS {
        let _outer = lock.acquire().unwrap();
        let _inner = lock.acquire().unwrap();
        counter.bump();
    }
}

fn bump_under_semaphore(sem: Semaphore, counter: Fd) {
    let counter = Counter::map(counter);
    for _ in 0..ROUNDS {
        sem.acquire();
        counter.bump();
        sem.release().unwrap();
    }
}

fn bump_with_python_style(lock: Lock, counter: Fd) {
    let counter = Counter::map(counter);
    for _ in 0..ROUNDS {
        assert!(lock.acquire_with(true, None).unwrap());
        counter.bump();
        lock.release().unwrap();
    }
}

fn run_workers<F, A>(task: F, arg: A) -> u64
where
    F: multiproc::Task<(A, Fd), Output = ()>,
    A: Clone + serde::Serialize + serde::de::DeserializeOwned,
{
    let counter = Counter::new();
    let ctx = Context::new(StartMethod::Fork);
    let mut workers: Vec<Process> =
        (0..WORKERS).map(|_| ctx.spawn(task, (arg.clone(), counter.share())).unwrap()).collect();
    for worker in &mut workers {
        worker.join().unwrap();
    }
    counter.get()
}

#[test]
fn every_lock_kind_keeps_increments_exact() {
    let _w = watchdog(120);
    let expected = WORKERS as u64 * ROUNDS;
    assert_eq!(run_workers(bump_under_lock, Lock::new().unwrap()), expected, "Lock");
    assert_eq!(run_workers(bump_under_rlock, RLock::new().unwrap()), expected, "RLock");
    assert_eq!(run_workers(bump_under_semaphore, Semaphore::new(1).unwrap()), expected, "Semaphore(1)");
    assert_eq!(run_workers(bump_with_python_style, Lock::new().unwrap()), expected, "Lock acquire/release");
}

fn hold_for(lock: Lock, held: Event, ms: u64) {
    let _guard = lock.acquire().unwrap();
    held.set();
    std::thread::sleep(Duration::from_millis(ms));
}

fn hold_rlock_for(lock: RLock, held: Event, ms: u64) {
    let _guard = lock.acquire().unwrap();
    held.set();
    std::thread::sleep(Duration::from_millis(ms));
}

#[test]
fn timeouts_return_at_or_after_the_deadline() {
    // Holders hold until they are stopped, so that the checks below never race their end.
    let _w = watchdog(60);
    let timeout = Duration::from_millis(150);
    let lock = Lock::new().unwrap();
    let held = Event::new().unwrap();
    let mut holder = Process::spawn(hold_for, (lock.clone(), held.clone(), 600_000)).unwrap();
    assert!(held.wait_timeout(Duration::from_secs(20)));

    let started = Instant::now();
    assert!(matches!(lock.acquire_timeout(timeout), Err(AcquireTimeoutError::Timeout)));
    assert!(started.elapsed() >= timeout);
    let started = Instant::now();
    assert!(!lock.acquire_with(true, Some(timeout)).unwrap());
    assert!(started.elapsed() >= timeout);
    assert!(!lock.acquire_with(false, None).unwrap());
    assert!(matches!(lock.try_acquire(), Err(TryAcquireError::WouldBlock)));
    holder.kill().unwrap();
    let _ = holder.join();

    let rlock = RLock::new().unwrap();
    let held = Event::new().unwrap();
    let mut holder = Process::spawn(hold_rlock_for, (rlock.clone(), held.clone(), 600_000)).unwrap();
    assert!(held.wait_timeout(Duration::from_secs(20)));
    let started = Instant::now();
    assert!(matches!(rlock.acquire_timeout(timeout), Err(AcquireTimeoutError::Timeout)));
    assert!(started.elapsed() >= timeout);
    holder.terminate().unwrap();
    let _ = holder.join();

    let sem = Semaphore::new(0).unwrap();
    let started = Instant::now();
    assert!(!sem.acquire_timeout(timeout));
    assert!(started.elapsed() >= timeout);

    let bounded = BoundedSemaphore::new(1).unwrap();
    bounded.acquire();
    let started = Instant::now();
    assert!(!bounded.acquire_timeout(timeout));
    assert!(started.elapsed() >= timeout);

    let event = Event::new().unwrap();
    let started = Instant::now();
    assert!(!event.wait_timeout(timeout));
    assert!(started.elapsed() >= timeout);

    // A zero timeout is one attempt, as Python treats a negative one.
    assert!(!sem.acquire_timeout(Duration::ZERO));
}

#[test]
fn python_semantics_of_lock_and_rlock() {
    let lock = Lock::new().unwrap();
    assert!(!lock.locked());
    assert_eq!(lock.release(), Err(ReleaseError::NotLocked));
    assert_eq!(ReleaseError::NotLocked.to_string(), "release unlocked lock");
    let guard = lock.acquire().unwrap();
    assert!(lock.locked());
    drop(guard);
    // Any thread may release a Lock, as in Python.
    assert!(lock.acquire_with(true, None).unwrap());
    let other = lock.clone();
    std::thread::spawn(move || other.release().unwrap()).join().unwrap();
    assert!(!lock.locked());

    let rlock = RLock::new().unwrap();
    assert_eq!(rlock.release(), Err(ReleaseError::NotOwner));
    assert!(rlock.acquire_with(true, None).unwrap());
    assert!(rlock.acquire_with(false, None).unwrap());
    assert!(rlock.is_owned());
    // Another thread is not the owner: it can neither release nor take it.
    let other = rlock.clone();
    std::thread::spawn(move || {
        assert_eq!(other.release(), Err(ReleaseError::NotOwner));
        assert!(matches!(other.try_acquire(), Err(TryAcquireError::WouldBlock)));
        assert!(!other.is_owned());
    })
    .join()
    .unwrap();
    rlock.release().unwrap();
    assert!(rlock.locked());
    rlock.release().unwrap();
    assert!(!rlock.locked());
    assert_eq!(rlock.release(), Err(ReleaseError::NotOwner));
}

fn release_from_child(lock: RLock) -> bool {
    lock.release().is_err()
}

#[test]
fn rlock_release_by_another_process_is_an_error() {
    let _w = watchdog(60);
    let rlock = RLock::new().unwrap();
    let _guard = rlock.acquire().unwrap();
    assert!(Process::spawn(release_from_child, (rlock.clone(),)).unwrap().join().unwrap());
    assert!(rlock.is_owned());
}

#[test]
fn python_semantics_of_semaphores() {
    let sem = Semaphore::new(3).unwrap();
    assert_eq!(sem.value(), 3);
    assert!(sem.try_acquire());
    assert_eq!(sem.value(), 2);
    sem.release().unwrap();
    sem.release().unwrap(); // an unbounded semaphore may grow
    assert_eq!(sem.value(), 4);

    let bounded = BoundedSemaphore::new(2).unwrap();
    let err = bounded.release().unwrap_err();
    assert_eq!(err.to_string(), "semaphore or lock released too many times");
    assert_eq!(bounded.value(), 2, "a refused release changes nothing");
    assert!(bounded.try_acquire());
    bounded.release().unwrap();
    assert!(bounded.release().is_err());
    let empty = Semaphore::new(0).unwrap();
    assert!(!empty.try_acquire());
}

fn take_and_die(lock: Lock, held: Event) {
    let _guard = lock.acquire().unwrap();
    held.set();
    std::thread::sleep(Duration::from_secs(60));
}

fn take_rlock_and_die(lock: RLock, held: Event) {
    let _a = lock.acquire().unwrap();
    let _b = lock.acquire().unwrap();
    held.set();
    std::thread::sleep(Duration::from_secs(60));
}

fn acquire_in_child(lock: Lock) -> bool {
    lock.acquire_timeout(Duration::from_secs(20)).is_ok()
}

#[test]
fn lock_whose_holder_is_killed_reports_owner_died_and_stays_usable() {
    let _w = watchdog(60);
    for method in StartMethod::ALL {
        let lock = Lock::new().unwrap();
        let held = Event::new().unwrap();
        let mut holder = Context::new(method).spawn(take_and_die, (lock.clone(), held.clone())).unwrap();
        assert!(held.wait_timeout(Duration::from_secs(20)));
        holder.kill().unwrap();
        assert!(matches!(holder.join(), Err(JoinError::Exited(_))));
        match lock.acquire() {
            Err(died) => {
                assert_eq!(died.pid(), holder.pid(), "{method}");
                assert!(died.to_string().contains("died while holding the lock"));
                drop(died.into_guard());
            }
            Ok(_) => panic!("{method}: the lock's dead holder went unnoticed"),
        }
        assert!(!lock.locked());
        // Usable afterwards, in this process and another.
        drop(lock.acquire().unwrap());
        assert!(Process::spawn(acquire_in_child, (lock.clone(),)).unwrap().join().unwrap());
    }
}

#[test]
fn lock_with_a_dead_holder_is_taken_over_by_a_waiter_already_asleep() {
    let _w = watchdog(60);
    let lock = Lock::new().unwrap();
    let held = Event::new().unwrap();
    let holder = Process::spawn(take_and_die, (lock.clone(), held.clone())).unwrap();
    assert!(held.wait_timeout(Duration::from_secs(20)));
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        holder.kill().unwrap();
        holder
    });
    // Asleep on the lock when the holder dies; must not sleep forever.
    let outcome = lock.acquire_timeout(Duration::from_secs(30));
    let mut holder = killer.join().unwrap();
    let _ = holder.join();
    assert!(matches!(outcome, Err(AcquireTimeoutError::OwnerDied(_))), "{outcome:?}");
}

#[test]
fn rlock_whose_holder_is_killed_reports_owner_died_and_stays_usable() {
    let _w = watchdog(60);
    let rlock = RLock::new().unwrap();
    let held = Event::new().unwrap();
    let mut holder = Process::spawn(take_rlock_and_die, (rlock.clone(), held.clone())).unwrap();
    assert!(held.wait_timeout(Duration::from_secs(20)));
    holder.kill().unwrap();
    let _ = holder.join();
    let guard = match rlock.try_acquire() {
        Err(TryAcquireError::OwnerDied(died)) => {
            assert_eq!(died.pid(), holder.pid());
            died.into_guard()
        }
        other => panic!("expected owner-died, got {:?}", other.map(|_| ())),
    };
    // One level is ours now, whatever depth the dead holder had reached.
    assert!(rlock.is_owned());
    drop(guard);
    assert!(!rlock.locked());
    drop(rlock.acquire().unwrap());
}

fn hold_until(lock: Lock, held: Event, done: Event) {
    let _guard = lock.acquire().unwrap();
    held.set();
    done.wait();
}

#[test]
fn a_guard_never_releases_a_hold_that_is_not_its_own() {
    let _w = watchdog(60);
    let lock = Lock::new().unwrap();
    let guard = lock.acquire().unwrap();
    lock.release().unwrap(); // Python style, while the guard still lives
    let (held, done) = (Event::new().unwrap(), Event::new().unwrap());
    let mut other = Process::spawn(hold_until, (lock.clone(), held.clone(), done.clone())).unwrap();
    assert!(held.wait_timeout(Duration::from_secs(20)));
    drop(guard); // must leave the other process's hold alone
    assert!(lock.locked(), "dropping a stale guard released another process's lock");
    done.set();
    other.join().unwrap();
    assert!(!lock.locked());
}
