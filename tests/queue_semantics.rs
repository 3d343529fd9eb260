//! Queues across processes: Python's semantics, order, big items, bad items, JoinableQueue.

mod common;

use std::time::{Duration, Instant};

use common::watchdog;
use multiproc::queue::{GetError, GetTimeoutError, PutError, PutTimeoutError, TaskDoneError, TryGetError, TryPutError};
use multiproc::{Context, ErrorKind, Fd, JoinableQueue, Process, Queue, SimpleQueue, StartMethod};

per_method!(items_from_one_producer_arrive_in_order);

fn produce(q: Queue<(u32, u64)>, producer: u32, count: u64) {
    for seq in 0..count {
        q.put((producer, seq)).unwrap();
    }
}

fn items_from_one_producer_arrive_in_order(method: StartMethod) {
    let _w = watchdog(60);
    let q = Queue::new().unwrap();
    let mut child = Context::new(method).spawn(produce, (q.clone(), 7, 20_000)).unwrap();
    for expected in 0..20_000 {
        assert_eq!(q.get().unwrap(), (7, expected));
    }
    child.join().unwrap();
    assert!(q.is_empty());
}

#[test]
fn items_from_many_producers_all_arrive_exactly_once() {
    let _w = watchdog(60);
    let q = Queue::with_capacity(0, 16 << 10).unwrap();
    let mut producers: Vec<_> = (0..4).map(|p| Process::spawn(produce, (q.clone(), p, 5_000)).unwrap()).collect();
    let mut seen = vec![Vec::new(); 4];
    for _ in 0..20_000 {
        let (producer, seq) = q.get_timeout(Duration::from_secs(20)).unwrap();
        seen[producer as usize].push(seq);
    }
    for p in &mut producers {
        p.join().unwrap();
    }
    for (producer, seqs) in seen.iter().enumerate() {
        // FIFO per producer, and every item exactly once.
        assert_eq!(seqs, &(0..5_000).collect::<Vec<u64>>(), "producer {producer}");
    }
    assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
}

#[test]
fn python_semantics_of_put_get_len_and_timeouts() {
    let _w = watchdog(60);
    let q = Queue::bounded(2).unwrap();
    assert_eq!(q.maxsize(), 2);
    assert!(q.is_empty() && !q.is_full());
    let timeout = Duration::from_millis(150);
    let started = Instant::now();
    assert!(matches!(q.get_timeout(timeout), Err(GetTimeoutError::Timeout)));
    assert!(started.elapsed() >= timeout);
    assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
    q.put("a".to_string()).unwrap();
    assert_eq!(q.len(), 1);
    q.try_put("b".to_string()).unwrap();
    assert!(q.is_full());
    match q.try_put("c".to_string()) {
        Err(TryPutError::Full(item)) => assert_eq!(item, "c", "a full queue hands the item back"),
        other => panic!("expected Full, got {other:?}"),
    }
    let started = Instant::now();
    match q.put_timeout("d".to_string(), timeout) {
        Err(PutTimeoutError::Timeout(item)) => assert_eq!(item, "d"),
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(started.elapsed() >= timeout);
    assert_eq!(q.get().unwrap(), "a");
    assert_eq!(q.len(), 1);
    assert_eq!(q.get_timeout(timeout).unwrap(), "b");
    assert_eq!(q.len(), 0);
    // An unbounded queue is never full.
    let unbounded = Queue::<u8>::new().unwrap();
    assert!(!unbounded.is_full());
    assert_eq!(unbounded.maxsize(), 0);
}

#[test]
fn closed_handles_refuse_and_lose_nothing() {
    let q = Queue::new().unwrap();
    let other = q.clone();
    q.put(1u8).unwrap();
    q.close();
    assert!(matches!(q.put(2), Err(PutError::Closed(2))));
    assert!(matches!(q.get(), Err(GetError::Closed)));
    assert!(matches!(q.try_get(), Err(TryGetError::Closed)));
    assert_eq!(other.get().unwrap(), 1, "closing one handle loses nothing for the others");
}

/// A value that refuses to encode 99, refuses to decode 13, panics when 66 is encoded a second
/// time (the queue measures an item, then encodes it in place) and panics when 77 is decoded.
#[derive(Debug, PartialEq)]
struct Picky(u8);

thread_local! {
    static ENCODED_66: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

impl serde::Serialize for Picky {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 99 {
            return Err(serde::ser::Error::custom("99 is not encodable"));
        }
        if self.0 == 66 && ENCODED_66.replace(ENCODED_66.get() + 1) % 2 == 1 {
            panic!("66 panics while being written");
        }
        s.serialize_u8(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Picky {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u8::deserialize(d)? {
            13 => Err(serde::de::Error::custom("13 is unlucky")),
            77 => panic!("77 panics while being read"),
            n => Ok(Picky(n)),
        }
    }
}

#[test]
fn a_panic_while_encoding_or_decoding_leaves_the_queue_usable() {
    let _w = watchdog(60);
    let q = Queue::new().unwrap();
    let put = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| q.put(Picky(66))));
    assert!(put.is_err(), "the panic reaches the caller");
    assert!(q.is_empty(), "nothing half-written is published");
    q.put(Picky(77)).unwrap();
    q.put(Picky(5)).unwrap();
    let get = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| q.get()));
    assert!(get.is_err(), "the panic reaches the caller");
    // The item that panicked is gone (it would panic again), the locks are free, the rest is there.
    assert_eq!(q.get_timeout(Duration::from_secs(20)).unwrap(), Picky(5));
    q.put(Picky(6)).unwrap();
    assert_eq!(q.get_timeout(Duration::from_secs(20)).unwrap(), Picky(6));
}

