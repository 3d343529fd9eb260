//! What a manager hosts for processes that share nothing else: locks, rlocks, semaphores, events,
//! conditions, barriers, queues and joinable queues — their semantics across processes, their
//! timeouts, and what happens when a holder or a waiter dies.

mod common;

use std::time::{Duration, Instant};

use common::watchdog;
use multiproc::manager::{
    BarrierProxy, ConditionProxy, DictProxy, EventProxy, JoinableQueueProxy, ListProxy, LockProxy, QueueProxy,
    RLockProxy, SemaphoreProxy,
};
use multiproc::queue::{GetError, GetTimeoutError, PutTimeoutError, TryGetError, TryPutError};
use multiproc::{ErrorKind, Manager, Process};

const SHORT: Duration = Duration::from_millis(100);

fn count_under_lock(d: DictProxy<u8, u64>, lock: LockProxy, times: u32) {
    for _ in 0..times {
        let _held = lock.acquire().unwrap();
        let v = d.get(&0).unwrap().unwrap_or(0);
        d.insert(0, v + 1).unwrap();
    }
}

fn hold_then_signal(lock: LockProxy, held: EventProxy, done: EventProxy) {
    let _held = lock.acquire().unwrap();
    held.set().unwrap();
    done.wait().unwrap();
}

#[test]
fn a_hosted_lock_serializes_processes_and_refuses_bad_releases() {
    let _w = watchdog(120);
    let manager = Manager::start().unwrap();
    let (d, lock) = (manager.dict::<u8, u64>().unwrap(), manager.lock().unwrap());
    let mut ps: Vec<_> =
        (0..4).map(|_| Process::spawn(count_under_lock, (d.clone(), lock.clone(), 50)).unwrap()).collect();
    ps.iter_mut().for_each(|p| p.join().unwrap());
    assert_eq!(d.get(&0).unwrap(), Some(200));

    let err = lock.release().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("release unlocked lock"), "{err}");

    // Held by another process: try and timeout fail (not before the timeout), release is refused.
    let (held, done) = (manager.event().unwrap(), manager.event().unwrap());
    let mut holder = Process::spawn(hold_then_signal, (lock.clone(), held.clone(), done.clone())).unwrap();
    held.wait().unwrap();
    assert!(lock.locked().unwrap());
    assert!(lock.try_acquire().unwrap().is_none());
    let began = Instant::now();
    assert!(lock.acquire_timeout(SHORT).unwrap().is_none());
    assert!(began.elapsed() >= SHORT);
    assert!(!lock.acquire_with(false, None).unwrap());
    let err = lock.release().unwrap_err();
    assert!(err.to_string().contains("cannot release un-acquired lock"), "{err}");
    done.set().unwrap();
    holder.join().unwrap();
    let guard = lock.acquire_timeout(Duration::from_secs(20)).unwrap().expect("released by its holder");
    assert!(!guard.owner_died(), "released properly, not abandoned");
    drop(guard);
    assert!(!lock.locked().unwrap());

    // Python's style: acquire with a bool, release by hand.
    assert!(lock.acquire_with(true, Some(SHORT)).unwrap());
    lock.release().unwrap();
}

fn take_and_die(lock: LockProxy, held: EventProxy) {
    std::mem::forget(lock.acquire().unwrap());
    held.set().unwrap();
    std::process::abort();
}

#[test]
fn a_lock_whose_holder_dies_or_whose_thread_ends_is_released_and_says_so() {
    let _w = watchdog(60);
    let manager = Manager::start().unwrap();
    let lock = manager.lock().unwrap();
    let held = manager.event().unwrap();
    let _ = Process::spawn(take_and_die, (lock.clone(), held.clone())).unwrap().join();
    assert!(held.is_set().unwrap());
    let guard = lock.acquire_timeout(Duration::from_secs(20)).unwrap().expect("the dead holder's lock is free");
    assert!(guard.owner_died());
    drop(guard);
    assert!(!lock.acquire().unwrap().owner_died(), "told once");

    // A thread is a holder of its own: when it ends holding the lock, the lock is freed.
    let theirs = lock.clone();
    std::thread::spawn(move || assert!(theirs.acquire_with(true, None).unwrap())).join().unwrap();
    let guard = lock.acquire_timeout(Duration::from_secs(20)).unwrap().expect("freed when its thread ended");
    assert!(guard.owner_died());
}

