//! Event, Condition and Barrier across processes, and every primitive passed to children under
//! each start method.

mod common;

use std::time::{Duration, Instant};

use common::watchdog;
use multiproc::{
    Barrier, BoundedSemaphore, BrokenBarrier, Condition, Context, ErrorKind, Event, Lock, NotOwner, Process, RLock,
    Semaphore, StartMethod, WaitError,
};

per_method!(every_primitive_works_in_a_child);

fn use_everything(
    lock: Lock,
    rlock: RLock,
    sem: Semaphore,
    bounded: BoundedSemaphore,
    event: Event,
    cond: Condition,
    barrier: Barrier,
) -> Vec<String> {
    let mut seen = Vec::new();
    drop(lock.acquire().unwrap());
    seen.push("lock".to_string());
    {
        let _a = rlock.acquire().unwrap();
        let _b = rlock.acquire().unwrap();
        seen.push("rlock".to_string());
    }
    sem.acquire();
    seen.push(format!("semaphore {}", sem.value()));
    bounded.release().unwrap();
    seen.push(format!("bounded {}", bounded.value()));
    event.set();
    {
        let _g = cond.acquire().unwrap();
        cond.notify_all().unwrap();
        seen.push("condition".to_string());
    }
    seen.push(format!("barrier {}", barrier.wait_timeout(Duration::from_secs(20)).is_ok()));
    seen
}

fn every_primitive_works_in_a_child(method: StartMethod) {
    let _w = watchdog(60);
    let lock = Lock::new().unwrap();
    let rlock = RLock::new().unwrap();
    let sem = Semaphore::new(2).unwrap();
    let bounded = BoundedSemaphore::new(1).unwrap();
    bounded.acquire();
    let event = Event::new().unwrap();
    let cond = Condition::new().unwrap();
    let barrier = Barrier::new(2).unwrap();
    let args =
        (lock.clone(), rlock.clone(), sem.clone(), bounded.clone(), event.clone(), cond.clone(), barrier.clone());
    let mut child = Context::new(method).spawn(use_everything, args).unwrap();
    assert!(barrier.wait_timeout(Duration::from_secs(20)).is_ok());
    let seen = child.join().unwrap();
    assert_eq!(seen, ["lock", "rlock", "semaphore 1", "bounded 1", "condition", "barrier true"]);
    // The parent sees what the child did: they share one primitive, not copies.
    assert_eq!(sem.value(), 1);
    assert_eq!(bounded.value(), 1);
    assert!(event.is_set());
    assert!(!lock.locked() && !rlock.locked());
}

fn wait_for_event(event: Event, ms: u64) -> bool {
    event.wait_timeout(Duration::from_millis(ms))
}

