//! Process pools: Python's semantics for every call, and the failure matrix — each failure stays
//! with its task while every other task succeeds.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{running, watchdog};
use multiproc::pool::{ResultTimeoutError, ReturnWhen, TaskError, as_completed, wait};
use multiproc::process::{ExitStatus, Signal};
use multiproc::{JoinError, Pool, Process, ProcessPoolExecutor, Queue, StartMethod};

fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn map_returns_results_in_order_with_any_chunking() {
    let _w = watchdog(120);
    let pool = Pool::new(2).unwrap();
    let expected: Vec<u64> = (0..10_000).map(|x| x * x).collect();
    assert_eq!(pool.map(square, 0..10_000).unwrap(), expected);
    assert_eq!(pool.map_chunked(square, 0..1_000, 1).unwrap(), expected[..1_000]);
    assert_eq!(pool.map_chunked(square, 0..1_000, 333).unwrap(), expected[..1_000]);
    assert_eq!(pool.map(square, Vec::new()).unwrap(), Vec::<u64>::new());
    fn add(a: u64, b: u64) -> u64 {
        a + b
    }
    assert_eq!(pool.starmap(add, (0..100).map(|i| (i, 1))).unwrap(), (1..=100).collect::<Vec<u64>>());
    pool.close();
    pool.join().unwrap();
}

#[test]
fn imap_reads_an_endless_input_only_as_far_as_needed() {
    let _w = watchdog(60);
    let pool = Pool::builder().processes(2).max_in_flight(8).build().unwrap();
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let endless = (0u64..).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let first: Vec<u64> = pool.imap(square, endless).unwrap().take(20).map(Result::unwrap).collect();
    assert_eq!(first, (0..20).map(|x| x * x).collect::<Vec<_>>());
    let pulled = pulled.load(Ordering::SeqCst);
    assert!((20..=20 + 8).contains(&pulled), "read {pulled} items of an endless input to yield 20");
}

#[test]
fn imap_unordered_yields_every_result_once() {
    let _w = watchdog(60);
    let pool = Pool::new(2).unwrap();
    let mut got: Vec<u64> = pool.imap_unordered(square, 0..2_000).unwrap().map(Result::unwrap).collect();
    got.sort();
    assert_eq!(got, (0..2_000).map(|x| x * x).collect::<Vec<_>>());
    let mut chunked: Vec<u64> =
        pool.imap_unordered_chunked(square, 0..2_000, 64).unwrap().map(Result::unwrap).collect();
    chunked.sort();
    assert_eq!(chunked.len(), 2_000);
}

fn maybe_fail(n: u32) -> u32 {
    assert!(n % 3 != 0, "{n} is a multiple of three");
    n
}

#[test]
fn apply_async_callbacks_run_in_the_parent_on_one_thread() {
    let _w = watchdog(60);
    let pool = Pool::new(2).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let main_thread = std::thread::current().id();
    let results: Vec<_> = (1..=12)
        .map(|n| {
            let (ok, err) = (seen.clone(), seen.clone());
            pool.apply_async_with(
                maybe_fail,
                (n,),
                move |v: &u32| ok.lock().unwrap().push((std::thread::current().id(), std::process::id(), Ok(*v))),
                move |e: &TaskError| {
                    err.lock().unwrap().push((std::thread::current().id(), std::process::id(), Err(e.clone())))
                },
            )
            .unwrap()
        })
        .collect();
    for (n, r) in (1..=12).zip(&results) {
        match r.get() {
            Ok(v) => assert_eq!(v, n),
            Err(TaskError::Panicked { message, .. }) => assert!(n % 3 == 0 && message.contains("multiple of three")),
            Err(other) => panic!("unexpected {other:?}"),
        }
        assert_eq!(r.successful(), Some(n % 3 != 0));
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 12, "one callback per task");
    let threads: std::collections::HashSet<_> = seen.iter().map(|(t, _, _)| *t).collect();
    assert_eq!(threads.len(), 1, "all callbacks on one thread");
    assert!(!threads.contains(&main_thread));
    assert!(seen.iter().all(|(_, pid, _)| *pid == std::process::id()), "callbacks run in the parent");
    assert_eq!(seen.iter().filter(|(_, _, r)| r.is_err()).count(), 4);
}

#[test]
fn a_panicking_callback_does_not_stop_result_delivery() {
    let _w = watchdog(60);
    let pool = Pool::new(1).unwrap();
    let first = pool.apply_async_with(square, (2,), |_| panic!("callback bug"), |_| {}).unwrap();
    let second = pool.apply_async(square, (3,)).unwrap();
    assert_eq!(first.get().unwrap(), 4);
    assert_eq!(second.get().unwrap(), 9);
}

