//! The worker side of a pool: what a worker is told, what it reports, the slot in shared memory
//! through which the parent sees what it is doing, and the worker's loop.
//!
//! A worker takes orders from its own queue (only the parent puts there, only this worker takes),
//! and reports on one queue shared by all workers (only the parent takes). Before it runs an item
//! it writes the item's batch and index into its [`Slot`]; so when a worker dies, the parent knows
//! exactly which item killed it (that one fails), which it never started (they go to another
//! worker), and which it finished but had not reported yet (they run again: a chunk is reported
//! whole).

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::connection::Connection;
use crate::handle::Fd;
use crate::pool::batch::{BatchIn, BatchOut, ItemFailure, ItemWire};
use crate::process::task::{self, Outcome};
use crate::queue::Queue;
use crate::shm::{Shared, SharedState};

/// What one worker is doing, written by the worker, read by the parent.
#[repr(C)]
pub(crate) struct Slot {
    /// The batch being run, plus one; 0 while idle.
    batch: AtomicU64,
    /// Index within that batch of the item being run.
    item: AtomicU32,
    /// 1 once the initializer (if any) has succeeded.
    ready: AtomicU32,
    /// When the current item started (CLOCK_MONOTONIC, ns).
    started_ns: AtomicU64,
    /// Batches finished and reported.
    batches_done: AtomicU64,
    /// Items finished.
    items_done: AtomicU64,
    /// Time spent running items (ns).
    busy_ns: AtomicU64,
    /// Which orders this worker may still run: the low half is the sequence number of the last
    /// order it claimed, the high half a fence set by the parent — orders numbered up to the fence
    /// that were not claimed by then were taken back, and the worker skips them. One word, so that
    /// a claim and a take-back cannot both win.
    claim: AtomicU64,
}

// SAFETY: repr(C), atomics only, no destructor.
unsafe impl SharedState for Slot {
    const KIND: u32 = 8;
    const NAME: &'static str = "pool worker slot";
}

/// The running item a slot shows: `(batch, index, started_ns)`.
pub(crate) type Running = (u64, u32, u64);

impl Slot {
    pub(crate) fn new() -> Slot {
        Slot {
            batch: AtomicU64::new(0),
            item: AtomicU32::new(0),
            ready: AtomicU32::new(0),
            started_ns: AtomicU64::new(0),
            batches_done: AtomicU64::new(0),
            items_done: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            claim: AtomicU64::new(0),
        }
    }

    /// (Worker.) Claims order `seq` before running it; false if the parent took it back.
    fn claim(&self, seq: u32) -> bool {
        let mut word = self.claim.load(Ordering::Acquire);
        loop {
            let fence = (word >> 32) as u32;
            if seq <= fence {
                return false;
            }
            let claimed = (u64::from(fence) << 32) | u64::from(seq);
            match self.claim.compare_exchange_weak(word, claimed, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(now) => word = now,
            }
        }
    }

    /// (Parent.) Takes back every order up to `last_sent` that the worker has not claimed yet;
    /// returns the last one it did claim (orders after it are the worker's no more).
    pub(crate) fn take_back(&self, last_sent: u32) -> u32 {
        let mut word = self.claim.load(Ordering::Acquire);
        loop {
            let claimed = word as u32;
            let fenced = (u64::from(last_sent) << 32) | u64::from(claimed);
            match self.claim.compare_exchange_weak(word, fenced, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return claimed,
                Err(now) => word = now,
            }
        }
    }

    /// The last order the worker claimed (a snapshot).
    pub(crate) fn claimed(&self) -> u32 {
        self.claim.load(Ordering::Acquire) as u32
    }

    /// The item being run, if any (a snapshot).
    pub(crate) fn running(&self) -> Option<Running> {
        let batch = self.batch.load(Ordering::Acquire);
        (batch != 0).then(|| (batch - 1, self.item.load(Ordering::Acquire), self.started_ns.load(Ordering::Acquire)))
    }

    /// Records that `batch` starts (with its item 0) at `started`.
    fn begin(&self, batch: u64, started: u64) {
        self.item.store(0, Ordering::Release);
        self.started_ns.store(started, Ordering::Release);
        self.batch.store(batch + 1, Ordering::Release);
    }

