//! The manager: dict, queue and lock round trips from a child, and four processes counting in one
//! entry (with a Lock, and with the server-side atomic add), against a raw Unix-socket round trip.

use std::time::Instant;

use multiproc::manager::{DictProxy, LockProxy, QueueProxy};
use multiproc::{Context, Event, Lock, Manager, StartMethod};

use super::{BoxError, Scenario, Target};

const SOCKET: &str = "baseline: socketpair ping-pong (blocking)";

/// The manager rows.
pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario::new("manager dict set or get, from a child (per call)", 20_000, dict_calls)
            .python("manager_dict_calls", 5_000)
            .target(Target::FasterThanCpython(5.0))
            .target(Target::AtMostTimes(1.0, SOCKET.into())),
        Scenario::new("manager queue put + get, from a child (per call)", 20_000, queue_calls)
            .python("manager_queue_calls", 5_000)
            .target(Target::FasterThanCpython(5.0)),
        Scenario::new("manager Lock acquire + release, from a child", 10_000, lock_calls)
            .python("manager_lock_calls", 2_500)
            .target(Target::FasterThanCpython(5.0)),
        Scenario::new("manager counter, 4 processes, Lock + get/set", 4_000, |n| counter(n, false))
            .python("manager_counter_locked", 2_000)
            .target(Target::FasterThanCpython(1.0)),
        Scenario::new("manager counter, 4 processes, atomic add", 8_000, |n| counter(n, true))
            .python("manager_counter_locked", 2_000)
            .target(Target::FasterThanCpython(10.0)),
    ]
}

fn fork() -> Context {
    Context::new(StartMethod::Fork)
}

fn calls(d: DictProxy<u64, u64>, go: Event, n: u64) -> f64 {
    go.wait();
    let began = Instant::now();
    for i in 0..n / 2 {
        d.insert(i % 100, i).expect("insert");
        d.get(&(i % 100)).expect("get");
    }
    began.elapsed().as_secs_f64() / (n / 2 * 2) as f64
}

fn dict_calls(n: u64) -> Result<f64, BoxError> {
    let manager = Manager::start()?;
    let d = manager.dict::<u64, u64>()?;
    let go = Event::new()?;
    let mut child = fork().spawn(calls, (d.clone(), go.clone(), n.max(2)))?;
    go.set();
    Ok(child.join()?)
}

fn queue_round_trips(q: QueueProxy<u64>, go: Event, n: u64) -> f64 {
    go.wait();
    let began = Instant::now();
    for i in 0..n / 2 {
        q.put(i).expect("put");
        q.get().expect("get");
    }
    began.elapsed().as_secs_f64() / (n / 2 * 2) as f64
}

fn queue_calls(n: u64) -> Result<f64, BoxError> {
    let manager = Manager::start()?;
    let q = manager.queue::<u64>()?;
    let go = Event::new()?;
    let mut child = fork().spawn(queue_round_trips, (q.clone(), go.clone(), n.max(2)))?;
    go.set();
    Ok(child.join()?)
}

fn lock_round_trips(lock: LockProxy, go: Event, n: u64) -> f64 {
    go.wait();
    let began = Instant::now();
    for _ in 0..n {
        drop(lock.acquire().expect("acquire"));
    }
    began.elapsed().as_secs_f64() / n as f64
}

fn lock_calls(n: u64) -> Result<f64, BoxError> {
    let manager = Manager::start()?;
    let lock = manager.lock()?;
    let go = Event::new()?;
    let mut child = fork().spawn(lock_round_trips, (lock.clone(), go.clone(), n.max(1)))?;
    go.set();
    Ok(child.join()?)
}

fn count(d: DictProxy<String, i64>, lock: Lock, go: Event, n: u64, atomic: bool) {
    go.wait();
    let key = "n".to_string();
    for _ in 0..n {
        if atomic {
            d.add(&key, 1).expect("add");
        } else {
            let _g = lock.acquire().expect("lock");
            let v = d.get(&key).expect("get").unwrap_or(0);
            d.insert(key.clone(), v + 1).expect("insert");
        }
    }
}

fn counter(n: u64, atomic: bool) -> Result<f64, BoxError> {
    let manager = Manager::start()?;
    let d = manager.dict::<String, i64>()?;
    let (lock, go) = (Lock::new()?, Event::new()?);
    let each = (n / 4).max(1);
    let mut workers = Vec::new();
    for _ in 0..4 {
        workers.push(fork().spawn(count, (d.clone(), lock.clone(), go.clone(), each, atomic))?);
    }
    let began = Instant::now();
    go.set();
    for w in &mut workers {
        w.join()?;
    }
    let elapsed = began.elapsed();
    if d.get(&"n".to_string())? != Some((each * 4) as i64) {
        return Err("lost increments".into());
    }
    Ok(elapsed.as_secs_f64() / (each * 4) as f64)
}