fn hold_rlock_twice_and_die(lock: RLockProxy) {
    lock.acquire_with(true, None).unwrap();
    lock.acquire_with(true, None).unwrap();
    std::process::abort();
}

#[test]
fn a_hosted_rlock_is_reentrant_and_freed_with_its_holder() {
    let _w = watchdog(60);
    let manager = Manager::start().unwrap();
    let rlock = manager.rlock().unwrap();
    let outer = rlock.acquire().unwrap();
    let inner = rlock.try_acquire().unwrap().expect("the holder takes it again");
    drop(inner);
    assert!(rlock.locked().unwrap(), "one hold is left");
    drop(outer);
    assert!(!rlock.locked().unwrap());
    let _ = Process::spawn(hold_rlock_twice_and_die, (rlock.clone(),)).unwrap().join();
    let guard = rlock.acquire_timeout(Duration::from_secs(20)).unwrap().expect("released with every level");
    assert!(guard.owner_died());
}

fn sing(room: SemaphoreProxy, inside: DictProxy<u8, i64>, seen: ListProxy<i64>) {
    for _ in 0..5 {
        room.acquire().unwrap();
        seen.push(inside.add(&0, 1).unwrap()).unwrap(); // how many are inside, me included
        std::thread::sleep(Duration::from_millis(2));
        inside.add(&0, -1).unwrap();
        room.release().unwrap();
    }
}

#[test]
fn a_hosted_semaphore_admits_at_most_its_value() {
    let _w = watchdog(120);
    let manager = Manager::start().unwrap();
    let room = manager.semaphore(2).unwrap();
    let (inside, seen) = (manager.dict::<u8, i64>().unwrap(), manager.list::<i64>().unwrap());
    let mut guests: Vec<_> =
        (0..5).map(|_| Process::spawn(sing, (room.clone(), inside.clone(), seen.clone())).unwrap()).collect();
    guests.iter_mut().for_each(|g| g.join().unwrap());
    let seen = seen.to_vec().unwrap();
    assert_eq!(seen.len(), 25);
    assert!(seen.iter().all(|&n| (1..=2).contains(&n)), "never more than two inside: {seen:?}");
    assert_eq!(room.value().unwrap(), 2);

    let empty = manager.semaphore(0).unwrap();
    assert!(!empty.try_acquire().unwrap());
    let began = Instant::now();
    assert!(!empty.acquire_timeout(SHORT).unwrap());
    assert!(began.elapsed() >= SHORT);
    empty.release().unwrap();
    assert!(empty.try_acquire().unwrap());

    let bounded = manager.bounded_semaphore(1).unwrap();
    let err = bounded.release().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(bounded.value().unwrap(), 1, "a refused release changes nothing");
    bounded.acquire().unwrap();
    bounded.release().unwrap();
}

fn set_later(e: EventProxy) {
    std::thread::sleep(Duration::from_millis(50));
    e.set().unwrap();
}

#[test]
fn a_hosted_event_wakes_its_waiters() {
    let _w = watchdog(60);
    let manager = Manager::start().unwrap();
    let e = manager.event().unwrap();
    let began = Instant::now();
    assert!(!e.wait_timeout(SHORT).unwrap());
    assert!(began.elapsed() >= SHORT);
    let mut setter = Process::spawn(set_later, (e.clone(),)).unwrap();
    e.wait().unwrap();
    setter.join().unwrap();
    assert!(e.is_set().unwrap());
    e.clear().unwrap();
    assert!(!e.is_set().unwrap());
}