#[test]
fn max_tasks_per_child_replaces_workers() {
    let _w = watchdog(60);
    let pool = Pool::builder().processes(1).max_tasks_per_child(3).build().unwrap();
    let pids: Vec<u32> = (0..9).map(|_| pool.apply(std::process::id, ()).unwrap()).collect();
    for chunk in pids.chunks(3) {
        assert!(chunk.iter().all(|&p| p == chunk[0]), "one worker ran three tasks: {pids:?}");
    }
    assert!(pids[0] != pids[3] && pids[3] != pids[6], "a new worker every three tasks: {pids:?}");
    assert!(pool.stats()[0].restarts >= 2, "restarts are counted");
}

fn announce(q: Queue<u32>) {
    q.put(std::process::id()).unwrap();
}

#[test]
fn the_initializer_runs_once_per_worker_and_may_hold_handles() {
    let _w = watchdog(60);
    let q = Queue::new().unwrap();
    let pool = Pool::builder().processes(3).initializer(announce, (q.clone(),)).build().unwrap();
    let workers: std::collections::HashSet<u32> =
        pool.map_chunked(|_: u8| std::process::id(), 0..60, 1).unwrap().into_iter().collect();
    pool.close();
    pool.join().unwrap();
    let mut announced = Vec::new();
    while let Ok(pid) = q.try_get() {
        announced.push(pid);
    }
    announced.sort();
    let mut unique = announced.clone();
    unique.dedup();
    assert_eq!(announced, unique, "no worker ran the initializer twice");
    assert_eq!(announced.len(), 3);
    assert!(workers.iter().all(|pid| announced.contains(pid)));
}

fn broken_init() {
    panic!("cannot open the database");
}

#[test]
fn a_failing_initializer_breaks_the_pool_clearly() {
    let _w = watchdog(60);
    let pool = Pool::builder().processes(2).initializer(broken_init, ()).build().unwrap();
    match pool.apply(square, (1,)) {
        Err(TaskError::Broken(why)) => assert!(why.contains("cannot open the database"), "{why}"),
        other => panic!("expected a broken pool, got {other:?}"),
    }
    assert!(matches!(pool.apply(square, (2,)), Err(TaskError::Broken(_))));
    let restarts: u32 = pool.stats().iter().map(|s| s.restarts).sum();
    assert_eq!(restarts, 0, "no respawn storm");
}

fn exit_at_start() {
    std::process::exit(7);
}