    /// Records that item `index` of the batch begun starts now (at `started`, if given): one
    /// store per item in the usual case, as this runs for every item of every chunk.
    #[inline]
    fn at_item(&self, index: usize, started: Option<u64>) {
        if let Some(started) = started {
            self.started_ns.store(started, Ordering::Release);
        }
        self.item.store(index as u32, Ordering::Release);
    }

    /// How a batch marks each item's start in this slot.
    pub(crate) fn marker(&self, timed: bool) -> Marker<'_> {
        Marker { slot: self, timed }
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) != 0
    }

    pub(crate) fn batches_done(&self) -> u64 {
        self.batches_done.load(Ordering::Relaxed)
    }

    pub(crate) fn items_done(&self) -> u64 {
        self.items_done.load(Ordering::Relaxed)
    }

    pub(crate) fn busy(&self) -> Duration {
        Duration::from_nanos(self.busy_ns.load(Ordering::Relaxed))
    }
}

/// Marks in a worker's [`Slot`] which item of the running batch starts, and when if items are
/// timed: called for every item, so a concrete type whose marking inlines into the batch loop.
pub(crate) struct Marker<'a> {
    slot: &'a Slot,
    timed: bool,
}

impl Marker<'_> {
    /// Item `index` starts now.
    #[inline]
    pub(crate) fn starting(&self, index: usize) {
        self.slot.at_item(index, self.timed.then(now_ns));
    }
}

/// The monotonic clock in nanoseconds, the same in every process of the machine.
pub(crate) fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Item end offsets within a packed batch, sent as one block of little-endian `u64`s (a plain
/// `Vec<u64>` would be encoded number by number). Shared, so that the order that carries a
/// batch does not copy what the parent keeps of it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Ends(pub(crate) Arc<Vec<u64>>);

impl Serialize for Ends {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Native byte order is little-endian on every target this crate builds for.
        const { assert!(cfg!(target_endian = "little")) };
        serializer.serialize_bytes(bytemuck::cast_slice(&self.0[..]))
    }
}

impl<'de> Deserialize<'de> for Ends {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Ends, D::Error> {
        let bytes = ByteBuf::deserialize(deserializer)?;
        if bytes.len() % 8 != 0 {
            return Err(serde::de::Error::custom("item ends are not whole u64s"));
        }
        let ends = bytemuck::pod_collect_to_vec(&bytes);
        Ok(Ends(Arc::new(ends)))
    }
}

/// Where each item of a packed buffer lies: one after another, item `i` ending at `ends[i]`
/// (postcard: items of any size), or every item `stride` bytes (the [flat](crate::codec::flat)
/// wire, where no offsets need to travel).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Layout {
    Ends(Ends),
    Flat { stride: u64, count: u64 },
}

impl Layout {
    /// Postcard items ending at `ends`.
    pub(crate) fn ends(ends: Vec<u64>) -> Layout {
        Layout::Ends(Ends(Arc::new(ends)))
    }

    /// How many items there are.
    pub(crate) fn len(&self) -> usize {
        match self {
            Layout::Ends(ends) => ends.0.len(),
            Layout::Flat { count, .. } => *count as usize,
        }
    }

    pub(crate) fn is_flat(&self) -> bool {
        matches!(self, Layout::Flat { .. })
    }

    /// Where item `i` lies in the buffer.
    #[inline]
    pub(crate) fn range(&self, i: usize) -> std::ops::Range<usize> {
        match self {
            Layout::Ends(ends) => {
                let start = if i == 0 { 0 } else { ends.0[i - 1] as usize };
                start..ends.0[i] as usize
            }
            Layout::Flat { stride, .. } => {
                let stride = *stride as usize;
                i * stride..(i + 1) * stride
            }
        }
    }
}

/// A batch's packed arguments, shared between the batch the parent keeps (to send again if its
/// worker dies) and the order that carries it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Packed(pub(crate) Arc<Vec<u8>>);

