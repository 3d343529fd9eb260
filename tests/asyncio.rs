//! The `_async` methods under a current-thread tokio runtime: every wait leaves the runtime free
//! (another task on the same thread must run for the wait to end), and a cancelled wait takes
//! nothing.

mod common;

use std::future::poll_fn;
use std::pin::Pin;
use std::time::{Duration, Instant};

use common::watchdog;
use futures_core::Stream;
use multiproc::pool::{ProcessPoolExecutor, TaskError, as_completed};
use multiproc::{Connection, Event, JoinableQueue, Pool, Process, Queue, StartMethod, pipe};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap()
}

/// Runs `wait` while a second task on the same thread ticks a few times and then calls
/// `release`: `wait` can only end if it left the thread free for the ticker.
fn released_by_a_task_on_the_same_thread<T>(
    wait: impl std::future::Future<Output = T>,
    release: impl FnOnce() + 'static,
) -> T {
    let rt = runtime();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let ticker = tokio::task::spawn_local(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            release();
        });
        let value = wait.await;
        ticker.await.unwrap();
        value
    })
}

fn next<S: Stream + Unpin>(stream: &mut S) -> impl std::future::Future<Output = Option<S::Item>> + '_ {
    poll_fn(move |cx| Pin::new(&mut *stream).poll_next(cx))
}

#[test]
fn each_wait_leaves_the_runtime_free() {
    let _w = watchdog(120);
    // Queue get.
    let q = Queue::<u32>::new().unwrap();
    let feeder = q.clone();
    let got = released_by_a_task_on_the_same_thread(q.get_async(), move || feeder.put(5).unwrap());
    assert_eq!(got.unwrap(), 5);

    // Queue put into a full bounded queue.
    let q = Queue::<u32>::bounded(1).unwrap();
    q.put(1).unwrap();
    let taker = q.clone();
    released_by_a_task_on_the_same_thread(q.put_async(2), move || assert_eq!(taker.get().unwrap(), 1)).unwrap();
    assert_eq!(q.get().unwrap(), 2);

    // JoinableQueue join.
    let q = JoinableQueue::<u32>::new().unwrap();
    q.put(1).unwrap();
    let worker = q.clone();
    released_by_a_task_on_the_same_thread(q.join_async(), move || {
        worker.get().unwrap();
        worker.task_done().unwrap();
    });

    // Event.
    let event = Event::new().unwrap();
    let setter = event.clone();
    released_by_a_task_on_the_same_thread(event.wait_async(), move || setter.set());

    // Connection recv and send.
    let (a, b) = pipe::<String>().unwrap();
    let got = released_by_a_task_on_the_same_thread(a.recv_async(), move || b.send(&"hi".into()).unwrap());
    assert_eq!(got.unwrap(), "hi");
}

fn wait_then_answer(go: Event) -> u32 {
    go.wait();
    11
}

#[test]
fn process_join_and_pool_results_leave_the_runtime_free() {
    let _w = watchdog(120);
    let go = Event::new().unwrap();
    let mut child = Process::spawn(wait_then_answer, (go.clone(),)).unwrap();
    let setter = go.clone();
    let got = released_by_a_task_on_the_same_thread(child.join_async(), move || setter.set());
    assert_eq!(got.unwrap(), 11);

    let pool = Pool::new(1).unwrap();
    let go = Event::new().unwrap();
    let result = pool.apply_async(wait_then_answer, (go.clone(),)).unwrap();
    assert_eq!(released_by_a_task_on_the_same_thread(result, move || go.set()).unwrap(), 11);

    let executor = ProcessPoolExecutor::new(1).unwrap();
    let go = Event::new().unwrap();
    let future = executor.submit(wait_then_answer, (go.clone(),)).unwrap();
    assert_eq!(released_by_a_task_on_the_same_thread(future, move || go.set()).unwrap(), 11);
    pool.close();
    pool.join().unwrap();
}

fn put_slowly(q: Queue<u64>, n: u64) {
    for i in 0..n {
        if i % 7 == 0 {
            std::thread::sleep(Duration::from_micros(300));
        }
        q.put(i).unwrap();
    }
}

