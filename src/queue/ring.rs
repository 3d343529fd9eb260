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
//! - A producer whose deadline passes in the middle of a chunked message (nobody took its chunks
//!   in time) takes it back and reports a timeout: if no consumer read any of it, it moves `tail`
//!   back while holding both locks; otherwise it ends the message with ABORT as above.
//! - A consumer killed while reading a record had not moved `head`: the next consumer reads the
//!   same record, which the dead one never returned — nothing is lost or duplicated. A consumer
//!   killed in the middle of a chunked message leaves `assembling` set; the next consumer skips
//!   the orphaned chunks. That one message — the one in flight in the killed process — is lost.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
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
/// How long a chunked put with a deadline goes on past it while no consumer takes a chunk.
const STALL: Duration = Duration::from_millis(10);

/// The shared header of a ring. Each side's words sit on cache lines of their own, and each
/// side's are split in two: the words only its own kind touches (its lock, its cached view of
/// the other side) and the words the other side polls (`tail`, `head`, the counts, the wake-up
/// words). A consumer spinning on `tail` then never steals the line a producer is about to lock,
/// so a put moves the polled line between the CPUs once, not once per store.
#[repr(C)]
pub(crate) struct RingState {
    maxsize: u64,
    capacity: u64,
    /// `capacity - 1` when the capacity is a power of two (the default), so that a counter's
    /// position is a mask rather than a division; 0 otherwise.
    mask: u64,
    /// 1 for a joinable queue: gets record their holder. Set before the ring is shared.
    joinable: AtomicU32,
    put: PutSide,
    producer: ProducerSide,
    get: GetSide,
    consumer: ConsumerSide,
    sleepers: Sleepers,
    tasks: Tasks,
}

/// Touched only by producers, under `put_lock`.
#[repr(C, align(64))]
struct PutSide {
    put_lock: RawMutex,
    /// The last `head` a producer read: room up to there is certainly free, known without
    /// touching the consumer's cache line (`head` only grows).
    head_seen: AtomicU64,
    /// 1 while a producer is in the middle of a chunked message.
    streaming: AtomicU32,
}

/// Written by the producer holding `put_lock`, read by consumers.
#[repr(C, align(64))]
struct ProducerSide {
    tail: AtomicU64,
    /// Whole messages ever published.
    put_count: AtomicU64,
    /// Bumped after a publish when a consumer sleeps (see [`signal`]); consumers sleep on it.
    published: AtomicU32,
}

/// Touched only by consumers, under `get_lock`.
#[repr(C, align(64))]
struct GetSide {
    get_lock: RawMutex,
    /// The last `tail` a consumer read: records up to there are certainly published.
    tail_seen: AtomicU64,
    /// A whole message's consume in progress: the `head` it moves to (0: none) and the
    /// `get_count` that goes with it. `head` and `get_count` are two words; a consumer killed
    /// between the two stores would leave the message gone from the ring yet not counted taken
    /// (and a joinable queue waiting for it forever). Whoever takes `get_lock` over from a dead
    /// holder finishes the count from here (see [`Ring::repair_consume`]).
    taking_head: AtomicU64,
    taking_count: AtomicU64,
    /// 1 while a consumer is in the middle of a chunked message.
    assembling: AtomicU32,
}

/// Written by the consumer holding `get_lock`, read by producers.
#[repr(C, align(64))]
struct ConsumerSide {
    head: AtomicU64,
    /// Whole messages ever taken.
    get_count: AtomicU64,
    /// Bumped after a consume when a producer sleeps (see [`signal`]); producers sleep on it.
    consumed: AtomicU32,
}

/// How many of each side are asleep: read on every publish and consume, written only around a
/// sleep.
#[repr(C, align(64))]
struct Sleepers {
    consumers: AtomicU32,
    producers: AtomicU32,
}

/// JoinableQueue's count of messages put and not yet marked done, and who holds the taken ones.
#[repr(C, align(64))]
struct Tasks {
    /// Low half: messages put and not yet done. High half: a tally of the `task_done`s that
    /// finished one, moved only under `done_lock` (so a dead finisher's mark can be read against
    /// it, as a dead getter's against `get_count`). One word, so that a done and its tally move
    /// together.
    unfinished: AtomicU64,
    /// Bumped whenever `unfinished` reaches zero; joiners sleep on it.
    drained: AtomicU32,
    asleep: AtomicU32,
    /// Held by a `task_done` of a joinable queue from its holder word's change to its finish.
    done_lock: RawMutex,
    /// Unfinished messages counted done because the process holding them died.
    lost: AtomicU64,
    /// Per consumer process, one [`Holder`] word: who, how many taken and not yet done.
    holders: [AtomicU64; HOLDERS],
}

/// How many consumer processes a joinable queue follows at once; the items of more are not
/// followed (a death among those leaves `join` to its timeout, as in Python).
const HOLDERS: usize = 128;

/// One word of [`Tasks::holders`]: `pid:32 | count:16 | finishing:1 | done mark:7 | pending:1 |
/// mark:7`.
///
/// A get counts its message in its holder word *before* it consumes the message (so no instant
/// exists where the message is neither in the ring nor counted), with `pending` set and `mark` the
/// low bits of `get_count` before the consume; it clears `pending` after. Whoever finds the
/// process dead clears the whole word in one compare-and-swap and counts its messages done; if
/// `pending` is still set and `get_count` still has the mark, the message never left the ring and
/// is not counted. Only one get runs at a time (`get_lock`), and a get that takes the lock over
/// from a dead one settles the dead one's word first, so `get_count` moves by at most one while
/// `pending` is set, and the seven bits tell the two cases apart.
///
/// `task_done` is the same in reverse, under `done_lock`: it takes one off its count with
/// `finishing` set and the done mark (the low bits of the tally in [`Tasks::unfinished`]), then
/// finishes the message (one compare-and-swap of count and tally), then clears `finishing`. A
/// finder of the dead with `finishing` set and the tally still at the mark counts that message
/// done too: it was taken off the count but never finished.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Holder {
    pid: u32,
    count: u32,
    finishing: bool,
    done_mark: u8,
    pending: bool,
    mark: u8,
}

impl Holder {
    const MAX_COUNT: u32 = (1 << 16) - 1;

    fn from_word(word: u64) -> Holder {
        Holder {
            pid: (word >> 32) as u32,
            count: ((word >> 16) & u64::from(Holder::MAX_COUNT)) as u32,
            finishing: word & 0x8000 != 0,
            done_mark: ((word >> 8) & 0x7f) as u8,
            pending: word & 0x80 != 0,
            mark: (word & 0x7f) as u8,
        }
    }