fn cond_wait_once(cond: ConditionProxy, ready: SemaphoreProxy) -> bool {
    let _held = cond.acquire().unwrap();
    ready.release().unwrap(); // announced under the lock: waiting by the time anyone else has it
    // Long enough that the notification (a few process operations away) always lands first;
    // the waiter that is not chosen returns when it passes.
    cond.wait_timeout(Duration::from_secs(5)).unwrap()
}

#[test]
fn a_hosted_condition_notify_one_wakes_one_and_a_dead_waiter_swallows_nothing() {
    let _w = watchdog(90);
    let manager = Manager::start().unwrap();
    let cond = manager.condition().unwrap();
    let ready = manager.semaphore(0).unwrap();
    // The doomed waiter is first in line, so that notify(1) would pick it were it not dropped.
    let mut doomed = Process::spawn(cond_wait_once, (cond.clone(), ready.clone())).unwrap();
    ready.acquire().unwrap();
    drop(cond.acquire().unwrap()); // it is inside its wait now
    let mut live: Vec<_> =
        (0..2).map(|_| Process::spawn(cond_wait_once, (cond.clone(), ready.clone())).unwrap()).collect();
    for _ in 0..2 {
        ready.acquire().unwrap();
    }
    drop(cond.acquire().unwrap()); // every waiter is inside its wait now
    doomed.kill().unwrap();
    let _ = doomed.join();
    {
        let _held = cond.acquire().unwrap();
        cond.notify(1).unwrap();
    }
    // Exactly one live waiter wakes from notify(1); the other times out.
    let woken: usize = live.iter_mut().map(|p| usize::from(p.join().unwrap())).sum();
    assert_eq!(woken, 1);
}

fn flag_under(cond: ConditionProxy, state: DictProxy<u8, bool>) {
    let _held = cond.acquire().unwrap();
    state.insert(0, true).unwrap();
    cond.notify_all().unwrap();
}

#[test]
fn a_hosted_condition_waits_for_a_predicate_and_gives_back_every_rlock_level() {
    let _w = watchdog(60);
    let manager = Manager::start().unwrap();
    let cond = manager.condition().unwrap(); // over an rlock
    let state = manager.dict::<u8, bool>().unwrap();
    assert_eq!(cond.wait().unwrap_err().kind(), ErrorKind::InvalidInput, "waiting needs the lock");
    assert_eq!(cond.notify(1).unwrap_err().kind(), ErrorKind::InvalidInput, "notifying needs the lock");
    let outer = cond.acquire().unwrap();
    let inner = cond.acquire().unwrap();
    let mut p = Process::spawn(flag_under, (cond.clone(), state.clone())).unwrap();
    // Both levels are given up while waiting (or the child could never notify), and come back.
    assert!(cond.wait_for(|| state.get(&0).unwrap() == Some(true), Some(Duration::from_secs(30))).unwrap());
    p.join().unwrap();
    drop(inner);
    drop(outer);
    assert_eq!(cond.release().unwrap_err().kind(), ErrorKind::InvalidInput, "both levels were back and are gone");

    let _held = cond.acquire().unwrap();
    let began = Instant::now();
    assert!(!cond.wait_for(|| false, Some(SHORT)).unwrap());
    assert!(began.elapsed() >= SHORT);

    // Over a plain lock of one's own choosing.
    let lock = manager.lock().unwrap();
    let plain = manager.condition_with(&lock).unwrap();
    let _g = plain.acquire().unwrap();
    assert!(lock.locked().unwrap());
    assert!(!plain.wait_timeout(Duration::from_millis(10)).unwrap());
    assert!(lock.locked().unwrap(), "taken back after the wait");
    assert_eq!(manager.condition_with(&manager.event().unwrap()).unwrap_err().kind(), ErrorKind::InvalidInput);
}