#[test]
fn workers_dying_on_start_end_in_an_error_not_a_loop() {
    let _w = watchdog(60);
    let pool = Pool::builder().processes(2).initializer(exit_at_start, ()).build().unwrap();
    assert!(matches!(pool.apply(square, (1,)), Err(TaskError::Broken(_))));
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn nap_or_fail(ms: u64) -> u64 {
    assert!(ms > 0, "no nap");
    nap(ms)
}

#[test]
fn close_join_and_terminate() {
    let _w = watchdog(60);
    let pool = Pool::new(2).unwrap();
    let pending: Vec<_> = (0..4).map(|_| pool.apply_async(nap, (50,)).unwrap()).collect();
    assert!(pool.join().is_err(), "join before close is an error");
    pool.close();
    assert_eq!(pool.apply_async(nap, (1,)).unwrap_err(), TaskError::Closed);
    pool.join().unwrap();
    assert!(pending.iter().all(|r| r.get() == Ok(50)), "close lets work in hand finish");
    assert!(pool.stats().iter().all(|s| s.pid.is_none()), "workers exited");

    let pool = Pool::new(2).unwrap();
    let long: Vec<_> = (0..4).map(|_| pool.apply_async(nap, (60_000,)).unwrap()).collect();
    let pids: Vec<u32> = pool.stats().iter().filter_map(|s| s.pid).collect();
    pool.terminate();
    assert!(long.iter().all(|r| r.get() == Err(TaskError::Terminated)));
    assert!(pids.iter().all(|&pid| !running(pid)), "terminate stops the workers");
    pool.join().unwrap();

    // Dropping a pool terminates it.
    let pool = Pool::new(1).unwrap();
    let r = pool.apply_async(nap, (60_000,)).unwrap();
    let pid = pool.stats()[0].pid.unwrap();
    drop(pool);
    assert_eq!(r.get(), Err(TaskError::Terminated));
    assert!(!running(pid));
}

/// What a task of the failure matrix does.
#[derive(serde::Serialize, serde::Deserialize, Clone, Copy, Debug)]
enum Act {
    Fine(u32),
    Panic,
    Kill,
    Abort,
    Exit3,
    IgnoreTermAndHang,
}

fn act(a: Act) -> u32 {
    match a {
        Act::Fine(n) => {
            std::thread::sleep(Duration::from_millis(2));
            n
        }
        Act::Panic => panic!("task panicked on purpose"),
        Act::Kill => {
            // SAFETY: sends SIGKILL to this very process (the worker), as the OOM killer would.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            unreachable!()
        }
        Act::Abort => std::process::abort(),
        Act::Exit3 => std::process::exit(3),
        Act::IgnoreTermAndHang => {
            // SAFETY: sets SIGTERM's disposition to ignore; no handler code runs.
            unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
            std::thread::sleep(Duration::from_secs(600));
            0
        }
    }
}

fn failure_matrix(method: StartMethod) {
    let timeout = Duration::from_millis(700);
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .task_timeout(timeout)
        .kill_grace(Duration::from_millis(200))
        .build()
        .unwrap();
    let mut acts: Vec<Act> = (0..40).map(Act::Fine).collect();
    for (at, bad) in
        [(3, Act::Panic), (11, Act::Kill), (17, Act::Abort), (23, Act::Exit3), (31, Act::IgnoreTermAndHang)]
    {
        acts[at] = bad;
    }
    let began = Instant::now();
    let outcomes: Vec<Result<u32, TaskError>> = pool.imap(act, acts.clone()).unwrap().collect();
    for (i, (a, outcome)) in acts.iter().zip(&outcomes).enumerate() {
        match (a, outcome) {
            (Act::Fine(n), Ok(v)) => assert_eq!(n, v),
            (Act::Panic, Err(TaskError::Panicked { message, .. })) => assert!(message.contains("on purpose")),
            (Act::Kill, Err(TaskError::WorkerDied { status, .. })) => {
                assert_eq!(*status, ExitStatus::Signal(Signal::KILL))
            }
            (Act::Abort, Err(TaskError::WorkerDied { status, .. })) => {
                assert_eq!(*status, ExitStatus::Signal(Signal::ABRT))
            }
            (Act::Exit3, Err(TaskError::WorkerDied { status, .. })) => assert_eq!(*status, ExitStatus::Code(3)),
            (Act::IgnoreTermAndHang, Err(TaskError::TimedOut { timeout: t, .. })) => assert_eq!(*t, timeout),
            _ => panic!("task {i} ({a:?}) ended with {outcome:?}"),
        }
    }
    assert!(began.elapsed() >= timeout, "the timed-out task was given its time");
    // The pool is whole again: every place has a live worker.
    assert_eq!(pool.map(square, 0..10).unwrap()[9], 81);
    assert!(pool.stats().iter().all(|s| s.pid.is_some_and(running)));
}

#[test]
fn failures_stay_with_their_task_under_forkserver() {
    let _w = watchdog(120);
    failure_matrix(StartMethod::ForkServer);
}

#[test]
fn failures_stay_with_their_task_under_fork() {
    let _w = watchdog(120);
    failure_matrix(StartMethod::Fork);
}

#[test]
fn failures_stay_with_their_task_under_spawn() {
    let _w = watchdog(120);
    failure_matrix(StartMethod::Spawn);
}

#[test]
fn a_worker_killed_mid_chunk_fails_only_its_item() {
    let _w = watchdog(60);
    let pool = Pool::new(2).unwrap();
    let mut acts: Vec<Act> = (0..200).map(Act::Fine).collect();
    acts[57] = Act::Kill;
    match pool.map_chunked(act, acts.clone(), 20) {
        Err(TaskError::WorkerDied { status, .. }) => assert_eq!(status, ExitStatus::Signal(Signal::KILL)),
        other => panic!("expected the killed item's error, got {other:?}"),
    }
    let outcomes: Vec<_> = pool.imap_chunked(act, acts, 20).unwrap().collect();
    assert_eq!(outcomes.iter().filter(|o| o.is_err()).count(), 1);
    assert!(outcomes[57].is_err());
}

/// Fails to encode: as an argument in the caller, as a result in the worker.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
struct Unencodable;

impl serde::Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("this value cannot be encoded"))
    }
}

fn returns_unencodable() -> Unencodable {
    Unencodable
}

fn takes_unencodable(_: Unencodable) -> u8 {
    0
}

#[test]
fn unencodable_arguments_and_results_are_distinct_errors() {
    let _w = watchdog(60);
    let pool = Pool::new(1).unwrap();
    assert!(matches!(pool.apply_async(takes_unencodable, (Unencodable,)), Err(TaskError::ArgumentEncode(_))));
    assert!(matches!(pool.apply(returns_unencodable, ()), Err(TaskError::ResultEncode(_))));
    assert_eq!(pool.apply(square, (5,)).unwrap(), 25, "the pool goes on");
}

