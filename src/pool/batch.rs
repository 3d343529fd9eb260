//! A pool's batches: a task run over many items in one go, named by offset as a child's task is
//! (see [`entry`](crate::entry)), with each item's outcome packed into one buffer.

use std::os::fd::OwnedFd;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ErrorKind;
use crate::handle;
use crate::process::task::{Panic, Task};

/// How one item of a batch failed.
pub(crate) enum ItemFailure {
    /// The task panicked (or a `Serialize`/`Deserialize` of its values did).
    Panicked(Panic),
    /// The item could not be run or its result not sent: decoding its arguments failed
    /// ([`ErrorKind::Decode`]), or encoding its result ([`ErrorKind::Encode`]).
    Failed(ErrorKind, String),
}

/// Where a batch's results go: every item's encoded value packed in `bytes`, item `i` ending at
/// `ends[i]` (empty for a failed item), and the failures by item index.
#[derive(Default)]
pub(crate) struct BatchOut {
    pub(crate) bytes: Vec<u8>,
    pub(crate) ends: Vec<u64>,
    pub(crate) failures: Vec<(u32, ItemFailure)>,
}

/// The type-erased form of a task run over a batch (a pool's chunk): the items' encoded
/// arguments packed in one buffer (item `i` ends at `ends[i]`), descriptors for their handles,
/// a hook called with each item's index before it runs, and the output.
pub(crate) type BatchEntry = fn(&[u8], &[u64], Vec<OwnedFd>, &mut dyn FnMut(usize), &mut BatchOut);

/// The offset of task `F`'s batch trampoline (see [`entry`](crate::entry)).
pub(crate) fn batch_entry_offset<F, A>() -> i64
where
    F: Task<A>,
    A: DeserializeOwned,
    F::Output: Serialize,
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

/// The monomorphised body that runs task `F` over a batch, encoding results straight into one
/// buffer (no allocation per item beyond what `F` itself does).
fn batch_trampoline<F, A>(
    args: &[u8],
    ends: &[u64],
    mut fds: Vec<OwnedFd>,
    starting: &mut dyn FnMut(usize),
    out: &mut BatchOut,
) where
    F: Task<A>,
    A: DeserializeOwned,
    F::Output: Serialize,
{
    let mut start = 0usize;
    let scope = handle::EncodeScope::new();
    for (index, &end) in ends.iter().enumerate() {
        let end = end as usize;
        starting(index);
        let item = args.get(start..end).unwrap_or(&[]);
        start = end;
        let decoded = catch_unwind(AssertUnwindSafe(|| {
            if fds.is_empty() {
                handle::receiving(|| postcard::from_bytes::<A>(item))
            } else {
                handle::provide(std::mem::take(&mut fds), || postcard::from_bytes::<A>(item))
            }
        }));
        let failure = match decoded {
            Err(payload) => {
                Some(ItemFailure::Panicked(Panic::during("decoding the task's arguments", payload.as_ref())))
            }
            Ok(Err(err)) => {
                let why = crate::codec::decode_failure::<A>(item, &err);
                Some(ItemFailure::Failed(ErrorKind::Decode, format!("the arguments: {why}")))
            }
            Ok(Ok(args)) => {
                let task: F = crate::entry::summon();
                match catch_unwind(AssertUnwindSafe(|| task.call(args))) {
                    Ok(value) => {
                        let before = out.bytes.len();
                        match catch_unwind(AssertUnwindSafe(|| scope.append(&value, &mut out.bytes))) {
                            Err(payload) => {
                                out.bytes.truncate(before);
                                Some(ItemFailure::Panicked(Panic::during(
                                    "encoding the task's result",
                                    payload.as_ref(),
                                )))
                            }
                            Ok(Ok(fds)) if fds.is_empty() => None,
                            Ok(Ok(_)) => {
                                out.bytes.truncate(before);
                                Some(ItemFailure::Failed(
                                    ErrorKind::Encode,
                                    "the result holds handles (descriptors), which a pool's results cannot carry"
                                        .into(),
                                ))
                            }
                            Ok(Err(err)) => {
                                out.bytes.truncate(before);
                                let why = crate::codec::encode_failure(&value, &err);
                                Some(ItemFailure::Failed(ErrorKind::Encode, format!("the task's result: {why}")))
                            }
                        }
                    }
                    Err(payload) => Some(ItemFailure::Panicked(Panic::caught(payload.as_ref()))),
                }
            }
        };
        if let Some(failure) = failure {
            out.failures.push((index as u32, failure));
        }
        out.ends.push(out.bytes.len() as u64);
    }
}