fn meet_many(b: BarrierProxy, rounds: u32) -> Vec<u32> {
    (0..rounds).map(|_| b.wait().unwrap().unwrap()).collect()
}

fn wait_at(b: BarrierProxy, arrived: SemaphoreProxy) -> bool {
    arrived.release().unwrap();
    b.wait().unwrap().is_err()
}

#[test]
fn a_hosted_barrier_passes_generations_and_breaks_for_timeouts_aborts_and_the_dead() {
    let _w = watchdog(120);
    let manager = Manager::start().unwrap();
    let barrier = manager.barrier(4).unwrap();
    assert_eq!((barrier.parties().unwrap(), barrier.n_waiting().unwrap()), (4, 0));
    let mut ps: Vec<_> = (0..4).map(|_| Process::spawn(meet_many, (barrier.clone(), 20)).unwrap()).collect();
    let all: Vec<Vec<u32>> = ps.iter_mut().map(|p| p.join().unwrap()).collect();
    for round in 0..20 {
        let mut indexes: Vec<u32> = all.iter().map(|v| v[round]).collect();
        indexes.sort();
        assert_eq!(indexes, [0, 1, 2, 3], "round {round}");
    }

    let lonely = manager.barrier(2).unwrap();
    let began = Instant::now();
    assert!(lonely.wait_timeout(SHORT).unwrap().is_err());
    assert!(began.elapsed() >= SHORT);
    assert!(lonely.broken().unwrap(), "a timeout breaks the barrier for everyone");
    assert!(lonely.wait().unwrap().is_err());
    lonely.reset().unwrap();
    assert!(!lonely.broken().unwrap());

    // A party killed while it waits can never arrive: the barrier breaks for those waiting with
    // it, instead of letting a later arrival through one short.
    let three = manager.barrier(3).unwrap();
    let arrived = manager.semaphore(0).unwrap();
    let mut doomed = Process::spawn(wait_at, (three.clone(), arrived.clone())).unwrap();
    let mut survivor = Process::spawn(wait_at, (three.clone(), arrived.clone())).unwrap();
    arrived.acquire().unwrap();
    arrived.acquire().unwrap();
    while three.n_waiting().unwrap() < 2 {
        std::thread::sleep(Duration::from_millis(5));
    }
    doomed.kill().unwrap();
    let _ = doomed.join();
    assert!(survivor.join().unwrap(), "the survivor's wait fails");
    assert!(three.broken().unwrap());
    assert!(three.wait().unwrap().is_err(), "and so does a later arrival's");

    manager.barrier(1).unwrap().abort().unwrap();
    assert_eq!(manager.barrier(0).unwrap_err().kind(), ErrorKind::InvalidInput);
}

fn produce(q: QueueProxy<u32>, n: u32) {
    for i in 0..n {
        q.put(i).unwrap();
    }
}

#[test]
fn a_hosted_queue_has_the_verbs_and_errors_of_a_queue() {
    let _w = watchdog(60);
    let manager = Manager::start().unwrap();
    let q = manager.queue::<u32>().unwrap();
    assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
    let began = Instant::now();
    assert!(matches!(q.get_timeout(SHORT), Err(GetTimeoutError::Timeout)));
    assert!(began.elapsed() >= SHORT);
    q.put(5).unwrap();
    assert_eq!((q.len().unwrap(), q.is_full().unwrap()), (1, false));
    assert_eq!(q.get().unwrap(), 5);
    assert!(q.is_empty().unwrap());

    // Bounded: a full queue hands the item back, or makes the producer wait for room.
    let bounded = manager.queue_bounded::<u32>(2).unwrap();
    bounded.put(0).unwrap();
    bounded.try_put(1).unwrap();
    assert!(bounded.is_full().unwrap());
    assert!(matches!(bounded.try_put(2), Err(TryPutError::Full(2))));
    let began = Instant::now();
    assert!(matches!(bounded.put_timeout(3, SHORT), Err(PutTimeoutError::Timeout(3))));
    assert!(began.elapsed() >= SHORT);
    assert_eq!((bounded.get().unwrap(), bounded.get().unwrap()), (0, 1));
    let mut producer = Process::spawn(produce, (bounded.clone(), 50)).unwrap();
    let got: Vec<u32> = (0..50).map(|_| bounded.get().unwrap()).collect();
    producer.join().unwrap();
    assert_eq!(got, (0..50).collect::<Vec<_>>(), "one producer's items arrive in order");

    // An item that is not what the consumer expects is consumed with a clear error, and the
    // queue goes on.
    let json = serde_json::to_value(&q).unwrap();
    let as_text: QueueProxy<String> = serde_json::from_value(json).unwrap();
    q.put(u32::MAX).unwrap();
    q.put(7).unwrap();
    match as_text.get() {
        Err(GetError::Failed(e)) => assert_eq!(e.kind(), ErrorKind::Decode),
        other => panic!("expected a decode failure, got {other:?}"),
    }
    assert_eq!(q.get().unwrap(), 7);
}