#[test]
fn event_semantics() {
    let _w = watchdog(60);
    let event = Event::new().unwrap();
    assert!(!event.is_set());
    let mut waiters: Vec<_> =
        (0..3).map(|_| Process::spawn(wait_for_event, (event.clone(), 20_000)).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    event.set();
    assert!(event.is_set());
    for w in &mut waiters {
        assert!(w.join().unwrap(), "a waiter missed set()");
    }
    event.clear();
    assert!(!event.is_set());
    assert!(!Process::spawn(wait_for_event, (event.clone(), 100)).unwrap().join().unwrap());
    event.set();
    event.wait(); // returns at once when set
}

#[test]
fn a_set_followed_at_once_by_a_clear_still_wakes_every_waiter() {
    let _w = watchdog(60);
    let event = Event::new().unwrap();
    let mut waiters: Vec<_> =
        (0..3).map(|_| Process::spawn(wait_for_event, (event.clone(), 30_000)).unwrap()).collect();
    // The waiters must be asleep before the pulse; a generous pause (no upper bound is asserted:
    // a waiter that was not yet waiting would return false after 30 s and fail the test loudly).
    std::thread::sleep(Duration::from_millis(500));
    event.set();
    event.clear();
    for w in &mut waiters {
        assert!(w.join().unwrap(), "a waiter missed a set that was cleared at once");
    }
    assert!(!event.is_set());
}

/// Waits on the condition after announcing it is about to (under the lock, so the announcement
/// means "registered" by the time anyone else can take the lock).
fn cond_waiter(cond: Condition, ready: Semaphore, woken: Semaphore) -> bool {
    let _g = cond.acquire().unwrap();
    ready.release().unwrap();
    let notified = cond.wait_timeout(Duration::from_secs(20)).unwrap();
    if notified {
        woken.release().unwrap();
    }
    notified
}

#[test]
fn a_waiter_that_dies_does_not_swallow_a_notification() {
    let _w = watchdog(60);
    let cond = Condition::new().unwrap();
    let ready = Semaphore::new(0).unwrap();
    let woken = Semaphore::new(0).unwrap();
    let mut doomed = Process::spawn(cond_waiter, (cond.clone(), ready.clone(), woken.clone())).unwrap();
    let mut live = Process::spawn(cond_waiter, (cond.clone(), ready.clone(), woken.clone())).unwrap();
    for _ in 0..2 {
        assert!(ready.acquire_timeout(Duration::from_secs(20)));
    }
    // Both have announced themselves under the lock; taking the lock means both are waiting.
    drop(cond.acquire().unwrap());
    doomed.kill().unwrap();
    let _ = doomed.join();
    {
        let _g = cond.acquire().unwrap();
        cond.notify(1).unwrap();
    }
    assert!(live.join().unwrap(), "the live waiter was not woken by notify(1)");
}

#[test]
fn condition_notify_one_wakes_exactly_one_process() {
    let _w = watchdog(60);
    let cond = Condition::new().unwrap();
    let ready = Semaphore::new(0).unwrap();
    let woken = Semaphore::new(0).unwrap();
    let mut waiters: Vec<_> =
        (0..3).map(|_| Process::spawn(cond_waiter, (cond.clone(), ready.clone(), woken.clone())).unwrap()).collect();
    for _ in 0..3 {
        assert!(ready.acquire_timeout(Duration::from_secs(20)));
    }
    {
        let _g = cond.acquire().unwrap();
        cond.notify(1).unwrap();
    }
    assert!(woken.acquire_timeout(Duration::from_secs(20)));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(woken.value(), 0, "notify(1) woke more than one waiter");
    {
        let _g = cond.acquire().unwrap();
        cond.notify_all().unwrap();
    }
    let notified = waiters.iter_mut().map(|w| w.join().unwrap()).filter(|&n| n).count();
    assert_eq!(notified, 3);
}

#[test]
fn condition_requires_the_lock_and_times_out() {
    let _w = watchdog(60);
    let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
    assert_eq!(cond.notify(1), Err(NotOwner));
    assert_eq!(cond.notify_all(), Err(NotOwner));
    assert_eq!(cond.wait_timeout(Duration::from_millis(10)), Err(WaitError::NotOwner));
    let _g = cond.acquire().unwrap();
    let timeout = Duration::from_millis(150);
    let started = Instant::now();
    assert_eq!(cond.wait_timeout(timeout), Ok(false));
    assert!(started.elapsed() >= timeout);
    // The lock is held again after the wait.
    assert!(cond.notify(1).is_ok());
    let started = Instant::now();
    assert_eq!(cond.wait_for(|| false, Some(timeout)), Ok(false));
    assert!(started.elapsed() >= timeout);
    assert_eq!(cond.wait_while(|| false, Some(timeout)), Ok(true));
    // Another thread does not hold it.
    let other = cond.clone();
    std::thread::spawn(move || assert_eq!(other.notify(1), Err(NotOwner))).join().unwrap();
}

#[test]
fn condition_over_an_rlock_restores_its_depth() {
    let _w = watchdog(60);
    let rlock = RLock::new().unwrap();
    let cond = Condition::with_lock(rlock.clone()).unwrap();
    let _a = cond.acquire().unwrap();
    let _b = cond.acquire().unwrap();
    assert_eq!(cond.wait_timeout(Duration::from_millis(20)), Ok(false));
    drop(_b);
    assert!(rlock.is_owned(), "the wait must give back both levels");
    drop(_a);
    assert!(!rlock.locked());
}

fn barrier_action() {
    use std::io::Write;
    let root = multiproc::parent_process().map_or(std::process::id(), |p| p.pid());
    let path = std::env::temp_dir().join(format!("multiproc-barrier-{root}"));
    std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap().write_all(b"x").unwrap();
}

const GENERATIONS: usize = 200;

fn barrier_party(barrier: Barrier) -> Vec<u32> {
    (0..GENERATIONS).map(|_| barrier.wait_timeout(Duration::from_secs(20)).unwrap()).collect()
}

#[test]
fn barrier_with_four_processes_over_many_generations() {
    let _w = watchdog(120);
    let path = std::env::temp_dir().join(format!("multiproc-barrier-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let barrier = Barrier::with(4, Some(barrier_action), None).unwrap();
    assert_eq!(barrier.parties(), 4);
    let mut parties: Vec<_> = (0..4).map(|_| Process::spawn(barrier_party, (barrier.clone(),)).unwrap()).collect();
    let indexes: Vec<Vec<u32>> = parties.iter_mut().map(|p| p.join().unwrap()).collect();
    for generation in 0..GENERATIONS {
        let mut seen: Vec<u32> = indexes.iter().map(|party| party[generation]).collect();
        seen.sort();
        assert_eq!(seen, [0, 1, 2, 3], "generation {generation}");
    }
    let ran = std::fs::read(&path).unwrap().len();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(ran, GENERATIONS, "the action must run once per generation");
}

fn wait_once(barrier: Barrier, timeout_ms: u64) -> Result<u32, BrokenBarrier> {
    barrier.wait_timeout(Duration::from_millis(timeout_ms))
}

#[test]
fn barrier_breaks_on_timeout_abort_and_reset() {
    let _w = watchdog(60);
    assert_eq!(Barrier::new(0).unwrap_err().kind(), ErrorKind::InvalidInput);

    // A party that never arrives (it died): the others break the barrier with their timeout.
    let barrier = Barrier::new(3).unwrap();
    let mut dead = Process::spawn(|| -> u8 { std::process::abort() }, ()).unwrap();
    let _ = dead.join();
    let mut other = Process::spawn(wait_once, (barrier.clone(), 20_000)).unwrap();
    let timeout = Duration::from_millis(200);
    let started = Instant::now();
    assert_eq!(barrier.wait_timeout(timeout), Err(BrokenBarrier));
    assert!(started.elapsed() >= timeout);
    assert_eq!(other.join().unwrap(), Err(BrokenBarrier), "a waiter was left waiting on a broken barrier");
    assert!(barrier.broken());
    assert_eq!(barrier.wait_timeout(Duration::from_secs(5)), Err(BrokenBarrier), "broken until reset");

    barrier.reset();
    assert!(!barrier.broken());
    let mut a = Process::spawn(wait_once, (barrier.clone(), 20_000)).unwrap();
    let mut b = Process::spawn(wait_once, (barrier.clone(), 20_000)).unwrap();
    let mine = barrier.wait_timeout(Duration::from_secs(20)).unwrap();
    let mut all = vec![mine, a.join().unwrap().unwrap(), b.join().unwrap().unwrap()];
    all.sort();
    assert_eq!(all, [0, 1, 2]);

    // abort wakes the waiters with BrokenBarrier.
    let mut waiting = Process::spawn(wait_once, (barrier.clone(), 20_000)).unwrap();
    while barrier.n_waiting() == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    barrier.abort();
    assert_eq!(waiting.join().unwrap(), Err(BrokenBarrier));
    // reset with a waiter: it is released with BrokenBarrier, the barrier is usable again.
    barrier.reset();
    let mut waiting = Process::spawn(wait_once, (barrier.clone(), 20_000)).unwrap();
    while barrier.n_waiting() == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    barrier.reset();
    assert_eq!(waiting.join().unwrap(), Err(BrokenBarrier));
    assert!(!barrier.broken());
}

fn panicking_action() {
    panic!("the action failed");
}

#[test]
fn barrier_action_panic_breaks_the_barrier() {
    let _w = watchdog(60);
    let barrier = Barrier::with(2, Some(panicking_action), Some(Duration::from_secs(20))).unwrap();
    let mut other = Process::spawn(|b: Barrier| b.wait(), (barrier.clone(),)).unwrap();
    let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| barrier.wait()));
    let theirs = other.join();
    // Whoever arrived last ran the action and panicked; the other got BrokenBarrier.
    match (mine, theirs) {
        (Err(_), Ok(Err(BrokenBarrier))) => {}
        (Ok(Err(BrokenBarrier)), Err(multiproc::JoinError::Panicked { message, .. })) => {
            assert_eq!(message, "the action failed")
        }
        other => panic!("unexpected outcome {other:?}"),
    }
    assert!(barrier.broken());
}

fn die_in_action() {
    std::process::abort();
}

fn wait_forever(barrier: Barrier) -> Result<u32, BrokenBarrier> {
    barrier.wait()
}

#[test]
fn a_party_killed_while_running_the_action_breaks_the_barrier() {
    let _w = watchdog(60);
    let barrier = Barrier::with(3, Some(die_in_action), None).unwrap();
    let mut waiters: Vec<_> = (0..2).map(|_| Process::spawn(wait_forever, (barrier.clone(),)).unwrap()).collect();
    while barrier.n_waiting() < 2 {
        std::thread::sleep(Duration::from_millis(5));
    }
    // The last to arrive runs the action, which kills it while it holds the barrier's lock.
    let mut last = Process::spawn(wait_forever, (barrier.clone(),)).unwrap();
    assert!(last.join().is_err(), "the action's process died");
    for w in &mut waiters {
        assert_eq!(w.join().unwrap(), Err(BrokenBarrier), "waiters without a timeout learn the barrier broke");
    }
}
