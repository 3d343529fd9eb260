//! A pool's workers over their lives: replaced once they hold too much memory, and the
//! process-wide reusable executor.

mod common;

use std::sync::Arc;

use common::watchdog;
use multiproc::pool::get_reusable_executor;
use multiproc::{Pool, Process, StartMethod};

/// Leaks `mb` MiB (touched, so resident) and returns the worker's pid.
fn hoard(mb: usize) -> u32 {
    std::mem::forget(vec![1u8; mb << 20]);
    std::process::id()
}

/// As `hoard`, with when the task started (the machine's clock, the same in every process).
fn hoard_when(mb: usize) -> (u32, u128) {
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    (hoard(mb), started)
}

#[test]
fn workers_past_their_memory_limit_are_replaced_and_no_task_fails() {
    let _w = watchdog(120);
    let pool = Pool::builder().processes(2).max_memory_per_child(96 << 20).build().unwrap();
    // Every fourth task leaks 192 MiB; the rest nothing. Many are queued behind each hoarder,
    // so a worker that leaves has orders waiting: they must go to its successor, not fail.
    let sizes: Vec<usize> = (0..40).map(|i| if i % 4 == 0 { 192 } else { 0 }).collect();
    let runs = pool.map_chunked(hoard_when, sizes, 1).unwrap();
    assert_eq!(runs.len(), 40);
    // Each hoarder's worker leaves and is replaced (the last perhaps after map returned).
    while pool.stats().iter().map(|s| s.restarts).sum::<u32>() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // A hoarder's batch runs longer than the look interval, so its worker looks right after it
    // and leaves: no task started in that process after the hoarder did. (Input order is not
    // the order a worker runs in: batches move between workers.)
    for (pid, started) in runs.iter().step_by(4) {
        let later = runs.iter().filter(|(p, s)| p == pid && s > started).count();
        assert_eq!(later, 0, "a worker ran {later} tasks after passing its limit: {runs:?}");
    }
    pool.close();
    pool.join().unwrap();
}

#[test]
fn a_memory_limit_never_reached_replaces_nobody() {
    let _w = watchdog(60);
    let pool = Pool::builder().processes(1).max_memory_per_child(1 << 40).build().unwrap();
    let pids = pool.map_chunked(hoard, vec![1usize; 10], 1).unwrap();
    assert!(pids.iter().all(|&p| p == pids[0]));
    assert_eq!(pool.stats()[0].restarts, 0);
}

#[test]
fn the_reusable_executor_is_shared_and_resized_in_place() {
    let _w = watchdog(120);
    let a = get_reusable_executor(2).unwrap();
    let b = get_reusable_executor(2).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    let warm = b.submit(std::process::id, ()).unwrap().result().unwrap();
    assert!(a.stats().iter().any(|s| s.pid == Some(warm)), "the same workers serve both");
    // Another size: the same executor, resized; work in hand is not lost.
    let long = a.submit(nap, (300,)).unwrap();
    let c = get_reusable_executor(1).unwrap();
    assert!(Arc::ptr_eq(&a, &c));
    assert_eq!(long.result().unwrap(), 300);
    assert_eq!(c.submit(|| 2, ()).unwrap().result().unwrap(), 2);
    // Shut down by someone: the next caller gets a working one.
    c.shutdown(true, false);
    let d = get_reusable_executor(1).unwrap();
    assert!(!Arc::ptr_eq(&c, &d));
    assert_eq!(d.submit(|| 3, ()).unwrap().result().unwrap(), 3);
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(ms));
    ms
}

#[test]
fn idle_workers_leave_and_come_back_on_demand() {
    let _w = watchdog(120);
    let pool = Pool::builder().processes(2).idle_timeout(std::time::Duration::from_millis(100)).build().unwrap();
    assert_eq!(pool.map(nap, [1, 1, 1, 1]).unwrap(), [1, 1, 1, 1]);
    let before: Vec<Option<u32>> = pool.stats().iter().map(|s| s.pid).collect();
    assert!(before.iter().all(Option::is_some));
    // Idle past the timeout: every worker leaves (the watchdog fails a pool that never lets go).
    while pool.stats().iter().any(|s| s.pid.is_some()) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for pid in before.iter().flatten() {
        assert!(common::ends_within(*pid, std::time::Duration::from_secs(10)), "worker {pid} still runs");
    }
    // Work brings them back, and nothing is lost.
    assert_eq!(pool.map(nap, vec![5; 8]).unwrap(), vec![5; 8]);
    let after: Vec<u32> = pool.stats().iter().filter_map(|s| s.pid).collect();
    assert!(!after.is_empty() && after.iter().all(|p| !before.contains(&Some(*p))));
    pool.close();
    pool.join().unwrap();
}

#[test]
fn a_pool_grows_and_shrinks_under_load_and_loses_nothing() {
    let _w = watchdog(120);
    let pool = Pool::new(1).unwrap();
    let result = pool.map_async(nap, vec![20u64; 60]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    pool.resize(3).unwrap();
    assert_eq!(pool.size(), 3);
    std::thread::sleep(std::time::Duration::from_millis(150));
    assert_eq!(pool.stats().iter().filter(|s| s.pid.is_some()).count(), 3);
    pool.resize(1).unwrap();
    assert_eq!(result.get().unwrap(), vec![20u64; 60]);
    assert_eq!(pool.size(), 1);
    // The removed places go once their workers have ended.
    while pool.stats().len() > 1 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(pool.apply(nap, (1,)).unwrap(), 1);
    // Bad sizes and a closed pool are refused, and change nothing.
    assert_eq!(pool.resize(0).unwrap_err().kind(), multiproc::ErrorKind::InvalidInput);
    pool.close();
    assert_eq!(pool.resize(2).unwrap_err().kind(), multiproc::ErrorKind::InvalidInput);
    assert_eq!(pool.size(), 1);
    pool.join().unwrap();
}

fn reuse_in_a_child() -> u32 {
    get_reusable_executor(1).unwrap().submit(|| 5u32, ()).unwrap().result().unwrap()
}

#[test]
fn a_forked_child_gets_a_reusable_executor_of_its_own() {
    let _w = watchdog(120);
    let parent = get_reusable_executor(1).unwrap();
    parent.submit(|| (), ()).unwrap().result().unwrap();
    let mut child = Process::builder().start_method(StartMethod::Fork).spawn(reuse_in_a_child, ()).unwrap();
    assert_eq!(child.join().unwrap(), 5);
}