#[test]
fn a_cancelled_get_never_takes_an_item() {
    let _w = watchdog(120);
    const N: u64 = 2000;
    let q = Queue::new().unwrap();
    let mut producer = Process::spawn(put_slowly, (q.clone(), N)).unwrap();
    let mut got = Vec::new();
    let mut cancelled = 0;
    runtime().block_on(async {
        while (got.len() as u64) < N {
            // A timeout short enough to fire in the middle of many gets.
            match tokio::time::timeout(Duration::from_micros(50), q.get_async()).await {
                Ok(item) => got.push(item.unwrap()),
                Err(_) => cancelled += 1,
            }
        }
    });
    producer.join().unwrap();
    assert!(cancelled > 0, "no get was cancelled: the test proved nothing");
    assert_eq!(got, (0..N).collect::<Vec<_>>(), "{cancelled} gets were cancelled");
    assert!(q.try_get().is_err());
}

fn get_slowly(q: Queue<u64>, n: u64) -> Vec<u64> {
    (0..n)
        .map(|i| {
            if i % 7 == 0 {
                std::thread::sleep(Duration::from_micros(300));
            }
            q.get().unwrap()
        })
        .collect()
}

/// `put_async` on a full queue leaves its wait to a watcher, which must wake for the room the
/// next get makes — though a get wakes only sleepers it sees counted — and a cancelled put puts
/// nothing: every item arrives once, in order.
#[test]
fn async_puts_wait_for_room_made_by_another_process() {
    let _w = watchdog(120);
    const N: u64 = 2000;
    let q = Queue::bounded(1).unwrap();
    let mut consumer = Process::spawn(get_slowly, (q.clone(), N)).unwrap();
    let mut cancelled = 0;
    runtime().block_on(async {
        let mut next_item = 0;
        while next_item < N {
            match tokio::time::timeout(Duration::from_micros(50), q.put_async(next_item)).await {
                Ok(put) => {
                    put.unwrap();
                    next_item += 1;
                }
                Err(_) => cancelled += 1,
            }
        }
    });
    assert_eq!(consumer.join().unwrap(), (0..N).collect::<Vec<_>>(), "{cancelled} puts were cancelled");
    assert!(cancelled > 0, "no put was cancelled: the test proved nothing");
}

#[test]
fn a_cancelled_put_puts_nothing() {
    let _w = watchdog(60);
    let q = JoinableQueue::<u32>::bounded(1).unwrap();
    q.put(1).unwrap();
    runtime().block_on(async {
        let timed_out = tokio::time::timeout(Duration::from_millis(20), q.put_async(2)).await;
        assert!(timed_out.is_err());
    });
    assert_eq!(q.get().unwrap(), 1);
    q.task_done().unwrap();
    assert!(q.try_get().is_err(), "the cancelled put went in");
    // Nor was it counted: nothing is unfinished.
    q.join_timeout(Duration::ZERO).unwrap();
}

fn send_big(conn: Connection<Vec<u8>>, len: usize) {
    let message: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    conn.send(&message).unwrap();
}

#[test]
fn a_message_half_received_by_a_cancelled_recv_is_finished_by_the_next() {
    let _w = watchdog(120);
    const LEN: usize = 16 << 20;
    let (ours, theirs) = pipe::<Vec<u8>>().unwrap();
    let mut child = Process::spawn(send_big, (theirs, LEN)).unwrap();
    let mut cancelled = 0;
    let message = runtime().block_on(async {
        loop {
            match tokio::time::timeout(Duration::from_micros(100), ours.recv_async()).await {
                Ok(message) => break message.unwrap(),
                Err(_) => cancelled += 1,
            }
        }
    });
    child.join().unwrap();
    assert!(cancelled > 0, "no recv was cancelled: the test proved nothing");
    assert_eq!(message.len(), LEN);
    assert!(message.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
}

fn watcher_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim() == "multiproc-watch")
        .count()
}

