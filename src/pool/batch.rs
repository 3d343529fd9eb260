//! A pool's batches: a task run over many items in one go, named by offset as a child's task is
//! (see [`entry`](crate::entry)), with each item's outcome packed into one buffer.

use std::os::fd::OwnedFd;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ErrorKind;
use crate::handle;
use crate::pool::worker::{Layout, Marker};
use crate::process::task::{Panic, Task};

/// How one item of a batch failed.
pub(crate) enum ItemFailure {
    /// The task panicked (or a `Serialize`/`Deserialize` of its values did).
    Panicked(Panic),
    /// The item could not be run or its result not sent: decoding its arguments failed
    /// ([`ErrorKind::Decode`]), or encoding its result ([`ErrorKind::Encode`]).
    Failed(ErrorKind, String),
}

/// Which wire a run of items (a submission's arguments, a batch's results) takes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ItemWire {
    /// Nothing encoded yet.
    Undecided,
    /// [Flat](crate::codec::flat), every item this many bytes.
    Flat(usize),
    Postcard,
}

/// Where a batch's results go: every item's encoded value packed in `bytes`, item `i` ending at
/// `ends[i]` (empty for a failed item) while they are written, the wire they are on, and the
/// failures by item index.
pub(crate) struct BatchOut {
    pub(crate) bytes: Vec<u8>,
    pub(crate) ends: Vec<u64>,
    pub(crate) wire: ItemWire,
    pub(crate) failures: Vec<(u32, ItemFailure)>,
}

impl BatchOut {
    /// How the results lie, for the report. On the flat wire no offsets travel, so a failed
    /// item's place is filled with zeros to the others' size; `ends` then stays here, to be
    /// used again.
    pub(crate) fn layout(&mut self) -> Layout {
        let count = self.ends.len() as u64;
        let stride = match self.wire {
            ItemWire::Postcard => return Layout::ends(std::mem::take(&mut self.ends)),
            ItemWire::Undecided => 0, // nothing was encoded: every item failed
            ItemWire::Flat(stride) => stride,
        };
        if !self.failures.is_empty() && stride > 0 {
            let mut padded = Vec::with_capacity(self.ends.len() * stride);
            let mut start = 0;
            for &end in &self.ends {
                let value = &self.bytes[start..end as usize];
                start = end as usize;
                if value.is_empty() {
                    padded.resize(padded.len() + stride, 0);
                } else {
                    padded.extend_from_slice(value);
                }
            }
            self.bytes = padded;
        }
        Layout::Flat { stride: stride as u64, count }
    }
}

/// A batch's arguments: the items' encoded arguments packed in one buffer, laid out as
/// `layout` says, and descriptors for their handles.
pub(crate) struct BatchIn<'a> {
    pub(crate) args: &'a [u8],
    pub(crate) layout: &'a Layout,
    pub(crate) fds: Vec<OwnedFd>,
}

/// The type-erased form of a task run over a batch (a pool's chunk): its arguments, the marker
/// told each item's index before it runs, and the output.
pub(crate) type BatchEntry = fn(BatchIn<'_>, &Marker<'_>, &mut BatchOut);

/// The offset of task `F`'s batch trampoline (see [`entry`](crate::entry)).
pub(crate) fn batch_entry_offset<F, A>() -> i64
where
    F: Task<A>,
    A: DeserializeOwned,
    F::Output: Serialize + DeserializeOwned,
{
    const { assert!(size_of::<F>() == 0, "a task must be a fn item or a closure that captures nothing") };
    let entry: BatchEntry = batch_trampoline::<F, A>;
    crate::entry::offset(entry as *const ())
}

/// Turns an offset back into the batch trampoline it came from.
///
/// # Safety
/// As for `process::task::entry_from_offset`: `offset` must come from [`batch_entry_offset`]
/// in this build.
pub(crate) unsafe fn batch_entry_from_offset(offset: i64) -> BatchEntry {
    // SAFETY: by the caller's contract `offset` names a `BatchEntry` trampoline of this build.
    unsafe { crate::entry::resolve(offset) }
}

/// How many items a batch runs per block (see [`batch_trampoline`]): enough to spread the set-up
/// of a transfer thin, few enough that a block's values stay in cache and its buffers small.
const BLOCK: usize = 256;

