//! A JoinableQueue whose consumers die between `get` and `task_done`: `join` still returns, with
//! the dead consumers' items counted done (and counted in `lost`), never more.

mod common;

use std::time::{Duration, Instant};

use common::watchdog;
use multiproc::{Context, JoinableQueue, Process, Queue, StartMethod};

/// Takes `n` items, says so, and then never finishes them.
fn take_and_hang(q: JoinableQueue<u32>, n: u32, told: Queue<u32>) {
    for _ in 0..n {
        let item = q.get().unwrap();
        told.put(item).unwrap();
    }
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn join_returns_after_a_consumer_dies_between_get_and_task_done() {
    let _w = watchdog(120);
    let q = JoinableQueue::new().unwrap();
    let told = Queue::new().unwrap();
    for i in 0..5 {
        q.put(i).unwrap();
    }
    let mut consumer = Process::spawn(take_and_hang, (q.clone(), 3, told.clone())).unwrap();
    for _ in 0..3 {
        told.get_timeout(Duration::from_secs(20)).unwrap();
    }
    // Two items are left in the queue: we finish them ourselves.
    for _ in 0..2 {
        q.get().unwrap();
        q.task_done().unwrap();
    }
    assert!(q.join_timeout(Duration::from_millis(200)).is_err(), "join returned while a live consumer held items");
    consumer.kill().unwrap();
    let _ = consumer.join();
    q.join_timeout(Duration::from_secs(30)).expect("join hung on the items of a dead consumer");
    assert_eq!(q.lost(), 3);
    assert!(q.task_done().is_err(), "more items were counted done than were put");
}

/// Takes and finishes items until none comes for a while.
fn work(q: JoinableQueue<u32>) {
    while let Ok(_item) = q.get_timeout(Duration::from_millis(300)) {
        // Time between get and task_done, for the kills to land in.
        std::thread::sleep(Duration::from_micros(300));
        q.task_done().unwrap();
    }
}

/// Rounds of: `total` items put, two consumers running `work`, one killed (and replaced) every
/// `pause(kills)` until the queue is empty; then `join` must return, neither early nor never, and
/// count no item twice.
fn kill_loop<W: multiproc::Task<(JoinableQueue<u32>,), Output = ()>>(
    work: W,
    rounds: u32,
    total: u32,
    pause: fn(u64) -> Duration,
) {
    let ctx = Context::new(StartMethod::Fork);
    for round in 0..rounds {
        let q = JoinableQueue::new().unwrap();
        for i in 0..total {
            q.put(i).unwrap();
        }
        let mut kills = 0u64;
        // A consumer killed while it holds items is what this is about.
        let mut workers: Vec<Process<()>> = (0..2).map(|_| ctx.spawn(work, (q.clone(),)).unwrap()).collect();
        let start = Instant::now();
        // A round whose items all went before the first kill (a loaded machine) proves nothing:
        // it gets more, until a kill has landed.
        while (!q.is_empty() || kills == 0) && start.elapsed() < Duration::from_secs(60) {
            if q.is_empty() {
                for i in 0..total {
                    q.put(i).unwrap();
                }
            }
            std::thread::sleep(pause(kills));
            let mut victim = workers.remove(0);
            victim.kill().unwrap();
            let _ = victim.join();
            kills += 1;
            workers.push(ctx.spawn(work, (q.clone(),)).unwrap());
        }
        q.join_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("round {round}: join hung"));
        assert!(kills > 0);
        // join returned: every item was finished or lost with a killed worker, and none was
        // counted lost while it was still in the queue.
        assert_eq!(q.len(), 0, "round {round}: join returned with items still queued");
        assert!(q.lost() <= kills, "round {round}: {} lost with {kills} kills", q.lost());
        for mut w in workers {
            w.join().unwrap();
        }
        assert!(q.task_done().is_err(), "round {round}: more items were counted done than were put");
    }
}

#[test]
fn join_never_hangs_nor_returns_early_while_consumers_are_killed_at_random() {
    let _w = watchdog(240);
    kill_loop(work, 5, 400, |kills| Duration::from_micros(500 + (kills % 7) * 700));
}

/// Takes and finishes items back to back: most of its time is in `get` and `task_done`, where
/// the kills land.
fn work_tight(q: JoinableQueue<u32>) {
    while let Ok(_item) = q.get_timeout(Duration::from_millis(300)) {
        q.task_done().unwrap();
    }
}

#[test]
fn join_counts_exactly_when_consumers_die_inside_get_and_task_done() {
    let _w = watchdog(240);
    kill_loop(work_tight, 3, 2000, |kills| Duration::from_micros(300 + (kills % 5) * 400));
}