#[test]
fn cancelled_waits_give_their_watchers_back() {
    let _w = watchdog(120);
    let q = Queue::<u8>::new().unwrap();
    let event = Event::new().unwrap();
    let (a, _b) = pipe::<u8>().unwrap();
    runtime().block_on(async {
        for _ in 0..300 {
            let _ = tokio::time::timeout(Duration::from_micros(200), q.get_async()).await;
            let _ = tokio::time::timeout(Duration::from_micros(200), event.wait_async()).await;
            let _ = tokio::time::timeout(Duration::from_micros(200), a.recv_async()).await;
        }
    });
    // 900 waits were cancelled; had their watchers kept sleeping, there would be hundreds.
    let threads = watcher_threads();
    assert!(threads <= 64, "{threads} watcher threads after 900 cancelled waits");
}

fn square(x: u64) -> u64 {
    x * x
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
fn imap_and_as_completed_are_streams() {
    let _w = watchdog(120);
    let pool = Pool::new(2).unwrap();
    runtime().block_on(async {
        let mut squares = pool.imap(square, 0..500u64).unwrap();
        let mut got = Vec::new();
        while let Some(square) = next(&mut squares).await {
            got.push(square.unwrap());
        }
        assert_eq!(got, (0..500u64).map(|x| x * x).collect::<Vec<_>>());

        let mut unordered = pool.imap_unordered(nap, [300, 1]).unwrap();
        assert_eq!(next(&mut unordered).await, Some(Ok(1)));
        assert_eq!(next(&mut unordered).await, Some(Ok(300)));
        assert_eq!(next(&mut unordered).await, None);
    });

    let executor = ProcessPoolExecutor::new(2).unwrap();
    let futures = vec![executor.submit(nap, (60_000,)).unwrap(), executor.submit(nap, (1,)).unwrap()];
    let began = Instant::now();
    runtime().block_on(async {
        let mut done = as_completed(&futures, Some(Duration::from_millis(300)));
        assert_eq!(next(&mut done).await, Some(Ok(1)));
        // The other sleeps a minute: the stream's deadline ends it.
        assert_eq!(next(&mut done).await, Some(Err(multiproc::pool::Timeout)));
        assert_eq!(next(&mut done).await, None);
    });
    assert!(began.elapsed() >= Duration::from_millis(300));
    executor.kill_workers();
}

#[test]
fn a_task_future_cancels_on_drop_only_when_asked() {
    let _w = watchdog(120);
    let executor = ProcessPoolExecutor::new(2).unwrap();
    let kept = executor.submit(nap, (200,)).unwrap();
    let cancelled = executor.submit(nap, (60_000,)).unwrap();
    let rt = runtime();
    rt.block_on(async {
        assert!(tokio::time::timeout(Duration::from_millis(10), kept.clone()).await.is_err());
        let guarded = cancelled.clone().cancel_on_drop();
        assert!(tokio::time::timeout(Duration::from_millis(10), guarded).await.is_err());
    });
    assert_eq!(kept.result(), Ok(200), "a plain future dropped early leaves its task running");
    assert_eq!(cancelled.result(), Err(TaskError::Cancelled));
}

#[test]
fn to_thread_runs_a_manager_call_off_the_runtime_and_resumes_its_panic() {
    let _w = watchdog(120);
    let manager = multiproc::Manager::start().unwrap();
    let counts = manager.dict::<String, i64>().unwrap();
    let proxy = counts.clone();
    runtime().block_on(async move {
        multiproc::asyncio::to_thread(move || proxy.insert("a".into(), 3)).await.unwrap();
    });
    assert_eq!(counts.get(&"a".to_string()).unwrap(), Some(3));
    let panicked = std::panic::catch_unwind(|| runtime().block_on(multiproc::asyncio::to_thread(|| panic!("inside"))));
    assert!(panicked.is_err());
}

fn get_in_a_runtime(q: Queue<u32>) -> u32 {
    runtime().block_on(q.get_async()).unwrap()
}

#[test]
fn a_forked_child_has_watchers_of_its_own() {
    let _w = watchdog(120);
    // Leave idle watchers in this process first: a forked child inherits the list, not them.
    let warm = Queue::<u32>::new().unwrap();
    let _ = runtime().block_on(async { tokio::time::timeout(Duration::from_millis(5), warm.get_async()).await });
    let q = Queue::<u32>::new().unwrap();
    let mut child = Process::builder().start_method(StartMethod::Fork).spawn(get_in_a_runtime, (q.clone(),)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    q.put(9).unwrap();
    assert_eq!(child.join().unwrap(), 9);
}
