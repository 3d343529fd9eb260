//! Queues: one producer to one consumer with small and large items, two by two, JoinableQueue,
//! and the raw bounds (a bare shared-memory ring with futex wake-ups, and memcpy).
//!
//! Every multi-process row starts its processes first and has them wait on an [`Event`], so the
//! timed part is the traffic, not the process start.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use multiproc::codec::SelfDescribing;
use multiproc::{Context, Event, JoinableQueue, Process, Queue, SimpleQueue, StartMethod};
use serde_bytes::ByteBuf;

use super::sync::{futex_wait, futex_wake};
use super::{BoxError, Scenario, Target};

const RAW_RING: &str = "baseline: shared-memory ring, 8-byte items (SPSC, futex)";
const MEMCPY_CACHED: &str = "baseline: memcpy 1 MiB in cache (one thread)";
const MEMCPY: &str = "baseline: memcpy 1 MiB from/to memory (one thread)";
const RECORD: &str = "queue 1→1, a record (u64, a 12-byte string, two tags; postcard)";
const ROUND_TRIP: &str = "queue round trip (put, echoed back by a child, get)";

/// The queue rows.
pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario::new(RAW_RING, 4_000_000, raw_ring),
        Scenario::new(MEMCPY_CACHED, 4_000, memcpy_cached),
        Scenario::new(MEMCPY, 1_000, memcpy_memory),
        Scenario::new("queue 1→1, 8-byte items", 2_000_000, |n| one_to_one::<u64>(n, 8))
            .python("queue_1to1_8", 100_000)
            .target(Target::FasterThanCpython(30.0))
            .target(Target::AtMostTimes(1.5, RAW_RING.into())),
        Scenario::new("queue 1→1, 64-byte items", 1_000_000, |n| one_to_one::<ByteBuf>(n, 64))
            .python("queue_1to1_64", 100_000)
            .target(Target::FasterThanCpython(30.0)),
        Scenario::new("simple queue 1→1, 8-byte items", 2_000_000, simple_one_to_one)
            .python("simple_queue_1to1_8", 100_000)
            .target(Target::FasterThanCpython(30.0))
            .target(Target::AtMostTimes(1.5, RAW_RING.into())),
        Scenario::new("queue 2×2, 8-byte items", 2_000_000, two_by_two)
            .python("queue_2x2_8", 100_000)
            .target(Target::FasterThanCpython(30.0))
            .target(Target::AtMostTimes(1.5, RAW_RING.into())),
        Scenario::new(RECORD, 1_000_000, |n| one_to_one::<Record>(n, 0)),
        // What `SelfDescribing` costs, read against the row above (a cost, not a target).
        Scenario::new("queue 1→1, the same records self-describing (MessagePack)", 1_000_000, |n| {
            one_to_one::<SelfDescribing<Record>>(n, 0)
        }),
        Scenario::new("queue 1→1, 64 KiB items", 40_000, |n| one_to_one::<ByteBuf>(n, 64 << 10))
            .python("queue_1to1_64k", 10_000),
        Scenario::new("queue 1→1, 1 MiB items", 2_000, |n| one_to_one::<ByteBuf>(n, 1 << 20))
            .python("queue_1to1_1m", 300)
            .target(Target::AtMostTimes(2.5, MEMCPY.into())),
        Scenario::new(ROUND_TRIP, 50_000, |n| round_trip(n, false)).python("queue_round_trip", 10_000),
        Scenario::new("queue round trip, async (get_async/put_async, tokio current-thread)", 50_000, |n| {
            round_trip(n, true)
        })
        .python("queue_round_trip_async", 10_000)
        .target(Target::AtMostTimes(2.0, ROUND_TRIP.into())),
        Scenario::new("joinable queue put + task_done, then join", 1_000_000, joinable)
            .python("joinable_queue", 100_000)
            .target(Target::FasterThanCpython(20.0))
            .target(Target::AtMostTimes(2.0, RAW_RING.into())),
    ]
}

