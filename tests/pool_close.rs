//! After `close`, workers exit as soon as the work they had is done (as in Python), while the
//! results of that work still arrive.

mod common;

use std::time::Duration;

use common::{ends_within, watchdog};
use multiproc::Pool;

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
fn idle_workers_exit_once_the_pool_is_closed() {
    let _w = watchdog(60);
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.map(nap, [1, 1, 1, 1]).unwrap(), vec![1, 1, 1, 1]);
    let long = pool.apply_async(nap, (5000,)).unwrap();
    // Let the long task start in one worker; the other is idle.
    std::thread::sleep(Duration::from_millis(300));
    let pids: Vec<u32> = pool.stats().iter().filter_map(|s| s.pid).collect();
    assert_eq!(pids.len(), 2);
    pool.close();
    // The idle one exits now, while the other still runs the long task...
    let mut exited = Vec::new();
    for _ in 0..2000 {
        exited = pids.iter().copied().filter(|&pid| !common::running(pid)).collect();
        if !exited.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!long.ready(), "the long task finished before any worker exited: the test proves nothing");
    assert_eq!(exited.len(), 1, "the idle worker did not exit after close");
    // ...whose result still arrives; then it exits too.
    assert_eq!(long.get().unwrap(), 5000);
    for &pid in &pids {
        assert!(ends_within(pid, Duration::from_secs(20)), "worker {pid} still runs after its work was done");
    }
    pool.join().unwrap();
}