    fn word(self) -> u64 {
        (u64::from(self.pid) << 32)
            | (u64::from(self.count) << 16)
            | (u64::from(self.finishing) << 15)
            | (u64::from(self.done_mark & 0x7f) << 8)
            | (u64::from(self.pending) << 7)
            | u64::from(self.mark & 0x7f)
    }

    /// Holds nothing and is in the middle of nothing: free for any process.
    fn is_free(self) -> bool {
        self.count == 0 && !self.pending && !self.finishing
    }
}

/// The tally half of [`Tasks::unfinished`], as a done mark.
fn done_mark(unfinished: u64) -> u8 {
    ((unfinished >> 32) & 0x7f) as u8
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
    /// A record in the ring is not well formed (a bug or foreign writes), or the caller's
    /// encoding into the ring failed.
    Failed(Error),
}

/// A handle to a ring in shared memory.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Ring {
    state: Shared<RingState>,
}

impl Ring {
    /// A ring of at least `capacity` bytes for at most `maxsize` messages (0: no limit).
    pub(crate) fn new(maxsize: u64, capacity: usize) -> crate::Result<Ring> {
        // Records store their length in 32 bits; a ring (and so a record) stays well below that.
        const MAX_CAPACITY: usize = 1 << 31;
        if capacity > MAX_CAPACITY {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("a queue ring of {capacity} bytes is too large (at most {MAX_CAPACITY})"),
            ));
        }
        let capacity = (capacity.max(4096) as u64).next_multiple_of(8);
        let state = RingState {
            maxsize,
            capacity,
            mask: if capacity.is_power_of_two() { capacity - 1 } else { 0 },
            joinable: AtomicU32::new(0),
            put: PutSide { put_lock: RawMutex::new(), head_seen: AtomicU64::new(0), streaming: AtomicU32::new(0) },
            producer: ProducerSide {
                tail: AtomicU64::new(0),
                put_count: AtomicU64::new(0),
                published: AtomicU32::new(0),
            },
            get: GetSide {
                get_lock: RawMutex::new(),
                tail_seen: AtomicU64::new(0),
                taking_head: AtomicU64::new(0),
                taking_count: AtomicU64::new(0),
                assembling: AtomicU32::new(0),
            },
            consumer: ConsumerSide {
                head: AtomicU64::new(0),
                get_count: AtomicU64::new(0),
                consumed: AtomicU32::new(0),
            },
            sleepers: Sleepers { consumers: AtomicU32::new(0), producers: AtomicU32::new(0) },
            tasks: Tasks {
                unfinished: AtomicU64::new(0),
                drained: AtomicU32::new(0),
                asleep: AtomicU32::new(0),
                done_lock: RawMutex::new(),
                lost: AtomicU64::new(0),
                holders: std::array::from_fn(|_| AtomicU64::new(0)),
            },
        };
        Ok(Ring { state: Shared::with_tail(state, capacity as usize)? })
    }

    fn bytes(&self) -> *mut u8 {
        self.state.tail().0.as_ptr()
    }

    /// The number of whole messages in the ring (a snapshot).
    pub(crate) fn len(&self) -> u64 {
        let s = &*self.state;
        // Taken before the put count, so a put and get in between cannot make it negative.
        let taken = s.consumer.get_count.load(Ordering::Acquire);
        s.producer.put_count.load(Ordering::Acquire).saturating_sub(taken)
    }

    /// The message bound (0: none).
    pub(crate) fn maxsize(&self) -> u64 {
        self.state.maxsize
    }

    // ----- producer side -----

    /// The largest message that goes into the ring as one record (bigger ones stream in chunks).
    pub(crate) fn whole_limit(&self) -> usize {
        // record_size(len) <= capacity / 2, records being 8-aligned.
        ((self.state.capacity / 2 - HEADER) & !7) as usize
    }

    /// Puts one message of any size, waiting until `deadline` for room.
    pub(crate) fn put(&self, payload: &[u8], deadline: Option<Instant>) -> Result<(), RingError> {
        if payload.len() <= self.whole_limit() {
            return self.put_whole(payload.len(), deadline, &mut |room| {
                room.copy_from_slice(payload);
                Ok(())
            });
        }
        let _held = self.lock_put(deadline)?;
        self.put_chunked(payload, deadline)
    }

    /// Puts one message of `len <= whole_limit()` bytes that `fill` writes straight into the
    /// ring, waiting until `deadline` for room. If `fill` fails (or panics), nothing is published.
    pub(crate) fn put_whole(
        &self,
        len: usize,
        deadline: Option<Instant>,
        fill: &mut dyn FnMut(&mut [u8]) -> Result<(), Error>,
    ) -> Result<(), RingError> {
        let s = &*self.state;
        assert!(len <= self.whole_limit(), "put_whole of {len} bytes");
        {
            let _held = self.lock_put(deadline)?;
            if s.maxsize > 0 {
                self.wait_for_producers(deadline, || self.len() < s.maxsize)?;
            }
            let need = record_size(len as u64);
            self.wait_for_room(need, deadline)?;
            self.rewind_to_start(need);
            let at = self.wrap_for(need);
            let offset = self.position(at);
            self.write_header(offset, len as u32, WHOLE);
            // SAFETY: the record fits before the end of the ring (wrap_for) and lies past `tail`,
            // so only this producer (holding put_lock) touches these bytes until it publishes them.
            let room = unsafe { std::slice::from_raw_parts_mut(self.bytes().add((offset + HEADER) as usize), len) };
            fill(room).map_err(RingError::Failed)?;
            self.make_visible(at + need, true);
        }
        // After put_lock is let go, whose release a sleeping consumer synchronizes with.
        self.wake_after_unlock(&s.producer.published, &s.sleepers.consumers);
        Ok(())
    }

    /// Takes `put_lock` (finishing a dead holder's message first), released when dropped — also
    /// when a caller's `fill` panics.
    fn lock_put(&self, deadline: Option<Instant>) -> Result<Held<'_>, RingError> {
        let lock = &self.state.put.put_lock;
        match lock.lock(deadline) {
            Err(TimedOut) => return Err(RingError::Timeout),
            Ok(Acquired::OwnerDied(_)) => {
                let held = Held(lock);
                self.abort_stream_locked();
                return Ok(held);
            }
            Ok(Acquired::Clean) => {}
        }
        Ok(Held(lock))
    }

    /// Called with `put_lock` taken over from a dead holder: finish its message with ABORT.
    fn abort_stream_locked(&self) {
        let s = &*self.state;
        if s.put.streaming.load(Ordering::Relaxed) != 0 {
            // Room for this record was kept free by the dead producer.
            let at = self.wrap_for(HEADER);
            self.write_record(at, ABORT, &[], &[]);
            self.publish(at + HEADER, false);
            s.put.streaming.store(0, Ordering::Relaxed);
        }
    }

    /// Streams a message bigger than `whole_limit()` in chunks. Holds put_lock.
    fn put_chunked(&self, payload: &[u8], deadline: Option<Instant>) -> Result<(), RingError> {
        let s = &*self.state;
        let len = payload.len() as u64;
        if s.maxsize > 0 {
            self.wait_for_producers(deadline, || self.len() < s.maxsize)?;
        }
        // Chunked: wait (until the deadline) for room for a first chunk; from then on stream
        // whatever the consumers free, always keeping room for an ABORT record.
        self.wait_for_room(record_size(16) + ABORT_RESERVE, deadline)?;
        s.put.streaming.store(1, Ordering::Relaxed);
        let start = s.producer.tail.load(Ordering::Relaxed);
        let mut sent = 0u64;
        let mut first = true;
        let mut progress = Instant::now();
        loop {
            let prefix: u64 = if first { 8 } else { 0 };
            let remaining = len - sent;
            let (to_end, free) = (self.contiguous_to_end(), self.free());
            let usable = to_end.min(free.saturating_sub(ABORT_RESERVE));
            let smallest = record_size(prefix + remaining.min(8));
            if usable < smallest {
                if to_end < smallest && free >= to_end + ABORT_RESERVE {
                    // The end of the ring is in the way, not the consumer: pad and go on at 0.
                    self.write_pad(self.position(s.producer.tail.load(Ordering::Relaxed)));
                } else {
                    // A deadline bounds the whole put, but a consumer that is still taking
                    // chunks keeps a message going for a while past it: give up only when the
                    // deadline has passed and nothing was taken for STALL.
                    let until = deadline.map(|d| d.max(progress + STALL));
                    if self.wait_for_producers(until, || self.free() > free).is_err() {
                        // Nobody takes the rest in time: take the message back, so the queue is
                        // left as it was and the caller keeps the item.
                        self.withdraw_stream_locked(start);
                        return Err(RingError::Timeout);
                    }
                    progress = Instant::now();
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
            let tail = s.producer.tail.load(Ordering::Relaxed);
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
        s.put.streaming.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// Takes back the chunked message this producer began at tail counter `start`. Holds
    /// put_lock. If no consumer has read any of it (and none is in a get), the tail simply moves
    /// back, freeing its room; otherwise an ABORT record ends it and the consumer drops its part.
    fn withdraw_stream_locked(&self, start: u64) {
        let s = &*self.state;
        let get_lock = &s.get.get_lock;
        if let Some(how) = get_lock.try_lock() {
            if let Acquired::OwnerDied(pid) = how {
                // The takeover duties of a get: orphaned chunks are skipped by the next get
                // (they have no FIRST before them); what the dead consumer held is counted.
                s.get.assembling.store(0, Ordering::Relaxed);
                self.repair_consume();
                self.release_holder(pid, true);
            }
            let untouched = s.consumer.head.load(Ordering::Acquire) <= start;
            if untouched {
                // Both locks held: no producer or consumer looks at the ring until we let go.
                s.producer.tail.store(start, Ordering::Release);
                s.get.tail_seen.store(s.get.tail_seen.load(Ordering::Relaxed).min(start), Ordering::Relaxed);
                s.put.streaming.store(0, Ordering::Relaxed);
            }
            get_lock.unlock();
            if untouched {
                return;
            }
        }
        self.abort_stream_locked();
    }

    /// Offset in the ring of byte counter `counter`.
    #[inline]
    fn position(&self, counter: u64) -> u64 {
        match self.state.mask {
            0 => counter % self.state.capacity,
            mask => counter & mask,
        }
    }

    fn free(&self) -> u64 {
        let s = &*self.state;
        let head = s.consumer.head.load(Ordering::Acquire);
        s.put.head_seen.store(head, Ordering::Relaxed);
        s.capacity - (s.producer.tail.load(Ordering::Relaxed) - head)
    }

    /// A lower bound of [`free`](Self::free) from the producers' own cache line.
    fn free_seen(&self) -> u64 {
        let s = &*self.state;
        s.capacity - (s.producer.tail.load(Ordering::Relaxed) - s.put.head_seen.load(Ordering::Relaxed))
    }

    fn contiguous_to_end(&self) -> u64 {
        let s = &*self.state;
        s.capacity - self.position(s.producer.tail.load(Ordering::Relaxed))
    }

    /// Waits until a record of `need` bytes fits (counting a pad to the end of the ring).
    fn wait_for_room(&self, need: u64, deadline: Option<Instant>) -> Result<(), RingError> {
        let s = &*self.state;
        let fits_in = |free: u64| {
            let to_end = self.contiguous_to_end();
            if need <= to_end { free >= need } else { free >= to_end + need }
        };
        if need > s.capacity {
            return Err(RingError::Failed(Error::new(ErrorKind::InvalidInput, "record larger than the ring")));
        }
        if fits_in(self.free_seen()) {
            return Ok(());
        }
        self.wait_for_producers(deadline, || fits_in(self.free()))
    }

    /// Goes back to the start of the ring for a big record of `need` bytes when the consumer is
    /// well past the start: a queue of big messages (a pool's chunks) then cycles through the
    /// first pages of its ring — mapped and warm — instead of walking the whole ring and
    /// faulting every page of it in, once per process that touches it. It is a PAD to the end,
    /// as when a record does not fit there; the head's cache line is read only for records this
    /// big. Records not yet taken may remain, as long as they lie between the head and the tail
    /// without wrapping: the start of the ring up to the head is then free.
    ///
    /// The pad counts as used until the consumer passes it, which it does only when it takes the
    /// records before the rewound one: so the rewind is made only where the head leaves room
    /// behind the rewound record for three more like it (or a quarter of the ring). Made right
    /// behind it, it left room for no second message: a ring that holds one message while its
    /// consumer is blocked elsewhere is a deadlock waiting to happen.
    fn rewind_to_start(&self, need: u64) {
        /// Smaller records keep the small-message path free of the extra read.
        const REWIND_FROM: u64 = 4096;
        let s = &*self.state;
        if need < REWIND_FROM {
            return;
        }
        let tail = s.producer.tail.load(Ordering::Relaxed);
        let used = s.capacity - self.free();
        let head = tail - used;
        let (at, head_at) = (self.position(tail), self.position(head));
        if used < s.capacity && head_at <= at && head_at >= need + (3 * need).min(s.capacity / 4) {
            self.write_pad(at);
        }
    }

    /// Makes `need` contiguous bytes available at the tail, padding to the end if needed;
    /// returns the tail counter where the record goes. Room must already be there.
    fn wrap_for(&self, need: u64) -> u64 {
        let s = &*self.state;
        if self.contiguous_to_end() < need {
            self.write_pad(self.position(s.producer.tail.load(Ordering::Relaxed)));
        }
        s.producer.tail.load(Ordering::Relaxed)
    }

    /// Writes a PAD record from ring offset `at` to the end and publishes it.
    fn write_pad(&self, at: u64) {
        let s = &*self.state;
        let to_end = s.capacity - at;
        let tail = s.producer.tail.load(Ordering::Relaxed);
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

    /// Makes everything up to `tail` visible to consumers, and wakes them if asleep: for records
    /// published while `put_lock` stays held (chunks, pads, an abort), which consumers may be
    /// waiting for under their own lock.
    fn publish(&self, tail: u64, whole_message: bool) {
        let s = &*self.state;
        self.make_visible(tail, whole_message);
        bump_and_wake(&s.producer.published, &s.sleepers.consumers);
    }

    /// Moves `tail` (and the message count) without waking anyone: the caller wakes sleepers
    /// once it lets go of `put_lock` ([`wake_after_unlock`](Self::wake_after_unlock)).
    #[inline]
    fn make_visible(&self, tail: u64, whole_message: bool) {
        let s = &*self.state;
        s.producer.tail.store(tail, Ordering::Release);
        if whole_message {
            // After `tail`: a count never runs ahead of what a consumer can see (a producer
            // killed between the two stores leaves `len()` one short, never one too many).
            // Only the holder of put_lock writes it: a plain store, no read-modify-write.
            s.producer.put_count.store(s.producer.put_count.load(Ordering::Relaxed) + 1, Ordering::Release);
        }
    }

    /// Wakes the sleepers of `word` (counted in `asleep`) after a put or get whose changes were
    /// made under a ring lock and published by letting go of it — a sequentially consistent
    /// swap ([`RawMutex::unlock`]). The busy case pays no read-modify-write here: the word is
    /// bumped only when somebody sleeps.
    ///
    /// Why no sleeper is missed: a sleeper reads `word`, counts itself in `asleep`, then reads
    /// the lock word of the side it waits for ([`RawMutex::observe`]) before it looks at the
    /// ring. Our unlock, our read of `asleep` and its two steps are all sequentially consistent.
    /// If we read `asleep` before its count, our unlock precedes its read of the lock word, which
    /// then synchronizes with the unlock (or a later lock operation in its release sequence), so
    /// it sees our changes and does not sleep. Otherwise we see it and bump the word, and its
    /// sleep fails on the changed word.
    #[inline]
    fn wake_after_unlock(&self, word: &AtomicU32, asleep: &AtomicU32) {
        if asleep.load(Ordering::SeqCst) > 0 {
            word.fetch_add(1, Ordering::SeqCst);
            sys::futex::wake(word, u32::MAX);
        }
    }

    /// For [`wait`](crate::connection::wait): sleeps like a consumer until a whole message is in
    /// the ring, `stop` is set (then [`wake_watchers`](Self::wake_watchers) must follow), or
    /// `deadline` passes; returns whether a message is there.
    pub(crate) fn watch(&self, stop: &AtomicBool, deadline: Option<Instant>) -> bool {
        let ready = || self.len() > 0 || stop.load(Ordering::SeqCst);
        let _ = self.consumers_sleep().wait(deadline, &ready);
        self.len() > 0
    }

    /// Wakes every [`watch`](Self::watch)er so it sees its `stop` flag. Sleeping consumers wake
    /// too, find nothing new, and sleep again.
    pub(crate) fn wake_watchers(&self) {
        let s = &*self.state;
        // A bump, not only a wake: a watcher between its check and its sleep must see the word
        // change, or it would sleep through this.
        s.producer.published.fetch_add(1, Ordering::SeqCst);
        sys::futex::wake(&s.producer.published, u32::MAX);
    }

    /// How consumers sleep: on `published`, woken by producers.
    fn consumers_sleep(&self) -> Sleeper<'_> {
        let s = &*self.state;
        Sleeper { word: &s.producer.published, asleep: &s.sleepers.consumers, lock: &s.put.put_lock }
    }

    /// How producers sleep: on `consumed`, woken by consumers.
    fn producers_sleep(&self) -> Sleeper<'_> {
        let s = &*self.state;
        Sleeper { word: &s.consumer.consumed, asleep: &s.sleepers.producers, lock: &s.get.get_lock }
    }

    /// Producers wait here (for room, or for the message count to drop).
    fn wait_for_producers(&self, deadline: Option<Instant>, ready: impl Fn() -> bool) -> Result<(), RingError> {
        self.producers_sleep().wait(deadline, &ready).map_err(|TimedOut| RingError::Timeout)
    }

    // ----- consumer side -----

    /// Takes one message and hands its bytes to `decode`, waiting until `deadline` for one to
    /// start arriving. A whole message is decoded in place, straight from the ring; a chunked one
    /// from the buffer it was assembled in. Once a chunked message has started, the call finishes
    /// it (or sees it aborted) whatever the deadline. The message is consumed even if `decode`
    /// panics, so a message that makes decoding panic cannot jam the queue.
    pub(crate) fn get(&self, deadline: Option<Instant>, decode: &mut dyn FnMut(&[u8])) -> Result<(), RingError> {
        let s = &*self.state;
        let lock = &s.get.get_lock;
        let mut discard = false;
        match lock.lock(deadline) {
            Err(TimedOut) => return Err(RingError::Timeout),
            // A consumer died in the middle of a chunked message: its remaining chunks are orphans.
            Ok(Acquired::OwnerDied(pid)) => {
                discard = s.get.assembling.swap(0, Ordering::Relaxed) != 0;
                // Settle what it held before any get moves `get_count` past its mark.
                self.repair_consume();
                self.release_holder(pid, true);
            }
            Ok(Acquired::Clean) => {}
        }
        let taken = {
            let _held = Held(lock);
            self.get_locked(deadline, discard, decode)
        };
        // After get_lock is let go (see `wake_after_unlock`).
        self.wake_after_unlock(&s.consumer.consumed, &s.sleepers.producers);
        taken
    }

    fn get_locked(
        &self,
        deadline: Option<Instant>,
        mut discard: bool,
        decode: &mut dyn FnMut(&[u8]),
    ) -> Result<(), RingError> {
        let s = &*self.state;
        let mut message: Option<(Vec<u8>, u64)> = None;
        loop {
            let head = s.consumer.head.load(Ordering::Relaxed);
            let waiting_deadline = if message.is_some() { None } else { deadline };
            if s.get.tail_seen.load(Ordering::Relaxed) == head && self.refresh_tail() == head {
                let ready = || s.producer.tail.load(Ordering::Acquire) != head;
                if message.is_some() {
                    self.wait_for_chunk(&ready);
                    continue;
                }
                self.consumers_sleep().wait(waiting_deadline, &ready).map_err(|TimedOut| RingError::Timeout)?;
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
                    if message.is_some() || discard {
                        // Cannot follow an unfinished chunked message (an ABORT comes first);
                        // whatever was being assembled is gone.
                        s.get.assembling.store(0, Ordering::Relaxed);
                    }
                    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode(payload)));
                    let held = self.hold_one();
                    self.move_head(head + size, true);
                    self.settle_hold(held);
                    if let Err(panic) = decoded {
                        std::panic::resume_unwind(panic);
                    }
                    return Ok(());
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
                    s.get.assembling.store(1, Ordering::Relaxed);
                    self.consume(head + size, false);
                }
                MIDDLE | LAST => {
                    match &mut message {
                        Some((buf, _)) if !discard => buf.extend_from_slice(payload),
                        // An orphan chunk (its consumer died, or its start was aborted): skip.
                        _ => {}
                    }
                    let done = kind == LAST;
                    let held = if done && message.is_some() { self.hold_one() } else { None };
                    self.consume(head + size, done);
                    self.settle_hold(held);
                    if done {
                        s.get.assembling.store(0, Ordering::Relaxed);
                        if let Some((buf, total)) = message.take() {
                            if buf.len() as u64 != total {
                                return Err(self.corrupt(format!("message of {} bytes, {total} announced", buf.len())));
                            }
                            decode(&buf);
                            return Ok(());
                        }
                        discard = false;
                    }
                }
                ABORT => {
                    self.consume(head + size, false);
                    message = None;
                    discard = false;
                    s.get.assembling.store(0, Ordering::Relaxed);
                }
                other => return Err(self.corrupt(format!("unknown record kind {other}"))),
            }
        }
    }

    /// Reads the producers' `tail` (Acquire) and remembers it in `tail_seen`. Holds get_lock.
    fn refresh_tail(&self) -> u64 {
        let s = &*self.state;
        let tail = s.producer.tail.load(Ordering::Acquire);
        s.get.tail_seen.store(tail, Ordering::Relaxed);
        tail
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
        RingError::Failed(Error::new(ErrorKind::Decode, format!("queue ring: {what}")))
    }

    /// Frees everything up to `head` for producers, and wakes them if asleep: for records taken
    /// while `get_lock` stays held (chunks, pads, an abort), which a producer streaming a message
    /// may be waiting on under its own lock.
    fn consume(&self, head: u64, whole_message: bool) {
        let s = &*self.state;
        self.move_head(head, whole_message);
        bump_and_wake(&s.consumer.consumed, &s.sleepers.producers);
    }

    /// Frees everything up to `head` without waking anyone: [`get`](Self::get) wakes sleeping
    /// producers once it lets go of `get_lock`.
    #[inline]
    fn move_head(&self, head: u64, whole_message: bool) {
        let s = &*self.state;
        if whole_message {
            // Only the holder of get_lock writes these. The intent goes first, so that a kill
            // between the moves of `head` and `get_count` can be finished by the next holder.
            let count = s.consumer.get_count.load(Ordering::Relaxed) + 1;
            s.get.taking_count.store(count, Ordering::Relaxed);
            s.get.taking_head.store(head, Ordering::Release);
            s.consumer.head.store(head, Ordering::Release);
            s.consumer.get_count.store(count, Ordering::Release);
            s.get.taking_head.store(0, Ordering::Release);
        } else {
            s.consumer.head.store(head, Ordering::Release);
        }
    }

    /// With `get_lock` taken over from a dead holder: finishes the count of a whole message it
    /// was consuming when it died (its `head` moved, its `get_count` not yet), or forgets the
    /// intent if `head` never moved.
    fn repair_consume(&self) {
        let (g, c) = (&self.state.get, &self.state.consumer);
        let taking = g.taking_head.load(Ordering::Acquire);
        if taking != 0 {
            if c.head.load(Ordering::Acquire) == taking {
                c.get_count.store(g.taking_count.load(Ordering::Relaxed), Ordering::Release);
            }
            g.taking_head.store(0, Ordering::Release);
        }
    }

    /// Waits for the next chunk of a message; if its producer died meanwhile, aborts the message
    /// on its behalf so that this wait ends.
    fn wait_for_chunk(&self, ready: &dyn Fn() -> bool) {
        let s = &*self.state;
        let slice = Instant::now() + Duration::from_millis(20);
        if self.consumers_sleep().wait(Some(slice), ready).is_ok() {
            return;
        }
        if let Some(how) = s.put.put_lock.try_lock() {
            // Nobody (alive) holds put_lock, so no chunk is coming unless we write the ABORT.
            if how != Acquired::Clean || s.put.streaming.load(Ordering::Relaxed) != 0 {
                self.abort_stream_locked();
            }
            s.put.put_lock.unlock();
        }
    }

    // ----- watchers for async callers -----

    /// A snapshot of what producers have published, taken before a `try_get`: a watcher started
    /// after the try fails sleeps only while nothing more has been, so a put in between is not
    /// slept through.
    pub(crate) fn published_mark(&self) -> u64 {
        self.state.producer.tail.load(Ordering::SeqCst)
    }

    /// What consumers have taken, as [`published_mark`](Self::published_mark) (for a `try_put`).
    pub(crate) fn consumed_mark(&self) -> u64 {
        self.state.consumer.head.load(Ordering::SeqCst)
    }

    /// Whether a `try_get` that found nothing was kept out by another consumer holding the ring
    /// (rather than by an empty ring): its watcher then looks again after a short sleep.
    pub(crate) fn get_contended(&self) -> bool {
        self.len() > 0
    }

    /// Whether a `try_put` that failed may have been kept out by another producer.
    pub(crate) fn put_contended(&self) -> bool {
        self.state.put.put_lock.is_locked()
    }

    /// Sleeps like a consumer while nothing is published past `mark`, until `stop` is set (then
    /// [`wake_watchers`](Self::wake_watchers) must follow) or `slice` has passed.
    pub(crate) fn sleep_consumer(&self, mark: u64, stop: &AtomicBool, slice: Option<Duration>) {
        let s = &*self.state;
        self.consumers_sleep().sleep_while(&s.producer.tail, mark, stop, slice);
    }

    /// Sleeps like a producer while nothing is taken past `mark` (see
    /// [`sleep_consumer`](Self::sleep_consumer); [`wake_room_watchers`](Self::wake_room_watchers)
    /// interrupts it).
    pub(crate) fn sleep_producer(&self, mark: u64, stop: &AtomicBool, slice: Option<Duration>) {
        let s = &*self.state;
        self.producers_sleep().sleep_while(&s.consumer.head, mark, stop, slice);
    }

    /// Wakes every producer-side sleeper so that it looks at its stop flag; producers waiting
    /// for room look again and sleep on.
    pub(crate) fn wake_room_watchers(&self) {
        let s = &*self.state;
        s.consumer.consumed.fetch_add(1, Ordering::SeqCst);
        sys::futex::wake(&s.consumer.consumed, u32::MAX);
    }

    /// Sleeps like [`join`](Self::join) until every message is done or `stop` is set (then
    /// [`wake_joiners`](Self::wake_joiners) must follow).
    pub(crate) fn sleep_joiner(&self, stop: &AtomicBool) {
        let _ = self.sleep_until_drained(None, stop);
    }

    /// Wakes every joiner so that it looks at its stop flag (joiners look again and sleep on).
    pub(crate) fn wake_joiners(&self) {
        let s = &*self.state;
        s.tasks.drained.fetch_add(1, Ordering::SeqCst);
        sys::futex::wake(&s.tasks.drained, u32::MAX);
    }

    /// Whether every message put was marked done.
    pub(crate) fn is_drained(&self) -> bool {
        self.state.tasks.unfinished.load(Ordering::SeqCst) as u32 == 0
    }

    // ----- joinable queues -----

    /// Counts a message as unfinished (before it is put).
    pub(crate) fn add_unfinished(&self) {
        self.state.tasks.unfinished.fetch_add(1, Ordering::SeqCst);
    }

    /// Takes back an unfinished count when a put failed.
    pub(crate) fn remove_unfinished(&self) {
        self.finish_one(false);
    }

    /// Makes the ring follow who holds each message taken (a joinable queue's ring, before it is
    /// shared).
    pub(crate) fn set_joinable(&self) {
        self.state.joinable.store(1, Ordering::SeqCst);
    }

    /// Unfinished messages that were counted done because the process that took them died.
    pub(crate) fn lost(&self) -> u64 {
        self.state.tasks.lost.load(Ordering::SeqCst)
    }

    /// Counts a message about to be consumed as held by this process (pending until
    /// [`settle_hold`](Self::settle_hold)). Holds get_lock. Returns the holder slot used.
    fn hold_one(&self) -> Option<usize> {
        let s = &*self.state;
        if s.joinable.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let me = sys::process::cached_pid();
        let mark = (s.consumer.get_count.load(Ordering::Relaxed) & 0x7f) as u8;
        // Our own word first, then a free one (its process holds nothing), then the word of a
        // dead process, once what it held is counted done.
        let free = Holder::is_free;
        for pass in 0..3 {
            for (i, slot) in s.tasks.holders.iter().enumerate() {
                let mut word = slot.load(Ordering::SeqCst);
                let mut h = Holder::from_word(word);
                if pass == 2 && h.pid != me && !free(h) && !sys::process::is_running(h.pid) {
                    self.release_holder(h.pid, true);
                    word = slot.load(Ordering::SeqCst);
                    h = Holder::from_word(word);
                }
                let base = match pass {
                    0 if h.pid == me && !h.pending && h.count < Holder::MAX_COUNT => h.count,
                    1 | 2 if free(h) => 0,
                    _ => continue,
                };
                let keep = if h.pid == me { h } else { Holder::from_word(0) };
                let next = Holder { pid: me, count: base + 1, pending: true, mark, ..keep };
                if slot.compare_exchange(word, next.word(), Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                    return Some(i);
                }
            }
        }
        // Every word belongs to a live consumer: this message is not followed.
        None
    }

    /// Clears `pending` once the message held in slot `held` is consumed.
    fn settle_hold(&self, held: Option<usize>) {
        if let Some(i) = held {
            let slot = &self.state.tasks.holders[i];
            // Only this process changes its own word while pending (a finder of the dead would
            // need us dead), except task_done's decrements from other threads of ours: retry.
            let mut word = slot.load(Ordering::SeqCst);
            loop {
                let next = Holder { pending: false, ..Holder::from_word(word) };
                match slot.compare_exchange(word, next.word(), Ordering::SeqCst, Ordering::SeqCst) {
                    Ok(_) => return,
                    Err(seen) => word = seen,
                }
            }
        }
    }

    /// Counts done whatever dead process `pid` held; true if it had a word. `holding_get_lock`
    /// says whether the caller holds `get_lock` (see [`release_locked`](Self::release_locked)).
    fn release_holder(&self, pid: u32, holding_get_lock: bool) -> bool {
        let _held = self.lock_done(holding_get_lock);
        self.release_locked(pid, holding_get_lock)
    }

    /// Takes `done_lock`, settling first what a holder that died with it was doing.
    fn lock_done(&self, holding_get_lock: bool) -> Held<'_> {
        let lock = &self.state.tasks.done_lock;
        let owner_died = lock.lock(None);
        let held = Held(lock);
        if let Ok(Acquired::OwnerDied(pid)) = owner_died {
            // Settle what the dead finisher was doing before any done moves the tally — and, as
            // it may have been a releaser part-way through another dead process's word, every
            // dead process's word, while the tally still stands where they left it.
            self.release_locked(pid, holding_get_lock);
            self.release_dead_locked(holding_get_lock);
        }
        held
    }

    /// Settles the words of every consumer that died. Holds `done_lock`. Returns whether any
    /// were found.
    fn release_dead_locked(&self, holding_get_lock: bool) -> bool {
        let me = sys::process::cached_pid();
        let mut found = false;
        for slot in &self.state.tasks.holders {
            let h = Holder::from_word(slot.load(Ordering::SeqCst));
            if !h.is_free() && h.pid != me && !sys::process::is_running(h.pid) {
                found |= self.release_locked(h.pid, holding_get_lock);
            }
        }
        found
    }

    /// Whether a dead getter's pending message left the ring: `get_count` moved past its mark.
    /// That can be read only with `get_lock` held (taken over from a dead holder, its consume
    /// finished first); `None` if a live getter holds it — it settles the dead one itself when
    /// it took the lock over.
    fn pending_consumed(&self, mark: u8, holding_get_lock: bool) -> Option<bool> {
        let (g, c) = (&self.state.get, &self.state.consumer);
        let read = || (c.get_count.load(Ordering::SeqCst) & 0x7f) as u8 != mark;
        if holding_get_lock {
            return Some(read());
        }
        let how = g.get_lock.try_lock()?;
        let _held = Held(&g.get_lock);
        if let Acquired::OwnerDied(_) = how {
            g.assembling.store(0, Ordering::Relaxed);
            self.repair_consume();
        }
        Some(read())
    }

    /// [`release_holder`](Self::release_holder) with `done_lock` held.
    ///
    /// The dead process's word is settled one step at a time, each step one compare-and-swap
    /// that leaves the word saying what is left, so that a releaser killed part-way leaves the
    /// rest to the next (who finds the same dead pid): first a pending get (its message counted
    /// only if it left the ring), then a half-done finish (finished only if the tally is still at
    /// its mark), then each message still held, finished the way a `task_done` finishes one —
    /// marked `finishing` with the tally's mark, then finished, which moves the tally.
    fn release_locked(&self, pid: u32, holding_get_lock: bool) -> bool {
        let s = &*self.state;
        let mut found = false;
        for slot in &s.tasks.holders {
            let mut word = slot.load(Ordering::SeqCst);
            loop {
                let h = Holder::from_word(word);
                if h.pid != pid || h.is_free() {
                    found |= h.pid == pid;
                    break;
                }
                let next = if h.pending {
                    // A pending message whose consume did not happen is still in the ring.
                    let Some(consumed) = self.pending_consumed(h.mark, holding_get_lock) else { break };
                    Holder { pending: false, count: h.count - u32::from(!consumed), ..h }
                } else if h.finishing {
                    // Taken off the count; finished unless the tally is still at the mark.
                    if done_mark(s.tasks.unfinished.load(Ordering::SeqCst)) == h.done_mark && self.finish_one(true) {
                        s.tasks.lost.fetch_add(1, Ordering::SeqCst);
                    }
                    Holder { finishing: false, ..h }
                } else {
                    let mark = done_mark(s.tasks.unfinished.load(Ordering::SeqCst));
                    Holder { count: h.count - 1, finishing: true, done_mark: mark, ..h }
                };
                match slot.compare_exchange(word, next.word(), Ordering::SeqCst, Ordering::SeqCst) {
                    Ok(_) => word = next.word(),
                    Err(seen) => word = seen,
                }
            }
        }
        found
    }

    /// Counts done the messages held by consumers that died. Returns whether any were found.
    fn release_dead_holders(&self) -> bool {
        let _held = self.lock_done(false);
        self.release_dead_locked(false)
    }

    /// Marks one message done; false if none was unfinished.
    pub(crate) fn task_done(&self) -> bool {
        let s = &*self.state;
        if s.joinable.load(Ordering::Relaxed) == 0 {
            return self.finish_one(false);
        }
        let _held = self.lock_done(false);
        let mine = self.unhold_one();
        let done = self.finish_one(true);
        if let Some(i) = mine {
            let slot = &s.tasks.holders[i];
            let mut word = slot.load(Ordering::SeqCst);
            loop {
                let next = Holder { finishing: false, ..Holder::from_word(word) };
                match slot.compare_exchange(word, next.word(), Ordering::SeqCst, Ordering::SeqCst) {
                    Ok(_) => break,
                    Err(seen) => word = seen,
                }
            }
        }
        done
    }

    /// Takes one message off the caller's holder word, marked `finishing` (returns which word);
    /// or, if it holds none — it was handed the item by its getter — off another live holder's,
    /// so that the dead are never over-counted. Holds done_lock.
    fn unhold_one(&self) -> Option<usize> {
        let s = &*self.state;
        let me = sys::process::cached_pid();
        let mark = done_mark(s.tasks.unfinished.load(Ordering::SeqCst));
        for mine in [true, false] {
            for (i, slot) in s.tasks.holders.iter().enumerate() {
                let mut word = slot.load(Ordering::SeqCst);
                loop {
                    let h = Holder::from_word(word);
                    if (h.pid == me) != mine || h.count == 0 || (h.pending && h.count == 1) {
                        break;
                    }
                    let next = if mine {
                        Holder { count: h.count - 1, finishing: true, done_mark: mark, ..h }
                    } else {
                        Holder { count: h.count - 1, ..h }
                    };
                    match slot.compare_exchange(word, next.word(), Ordering::SeqCst, Ordering::SeqCst) {
                        Ok(_) => return mine.then_some(i),
                        Err(seen) => word = seen,
                    }
                }
            }
        }
        None
    }

    /// Takes one off the unfinished count (and, for a `task_done`, adds one to the tally),
    /// waking joiners at zero; false if it was zero.
    fn finish_one(&self, tally: bool) -> bool {
        let s = &*self.state;
        let step = if tally { (1u64 << 32).wrapping_sub(1) } else { u64::MAX };
        let mut current = s.tasks.unfinished.load(Ordering::SeqCst);
        loop {
            if current as u32 == 0 {
                return false;
            }
            match s.tasks.unfinished.compare_exchange(
                current,
                current.wrapping_add(step),
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
        if current as u32 == 1 {
            s.tasks.drained.fetch_add(1, Ordering::SeqCst);
            if s.tasks.asleep.load(Ordering::SeqCst) > 0 {
                sys::futex::wake(&s.tasks.drained, u32::MAX);
            }
        }
        true
    }

    /// Waits until every message put has been marked done.
    pub(crate) fn join(&self, deadline: Option<Instant>) -> Result<(), TimedOut> {
        let s = &*self.state;
        let ready = || s.tasks.unfinished.load(Ordering::SeqCst) as u32 == 0;
        if ready() || raw::spin(raw::SPIN, ready) {
            return Ok(());
        }
        self.sleep_until_drained(deadline, &AtomicBool::new(false))
    }

    /// Sleeps until every message is done, `stop` is set, or `deadline` passes.
    fn sleep_until_drained(&self, deadline: Option<Instant>, stop: &AtomicBool) -> Result<(), TimedOut> {
        let s = &*self.state;
        let ready = || s.tasks.unfinished.load(Ordering::SeqCst) as u32 == 0 || stop.load(Ordering::SeqCst);
        let joinable = s.joinable.load(Ordering::Relaxed) != 0;
        loop {
            // Items taken by a consumer that died will never be marked done: count them done
            // now (and look again every slice: nobody tells us of a death).
            if joinable {
                self.release_dead_holders();
            }
            let seen = s.tasks.drained.load(Ordering::SeqCst);
            if ready() {
                return Ok(());
            }
            s.tasks.asleep.fetch_add(1, Ordering::SeqCst);
            let slice = if joinable { Duration::from_millis(50) } else { Duration::from_secs(3600) };
            let woke = sys::futex::wait_until(&s.tasks.drained, seen, deadline, slice);
            s.tasks.asleep.fetch_sub(1, Ordering::SeqCst);
            if ready() {
                return Ok(());
            }
            if woke == sys::futex::Wake::TimedOut {
                return Err(TimedOut);
            }
        }
    }
}

/// A ring lock held until dropped.
struct Held<'a>(&'a RawMutex);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.unlock();
    }
}