fn fork() -> Context {
    Context::new(StartMethod::Fork)
}

/// An item of a given size for the one-to-one rows: a `u64`, or bytes (through `serde_bytes`, as
/// a user sending large binary items would, so that they encode as one block rather than byte
/// by byte).
trait Item: serde::Serialize + serde::de::DeserializeOwned + 'static {
    fn make(i: u64, size: usize) -> Self;
}

impl Item for u64 {
    fn make(i: u64, _size: usize) -> u64 {
        i
    }
}

/// A small record of the kind a crawler or an ETL job passes around.
#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    id: u64,
    name: String,
    tags: Vec<String>,
}

impl Item for Record {
    fn make(i: u64, _size: usize) -> Record {
        Record { id: i, name: "record-00001".into(), tags: vec!["crawl".into(), "fresh".into()] }
    }
}

impl Item for SelfDescribing<Record> {
    fn make(i: u64, size: usize) -> SelfDescribing<Record> {
        SelfDescribing(Record::make(i, size))
    }
}

impl Item for ByteBuf {
    fn make(i: u64, size: usize) -> ByteBuf {
        ByteBuf::from(vec![i as u8; size])
    }
}

fn produce<T: Item>(q: Queue<T>, go: Event, n: u64, size: usize) {
    go.wait();
    for i in 0..n {
        q.put(T::make(i, size)).expect("put");
    }
}

/// `n` items of `size` bytes from a child producer to the parent, timed from the go signal to
/// the last item taken.
fn one_to_one<T: Item>(n: u64, size: usize) -> Result<f64, BoxError> {
    let (q, go) = (Queue::<T>::new()?, Event::new()?);
    let mut producer: Process<()> = fork().spawn(produce::<T>, (q.clone(), go.clone(), n, size))?;
    let began = Instant::now();
    go.set();
    for _ in 0..n {
        q.get()?;
    }
    let elapsed = began.elapsed();
    producer.join()?;
    Ok(elapsed.as_secs_f64() / n as f64)
}

fn simple_produce(q: SimpleQueue<u64>, go: Event, n: u64) {
    go.wait();
    for i in 0..n {
        q.put(i).expect("put");
    }
}

fn simple_one_to_one(n: u64) -> Result<f64, BoxError> {
    let (q, go) = (SimpleQueue::<u64>::new()?, Event::new()?);
    let mut producer = fork().spawn(simple_produce, (q.clone(), go.clone(), n))?;
    let began = Instant::now();
    go.set();
    for _ in 0..n {
        q.get()?;
    }
    let elapsed = began.elapsed();
    producer.join()?;
    Ok(elapsed.as_secs_f64() / n as f64)
}

fn produce_then_stop(q: Queue<Option<u64>>, go: Event, n: u64) {
    go.wait();
    for i in 0..n {
        q.put(Some(i)).expect("put");
    }
}

fn consume_until_sentinel(q: Queue<Option<u64>>, go: Event) -> u64 {
    go.wait();
    let mut taken = 0;
    while q.get().expect("get").is_some() {
        taken += 1;
    }
    taken
}

/// Two producers and two consumers (all children), `n` items in all, one sentinel per consumer.
fn two_by_two(n: u64) -> Result<f64, BoxError> {
    let (q, go) = (Queue::<Option<u64>>::new()?, Event::new()?);
    let half = n / 2;
    let mut producers = Vec::new();
    for _ in 0..2 {
        producers.push(fork().spawn(produce_then_stop, (q.clone(), go.clone(), half))?);
    }
    let mut consumers = Vec::new();
    for _ in 0..2 {
        consumers.push(fork().spawn(consume_until_sentinel, (q.clone(), go.clone()))?);
    }
    let began = Instant::now();
    go.set();
    for p in &mut producers {
        p.join()?;
    }
    q.put(None)?;
    q.put(None)?;
    let mut taken = 0;
    for c in &mut consumers {
        taken += c.join()?;
    }
    let elapsed = began.elapsed();
    if taken != 2 * half {
        return Err(format!("{taken} items taken instead of {}", 2 * half).into());
    }
    Ok(elapsed.as_secs_f64() / (2 * half) as f64)
}