impl Serialize for Packed {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Packed {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Packed, D::Error> {
        /// Copies the bytes into a spare buffer (see [`spare`](crate::pool::spare)) rather than
        /// a fresh one.
        struct Bytes;
        impl<'de> serde::de::Visitor<'de> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("packed bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                let mut buffer = crate::pool::spare::take(v.len());
                buffer.extend_from_slice(v);
                Ok(buffer)
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        Ok(Packed(Arc::new(deserializer.deserialize_byte_buf(Bytes)?)))
    }
}

/// What the parent tells a worker.
#[derive(Serialize, Deserialize)]
pub(crate) enum Order {
    /// Run each item through the task whose batch entry is at `entry`, then report the batch.
    /// The items' encoded arguments are packed in `args`, laid out as `layout` says. With
    /// `with_fds`, the items' descriptors follow on the worker's handle connection. `seq` numbers
    /// the worker's orders from 1, for [`Slot::claim`].
    Run { batch: u64, seq: u32, entry: i64, args: Packed, layout: Layout, with_fds: bool },
    /// Finish: exit once this is read.
    Stop,
}

/// How one item failed, as it travels back.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum Wire {
    Panicked(task::Panic),
    /// The arguments did not decode, the result did not encode, or the result held handles.
    Failed {
        encode: bool,
        message: String,
    },
}

/// What the workers (and the parent's own supervisor) report to the parent.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum Report {
    /// A batch is finished: the items' encoded values packed in `values`, laid out as `layout`
    /// says (a failed item's place is empty, or zeros on the flat wire), and the failures by
    /// item index.
    Done { batch: u64, values: Packed, layout: Layout, failures: Vec<(u32, Wire)> },
    /// The initializer of worker `worker` failed; it has exited.
    InitFailed { worker: u32, pid: u32, message: String },
    /// (From the parent's supervisor.) Worker `worker`, process `pid`, has ended.
    Ended { worker: u32, pid: u32 },
    /// (From the parent.) Look at the pool's state again: it is shutting down.
    Wake,
}

/// Everything a worker process starts with.
#[derive(Serialize, Deserialize)]
pub(crate) struct Setup {
    pub(crate) worker: u32,
    pub(crate) orders: Queue<Order>,
    pub(crate) reports: Queue<Report>,
    /// Descriptors for items that carry handles.
    pub(crate) handles: Connection<Vec<Fd>>,
    pub(crate) slot: Shared<Slot>,
    /// The initializer: entry, encoded arguments, and the descriptors of handles inside them.
    pub(crate) initializer: Option<(i64, ByteBuf, Vec<Fd>)>,
    /// Exit after this many batches (0: never).
    pub(crate) max_batches: u64,
    /// Exit once resident memory passes this many bytes (0: never), looked at after a batch.
    pub(crate) max_memory: u64,
    /// Whether each item's start time matters (a task timeout is set); otherwise only each
    /// batch's is taken, sparing a clock read per item.
    pub(crate) timed: bool,
}

/// A buffer kept from the last batch (see `worker_main`), emptied, with room for `capacity`;
/// a new one if the last report still holds it.
fn take_spare<T>(spare: &mut Arc<Vec<T>>, capacity: usize) -> Vec<T> {
    let mut buffer = Arc::get_mut(spare).map(std::mem::take).unwrap_or_default();
    buffer.clear();
    buffer.reserve(capacity);
    buffer
}

fn failure_to_wire(failure: ItemFailure) -> Wire {
    match failure {
        ItemFailure::Panicked(message) => Wire::Panicked(message),
        ItemFailure::Failed(kind, message) => Wire::Failed { encode: kind == crate::ErrorKind::Encode, message },
    }
}

