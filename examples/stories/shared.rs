//! The shared-state stories: a counter in a `Value` that ten processes decrement — wrong without
//! its lock, right with it — and an `Array` filled by several processes.
// Each example binary includes this file and runs only some of its stories.
#![allow(dead_code)]

use multiproc::manager::DictProxy;
use multiproc::shm::{Array, RawValue, Value};
use multiproc::{Barrier, Lock, Manager, Process};

/// Takes one from the counter `times` times under its lock (a read-modify-write).
fn take_locked(counter: Value<i64>, times: u32) {
    for _ in 0..times {
        *counter.lock().unwrap() -= 1;
    }
}

/// The same without a lock: read, then write back one less. Another process can read the same
/// number in between, and one of the two decrements is lost.
fn take_unlocked(counter: RawValue<i64>, start: Barrier, times: u32) {
    start.wait().unwrap(); // everyone at once, so that the races happen
    for _ in 0..times {
        let seen = counter.get();
        for _ in 0..20 {
            std::hint::spin_loop(); // "thinking" between the read and the write
        }
        counter.set(seen - 1);
    }
}

/// Ten processes each take 1,000 from a counter of 10,000: with the lock it ends at zero; without
/// it, updates are lost.
pub fn counter_story() {
    println!("== The counter: ten processes decrement a shared Value ==");
    let locked = Value::new(10_000i64).unwrap();
    let mut takers: Vec<_> = (0..10).map(|_| Process::spawn(take_locked, (locked.clone(), 1_000)).unwrap()).collect();
    takers.iter_mut().for_each(|t| t.join().unwrap());
    assert_eq!(locked.get(), 0);
    println!("with the Value's lock: 10000 - 10 × 1000 = {}", locked.get());

    let unlocked = RawValue::new(10_000i64).unwrap();
    let start = Barrier::new(10).unwrap();
    let mut takers: Vec<_> =
        (0..10).map(|_| Process::spawn(take_unlocked, (unlocked.clone(), start.clone(), 1_000)).unwrap()).collect();
    takers.iter_mut().for_each(|t| t.join().unwrap());
    let left = unlocked.get();
    println!(
        "without a lock (RawValue): {left} left — {}\n",
        if left > 0 { format!("{left} decrements lost to races") } else { "no race this time (it is luck)".into() }
    );
}

fn fill_squares(squares: Array<u64>, worker: usize, workers: usize) -> usize {
    let mut filled = 0;
    for i in (worker..squares.len()).step_by(workers) {
        squares.set(i, (i * i) as u64);
        filled += 1;
    }
    filled
}

/// Four processes fill a shared array, each its own stripe.
pub fn array_story() {
    println!("== An Array filled by four processes ==");
    let squares = Array::<u64>::new(20).unwrap();
    let mut workers: Vec<_> = (0..4).map(|w| Process::spawn(fill_squares, (squares.clone(), w, 4)).unwrap()).collect();
    let filled: Vec<usize> = workers.iter_mut().map(|w| w.join().unwrap()).collect();
    let all = squares.to_vec();
    assert_eq!(all, (0..20u64).map(|i| i * i).collect::<Vec<_>>());
    println!("each process filled {filled:?} slots: {all:?}\n");
}

/// The seeds' Manager counter: `{"num": N}` in a managed dict, one decrement per process.
fn decrement_unlocked(d: DictProxy<String, i64>, start: Barrier) {
    start.wait().unwrap();
    let num = d.get(&"num".to_string()).unwrap().unwrap(); // read...
    std::thread::sleep(std::time::Duration::from_millis(1)); // ...think...
    d.insert("num".to_string(), num - 1).unwrap(); // ...write: someone else may have written meanwhile
}

fn decrement_locked(d: DictProxy<String, i64>, lock: Lock) {
    let _guard = lock.acquire().unwrap();
    let num = d.get(&"num".to_string()).unwrap().unwrap();
    d.insert("num".to_string(), num - 1).unwrap();
}

fn decrement_atomic(d: DictProxy<String, i64>) {
    d.add(&"num".to_string(), -1).unwrap(); // one step, in the manager
}

/// Ten processes decrement a Manager dict entry: without a lock updates are lost; with a Lock,
/// or with the manager's atomic add (no lock at all), the count is exact. Then a hundred.
pub fn manager_counter_story() {
    println!("== The Manager counter: processes decrement d[\"num\"] ==");
    let manager = Manager::start().unwrap();
    let d = manager.dict::<String, i64>().unwrap();

    d.insert("num".into(), 10).unwrap();
    let start = Barrier::new(10).unwrap();
    let mut ps: Vec<_> =
        (0..10).map(|_| Process::spawn(decrement_unlocked, (d.clone(), start.clone())).unwrap()).collect();
    ps.iter_mut().for_each(|p| p.join().unwrap());
    let left = d.get(&"num".to_string()).unwrap().unwrap();
    println!("no lock:      10 - 10 = {left}  ({left} updates lost: the manager's dict has no lock of its own)");

    let lock = Lock::new().unwrap();
    for n in [10i64, 100] {
        d.insert("num".into(), n).unwrap();
        let mut ps: Vec<_> =
            (0..n).map(|_| Process::spawn(decrement_locked, (d.clone(), lock.clone())).unwrap()).collect();
        ps.iter_mut().for_each(|p| p.join().unwrap());
        assert_eq!(d.get(&"num".to_string()).unwrap(), Some(0));
        println!("with a Lock:  {n} - {n} = 0");
    }

    for n in [10i64, 100] {
        d.insert("num".into(), n).unwrap();
        let mut ps: Vec<_> = (0..n).map(|_| Process::spawn(decrement_atomic, (d.clone(),)).unwrap()).collect();
        ps.iter_mut().for_each(|p| p.join().unwrap());
        assert_eq!(d.get(&"num".to_string()).unwrap(), Some(0));
        println!("atomic add:   {n} - {n} = 0 (no lock)");
    }
    println!();
}

/// The second program of the remote story: connects by address and key alone, takes jobs from
/// the shared queue and puts answers back.
pub fn remote_worker(address: &str) {
    let manager = Manager::connect(address, b"seeds-authkey").unwrap();
    let (jobs, answers) =
        (manager.queue_named::<Option<u64>>("jobs").unwrap(), manager.queue_named::<(u64, u64)>("answers").unwrap());
    while let Some(n) = jobs.get().unwrap() {
        answers.put((n, n * n)).unwrap();
    }
}

/// A manager served over TCP on localhost; a second program, started separately with nothing
/// but the address and the key, works from its queue.
pub fn remote_manager_story(worker_program: &std::path::Path, worker_args: &[&str]) {
    println!("== A remote manager: a shared queue served over TCP to another program ==");
    let manager = Manager::serve("127.0.0.1:0", b"seeds-authkey").unwrap();
    let (jobs, answers) =
        (manager.queue_named::<Option<u64>>("jobs").unwrap(), manager.queue_named::<(u64, u64)>("answers").unwrap());
    for n in 1..=5 {
        jobs.put(Some(n)).unwrap();
    }
    jobs.put(None).unwrap();
    println!("serving at {}; starting {} {:?}", manager.address(), worker_program.display(), worker_args);
    let status = std::process::Command::new(worker_program).args(worker_args).arg(manager.address()).status().unwrap();
    assert!(status.success());
    let mut got: Vec<(u64, u64)> = (0..5).map(|_| answers.get().unwrap()).collect();
    got.sort();
    assert_eq!(got, [(1, 1), (2, 4), (3, 9), (4, 16), (5, 25)]);
    println!("the other program answered: {got:?}\n");
}