/// Bumps `word` and wakes its sleepers (counted in `asleep`), after the stores they wait for,
/// with the ring's lock still held. The bump comes first: a sleeper reads the word before it
/// looks, so either it sees the stores or its sleep fails on the changed word.
fn bump_and_wake(word: &AtomicU32, asleep: &AtomicU32) {
    word.fetch_add(1, Ordering::SeqCst);
    if asleep.load(Ordering::SeqCst) > 0 {
        sys::futex::wake(word, u32::MAX);
    }
}

/// One kind of sleeper on a ring — consumers waiting for records, or producers for room: the
/// futex word it sleeps on, the count it announces itself in, and the lock of the side that
/// wakes it (see [`Ring::wake_after_unlock`]).
struct Sleeper<'a> {
    word: &'a AtomicU32,
    asleep: &'a AtomicU32,
    lock: &'a RawMutex,
}

impl Sleeper<'_> {
    /// Counts itself asleep, then synchronizes with the waking side's last unlock, so that what
    /// it looks at next is at least what that put or get left (see
    /// [`Ring::wake_after_unlock`]).
    fn announce(&self) {
        self.asleep.fetch_add(1, Ordering::SeqCst);
        self.lock.observe();
    }

    /// Spins, then sleeps until `ready()` or `deadline`.
    fn wait(&self, deadline: Option<Instant>, ready: &dyn Fn() -> bool) -> Result<(), TimedOut> {
        if ready() || raw::spin(raw::SPIN, ready) {
            return Ok(());
        }
        loop {
            let seen = self.word.load(Ordering::SeqCst);
            self.announce();
            if ready() {
                self.asleep.fetch_sub(1, Ordering::SeqCst);
                return Ok(());
            }
            let woke = sys::futex::wait_until(self.word, seen, deadline, Duration::from_secs(3600));
            self.asleep.fetch_sub(1, Ordering::SeqCst);
            if ready() {
                return Ok(());
            }
            if woke == sys::futex::Wake::TimedOut {
                return Err(TimedOut);
            }
        }
    }

    /// Sleeps while `counter` stays at `mark`, until `stop` is set or `slice` (if any) has
    /// passed. Whoever sets `stop` then bumps and wakes the word.
    fn sleep_while(&self, counter: &AtomicU64, mark: u64, stop: &AtomicBool, slice: Option<Duration>) {
        let until = slice.map(|s| Instant::now() + s);
        loop {
            let seen = self.word.load(Ordering::SeqCst);
            self.announce();
            let done = counter.load(Ordering::SeqCst) != mark
                || stop.load(Ordering::SeqCst)
                || sys::futex::wait_until(self.word, seen, until, Duration::from_secs(3600))
                    == sys::futex::Wake::TimedOut;
            self.asleep.fetch_sub(1, Ordering::SeqCst);
            if done {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::Ring;

    /// A joinable getter killed between moving `head` and `get_count` (the message gone from
    /// the ring, not yet counted taken): the next getter, taking `get_lock` over, finishes the
    /// count, sees the message left the ring with the dead getter, and counts it lost — so the
    /// ring is empty by its count too, and `join` returns.
    /// A big record goes back to the start of the ring once the consumer is far enough past it,
    /// even with records not yet taken: they are read first, then the pad, then the rewound
    /// record — every record once, in order.
    #[test]
    fn big_records_rewind_behind_records_not_yet_taken() {
        use std::sync::atomic::Ordering;
        let ring = Ring::new(0, 64 << 10).unwrap();
        let record = |i: u8| vec![i; 5000];
        let mut taken = Vec::new();
        let mut take = |ring: &Ring| ring.get(None, &mut |bytes| taken.push(bytes.to_vec())).unwrap();
        for i in 0..5 {
            ring.put(&record(i), None).unwrap();
        }
        for _ in 0..4 {
            take(&ring);
        }
        let before = ring.position(ring.state.producer.tail.load(Ordering::Relaxed));
        ring.put(&record(5), None).unwrap();
        let after = ring.position(ring.state.producer.tail.load(Ordering::Relaxed));
        assert!(after < before, "the sixth record went to the start: {before} -> {after}");
        take(&ring);
        take(&ring);
        assert_eq!(taken, (0..6).map(record).collect::<Vec<_>>());
        assert_eq!(ring.len(), 0);
    }

    #[test]
    fn a_getter_killed_between_head_and_count_leaves_nothing_unaccounted() {
        let ring = Ring::new(0, 4096).unwrap();
        ring.set_joinable();
        ring.add_unfinished();
        ring.put(b"only message", None).unwrap();
        // SAFETY: the child only takes the ring's lock (atomics and a futex), moves `head` the way
        // `consume` starts to, and exits without unwinding or unlocking.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let s = &*ring.state;
            let _ = s.get.get_lock.lock(None);
            let held = ring.hold_one();
            assert!(held.is_some());
            ring.refresh_tail(); // as a get does before it reads a record
            let next = s.consumer.head.load(std::sync::atomic::Ordering::Relaxed) + super::record_size(12);
            let count = s.consumer.get_count.load(std::sync::atomic::Ordering::Relaxed) + 1;
            s.get.taking_count.store(count, std::sync::atomic::Ordering::Relaxed);
            s.get.taking_head.store(next, std::sync::atomic::Ordering::Release);
            s.consumer.head.store(next, std::sync::atomic::Ordering::Release);
            // Killed here: `get_count` never moves, `get_lock` is never let go.
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: reaps the child forked above.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        // The next get takes the lock over and finds nothing left to take.
        let began = Instant::now();
        let got = ring.get(Some(Instant::now() + Duration::from_millis(100)), &mut |_| panic!("taken twice"));
        if let Err(super::RingError::Failed(e)) = &got {
            panic!("{e}");
        }
        assert!(matches!(got, Err(super::RingError::Timeout)));
        assert!(began.elapsed() >= Duration::from_millis(100));
        assert_eq!(ring.len(), 0, "the message is gone from the ring; its count must say so");
        ring.join(Some(Instant::now() + Duration::from_secs(5))).expect("join waited for a message nobody can take");
        assert_eq!(ring.lost(), 1);
    }
}