fn get_from_the_queue_i_was_sent(conn: multiproc::Connection<Queue<String>>) -> String {
    let q = conn.recv().unwrap();
    q.get().unwrap()
}

#[test]
fn a_queue_handle_travels_over_a_connection() {
    let _w = watchdog(60);
    let (ours, theirs) = multiproc::pipe::<Queue<String>>().unwrap();
    let mut child = Process::spawn(get_from_the_queue_i_was_sent, (theirs,)).unwrap();
    let q = Queue::new().unwrap();
    ours.send(&q).unwrap();
    q.put("through the queue".to_string()).unwrap();
    assert_eq!(child.join().unwrap(), "through the queue");
}

#[test]
fn bad_items_are_errors_for_that_call_only() {
    let q = Queue::new().unwrap();
    match q.put(Picky(99)) {
        Err(PutError::Failed(item, err)) => {
            assert_eq!(item, Picky(99));
            assert_eq!(err.kind(), ErrorKind::Encode);
        }
        other => panic!("expected an encode failure, got {other:?}"),
    }
    assert!(q.is_empty(), "an item that cannot be encoded is not put");
    q.put(Picky(13)).unwrap();
    q.put(Picky(14)).unwrap();
    match q.get() {
        Err(GetError::Failed(err)) => assert_eq!(err.kind(), ErrorKind::Decode),
        other => panic!("expected a decode failure, got {other:?}"),
    }
    assert_eq!(q.get().unwrap(), Picky(14), "the queue stays usable");

    let handles = Queue::new().unwrap();
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    match handles.put(Fd::from(a)) {
        Err(PutError::Failed(_, err)) => assert_eq!(err.kind(), ErrorKind::HandleOutsideTransfer),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn put_big(q: Queue<Vec<u8>>, sizes: Vec<usize>) {
    for (i, size) in sizes.into_iter().enumerate() {
        q.put((0..size).map(|j| (i + j) as u8).collect()).unwrap();
    }
}

#[test]
fn items_of_every_size_pass_a_small_ring() {
    let _w = watchdog(120);
    // An 8 KiB ring: items up to 4 KiB go whole, larger ones stream in chunks.
    let q = Queue::with_capacity(0, 8 << 10).unwrap();
    let sizes: Vec<usize> =
        (0..300).map(|i| (i * 7919) % 40_000).chain([0, 1, 4095, 4096, 4097, 8192, 100_000]).collect();
    let mut producer = Process::spawn(put_big, (q.clone(), sizes.clone())).unwrap();
    for (i, size) in sizes.into_iter().enumerate() {
        let item = q.get_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!(item.len(), size, "item {i}");
        assert!(item.iter().enumerate().all(|(j, &b)| b == (i + j) as u8), "item {i} is torn");
    }
    producer.join().unwrap();
}

fn put_256_mib(q: Queue<Vec<u8>>) {
    q.put(vec![0xab; 256 << 20]).unwrap();
}

#[test]
fn a_256_mib_item_goes_through() {
    let _w = watchdog(120);
    let q = Queue::new().unwrap();
    let mut producer = Process::spawn(put_256_mib, (q.clone(),)).unwrap();
    let item = q.get().unwrap();
    producer.join().unwrap();
    assert_eq!(item.len(), 256 << 20);
    assert!(item.iter().all(|&b| b == 0xab));
}

fn put_and_leave(q: Queue<u32>) {
    for i in 0..1000 {
        q.put(i).unwrap();
    }
}

#[test]
fn a_child_that_put_items_exits_before_anyone_reads_them() {
    let _w = watchdog(60);
    let q = Queue::new().unwrap();
    let mut child = Process::spawn(put_and_leave, (q.clone(),)).unwrap();
    child.join().unwrap(); // no feeder thread to drain: the child is simply gone
    assert_eq!(q.len(), 1000);
    assert_eq!((0..1000).map(|_| q.get().unwrap()).sum::<u32>(), 499_500);
}

fn worker(q: JoinableQueue<u64>, out: Queue<u64>) {
    loop {
        let n = q.get().unwrap();
        out.put(n * n).unwrap();
        q.task_done().unwrap();
    }
}

#[test]
fn joinable_queue_with_four_workers() {
    let _w = watchdog(60);
    let q = JoinableQueue::new().unwrap();
    let out = Queue::new().unwrap();
    let workers: Vec<_> =
        (0..4).map(|_| Process::builder().daemon(true).spawn(worker, (q.clone(), out.clone())).unwrap()).collect();
    for n in 0..1000 {
        q.put(n).unwrap();
    }
    q.join().unwrap();
    assert_eq!(out.len(), 1000, "join returned before every item was done");
    let total: u64 = (0..1000).map(|_| out.get().unwrap()).sum();
    assert_eq!(total, (0..1000u64).map(|n| n * n).sum());
    for w in &workers {
        w.kill().unwrap();
    }

    let lonely = JoinableQueue::<u8>::new().unwrap();
    assert_eq!(lonely.task_done(), Err(TaskDoneError));
    lonely.put(1).unwrap();
    let timeout = Duration::from_millis(100);
    let started = Instant::now();
    assert!(lonely.join_timeout(timeout).is_err());
    assert!(started.elapsed() >= timeout);
    lonely.get().unwrap();
    lonely.task_done().unwrap();
    lonely.join().unwrap();
    assert_eq!(lonely.task_done(), Err(TaskDoneError));
}

#[test]
fn simple_queue_puts_and_gets() {
    let q = SimpleQueue::new().unwrap();
    assert!(q.is_empty());
    q.put("x".to_string()).unwrap();
    assert!(!q.is_empty());
    assert_eq!(q.get().unwrap(), "x");
}

fn put_when_told(go: Queue<()>, q: Queue<u32>) {
    go.get().unwrap();
    q.put(42).unwrap();
}

#[test]
fn wait_over_queues_pipes_and_processes() {
    use multiproc::connection::{Waitable, pipe, wait};
    let _w = watchdog(60);
    let (go, q) = (Queue::new().unwrap(), Queue::<u32>::new().unwrap());
    let simple = SimpleQueue::<u8>::new().unwrap();
    let (pipe_end, pipe_peer) = pipe::<u8>().unwrap();
    let mut child = Process::spawn(put_when_told, (go.clone(), q.clone())).unwrap();

    // Nothing is ready: the timeout passes in full and nothing is reported.
    let timeout = Duration::from_millis(150);
    let began = Instant::now();
    assert!(wait(&[&q as &dyn Waitable, &simple, &pipe_end], Some(timeout)).unwrap().is_empty());
    assert!(began.elapsed() >= timeout);

    // An item put by another process wakes a wait with no timeout.
    go.put(()).unwrap();
    assert_eq!(wait(&[&pipe_end as &dyn Waitable, &simple, &q], None).unwrap(), [2]);
    // Waiting does not take the item; ready stays ready until it is taken.
    assert_eq!(wait(&[&q as &dyn Waitable], Some(Duration::ZERO)).unwrap(), [0]);
    assert_eq!(q.get().unwrap(), 42);

    // A pipe and a process alongside queues: each is reported when it is ready.
    child.join().unwrap();
    assert_eq!(wait(&[&q as &dyn Waitable, &child], Some(Duration::from_secs(20))).unwrap(), [1]);
    pipe_peer.send(&1).unwrap();
    simple.put(3).unwrap();
    assert_eq!(wait(&[&q as &dyn Waitable, &simple, &pipe_end], None).unwrap(), [1, 2]);
    assert_eq!(simple.get().unwrap(), 3);
    assert_eq!(wait(&[&q as &dyn Waitable, &simple, &pipe_end], None).unwrap(), [2]);

    // A JoinableQueue too.
    let jq = JoinableQueue::<u8>::new().unwrap();
    jq.put(9).unwrap();
    assert_eq!(wait(&[&q as &dyn Waitable, &jq], None).unwrap(), [1]);
}

fn put_with_pauses(q: Queue<u64>, n: u64) {
    for i in 0..n {
        if i % 7 == 0 {
            // Longer than a getter spins: it goes to sleep, and this put must wake it.
            std::thread::sleep(Duration::from_micros(200));
        }
        q.put(i).unwrap();
    }
}

/// A put or get wakes a sleeper of the other kind only if it sees one counted asleep (the busy
/// path pays no wake-up write). Both kinds sleep here, many times over: getters on an empty
/// queue while the producer pauses, the producer on a full one (bounded to 2) while the getter
/// pauses. A wake-up slept through would stop the exchange, and the watchdog would fail it.
#[test]
fn sleepers_on_both_sides_are_always_woken() {
    let _w = watchdog(120);
    const N: u64 = 3_000;
    let q = Queue::bounded(2).unwrap();
    let mut producer = Process::spawn(put_with_pauses, (q.clone(), N)).unwrap();
    for expected in 0..N {
        if expected % 11 == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
        assert_eq!(q.get().unwrap(), expected);
    }
    producer.join().unwrap();
    assert!(q.is_empty());
}
