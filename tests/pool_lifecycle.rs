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
fn the_reusable_executor_is_shared_until_its_size_changes() {
    let _w = watchdog(120);
    let a = get_reusable_executor(2).unwrap();
    let b = get_reusable_executor(2).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    let warm = b.submit(std::process::id, ()).unwrap().result().unwrap();
    assert!(a.stats().iter().any(|s| s.pid == Some(warm)), "the same workers serve both");
    // Another size: a new executor; the old one takes no more work but finished what it had.
    let c = get_reusable_executor(1).unwrap();
    assert!(!Arc::ptr_eq(&a, &c));
    assert!(a.submit(|| 1, ()).is_err());
    assert_eq!(c.submit(|| 2, ()).unwrap().result().unwrap(), 2);
    // Shut down by someone: the next caller gets a working one.
    c.shutdown(true, false);
    let d = get_reusable_executor(1).unwrap();
    assert!(!Arc::ptr_eq(&c, &d));
    assert_eq!(d.submit(|| 3, ()).unwrap().result().unwrap(), 3);
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
