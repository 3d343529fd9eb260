//! A worker that is idle takes over work that waits unstarted behind a long task on another
//! worker; work taken back (to be rebalanced or cancelled) never runs where it was.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::watchdog;
use multiproc::pool::TaskError;
use multiproc::{Pool, ProcessPoolExecutor};

/// A scratch directory for one test: tasks leave marks in it.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("multiproc-rebalance-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self) -> String {
        self.0.to_str().unwrap().to_owned()
    }

    fn go(&self) {
        std::fs::write(self.0.join("go"), b"").unwrap();
    }

    fn marks(&self) -> Vec<u32> {
        let mut marks: Vec<u32> = std::fs::read_dir(&self.0)
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().to_str()?.strip_prefix("ran-")?.parse().ok())
            .collect();
        marks.sort_unstable();
        marks
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits (for at most a minute) until the test says go.
fn hold(dir: String) -> u32 {
    for _ in 0..6000 {
        if Path::new(&dir).join("go").exists() {
            return 1;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    0
}

fn short(i: u32) -> u32 {
    std::thread::sleep(Duration::from_millis(10));
    i
}

/// Item 1 holds until go; every other item leaves a mark.
fn step(arg: (String, u32)) -> u32 {
    let (dir, i) = arg;
    if i == 1 {
        return hold(dir);
    }
    std::fs::write(Path::new(&dir).join(format!("ran-{i}")), b"").unwrap();
    i
}

#[test]
fn executor_short_tasks_do_not_wait_behind_a_long_one() {
    let _w = watchdog(120);
    let scratch = Scratch::new("executor");
    let executor = ProcessPoolExecutor::new(2).unwrap();
    for round in 0..3 {
        let long = executor.submit(hold, (scratch.path(),)).unwrap();
        let shorts: Vec<_> = (0..4).map(|i| executor.submit(short, (i,)).unwrap()).collect();
        // Were any of them stuck behind the long task, it would not end before the test says go.
        for (i, f) in shorts.iter().enumerate() {
            assert_eq!(f.result_timeout(Duration::from_secs(30)), Ok(i as u32), "round {round}, short task {i}");
        }
        assert!(!long.done(), "the long task ended early: the test proves nothing");
        scratch.go();
        assert_eq!(long.result(), Ok(1));
        std::fs::remove_file(scratch.0.join("go")).unwrap();
    }
    executor.shutdown(true, false);
}

#[test]
fn apply_async_tasks_do_not_wait_behind_a_long_one() {
    let _w = watchdog(120);
    let scratch = Scratch::new("apply");
    let pool = Pool::new(2).unwrap();
    let long = pool.apply_async(hold, (scratch.path(),)).unwrap();
    let shorts: Vec<_> = (0..8).map(|i| pool.apply_async(short, (i,)).unwrap()).collect();
    for (i, r) in shorts.iter().enumerate() {
        assert_eq!(r.get_timeout(Duration::from_secs(30)), Ok(i as u32), "short task {i}");
    }
    assert!(!long.ready(), "the long task ended early: the test proves nothing");
    scratch.go();
    assert_eq!(long.get(), Ok(1));
}

#[test]
fn every_item_runs_once_while_work_moves_between_workers() {
    let _w = watchdog(120);
    let scratch = Scratch::new("once");
    let pool = Pool::new(2).unwrap();
    for _ in 0..3 {
        let _ = std::fs::remove_file(scratch.0.join("go"));
        let long = pool.apply_async(hold, (scratch.path(),)).unwrap();
        let many: Vec<_> = (0..200).map(|i| pool.apply_async(|i: u32| i * 3, (i,)).unwrap()).collect();
        let mapped = pool.map_async(|i: u32| i + 1, 0..2000).unwrap();
        for (i, r) in many.iter().enumerate() {
            assert_eq!(r.get_timeout(Duration::from_secs(60)), Ok(i as u32 * 3));
        }
        assert_eq!(mapped.get_timeout(Duration::from_secs(60)).unwrap(), (1..=2000).collect::<Vec<u32>>());
        scratch.go();
        assert_eq!(long.get(), Ok(1));
    }
    let done: u64 = pool.stats().iter().map(|s| s.tasks_done).sum();
    assert_eq!(done, 3 * (1 + 200 + 2000), "some item ran twice or not at all");
}

#[test]
fn a_cancelled_task_waiting_in_a_busy_worker_never_runs() {
    let _w = watchdog(120);
    let scratch = Scratch::new("cancel");
    let executor = ProcessPoolExecutor::new(1).unwrap();
    let long = executor.submit(hold, (scratch.path(),)).unwrap();
    // The single worker holds this one too, behind the long task.
    let waiting = executor.submit(step, ((scratch.path(), 7),)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(!waiting.running());
    assert!(waiting.cancel());
    assert_eq!(waiting.result(), Err(TaskError::Cancelled));
    scratch.go();
    assert_eq!(long.result(), Ok(1));
    // One more task through the same worker: everything it was handed before has been read.
    assert_eq!(executor.submit(step, ((scratch.path(), 8),)).unwrap().result(), Ok(8));
    assert_eq!(scratch.marks(), [8], "the cancelled task ran");
    executor.shutdown(true, false);
}

#[test]
fn dropping_a_map_iterator_cancels_what_has_not_started() {
    let _w = watchdog(120);
    let scratch = Scratch::new("drop");
    let executor = ProcessPoolExecutor::new(1).unwrap();
    let items: Vec<(String, u32)> = (0..30).map(|i| (scratch.path(), i)).collect();
    let mut results = executor.map(step, items, 1).unwrap();
    assert_eq!(results.next(), Some(Ok(0)));
    drop(results);
    scratch.go();
    assert_eq!(executor.submit(step, ((scratch.path(), 100),)).unwrap().result(), Ok(100));
    assert_eq!(scratch.marks(), [0, 100], "items of a dropped map ran");
    executor.shutdown(true, false);
}

#[test]
fn cancelling_a_map_stops_it_and_reports_every_item() {
    let _w = watchdog(120);
    let scratch = Scratch::new("cancel-map");
    let executor = ProcessPoolExecutor::new(1).unwrap();
    let items: Vec<(String, u32)> = (0..30).map(|i| (scratch.path(), i)).collect();
    let mut results = executor.map(step, items, 1).unwrap();
    assert_eq!(results.next(), Some(Ok(0)));
    // Item 1 holds its worker until go, which never comes: cancel must stop it.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(results.cancel(), 29);
    let rest: Vec<_> = results.collect();
    assert_eq!(rest.len(), 29);
    assert!(rest.iter().all(|r| *r == Err(TaskError::Cancelled)), "{rest:?}");
    // The worker was replaced and the pool goes on.
    assert_eq!(executor.submit(step, ((scratch.path(), 100),)).unwrap().result(), Ok(100));
    assert_eq!(scratch.marks(), [0, 100], "items of a cancelled map ran");
    executor.shutdown(true, false);
}

/// (pid, start, end) of a nap, on the machine-wide monotonic clock.
fn timed_nap(ms: u64) -> (u32, u128, u128) {
    let now = || {
        let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes one timespec on our stack.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
        t.tv_sec as u128 * 1_000_000_000 + t.tv_nsec as u128
    };
    let start = now();
    std::thread::sleep(Duration::from_millis(ms));
    (std::process::id(), start, now())
}

#[test]
fn imap_with_chunks_larger_than_its_depth_keeps_every_worker_busy() {
    let _w = watchdog(120);
    // Two batches in flight, chunks of five items: counted in items, that was one chunk at a
    // time on one worker; counted in batches, both workers run at once.
    let pool = Pool::builder().processes(2).max_in_flight(2).build().unwrap();
    let spans: Vec<(u32, u128, u128)> =
        pool.imap_chunked(timed_nap, [40u64; 20], 5).unwrap().map(Result::unwrap).collect();
    let overlapping = spans.iter().any(|a| spans.iter().any(|b| a.0 != b.0 && a.1 < b.2 && b.1 < a.2));
    assert!(overlapping, "no two items ran at once on different workers: {spans:?}");
}