fn get_one(q: QueueProxy<u32>, waiting: EventProxy) -> u32 {
    waiting.set().unwrap();
    q.get().unwrap()
}

fn wait_for_an_item(q: QueueProxy<u8>, waiting: EventProxy) -> bool {
    waiting.set().unwrap();
    matches!(q.get(), Err(GetError::Failed(e)) if e.kind() == ErrorKind::Disconnected)
}

#[test]
fn a_waiter_that_dies_takes_nothing_and_one_left_waiting_by_a_stopped_manager_gets_an_error() {
    let _w = watchdog(60);
    let manager = Manager::start().unwrap();
    let q = manager.queue::<u32>().unwrap();
    let waiting = manager.event().unwrap();
    let mut doomed = Process::spawn(get_one, (q.clone(), waiting.clone())).unwrap();
    waiting.wait().unwrap();
    std::thread::sleep(Duration::from_millis(50)); // into its blocking get, most likely
    doomed.kill().unwrap();
    let _ = doomed.join(); // its socket is closed now: the server sees it gone on the next wake-up
    q.put(1).unwrap();
    assert_eq!(q.get_timeout(Duration::from_secs(20)).unwrap(), 1, "the dead waiter took nothing");

    let other = Manager::start().unwrap();
    let q = other.queue::<u8>().unwrap();
    let waiting = other.event().unwrap();
    let mut child = Process::spawn(wait_for_an_item, (q.clone(), waiting.clone())).unwrap();
    waiting.wait().unwrap();
    std::thread::sleep(Duration::from_millis(50)); // into the blocking get
    drop(other);
    assert!(child.join().unwrap(), "the waiting client got a disconnected error");
}

fn serve_dishes(q: JoinableQueueProxy<u32>, served: DictProxy<u8, u32>) {
    loop {
        let dish = q.get().unwrap();
        served.add(&0, dish).unwrap();
        q.task_done().unwrap();
    }
}

#[test]
fn a_hosted_joinable_queue_joins_when_every_item_is_done() {
    let _w = watchdog(60);
    let manager = Manager::start().unwrap();
    let q = manager.joinable_queue::<u32>().unwrap();
    let err = q.task_done().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("too many times"), "{err}");
    q.put(1).unwrap();
    let began = Instant::now();
    assert!(!q.join_timeout(SHORT).unwrap());
    assert!(began.elapsed() >= SHORT);
    assert_eq!(q.get().unwrap(), 1);
    q.task_done().unwrap();
    assert!(q.join_timeout(SHORT).unwrap());

    // The seeds' buffet: daemon waiters take the dishes; the cook joins the queue.
    let served = manager.dict::<u8, u32>().unwrap();
    let mut waiters: Vec<_> = (0..2)
        .map(|_| Process::builder().daemon(true).spawn(serve_dishes, (q.clone(), served.clone())).unwrap())
        .collect();
    for dish in 1..=20 {
        q.put(dish).unwrap();
    }
    q.join().unwrap();
    assert_eq!(served.get(&0).unwrap(), Some(210));
    for w in &mut waiters {
        w.kill().unwrap();
        let _ = w.join();
    }
    assert!(manager.joinable_queue_bounded::<u8>(1).unwrap().try_put(1).is_ok());
}

