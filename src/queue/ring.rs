//! The byte ring under every queue: one shared-memory segment, written by one producer at a time
//! and read by one consumer at a time, crash-safe at every instant.
//!
//! # Layout
//! A [`RingState`] (the header, in [`Shared`]'s `T`) and a ring of `capacity` bytes (its tail).
//! `tail` and `head` count bytes ever published and consumed; the ring holds `tail - head`.
//! Records are 8-byte aligned and never wrap:
//!
//! ```text
//! record = len:u32 kind:u32 payload[len] padding-to-8
//! kind   = WHOLE   a whole message
//!        | FIRST   the first chunk of a message too big for the ring; payload starts with its
//!                  total length (u64)
//!        | MIDDLE | LAST   further chunks
//!        | PAD     filler up to the end of the ring (the next record starts at offset 0)
//!        | ABORT   the chunked message in progress will never be finished: drop its chunks
//! ```
//!
//! # Who writes what
//! Producers take `put_lock` for a whole message, consumers take `get_lock` for a whole message,
//! so the ring itself is single-producer single-consumer: only the producer holding `put_lock`
//! moves `tail`, only the consumer holding `get_lock` moves `head`. A producer copies a record in,
//! then publishes it by storing `tail` (Release); a consumer reads `tail` (Acquire), copies the
//! record out, then stores `head` (Release). Both locks are the robust locks of
//! [`sync`](crate::sync): a process killed while holding one is detected by the next taker.
//!
//! # Crash safety
//! - A producer killed while copying a record never published it: the next producer overwrites
//!   the bytes. Nothing torn is ever visible.
//! - A producer killed in the middle of a chunked message leaves `streaming` set; whoever takes
//!   `put_lock` next (the next producer, or the consumer waiting for the next chunk) publishes an
//!   ABORT record, and the consumer drops the partial message. Producers keep 8 bytes free while
//!   streaming, so there is always room for that record.
//! - A consumer killed while reading a record had not moved `head`: the next consumer reads the
//!   same record, which the dead one never returned — nothing is lost or duplicated. A consumer
//!   killed in the middle of a chunked message leaves `assembling` set; the next consumer skips
//!   the orphaned chunks. That one message — the one in flight in the killed process — is lost.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind};
use crate::shm::{Shared, SharedState};
use crate::sync::raw::{self, Acquired, RawMutex, TimedOut};
use crate::sys;

const WHOLE: u32 = 1;
const FIRST: u32 = 2;
const MIDDLE: u32 = 3;
const LAST: u32 = 4;
const PAD: u32 = 5;
const ABORT: u32 = 6;
const HEADER: u64 = 8;
/// Room always left free while a chunked message streams in, for an ABORT record.
const ABORT_RESERVE: u64 = HEADER;

#[repr(C)]
pub(crate) struct RingState {
    put_lock: RawMutex,
    get_lock: RawMutex,
    tail: AtomicU64,
    head: AtomicU64,
    /// Bumped after every publish; consumers sleep on it.
    published: AtomicU32,
    /// Bumped after every consume; producers sleep on it.
    consumed: AtomicU32,
    consumers_asleep: AtomicU32,
    producers_asleep: AtomicU32,
    /// Whole messages published and not yet taken.
    count: AtomicU64,
    /// 1 while a producer is in the middle of a chunked message.
    streaming: AtomicU32,
    /// 1 while a consumer is in the middle of a chunked message.
    assembling: AtomicU32,
    /// Messages put and not yet marked done (JoinableQueue).
    unfinished: AtomicU32,
    unfinished_asleep: AtomicU32,
    maxsize: u64,
    capacity: u64,
}

// SAFETY: repr(C), atomics and plain integers, no destructor.
unsafe impl SharedState for RingState {
    const KIND: u32 = 7;
    const NAME: &'static str = "Queue";
}

const fn record_size(len: u64) -> u64 {
    HEADER + len.next_multiple_of(8)
}

/// Why a ring operation did not complete.
#[derive(Debug)]
pub(crate) enum RingError {
    /// The deadline passed (for `try_`: the queue was full or empty).
    Timeout,
    /// A record in the ring is not well formed: a bug or foreign writes.
    Corrupt(Error),
}

/// A handle to a ring in shared memory.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Ring {
    state: Shared<RingState>,
}

