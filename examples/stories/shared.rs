//! The shared-state stories: a counter in a `Value` that ten processes decrement — wrong without
//! its lock, right with it — and an `Array` filled by several processes.
// Each example binary includes this file and runs only some of its stories.
#![allow(dead_code)]

use multiproc::shm::{Array, RawValue, Value};
use multiproc::{Barrier, Process};

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