#[test]
fn result_waits_respect_their_timeouts() {
    let _w = watchdog(60);
    let pool = Pool::new(1).unwrap();
    let r = pool.apply_async(nap, (400,)).unwrap();
    let began = Instant::now();
    assert_eq!(r.get_timeout(Duration::from_millis(100)), Err(ResultTimeoutError::Timeout));
    assert!(began.elapsed() >= Duration::from_millis(100));
    assert!(!r.ready());
    assert!(!r.wait_timeout(Duration::from_millis(10)));
    assert_eq!(r.get_timeout(Duration::from_secs(30)), Ok(400));
}

// ----- the executor -----

#[test]
fn executor_futures_follow_python() {
    let _w = watchdog(60);
    let executor = ProcessPoolExecutor::new(2).unwrap();
    let fast = executor.submit(nap, (10,)).unwrap();
    let slow = executor.submit(nap, (400,)).unwrap();
    let failing = executor.submit(maybe_fail, (3,)).unwrap();
    assert_eq!(fast.result().unwrap(), 10);
    assert!(matches!(failing.exception(), Some(TaskError::Panicked { .. })));
    assert_eq!(slow.result_timeout(Duration::from_millis(1)), Err(ResultTimeoutError::Timeout));
    assert_eq!(slow.result_timeout(Duration::from_secs(30)), Ok(400));
    assert!(fast.done() && !fast.cancelled() && !fast.running());
    assert!(!fast.cancel(), "a finished future cannot be cancelled");

    // Callbacks: immediately when done, else in the parent when it finishes.
    let (tx, rx) = std::sync::mpsc::channel();
    let tx2 = tx.clone();
    fast.add_done_callback(move |f| tx.send(("immediate", f.result().unwrap())).unwrap());
    let later = executor.submit(nap, (50,)).unwrap();
    later.add_done_callback(move |f| tx2.send(("later", f.result().unwrap())).unwrap());
    assert_eq!(rx.recv().unwrap(), ("immediate", 10));
    assert_eq!(rx.recv().unwrap(), ("later", 50));

    // as_completed and wait.
    let futures = vec![executor.submit(nap, (300,)).unwrap(), executor.submit(nap, (5,)).unwrap()];
    let order: Vec<usize> = as_completed(&futures, None).map(Result::unwrap).collect();
    assert_eq!(order, [1, 0]);
    let futures = vec![
        executor.submit(nap, (5,)).unwrap(),
        executor.submit(nap_or_fail, (0,)).unwrap(),
        executor.submit(nap, (3_000,)).unwrap(),
    ];
    let (done, not_done) = wait(&futures, ReturnWhen::FirstException, None);
    assert!(done.contains(&1) && not_done.contains(&2), "{done:?} {not_done:?}");
    let (done, _) = wait(&futures, ReturnWhen::AllCompleted, None);
    assert_eq!(done, [0, 1, 2]);
    let began = Instant::now();
    let timeout = Duration::from_millis(100);
    let hanging = vec![executor.submit(nap, (2_000,)).unwrap()];
    let (done, not_done) = wait(&hanging, ReturnWhen::AllCompleted, Some(timeout));
    assert!(done.is_empty() && not_done == [0] && began.elapsed() >= timeout);

    // Lazy map.
    let squares: Vec<u64> = executor.map(square, 0..100, 7).unwrap().map(Result::unwrap).collect();
    assert_eq!(squares[99], 99 * 99);
    executor.shutdown(true, false);
    assert_eq!(executor.submit(nap, (1,)).unwrap_err(), TaskError::Closed);
}