impl Ring {
    /// A ring of at least `capacity` bytes for at most `maxsize` messages (0: no limit).
    pub(crate) fn new(maxsize: u64, capacity: usize) -> crate::Result<Ring> {
        let capacity = (capacity.max(4096) as u64).next_multiple_of(8);
        let state = RingState {
            put_lock: RawMutex::new(),
            get_lock: RawMutex::new(),
            tail: AtomicU64::new(0),
            head: AtomicU64::new(0),
            published: AtomicU32::new(0),
            consumed: AtomicU32::new(0),
            consumers_asleep: AtomicU32::new(0),
            producers_asleep: AtomicU32::new(0),
            count: AtomicU64::new(0),
            streaming: AtomicU32::new(0),
            assembling: AtomicU32::new(0),
            unfinished: AtomicU32::new(0),
            unfinished_asleep: AtomicU32::new(0),
            maxsize,
            capacity,
        };
        Ok(Ring { state: Shared::with_tail(state, capacity as usize)? })
    }

    fn bytes(&self) -> *mut u8 {
        self.state.tail().0.as_ptr()
    }

    /// The number of whole messages in the ring (a snapshot).
    pub(crate) fn len(&self) -> u64 {
        self.state.count.load(Ordering::Relaxed)
    }

    /// The message bound (0: none).
    pub(crate) fn maxsize(&self) -> u64 {
        self.state.maxsize
    }

    // ----- producer side -----

    /// Puts one message, waiting until `deadline` for room.
    pub(crate) fn put(&self, payload: &[u8], deadline: Option<Instant>) -> Result<(), RingError> {
        let s = &*self.state;
        match s.put_lock.lock(deadline) {
            Err(TimedOut) => return Err(RingError::Timeout),
            Ok(Acquired::OwnerDied(_)) => self.abort_stream_locked(),
            Ok(Acquired::Clean) => {}
        }
        let result = self.put_locked(payload, deadline);
        s.put_lock.unlock();
        result
    }

    /// Called with `put_lock` taken over from a dead holder: finish its message with ABORT.
    fn abort_stream_locked(&self) {
        let s = &*self.state;
        if s.streaming.load(Ordering::Relaxed) != 0 {
            // Room for this record was kept free by the dead producer.
            let at = self.wrap_for(HEADER);
            self.write_record(at, ABORT, &[], &[]);
            self.publish(at + HEADER, false);
            s.streaming.store(0, Ordering::Relaxed);
        }
    }