fn echo(requests: Queue<Option<u64>>, replies: Queue<u64>) {
    while let Some(x) = requests.get().expect("get") {
        replies.put(x + 1).expect("put");
    }
}

/// The parent puts a number, a child takes it and puts back one more, the parent takes that:
/// each trip wakes a sleeping process twice. With `async_`, the parent's side is `put_async` and
/// `get_async` awaited on a current-thread tokio runtime.
fn round_trip(n: u64, async_: bool) -> Result<f64, BoxError> {
    let (requests, replies) = (Queue::<Option<u64>>::new()?, Queue::<u64>::new()?);
    let mut child = fork().spawn(echo, (requests.clone(), replies.clone()))?;
    requests.put(Some(0))?;
    replies.get()?;
    let began = Instant::now();
    if async_ {
        let rt = tokio::runtime::Builder::new_current_thread().build()?;
        rt.block_on(async {
            for i in 0..n {
                requests.put_async(Some(i)).await?;
                if replies.get_async().await? != i + 1 {
                    return Err(BoxError::from("wrong reply"));
                }
            }
            Ok(())
        })?;
    } else {
        for i in 0..n {
            requests.put(Some(i))?;
            if replies.get()? != i + 1 {
                return Err("wrong reply".into());
            }
        }
    }
    let elapsed = began.elapsed();
    requests.put(None)?;
    child.join()?;
    Ok(elapsed.as_secs_f64() / n as f64)
}

fn work_off(q: JoinableQueue<Option<u64>>) {
    while let Some(_item) = q.get().expect("get") {
        q.task_done().expect("task_done");
    }
    q.task_done().expect("task_done");
}

/// The parent puts `n` items and joins the queue; a child takes each and marks it done.
fn joinable(n: u64) -> Result<f64, BoxError> {
    let q = JoinableQueue::<Option<u64>>::new()?;
    let mut worker = fork().spawn(work_off, (q.clone(),))?;
    q.put(Some(0))?;
    q.join()?;
    let began = Instant::now();
    for i in 0..n {
        q.put(Some(i))?;
    }
    q.join()?;
    let elapsed = began.elapsed();
    q.put(None)?;
    worker.join()?;
    Ok(elapsed.as_secs_f64() / n as f64)
}

/// Copies 1 MiB between two buffers that stay in cache.
fn memcpy_cached(n: u64) -> Result<f64, BoxError> {
    let source = vec![7u8; 1 << 20];
    let mut target = vec![0u8; 1 << 20];
    let began = Instant::now();
    for i in 0..n {
        target.copy_from_slice(&source);
        std::hint::black_box(&mut target)[(i % 1024) as usize] ^= 1;
    }
    Ok(began.elapsed().as_secs_f64() / n as f64)
}

/// Copies 1 MiB blocks from a 256 MiB buffer to another, so every block comes from and goes to
/// memory: single-thread memcpy bandwidth, the bound the 1 MiB queue row is held to.
fn memcpy_memory(n: u64) -> Result<f64, BoxError> {
    const BLOCK: usize = 1 << 20;
    const BLOCKS: usize = 256;
    let source = vec![7u8; BLOCK * BLOCKS];
    let mut target = vec![1u8; BLOCK * BLOCKS];
    let began = Instant::now();
    for i in 0..n as usize {
        let at = (i % BLOCKS) * BLOCK;
        target[at..at + BLOCK].copy_from_slice(&source[at..at + BLOCK]);
        std::hint::black_box(&mut target);
    }
    Ok(began.elapsed().as_secs_f64() / n as f64)
}