#[test]
fn cancelling_a_running_future_stops_its_worker() {
    let _w = watchdog(60);
    let executor =
        ProcessPoolExecutor::builder().processes(1).kill_grace(Duration::from_millis(200)).build_executor().unwrap();
    let stuck = executor.submit(act, (Act::IgnoreTermAndHang,)).unwrap();
    let queued = executor.submit(nap, (1,)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !stuck.running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(stuck.running());
    let pid = executor.stats()[0].pid.unwrap();
    assert!(stuck.cancel());
    assert!(stuck.cancelled());
    assert_eq!(stuck.result(), Err(TaskError::Cancelled));
    assert_eq!(queued.result().unwrap(), 1, "the queued task runs on the replacement worker");
    assert!(!running(pid), "the worker that ran the cancelled task was stopped (it ignored SIGTERM)");
    assert_eq!(executor.stats()[0].restarts, 1);
}

#[test]
fn shutdown_can_cancel_waiting_futures() {
    let _w = watchdog(60);
    let executor = ProcessPoolExecutor::new(1).unwrap();
    let futures: Vec<_> = (0..10).map(|_| executor.submit(nap, (100,)).unwrap()).collect();
    executor.shutdown(true, true);
    let cancelled = futures.iter().filter(|f| f.cancelled()).count();
    assert!(cancelled >= 5, "only {cancelled} of the waiting futures were cancelled");
    assert!(futures.iter().all(|f| f.done()));
}

#[test]
fn a_task_future_can_be_awaited() {
    let _w = watchdog(60);
    let executor = ProcessPoolExecutor::new(1).unwrap();
    let future = executor.submit(square, (12,)).unwrap();
    // A minimal executor for one future: park until woken.
    let waker = std::task::Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    let value = loop {
        match future.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => break v,
            std::task::Poll::Pending => std::thread::park_timeout(Duration::from_millis(100)),
        }
    };
    assert_eq!(value, Ok(144));
}

struct ThreadWaker(std::thread::Thread);

impl std::task::Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

// ----- the parent's end -----

fn pool_parent(report: Queue<Vec<u32>>) {
    let pool = Pool::new(2).unwrap();
    let pids: Vec<u32> = pool.stats().iter().filter_map(|s| s.pid).collect();
    report.put(pids).unwrap();
    let _ = pool.map_chunked(nap, vec![60_000; 8], 1);
}

fn ends_and_leaves_no_workers(stop: impl FnOnce(&Process<()>), expected: Signal) {
    let report = Queue::new().unwrap();
    let mut parent = Process::spawn(pool_parent, (report.clone(),)).unwrap();
    let workers = report.get_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(workers.len(), 2);
    std::thread::sleep(Duration::from_millis(100)); // let map get going
    stop(&parent);
    match parent.join() {
        Err(JoinError::Exited(ExitStatus::Signal(signal))) => assert_eq!(signal, expected),
        other => panic!("the pool's parent should have died of {expected:?}, got {other:?}"),
    }
    // The workers die with their parent (the watchdog fails the test if they never do).
    while workers.iter().any(|&pid| running(pid)) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn ctrl_c_during_map_ends_the_program_and_its_workers() {
    let _w = watchdog(60);
    ends_and_leaves_no_workers(|p| p.interrupt().unwrap(), Signal::INT);
}

#[test]
fn a_killed_parent_leaves_no_workers() {
    let _w = watchdog(60);
    ends_and_leaves_no_workers(|p| p.kill().unwrap(), Signal::KILL);
}

#[cfg(feature = "progress")]
#[test]
fn maps_with_a_progress_bar_give_the_same_results() {
    let _w = watchdog(60);
    let pool = Pool::builder().processes(2).progress(true).build().unwrap();
    assert_eq!(pool.map(square, 0..1_000).unwrap()[999], 999 * 999);
    let lazy: Vec<u64> = pool.imap(square, 0..100).unwrap().map(Result::unwrap).collect();
    assert_eq!(lazy.len(), 100);
}

fn hang_a_while() -> u8 {
    std::thread::sleep(Duration::from_secs(50));
    0
}

#[test]
fn a_lone_task_past_its_timeout_is_stopped() {
    let _w = watchdog(40);
    let timeout = Duration::from_millis(100);
    let pool = Pool::builder().processes(1).task_timeout(timeout).build().unwrap();
    for _ in 0..3 {
        let began = Instant::now();
        assert!(matches!(pool.apply(hang_a_while, ()), Err(TaskError::TimedOut { .. })));
        assert!(began.elapsed() >= timeout);
    }
    assert_eq!(pool.apply(square, (4,)).unwrap(), 16);
}

fn echo_bytes(bytes: serde_bytes::ByteBuf) -> serde_bytes::ByteBuf {
    bytes
}

/// Items and results so big that a worker's order ring holds two orders and the report ring two
/// reports: the thread that hands out orders is also the one that takes reports, so it must
/// never wait for room in an order ring — a worker blocked on a full report ring would never
/// make any. Every item comes back, in order.
#[test]
fn big_items_and_results_never_jam_the_rings() {
    let _w = watchdog(120);
    let pool = Pool::new(1).unwrap();
    let items: Vec<serde_bytes::ByteBuf> = (0..24u8).map(|i| serde_bytes::ByteBuf::from(vec![i; 3 << 19])).collect();
    let back = pool.map_chunked(echo_bytes, items.clone(), 1).unwrap();
    assert!(back == items, "items came back changed or out of order");
    pool.close();
    pool.join().unwrap();
}
