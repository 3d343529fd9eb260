//! An executor's workers may start processes (and pools) of their own, as CPython's and loky's
//! may; a Pool's workers are daemons and may not, as in Python.

mod common;

use common::watchdog;
use multiproc::{ErrorKind, Pool, Process, ProcessPoolExecutor};

fn double(x: u32) -> u32 {
    x * 2
}

/// Starts a child of its own; its result, or the kind of error that refused it.
fn start_a_child(x: u32) -> Result<u32, String> {
    match Process::spawn(double, (x,)) {
        Ok(mut p) => Ok(p.join().map_err(|e| e.to_string())?),
        Err(e) => Err(format!("{:?}", e.kind())),
    }
}

/// Runs a small pool of its own.
fn start_a_pool(n: u32) -> Vec<u32> {
    Pool::new(2).unwrap().map(double, 0..n).unwrap()
}

#[test]
fn executor_workers_may_start_children_and_pools() {
    let _w = watchdog(120);
    let executor = ProcessPoolExecutor::new(2).unwrap();
    assert_eq!(executor.submit(start_a_child, (21,)).unwrap().result().unwrap(), Ok(42));
    assert_eq!(executor.submit(start_a_pool, (4,)).unwrap().result().unwrap(), vec![0, 2, 4, 6]);
    executor.shutdown(true, false);
}

#[test]
fn pool_workers_are_daemons_and_may_not() {
    let _w = watchdog(60);
    let pool = Pool::new(1).unwrap();
    assert_eq!(pool.apply(start_a_child, (1,)).unwrap(), Err(format!("{:?}", ErrorKind::DaemonChild)));
}
