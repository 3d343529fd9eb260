//! Pools: per-task overhead of `map`, `imap_unordered`, `apply_async` and the executor with a
//! trivial function, and the speed-up of a CPU-bound `map` over serial on this machine.
//!
//! Each row times the operation only: the pool is started (and warmed up with one task) before
//! the clock starts, and closed after it stops. The trivial function is `x + 1`.

use std::time::Instant;

use multiproc::{Pool, ProcessPoolExecutor};

use super::{BoxError, Scenario, Target};

pub(crate) const SERIAL: &str = "baseline: CPU-bound item, serial in this process";

/// The pool rows.
pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario::new(BULK_BOUND, 100_000, bulk_map_bound),
        Scenario::new("pool map, 100k items, default chunking", 100_000, |n| map(n, None))
            .python("pool_map_default", 100_000)
            .target(Target::FasterThanCpython(10.0))
            .target(Target::AtMostTimes(3.0, BULK_BOUND.into())),
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

/// The raw bound of a bulk map (issue 13): the same items and work as the default-chunking row,
/// with nothing of a pool around them.
const BULK_BOUND: &str = "baseline: 100k u64 to 2 forked workers via shared memory, +1, back";

/// `n` `u64`s written into a shared mapping, two workers forked before the clock (as a pool's
/// are) each add one to their half into a second mapping, and the parent copies the results out
/// into a `Vec`: a memcpy in and out, a pipe byte each way per worker, no codec, no locks. The
/// function is the row's `x + 1` (the sketch said "squared": the same cost).
fn bulk_map_bound(n: u64) -> Result<f64, BoxError> {
    let n = n as usize;
    let len = 2 * n * 8;
    // Unmapped at the end.
    let base = super::shared_mapping(len)?;
    let input = base.cast::<u64>();
    // SAFETY: the second half of the mapping.
    let output = unsafe { input.add(n) };
    // Touched before the clock, as a pool's rings are: page faults are not the bound.
    // SAFETY: the whole mapping, ours.
    unsafe { std::ptr::write_bytes(base.cast::<u8>(), 0, len) };
    let halves = [(0, n / 2), (n / 2, n)];
    let mut workers = Vec::new();
    for &(from, to) in &halves {
        let mut go = [0; 2];
        let mut done = [0; 2];
        // SAFETY: pipe(2) into two-int arrays.
        if unsafe { libc::pipe(go.as_mut_ptr()) } != 0 || unsafe { libc::pipe(done.as_mut_ptr()) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let ([go_r, go_w], [done_r, done_w]) = (go, done);
        // SAFETY: the child uses only read, write, plain memory and _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let mut byte = 0u8;
            // SAFETY: closes the parent's ends of our pipes and of the earlier workers' (or no
            // end-of-file would ever come); then reads and writes on our pipes, and our half of
            // the shared mapping.
            unsafe {
                libc::close(go_w);
                libc::close(done_r);
                for &(_, g, d) in &workers {
                    libc::close(g);
                    libc::close(d);
                }
                // Map our half's pages in this process too, before the clock.
                for i in (from..to).step_by(512) {
                    std::ptr::write_volatile(output.add(i), std::ptr::read_volatile(input.add(i)));
                }
                while libc::read(go_r, (&raw mut byte).cast(), 1) == 1 {
                    for i in from..to {
                        *output.add(i) = (*input.add(i)).wrapping_add(1);
                    }
                    libc::write(done_w, (&raw const byte).cast(), 1);
                }
                libc::_exit(0);
            }
        }
        // SAFETY: closes the child's ends in the parent.
        unsafe {
            libc::close(go_r);
            libc::close(done_w);
        }
        workers.push((pid, go_w, done_r));
    }
    // The result's memory too is touched before the clock: after the forks above, a fresh
    // allocation in this process may be copy-on-write pages shared with the workers, a cost of
    // this harness and not of the transfer.
    let mut out = vec![1u64; n];
    let began = Instant::now();
    for i in 0..n {
        // SAFETY: within the first half of the mapping.
        unsafe { *input.add(i) = i as u64 };
    }
    let byte = 1u8;
    for &(_, go, _) in &workers {
        // SAFETY: one byte to a pipe we own.
        unsafe { libc::write(go, (&raw const byte).cast(), 1) };
    }
    let mut reply = 0u8;
    for &(_, _, done) in &workers {
        // SAFETY: one byte from a pipe we own.
        unsafe { libc::read(done, (&raw mut reply).cast(), 1) };
    }
    // SAFETY: the second half of the mapping, written by the workers before their reply.
    out.copy_from_slice(unsafe { std::slice::from_raw_parts(output, n) });
    let elapsed = began.elapsed();
    for (pid, go, done) in workers {
        let mut status = 0;
        // SAFETY: closing our pipe ends ends the worker's loop; then it is reaped.
        unsafe {
            libc::close(go);
            libc::close(done);
            libc::waitpid(pid, &mut status, 0);
        }
    }
    // SAFETY: the mapping made above, no longer used.
    unsafe { libc::munmap(base, len) };
    if out.len() != n || out.last() != Some(&(n as u64)) {
        return Err("wrong bulk map result".into());
    }
    Ok(elapsed.as_secs_f64() / n as f64)
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
pub(crate) fn cpu_bound(seed: u64) -> u64 {
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
