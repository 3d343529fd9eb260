//! A time limit per task (`apply_async_timeout`, `submit_timeout`), over the pool's own.

mod common;

use std::time::{Duration, Instant};

use common::watchdog;
use multiproc::pool::TaskError;
use multiproc::{Pool, ProcessPoolExecutor};

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
fn a_task_past_its_own_limit_fails_and_the_pool_goes_on() {
    let _w = watchdog(120);
    let pool = Pool::new(1).unwrap();
    let limit = Duration::from_millis(200);
    let began = Instant::now();
    let slow = pool.apply_async_timeout(nap, (60_000,), limit).unwrap();
    match slow.get() {
        Err(TaskError::TimedOut { timeout, .. }) => assert_eq!(timeout, limit),
        other => panic!("{other:?}"),
    }
    assert!(began.elapsed() >= limit);
    // Its worker was replaced; tasks without a limit of their own run as before.
    assert_eq!(pool.apply(nap, (1,)).unwrap(), 1);
    assert_eq!(pool.apply_async_timeout(nap, (1,), Duration::from_secs(30)).unwrap().get(), Ok(1));
    // An endless limit is none.
    assert_eq!(pool.apply_async_timeout(nap, (5,), Duration::MAX).unwrap().get(), Ok(5));
}

#[test]
fn a_tasks_own_limit_overrides_the_pools() {
    let _w = watchdog(120);
    let strict = Pool::builder().processes(1).task_timeout(Duration::from_millis(100)).build().unwrap();
    // Longer than the pool's limit, within its own.
    assert_eq!(strict.apply_async_timeout(nap, (400,), Duration::from_secs(30)).unwrap().get(), Ok(400));
    assert!(matches!(strict.apply(nap, (60_000,)), Err(TaskError::TimedOut { .. })));

    let lenient = Pool::builder().processes(1).task_timeout(Duration::from_secs(60)).build().unwrap();
    let r = lenient.apply_async_timeout(nap, (60_000,), Duration::from_millis(100)).unwrap();
    assert!(matches!(r.get(), Err(TaskError::TimedOut { .. })));
}

#[test]
fn an_executor_future_with_a_limit() {
    let _w = watchdog(120);
    let executor = ProcessPoolExecutor::new(2).unwrap();
    let slow = executor.submit_timeout(nap, (60_000,), Duration::from_millis(150)).unwrap();
    let quick = executor.submit_timeout(nap, (10,), Duration::from_secs(30)).unwrap();
    assert!(matches!(slow.result(), Err(TaskError::TimedOut { .. })));
    assert_eq!(quick.result(), Ok(10));
    executor.shutdown(true, false);
}