/// The raw bound for small items: a single-producer single-consumer ring of `u64` slots in a
/// shared mapping, with the same spin-then-futex waiting as the queue but no locks, no encoding
/// and no crash safety.
fn raw_ring(n: u64) -> Result<f64, BoxError> {
    const SLOTS: u64 = 4096;
    let ring = RawRing::new(SLOTS)?;
    // SAFETY: the child touches only the shared mapping and the futex syscall, then `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    if pid == 0 {
        for i in 0..=n {
            ring.push(i);
        }
        // SAFETY: ends the child at once.
        unsafe { libc::_exit(0) };
    }
    ring.pop();
    let began = Instant::now();
    for i in 1..=n {
        if ring.pop() != i {
            return Err("raw ring out of order".into());
        }
    }
    let elapsed = began.elapsed();
    let mut status = 0;
    // SAFETY: reaps the child we forked.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    Ok(elapsed.as_secs_f64() / n as f64)
}

/// The control block of [`RawRing`], each side's words on its own cache line.
#[repr(C, align(64))]
struct Line {
    counter: AtomicU64,
    bumps: AtomicU32,
    asleep: AtomicU32,
}

struct RawRing {
    base: *mut u8,
    len: usize,
    slots: u64,
}

impl RawRing {
    fn new(slots: u64) -> Result<RawRing, BoxError> {
        let len = 128 + slots as usize * 8;
        // Zeroed memory is a valid empty ring.
        let base = super::shared_mapping(len)?;
        Ok(RawRing { base: base.cast(), len, slots })
    }

    /// The producer's line (`tail`, published bumps, sleeping consumers) or the consumer's.
    fn line(&self, consumer: bool) -> &Line {
        // SAFETY: the first 128 bytes of the mapping hold two 64-byte lines, only used atomically.
        unsafe { &*self.base.add(if consumer { 64 } else { 0 }).cast::<Line>() }
    }

    fn slot(&self, counter: u64) -> *mut u64 {
        // SAFETY: `counter % slots` is within the slot array after the two lines.
        unsafe { self.base.add(128).cast::<u64>().add((counter % self.slots) as usize) }
    }

    fn push(&self, value: u64) {
        let (mine, theirs) = (self.line(false), self.line(true));
        let tail = mine.counter.load(Ordering::Relaxed);
        wait_until(&theirs.bumps, &mine.asleep, || tail - theirs.counter.load(Ordering::Acquire) < self.slots);
        // SAFETY: the slot is free (the consumer is past it) and only this producer writes it.
        unsafe { self.slot(tail).write_volatile(value) };
        mine.counter.store(tail + 1, Ordering::Release);
        mine.bumps.fetch_add(1, Ordering::SeqCst);
        if theirs.asleep.load(Ordering::SeqCst) > 0 {
            futex_wake(&mine.bumps);
        }
    }

    fn pop(&self) -> u64 {
        let (mine, theirs) = (self.line(true), self.line(false));
        let head = mine.counter.load(Ordering::Relaxed);
        wait_until(&theirs.bumps, &mine.asleep, || theirs.counter.load(Ordering::Acquire) > head);
        // SAFETY: the slot was published (the producer's counter is past it).
        let value = unsafe { self.slot(head).read_volatile() };
        mine.counter.store(head + 1, Ordering::Release);
        mine.bumps.fetch_add(1, Ordering::SeqCst);
        if theirs.asleep.load(Ordering::SeqCst) > 0 {
            futex_wake(&mine.bumps);
        }
        value
    }
}

impl Drop for RawRing {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping made in `new`; nothing borrows it any more.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// Spins a little, then sleeps on `word` (counted in `asleep`) until `ready()`.
fn wait_until(word: &AtomicU32, asleep: &AtomicU32, ready: impl Fn() -> bool) {
    for _ in 0..4000 {
        if ready() {
            return;
        }
        std::hint::spin_loop();
    }
    loop {
        let seen = word.load(Ordering::SeqCst);
        asleep.fetch_add(1, Ordering::SeqCst);
        if ready() {
            asleep.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        futex_wait(word, seen);
        asleep.fetch_sub(1, Ordering::SeqCst);
        if ready() {
            return;
        }
    }
}
