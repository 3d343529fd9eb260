//! Pools: per-task overhead of `map`, `imap_unordered`, `apply_async` and the executor with a
//! trivial function, and the speed-up of a CPU-bound `map` over serial on this machine.
//!
//! Each row times the operation only: the pool is started (and warmed up with one task) before
//! the clock starts, and closed after it stops. The trivial function is `x + 1`.

use std::time::Instant;

use multiproc::{Pool, ProcessPoolExecutor};

use super::{BoxError, Scenario, Target};

const SERIAL: &str = "baseline: CPU-bound item, serial in this process";

/// The pool rows.
pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario::new("pool map, 100k items, default chunking", 100_000, |n| map(n, None))
            .python("pool_map_default", 100_000)
            .target(Target::FasterThanCpython(10.0)),
        Scenario::new("pool map, chunksize 1", 100_000, |n| map(n, Some(1)))
            .python("pool_map_chunksize_1", 20_000)
            .target(Target::FasterThanCpython(10.0)),
        Scenario::new("pool imap_unordered, chunksize 1", 100_000, imap_unordered)
            .python("pool_imap_unordered", 20_000)
            .target(Target::FasterThanCpython(10.0)),
        Scenario::new("pool apply_async + get", 10_000, apply_async)
            .python("pool_apply_async", 10_000)
            .target(Target::FasterThanCpython(10.0)),
        Scenario::new("executor submit + result", 10_000, submit)
            .python("executor_submit", 10_000)
            .target(Target::FasterThanCpython(10.0)),
        Scenario::new("executor map, chunksize 1", 100_000, executor_map)
            .python("executor_map", 20_000)
            .target(Target::FasterThanCpython(10.0)),
        Scenario::new(SERIAL, 200, serial_cpu),
        Scenario::new("pool map, CPU-bound items (2 workers)", 200, pool_cpu)
            .target(Target::AtMostTimes(0.53, SERIAL.into())),
    ]
}

fn plus_one(x: u64) -> u64 {
    x + 1
}

fn started_pool() -> Result<Pool, BoxError> {
    let pool = Pool::new(2)?;
    pool.apply(plus_one, (0,))?;
    Ok(pool)
}

fn finish(pool: Pool) -> Result<(), BoxError> {
    pool.close();
    pool.join()?;
    Ok(())
}

fn map(n: u64, chunksize: Option<usize>) -> Result<f64, BoxError> {
    let pool = started_pool()?;
    let began = Instant::now();
    let out = match chunksize {
        None => pool.map(plus_one, 0..n)?,
        Some(c) => pool.map_chunked(plus_one, 0..n, c)?,
    };
    let elapsed = began.elapsed();
    if out.len() as u64 != n || out.last() != Some(&n) {
        return Err("wrong map result".into());
    }
    finish(pool)?;
    Ok(elapsed.as_secs_f64() / n as f64)
}

fn imap_unordered(n: u64) -> Result<f64, BoxError> {
    let pool = started_pool()?;
    let began = Instant::now();
    let mut sum = 0;
    for r in pool.imap_unordered(plus_one, 0..n)? {
        sum += r?;
    }
    let elapsed = began.elapsed();
    if sum != n * (n + 1) / 2 {
        return Err("wrong imap_unordered result".into());
    }
    finish(pool)?;
    Ok(elapsed.as_secs_f64() / n as f64)
}

fn apply_async(n: u64) -> Result<f64, BoxError> {
    let pool = started_pool()?;
    let began = Instant::now();
    let results = (0..n).map(|i| pool.apply_async(plus_one, (i,))).collect::<Result<Vec<_>, _>>()?;
    for (i, r) in results.iter().enumerate() {
        if r.get()? != i as u64 + 1 {
            return Err("wrong apply_async result".into());
        }
    }
    let elapsed = began.elapsed();
    finish(pool)?;
    Ok(elapsed.as_secs_f64() / n as f64)
}

fn started_executor() -> Result<ProcessPoolExecutor, BoxError> {
    let executor = ProcessPoolExecutor::new(2)?;
    executor.submit(plus_one, (0,))?.result()?;
    Ok(executor)
}

fn submit(n: u64) -> Result<f64, BoxError> {
    let executor = started_executor()?;
    let began = Instant::now();
    let futures = (0..n).map(|i| executor.submit(plus_one, (i,))).collect::<Result<Vec<_>, _>>()?;
    for (i, f) in futures.iter().enumerate() {
        if f.result()? != i as u64 + 1 {
            return Err("wrong submit result".into());
        }
    }
    let elapsed = began.elapsed();
    executor.shutdown(true, false);
    Ok(elapsed.as_secs_f64() / n as f64)
}

fn executor_map(n: u64) -> Result<f64, BoxError> {
    let executor = started_executor()?;
    let began = Instant::now();
    let mut last = 0;
    for r in executor.map(plus_one, 0..n, 1)? {
        last = r?;
    }
    let elapsed = began.elapsed();
    if last != n {
        return Err("wrong executor map result".into());
    }
    executor.shutdown(true, false);
    Ok(elapsed.as_secs_f64() / n as f64)
}

/// About 5 ms of integer work that the optimizer cannot skip.
fn cpu_bound(seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..3_000_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

fn serial_cpu(n: u64) -> Result<f64, BoxError> {
    let began = Instant::now();
    let mut acc = 0u64;
    for i in 0..n {
        acc ^= cpu_bound(std::hint::black_box(i));
    }
    std::hint::black_box(acc);
    Ok(began.elapsed().as_secs_f64() / n as f64)
}

fn pool_cpu(n: u64) -> Result<f64, BoxError> {
    let pool = started_pool()?;
    let began = Instant::now();
    let out = pool.map(cpu_bound, 0..n)?;
    let elapsed = began.elapsed();
    std::hint::black_box(out);
    finish(pool)?;
    Ok(elapsed.as_secs_f64() / n as f64)
}