/// The worker process's task: take orders until told to stop (or until `max_batches`).
pub(crate) fn worker_main(setup: Setup) {
    // Ctrl-C in a terminal signals the whole foreground group; the parent decides what happens,
    // and workers must not each print a trace or die half-way through a report.
    crate::sys::process::ignore_interrupts();
    let me = std::process::id();
    if let Some((entry, args, fds)) = setup.initializer {
        // SAFETY: the entry was made by `entry_offset` in the parent, and this process was
        // started by multiproc, which checked that it is the same build.
        let init = unsafe { task::entry_from_offset(entry) };
        match init(&args[..], fds.into_iter().map(Fd::into_owned).collect()) {
            Outcome::Returned(..) => {}
            Outcome::Panicked(task::Panic { message, .. }) | Outcome::Failed(_, message) => {
                let _ = setup.reports.put(Report::InitFailed { worker: setup.worker, pid: me, message });
                return;
            }
        }
    }
    setup.slot.ready.store(1, Ordering::Release);
    let mut batches = 0u64;
    let mut memory_seen_at = 0u64;
    // Buffers kept from one batch to the next. A chunk's buffers are big; handed back to the
    // allocator after each batch they would often go back to the kernel, and every batch would
    // pay for fresh pages again (page faults are most of the cost of a chunk of small items).
    // So an order's buffer goes to the spare buffers (see `pool::spare`) for the next order to
    // be read into, and the result buffers are taken back from each report once it is sent, to
    // be filled again.
    let (mut spare_bytes, mut spare_ends) = (Arc::new(Vec::new()), Vec::new());
    while setup.max_batches == 0 || batches < setup.max_batches {
        let (batch, seq, entry, args, layout, with_fds) = match setup.orders.get() {
            Ok(Order::Run { batch, seq, entry, args, layout, with_fds }) => (batch, seq, entry, args, layout, with_fds),
            Ok(Order::Stop) | Err(_) => return,
        };
        let mut fds: Vec<OwnedFd> = Vec::new();
        if with_fds {
            match setup.handles.recv() {
                Ok(received) => fds = received.into_iter().map(Fd::into_owned).collect(),
                Err(_) => return,
            }
        }
        if !setup.slot.claim(seq) {
            // Taken back while it waited here: another worker runs it (its descriptors, received
            // above to keep the connection in step, are closed here).
            continue;
        }
        // SAFETY: as for the initializer.
        let run = unsafe { crate::pool::batch::batch_entry_from_offset(entry) };
        let n = layout.len();
        let mut out = BatchOut {
            bytes: take_spare(&mut spare_bytes, args.0.len()),
            ends: std::mem::take(&mut spare_ends),
            wire: ItemWire::Undecided,
            failures: Vec::new(),
        };
        out.ends.clear();
        out.ends.reserve(n);
        let slot = &*setup.slot;
        let began = now_ns();
        slot.begin(batch, began);
        let input = BatchIn { args: &args.0, layout: &layout, fds };
        run(input, &slot.marker(setup.timed), &mut out);
        slot.busy_ns.fetch_add(now_ns().saturating_sub(began), Ordering::Relaxed);
        slot.items_done.fetch_add(n as u64, Ordering::Relaxed);
        if let Ok(args) = Arc::try_unwrap(args.0) {
            crate::pool::spare::give(args);
        }
        drop(layout);
        let layout = out.layout();
        spare_ends = out.ends;
        let failures = out.failures.into_iter().map(|(i, f)| (i, failure_to_wire(f))).collect();
        spare_bytes = Arc::new(out.bytes);
        let report = Report::Done { batch, values: Packed(spare_bytes.clone()), layout, failures };
        // Report first, then say idle: a worker that dies in between is seen running the last
        // item, whose outcome is already on its way — the parent knows the batch is done.
        if setup.reports.put(report).is_err() {
            return;
        }
        setup.slot.batch.store(0, Ordering::Release);
        setup.slot.batches_done.fetch_add(1, Ordering::Relaxed);
        batches += 1;
        // Reading /proc costs microseconds: look at most once per interval, and after any batch
        // that ran that long (the one that grew the worker, most likely).
        if setup.max_memory > 0 && now_ns().saturating_sub(memory_seen_at) >= MEMORY_LOOK_NS {
            memory_seen_at = now_ns();
            if crate::sys::process::resident_bytes().is_some_and(|bytes| bytes > setup.max_memory) {
                // The pool sees a worker that ended between batches, and starts another.
                return;
            }
        }
    }
}

/// How often at most a worker with a memory limit reads its resident size.
const MEMORY_LOOK_NS: u64 = 10_000_000;