/// The monomorphised body that runs task `F` over a batch. Items of plain numbers both ways
/// take the [flat lane](flat_lane_run) while they can; the rest go a block of items at a time in
/// three passes: decode the block's arguments, run the block's items, encode the block's
/// results. Each pass sets its transfer up once per block (see [`handle::EncodeScope`]), and user
/// code — the task — runs only in the middle one, outside both transfers. Results are packed
/// straight into one buffer, on the flat wire while they all have the first one's flat size.
fn batch_trampoline<F, A>(input: BatchIn<'_>, marker: &Marker<'_>, out: &mut BatchOut)
where
    F: Task<A>,
    A: DeserializeOwned,
    F::Output: Serialize + DeserializeOwned,
{
    let BatchIn { args, layout, mut fds } = input;
    let (n, flat) = (layout.len(), layout.is_flat());
    let mut start = 0;
    if let Layout::Flat { stride, .. } = *layout
        && fds.is_empty()
        && handle::outside_transfers()
    {
        start = flat_lane_run::<F, A>(args, stride as usize, n, marker, out);
    }
    let mut decoded: Vec<Option<A>> = Vec::with_capacity(BLOCK.min(n - start));
    let mut returned: Vec<Option<F::Output>> = Vec::with_capacity(BLOCK.min(n - start));
    for first in (start..n).step_by(BLOCK) {
        let block = BLOCK.min(n - first);
        let failures = &mut out.failures;
        let decode_block = || {
            guarded(
                block,
                |i| decode_args::<A>(args.get(layout.range(first + i)).unwrap_or(&[]), flat),
                |payload| Panic::during("decoding the task's arguments", payload),
                |i, decoded_item| {
                    decoded.push(decoded_item.map_err(|failure| failures.push(((first + i) as u32, *failure))).ok());
                },
            );
        };
        // Items with handles travel alone, so the descriptors are that one item's.
        if fds.is_empty() {
            handle::receiving(decode_block);
        } else {
            handle::provide(std::mem::take(&mut fds), decode_block);
        }

        let mut block_args = decoded.drain(..);
        guarded(
            block,
            |i| match block_args.next().flatten() {
                Some(args) => {
                    marker.starting(first + i);
                    let task: F = crate::entry::summon();
                    Ok(Some(task.call(args)))
                }
                None => Ok(None), // it failed to decode
            },
            Panic::caught,
            |i, value| {
                returned.push(value.map_err(|failure| failures.push(((first + i) as u32, *failure))).ok().flatten());
            },
        );
        drop(block_args);

        let mut scope = handle::EncodeScope::begin();
        let done = match out.wire {
            ItemWire::Flat(stride) => {
                flat_lane(&mut scope, returned.iter().map(Option::as_ref), stride, &mut out.bytes, &mut out.ends)
            }
            _ => 0,
        };
        for (i, value) in returned.iter().enumerate().skip(done) {
            if let Some(value) = value {
                if out.wire != ItemWire::Postcard {
                    if append_if_flat(&mut scope, value, &mut out.bytes, &mut out.wire) {
                        out.ends.push(out.bytes.len() as u64);
                        continue;
                    }
                    to_postcard::<F::Output>(&mut scope, out);
                }
                if let Some(failure) = encode_result(&mut scope, value, &mut out.bytes) {
                    out.failures.push(((first + i) as u32, failure));
                }
            }
            out.ends.push(out.bytes.len() as u64);
        }
        drop(scope);
        // The results' own destructors (user code) run outside the transfer.
        returned.clear();
    }
    // Failures were found pass by pass; the parent reads them in item order.
    out.failures.sort_by_key(|(index, _)| *index);
}

/// Where an item of the flat lane was when it panicked.
#[derive(Clone, Copy)]
enum Step {
    Decoding,
    Running,
    Encoding,
}