fn sleep_long() {
    std::thread::sleep(Duration::from_secs(60));
}

fn hold_fork_and_die(lock: LockProxy, pids: QueueProxy<u32>) {
    assert!(lock.acquire_with(true, None).unwrap());
    let grandchild = Process::builder()
        .start_method(multiproc::StartMethod::Fork)
        .die_with_parent(false)
        .spawn(sleep_long, ())
        .unwrap();
    pids.put(grandchild.pid()).unwrap();
    std::process::abort();
}

/// Kills a process we caused to be started (by pid) when dropped, whatever the test did.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        common::kill_pid(self.0);
    }
}

#[test]
fn a_forked_child_does_not_keep_its_parents_hold_on_a_lock() {
    let _w = watchdog(60);
    let manager = Manager::start().unwrap();
    let (lock, pids) = (manager.lock().unwrap(), manager.queue::<u32>().unwrap());
    let _ = Process::spawn(hold_fork_and_die, (lock.clone(), pids.clone())).unwrap().join();
    let grandchild = KillOnDrop(pids.get().unwrap());
    // The fork copied the holder's connection into the grandchild; had the copy stayed open, the
    // manager could not see the holder die for as long as the grandchild lives.
    let guard = lock.acquire_timeout(Duration::from_secs(20)).unwrap();
    assert!(common::running(grandchild.0), "the grandchild still runs");
    assert!(guard.expect("released when the holder died").owner_died());
}

#[test]
fn waiters_of_an_aborted_generation_fail_even_if_a_reset_follows_at_once() {
    let _w = watchdog(60);
    let manager = Manager::start().unwrap();
    let b = manager.barrier(3).unwrap();
    let arrived = manager.semaphore(0).unwrap();
    let mut waiters: Vec<_> = (0..2).map(|_| Process::spawn(wait_at, (b.clone(), arrived.clone())).unwrap()).collect();
    arrived.acquire().unwrap();
    arrived.acquire().unwrap();
    while b.n_waiting().unwrap() < 2 {
        std::thread::sleep(Duration::from_millis(5));
    }
    b.abort().unwrap();
    b.reset().unwrap(); // before the waiters have woken: their generation still broke
    assert!(waiters.iter_mut().all(|w| w.join().unwrap()), "both waits failed");
    assert!(!b.broken().unwrap(), "and the barrier works again");
}

fn notify_and_die(cond: ConditionProxy, waiting: SemaphoreProxy) {
    waiting.acquire().unwrap(); // the waiter is inside its wait
    std::mem::forget(cond.acquire().unwrap());
    cond.notify_all().unwrap();
    std::process::abort(); // holding the lock the waiter needs back
}

#[test]
fn a_waiter_takes_its_lock_back_from_a_notifier_that_died_holding_it() {
    let _w = watchdog(60);
    let manager = Manager::start().unwrap();
    let lock = manager.lock().unwrap();
    let cond = manager.condition_with(&lock).unwrap();
    let waiting = manager.semaphore(0).unwrap();
    let held = cond.acquire().unwrap();
    let mut notifier = Process::spawn(notify_and_die, (cond.clone(), waiting.clone())).unwrap();
    waiting.release().unwrap(); // released under the lock: the notifier gets it only once we wait
    assert!(cond.wait_timeout(Duration::from_secs(30)).unwrap(), "notified");
    let _ = notifier.join();
    assert!(lock.locked().unwrap(), "the waiter has the lock back");
    drop(held);
    // The waiter took the abandoned lock back; nobody after it is told of a death it already saw.
    assert!(!lock.acquire().unwrap().owner_died());
}