    fn put_locked(&self, payload: &[u8], deadline: Option<Instant>) -> Result<(), RingError> {
        let s = &*self.state;
        if s.maxsize > 0 {
            self.wait_for_producers(deadline, || s.count.load(Ordering::Acquire) < s.maxsize)?;
        }
        let len = payload.len() as u64;
        // A message that fits in half the ring goes whole; a bigger one streams in chunks.
        if record_size(len) <= s.capacity / 2 {
            let need = record_size(len);
            self.wait_for_room(need, deadline)?;
            let at = self.wrap_for(need);
            self.write_record(at, WHOLE, &[], payload);
            self.publish(at + need, true);
            return Ok(());
        }
        // Chunked: wait (until the deadline) for room for a first chunk; from then on stream
        // whatever the consumers free, always keeping room for an ABORT record.
        self.wait_for_room(record_size(16) + ABORT_RESERVE, deadline)?;
        s.streaming.store(1, Ordering::Relaxed);
        let mut sent = 0u64;
        let mut first = true;
        loop {
            let prefix: u64 = if first { 8 } else { 0 };
            let remaining = len - sent;
            let (to_end, free) = (self.contiguous_to_end(), self.free());
            let usable = to_end.min(free.saturating_sub(ABORT_RESERVE));
            let smallest = record_size(prefix + remaining.min(8));
            if usable < smallest {
                if to_end < smallest && free >= to_end + ABORT_RESERVE {
                    // The end of the ring is in the way, not the consumer: pad and go on at 0.
                    self.write_pad(self.position(s.tail.load(Ordering::Relaxed)));
                } else {
                    let _ = self.wait_for_producers(None, || self.free() > free);
                }
                continue;
            }
            let chunk = remaining.min(((usable - HEADER) & !7) - prefix);
            let kind = if first {
                FIRST
            } else if chunk == remaining {
                LAST
            } else {
                MIDDLE
            };
            let tail = s.tail.load(Ordering::Relaxed);
            let total = len.to_le_bytes();
            let prefix_bytes: &[u8] = if first { &total } else { &[] };
            self.write_record(tail, kind, prefix_bytes, &payload[sent as usize..(sent + chunk) as usize]);
            self.publish(tail + record_size(prefix + chunk), kind == LAST);
            sent += chunk;
            first = false;
            if kind == LAST {
                break;
            }
        }
        s.streaming.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// Offset in the ring of byte counter `counter`.
    fn position(&self, counter: u64) -> u64 {
        counter % self.state.capacity
    }

    fn free(&self) -> u64 {
        let s = &*self.state;
        s.capacity - (s.tail.load(Ordering::Relaxed) - s.head.load(Ordering::Acquire))
    }

    fn contiguous_to_end(&self) -> u64 {
        let s = &*self.state;
        s.capacity - self.position(s.tail.load(Ordering::Relaxed))
    }

    /// Waits until a record of `need` bytes fits (counting a pad to the end of the ring).
    fn wait_for_room(&self, need: u64, deadline: Option<Instant>) -> Result<(), RingError> {
        let s = &*self.state;
        let fits = || {
            let to_end = self.contiguous_to_end();
            let free = self.free();
            if need <= to_end { free >= need } else { free >= to_end + need }
        };
        if need > s.capacity {
            return Err(RingError::Corrupt(Error::new(ErrorKind::InvalidInput, "record larger than the ring")));
        }
        self.wait_for_producers(deadline, fits)
    }

    /// Makes `need` contiguous bytes available at the tail, padding to the end if needed;
    /// returns the tail counter where the record goes. Room must already be there.
    fn wrap_for(&self, need: u64) -> u64 {
        let s = &*self.state;
        if self.contiguous_to_end() < need {
            self.write_pad(self.position(s.tail.load(Ordering::Relaxed)));
        }
        s.tail.load(Ordering::Relaxed)
    }

    /// Writes a PAD record from ring offset `at` to the end and publishes it.
    fn write_pad(&self, at: u64) {
        let s = &*self.state;
        let to_end = s.capacity - at;
        let tail = s.tail.load(Ordering::Relaxed);
        self.write_header(at, (to_end - HEADER) as u32, PAD);
        self.publish(tail + to_end, false);
    }

    fn write_header(&self, at: u64, len: u32, kind: u32) {
        let mut header = [0u8; 8];
        header[..4].copy_from_slice(&len.to_le_bytes());
        header[4..].copy_from_slice(&kind.to_le_bytes());
        // SAFETY: `at + 8 <= capacity` (records are 8-aligned and the capacity is a multiple of 8),
        // and these bytes are past `tail`, so no consumer reads them until they are published.
        unsafe { std::ptr::copy_nonoverlapping(header.as_ptr(), self.bytes().add(at as usize), 8) };
    }

    /// Copies a record (header, prefix, payload) to ring counter `counter`. Not yet published.
    fn write_record(&self, counter: u64, kind: u32, prefix: &[u8], payload: &[u8]) {
        let at = self.position(counter);
        let len = (prefix.len() + payload.len()) as u64;
        debug_assert!(at + record_size(len) <= self.state.capacity);
        self.write_header(at, len as u32, kind);
        // SAFETY: the record fits before the end of the ring (callers made room with wrap_for or
        // free_contiguous), and it lies past `tail`, so only this producer (holding put_lock)
        // touches these bytes until it publishes them.
        unsafe {
            let base = self.bytes().add((at + HEADER) as usize);
            std::ptr::copy_nonoverlapping(prefix.as_ptr(), base, prefix.len());
            std::ptr::copy_nonoverlapping(payload.as_ptr(), base.add(prefix.len()), payload.len());
        }
    }

    /// Makes everything up to `tail` visible to consumers, and wakes one if asleep.
    fn publish(&self, tail: u64, whole_message: bool) {
        let s = &*self.state;
        if whole_message {
            s.count.fetch_add(1, Ordering::Release);
        }
        s.tail.store(tail, Ordering::Release);
        s.published.fetch_add(1, Ordering::SeqCst);
        if s.consumers_asleep.load(Ordering::SeqCst) > 0 {
            sys::futex::wake(&s.published, u32::MAX);
        }
    }

    /// Producers wait here (for room, or for the message count to drop).
    fn wait_for_producers(&self, deadline: Option<Instant>, ready: impl Fn() -> bool) -> Result<(), RingError> {
        let s = &*self.state;
        wait_on(&s.consumed, &s.producers_asleep, deadline, &ready).map_err(|TimedOut| RingError::Timeout)
    }

    // ----- consumer side -----

    /// Takes one message, waiting until `deadline` for one to start arriving. Once a chunked
    /// message has started, the call finishes it (or sees it aborted) whatever the deadline.
    pub(crate) fn get(&self, deadline: Option<Instant>) -> Result<Vec<u8>, RingError> {
        let s = &*self.state;
        let mut discard = false;
        match s.get_lock.lock(deadline) {
            Err(TimedOut) => return Err(RingError::Timeout),
            // A consumer died in the middle of a chunked message: its remaining chunks are orphans.
            Ok(Acquired::OwnerDied(_)) => discard = s.assembling.swap(0, Ordering::Relaxed) != 0,
            Ok(Acquired::Clean) => {}
        }
        let result = self.get_locked(deadline, discard);
        s.get_lock.unlock();
        result
    }

    fn get_locked(&self, deadline: Option<Instant>, mut discard: bool) -> Result<Vec<u8>, RingError> {
        let s = &*self.state;
        let mut message: Option<(Vec<u8>, u64)> = None;
        loop {
            let head = s.head.load(Ordering::Relaxed);
            let waiting_deadline = if message.is_some() { None } else { deadline };
            if s.tail.load(Ordering::Acquire) == head {
                let ready = || s.tail.load(Ordering::Acquire) != head;
                if message.is_some() {
                    self.wait_for_chunk(&ready);
                    continue;
                }
                wait_on(&s.published, &s.consumers_asleep, waiting_deadline, &ready)
                    .map_err(|TimedOut| RingError::Timeout)?;
                continue;
            }
            let at = self.position(head);
            let (len, kind) = self.read_header(at)?;
            let size = record_size(u64::from(len));
            if kind == PAD {
                self.consume(head + (s.capacity - at), false);
                continue;
            }
            if at + size > s.capacity {
                return Err(self.corrupt(format!("record of {len} bytes crosses the end of the ring")));
            }
            // SAFETY: the record lies within the ring (checked) and before `tail` (published), so
            // no producer writes these bytes until `head` moves past them.
            let payload = unsafe { std::slice::from_raw_parts(self.bytes().add((at + HEADER) as usize), len as usize) };
            match kind {
                WHOLE => {
                    let out = payload.to_vec();
                    self.consume(head + size, true);
                    if message.is_some() || discard {
                        // Cannot follow an unfinished chunked message (an ABORT comes first);
                        // whatever was being assembled is gone.
                        s.assembling.store(0, Ordering::Relaxed);
                    }
                    return Ok(out);
                }
                FIRST => {
                    if payload.len() < 8 {
                        return Err(self.corrupt("first chunk without a length".into()));
                    }
                    let total = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
                    let mut buf = Vec::new();
                    buf.try_reserve_exact(total as usize)
                        .map_err(|_| self.corrupt(format!("message of {total} bytes cannot be held in memory")))?;
                    buf.extend_from_slice(&payload[8..]);
                    message = Some((buf, total));
                    discard = false;
                    s.assembling.store(1, Ordering::Relaxed);
                    self.consume(head + size, false);
                }
                MIDDLE | LAST => {
                    match &mut message {
                        Some((buf, _)) if !discard => buf.extend_from_slice(payload),
                        // An orphan chunk (its consumer died, or its start was aborted): skip.
                        _ => {}
                    }
                    let done = kind == LAST;
                    self.consume(head + size, done);
                    if done {
                        s.assembling.store(0, Ordering::Relaxed);
                        if let Some((buf, total)) = message.take() {
                            if buf.len() as u64 != total {
                                return Err(self.corrupt(format!("message of {} bytes, {total} announced", buf.len())));
                            }
                            return Ok(buf);
                        }
                        discard = false;
                    }
                }
                ABORT => {
                    self.consume(head + size, false);
                    message = None;
                    discard = false;
                    s.assembling.store(0, Ordering::Relaxed);
                }
                other => return Err(self.corrupt(format!("unknown record kind {other}"))),
            }
        }
    }

    fn read_header(&self, at: u64) -> Result<(u32, u32), RingError> {
        let mut header = [0u8; 8];
        // SAFETY: `at` is 8-aligned and below the capacity (a multiple of 8), and the header was
        // published before `tail`.
        unsafe { std::ptr::copy_nonoverlapping(self.bytes().add(at as usize), header.as_mut_ptr(), 8) };
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
        let kind = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        Ok((len, kind))
    }

    fn corrupt(&self, what: String) -> RingError {
        RingError::Corrupt(Error::new(ErrorKind::Decode, format!("queue ring: {what}")))
    }

    /// Frees everything up to `head` for producers, and wakes one if asleep.
    fn consume(&self, head: u64, whole_message: bool) {
        let s = &*self.state;
        s.head.store(head, Ordering::Release);
        if whole_message {
            s.count.fetch_sub(1, Ordering::Release);
        }
        s.consumed.fetch_add(1, Ordering::SeqCst);
        if s.producers_asleep.load(Ordering::SeqCst) > 0 {
            sys::futex::wake(&s.consumed, u32::MAX);
        }
    }

    /// Waits for the next chunk of a message; if its producer died meanwhile, aborts the message
    /// on its behalf so that this wait ends.
    fn wait_for_chunk(&self, ready: &dyn Fn() -> bool) {
        let s = &*self.state;
        let slice = Instant::now() + Duration::from_millis(20);
        if wait_on(&s.published, &s.consumers_asleep, Some(slice), ready).is_ok() {
            return;
        }
        if let Some(how) = s.put_lock.try_lock() {
            // Nobody (alive) holds put_lock, so no chunk is coming unless we write the ABORT.
            if how != Acquired::Clean || s.streaming.load(Ordering::Relaxed) != 0 {
                self.abort_stream_locked();
            }
            s.put_lock.unlock();
        }
    }

    // ----- joinable queues -----

    /// Counts a message as unfinished (before it is put).
    pub(crate) fn add_unfinished(&self) {
        self.state.unfinished.fetch_add(1, Ordering::SeqCst);
    }

    /// Takes back an unfinished count when a put failed.
    pub(crate) fn remove_unfinished(&self) {
        self.task_done();
    }

    /// Marks one message done; false if none was unfinished.
    pub(crate) fn task_done(&self) -> bool {
        let s = &*self.state;
        let mut current = s.unfinished.load(Ordering::SeqCst);
        loop {
            if current == 0 {
                return false;
            }
            match s.unfinished.compare_exchange(current, current - 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
        if current == 1 && s.unfinished_asleep.load(Ordering::SeqCst) > 0 {
            sys::futex::wake(&s.unfinished, u32::MAX);
        }
        true
    }

    /// Waits until every message put has been marked done.
    pub(crate) fn join(&self, deadline: Option<Instant>) -> Result<(), TimedOut> {
        let s = &*self.state;
        let ready = || s.unfinished.load(Ordering::SeqCst) == 0;
        if ready() || raw::spin(raw::SPIN, ready) {
            return Ok(());
        }
        loop {
            let seen = s.unfinished.load(Ordering::SeqCst);
            if seen == 0 {
                return Ok(());
            }
            s.unfinished_asleep.fetch_add(1, Ordering::SeqCst);
            let woke = sys::futex::wait_until(&s.unfinished, seen, deadline, Duration::from_secs(3600));
            s.unfinished_asleep.fetch_sub(1, Ordering::SeqCst);
            if ready() {
                return Ok(());
            }
            if woke == sys::futex::Wake::TimedOut {
                return Err(TimedOut);
            }
        }
    }
}

/// Spins, then sleeps on futex `word` (announcing itself in `asleep`) until `ready()`.
fn wait_on(
    word: &AtomicU32,
    asleep: &AtomicU32,
    deadline: Option<Instant>,
    ready: &dyn Fn() -> bool,
) -> Result<(), TimedOut> {
    if ready() || raw::spin(raw::SPIN, ready) {
        return Ok(());
    }
    loop {
        let seen = word.load(Ordering::SeqCst);
        asleep.fetch_add(1, Ordering::SeqCst);
        if ready() {
            asleep.fetch_sub(1, Ordering::SeqCst);
            return Ok(());
        }
        let woke = sys::futex::wait_until(word, seen, deadline, Duration::from_secs(3600));
        asleep.fetch_sub(1, Ordering::SeqCst);
        if ready() {
            return Ok(());
        }
        if woke == sys::futex::Wake::TimedOut {
            return Err(TimedOut);
        }
    }
}