/// The flat lane of a batch: items whose arguments came flat are decoded, run and encoded one
/// after another in a single pass, their results appended flat — no per-block passes, no
/// transfer scope, no staging vectors: a few nanoseconds an item around the task itself. No
/// side table is open (the caller checked), so a value holding a handle fails to encode or
/// decode flat instead of slipping through, and the task runs outside any transfer, as in the
/// careful passes. A panic fails its item only, as there. Returns how many items it settled;
/// it stops at the first result that is not flat like the others (which is encoded the careful
/// way, possibly moving the batch to postcard), and the caller takes the rest.
fn flat_lane_run<F, A>(args: &[u8], stride: usize, n: usize, marker: &Marker<'_>, out: &mut BatchOut) -> usize
where
    F: Task<A>,
    A: DeserializeOwned,
    F::Output: Serialize + DeserializeOwned,
{
    let mut next = 0;
    while next < n && out.wire != ItemWire::Postcard {
        // A result that did not go flat: encoded the careful way below.
        let mut odd: Option<F::Output> = None;
        let mut step = Step::Decoding;
        let run = catch_unwind(AssertUnwindSafe(|| {
            while next < n {
                step = Step::Decoding;
                let Some(item) = args.get(next * stride..(next + 1) * stride) else { return };
                let args = match crate::codec::flat::read::<A>(item) {
                    Ok(args) => args,
                    Err(_) => {
                        // Decoded again, the careful way, for the failure's words.
                        let failure = decode_args::<A>(item, true).err().unwrap_or_else(|| {
                            Box::new(ItemFailure::Failed(ErrorKind::Decode, "the arguments did not decode".into()))
                        });
                        out.failures.push((next as u32, *failure));
                        out.ends.push(out.bytes.len() as u64);
                        next += 1;
                        continue;
                    }
                };
                step = Step::Running;
                marker.starting(next);
                let task: F = crate::entry::summon();
                let value = task.call(args);
                step = Step::Encoding;
                let ItemWire::Flat(width) = out.wire else {
                    odd = Some(value); // the batch's first result decides the wire
                    return;
                };
                let before = out.bytes.len();
                if crate::codec::flat::append(&value, &mut out.bytes).is_err() || out.bytes.len() - before != width {
                    out.bytes.truncate(before);
                    odd = Some(value);
                    return;
                }
                out.ends.push(out.bytes.len() as u64);
                next += 1;
            }
        }));
        if let Err(payload) = run {
            let failure = match step {
                Step::Decoding => Panic::during("decoding the task's arguments", payload.as_ref()),
                Step::Running => Panic::caught(payload.as_ref()),
                Step::Encoding => Panic::during("encoding the task's result", payload.as_ref()),
            };
            out.failures.push((next as u32, ItemFailure::Panicked(failure)));
            // A `Serialize` that panicked part-way may have left bytes behind: a failed item's
            // place is empty.
            out.bytes.truncate(out.ends.last().map_or(0, |&end| end as usize));
            out.ends.push(out.bytes.len() as u64);
            next += 1;
            continue;
        }
        let Some(value) = odd else { break };
        // The careful way for this one result, inside a transfer scope: it may decide the wire
        // (the batch's first result), move the batch to postcard, or fail to encode.
        let mut scope = handle::EncodeScope::begin();
        if !append_if_flat(&mut scope, &value, &mut out.bytes, &mut out.wire) {
            to_postcard::<F::Output>(&mut scope, out);
            if let Some(failure) = encode_result(&mut scope, &value, &mut out.bytes) {
                out.failures.push((next as u32, failure));
            }
        }
        out.ends.push(out.bytes.len() as u64);
        drop(scope);
        drop(value); // a destructor is user code: outside the transfer
        next += 1;
    }
    next
}

/// The flat wire's fast lane for a batch's results: values like the first (`stride` bytes
/// each; `None` is a failed result, whose place stays empty) appended back to back with their
/// ends, one look at the handle table for all of them; returns how many it took. The first value that is not like them — and every one, if any held a handle
/// or a `Serialize` panicked — is left to the careful way, one by one.
fn flat_lane<'v, T: Serialize + 'v>(
    scope: &mut handle::EncodeScope,
    values: impl IntoIterator<Item = Option<&'v T>>,
    stride: usize,
    bytes: &mut Vec<u8>,
    ends: &mut Vec<u64>,
) -> usize {
    let (start_bytes, start_ends) = (bytes.len(), ends.len());
    let mut done = 0;
    let lane = catch_unwind(AssertUnwindSafe(|| {
        for value in values {
            if let Some(value) = value {
                let before = bytes.len();
                if crate::codec::flat::append(value, bytes).is_err() || bytes.len() - before != stride {
                    bytes.truncate(before);
                    return;
                }
            }
            ends.push(bytes.len() as u64);
            done += 1;
        }
    }));
    // Looked at either way: a `Serialize` that panicked may have left handles behind.
    let handles = scope.saw_handles();
    if lane.is_err() || handles {
        bytes.truncate(start_bytes);
        ends.truncate(start_ends);
        return 0;
    }
    done
}

/// Appends `value` flat if it fits `wire`: the wire's size, or — on a wire not yet decided — any
/// size, as long as its flat bytes read back as a `T` (which then decides the wire). Otherwise
/// leaves `bytes` as it was and says no (a `Serialize` or `Deserialize` that panics says no too).
pub(crate) fn append_if_flat<T: Serialize + DeserializeOwned>(
    scope: &mut handle::EncodeScope,
    value: &T,
    bytes: &mut Vec<u8>,
    wire: &mut ItemWire,
) -> bool {
    let before = bytes.len();
    let fits = catch_unwind(AssertUnwindSafe(|| scope.append_flat(value, bytes))).unwrap_or(false);
    let size = bytes.len() - before;
    let like = fits
        && match *wire {
            ItemWire::Flat(stride) => stride == size,
            ItemWire::Undecided => flat_reads_back::<T>(&bytes[before..]),
            ItemWire::Postcard => false,
        };
    if like {
        *wire = ItemWire::Flat(size);
    } else {
        bytes.truncate(before);
        scope.reset(); // what a panicking `Serialize` left in the table
    }
    like
}

/// Whether `bytes` read back as a flat `T` (a `Deserialize` that panics says no).
fn flat_reads_back<T: DeserializeOwned>(bytes: &[u8]) -> bool {
    catch_unwind(|| crate::codec::flat::read::<T>(bytes).is_ok()).unwrap_or(false)
}

/// Runs `step` on items `0..n` in order and hands each outcome to `keep`, with one
/// `catch_unwind` for a whole run of items rather than one per item: after a panic (item `i`
/// fails with `panicked`'s failure) it goes on from item `i + 1` under a new one.
fn guarded<T>(
    n: usize,
    mut step: impl FnMut(usize) -> Result<T, Box<ItemFailure>>,
    panicked: impl Fn(&(dyn std::any::Any + Send)) -> Panic,
    mut keep: impl FnMut(usize, Result<T, Box<ItemFailure>>),
) {
    let mut next = 0;
    while next < n {
        let run = catch_unwind(AssertUnwindSafe(|| {
            while next < n {
                let outcome = step(next);
                keep(next, outcome);
                next += 1;
            }
        }));
        if let Err(payload) = run {
            keep(next, Err(Box::new(ItemFailure::Panicked(panicked(payload.as_ref())))));
            next += 1;
        }
    }
}

/// One item's arguments, from either wire (a panic is the caller's to catch).
#[inline]
fn decode_args<A: DeserializeOwned>(item: &[u8], flat: bool) -> Result<A, Box<ItemFailure>> {
    let decoded = if flat {
        crate::codec::flat::read::<A>(item).map_err(|e| format!("{}: {e}", crate::error::type_name::<A>()))
    } else {
        postcard::from_bytes::<A>(item).map_err(|e| crate::codec::decode_failure::<A>(item, &e))
    };
    decoded.map_err(|why| Box::new(ItemFailure::Failed(ErrorKind::Decode, format!("the arguments: {why}"))))
}

/// Takes a batch's results so far off the flat wire: a result came that is not flat, or not of
/// the others' size. Each is decoded from its flat bytes and encoded again with postcard
/// (failed items stay empty); one that will not go across fails as its encoding would have.
fn to_postcard<R: Serialize + DeserializeOwned>(scope: &mut handle::EncodeScope, out: &mut BatchOut) {
    out.wire = ItemWire::Postcard;
    let flat = std::mem::take(&mut out.bytes);
    let ends = std::mem::take(&mut out.ends);
    let mut failed: Vec<u32> = out.failures.iter().map(|(i, _)| *i).collect();
    failed.sort_unstable();
    let mut start = 0usize;
    for (i, end) in ends.into_iter().enumerate() {
        let bytes = &flat[start..end as usize];
        start = end as usize;
        if failed.binary_search(&(i as u32)).is_err() {
            let failure = match catch_unwind(AssertUnwindSafe(|| crate::codec::flat::read::<R>(bytes))) {
                Ok(Ok(value)) => encode_result(scope, &value, &mut out.bytes),
                Ok(Err(why)) => Some(ItemFailure::Failed(ErrorKind::Encode, format!("the task's result: {why}"))),
                Err(payload) => {
                    Some(ItemFailure::Panicked(Panic::during("encoding the task's result", payload.as_ref())))
                }
            };
            if let Some(failure) = failure {
                out.failures.push((i as u32, failure));
            }
        }
        out.ends.push(out.bytes.len() as u64);
    }
}

/// Appends one result's postcard encoding to `bytes`, or leaves `bytes` as it was and says why
/// not.
fn encode_result<R: Serialize>(scope: &mut handle::EncodeScope, value: &R, bytes: &mut Vec<u8>) -> Option<ItemFailure> {
    let before = bytes.len();
    let failure = match catch_unwind(AssertUnwindSafe(|| scope.append(value, bytes))) {
        Ok(Ok(fds)) if fds.is_empty() => return None,
        Err(payload) => ItemFailure::Panicked(Panic::during("encoding the task's result", payload.as_ref())),
        Ok(Ok(_)) => ItemFailure::Failed(
            ErrorKind::Encode,
            "the result holds handles (descriptors), which a pool's results cannot carry".into(),
        ),
        Ok(Err(err)) => {
            let why = crate::codec::encode_failure(value, &err);
            ItemFailure::Failed(ErrorKind::Encode, format!("the task's result: {why}"))
        }
    };
    bytes.truncate(before);
    scope.reset(); // what the failed encoding (or its diagnosis) left in the table
    Some(failure)
}
