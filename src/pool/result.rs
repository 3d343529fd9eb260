//! Where a pool's results land: the per-task error, the collector that one submission's items are
//! delivered into, and [`AsyncResult`].

use std::marker::PhantomData;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::pool::ResultTimeoutError;
use crate::pool::worker::Layout;
use crate::process::ExitStatus;
use crate::sync::deadline_after;

/// Why one task of a pool produced no value. Every failure is confined to its task: the other
/// tasks and the pool go on.
///
/// ```
/// use multiproc::{Pool, pool::TaskError};
///
/// fn check(n: u32) -> u32 {
///     assert!(n != 3, "three is not allowed");
///     n
/// }
///
/// let pool = Pool::new(2).unwrap();
/// let results: Vec<_> = pool.imap(check, 1..=4).unwrap().collect();
/// assert!(matches!(&results[2], Err(TaskError::Panicked { message, .. }) if message.contains("three")));
/// assert_eq!(results[3].as_ref().unwrap(), &4);
/// ```
/// Python counterpart: the exception `AsyncResult.get()` or `Future.result()` re-raises
/// (`BrokenProcessPool`, `TimeoutError`, `CancelledError`, the task's own exception).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum TaskError {
    /// The task panicked; the worker survived.
    #[error("the task panicked in worker {pid}: {message}{}", crate::process::at(location))]
    Panicked {
        /// The panic message.
        message: String,
        /// The worker it ran in.
        pid: u32,
        /// `file:line:col` of the panic, followed by the worker's backtrace when `RUST_BACKTRACE`
        /// was set; `None` if unknown.
        location: Option<String>,
    },
    /// The worker running the task died: killed by a signal (the OOM killer's is SIGKILL), or
    /// it called `exit` or `abort`. A replacement worker was started.
    #[error("worker {pid} died running the task: {status}")]
    WorkerDied {
        /// The worker's pid.
        pid: u32,
        /// How it ended.
        status: ExitStatus,
    },
    /// The task ran longer than the pool's task timeout; its worker was stopped (SIGTERM, then
    /// SIGKILL) and replaced.
    #[error("the task ran past its {timeout:?} timeout in worker {pid}, which was stopped")]
    TimedOut {
        /// The timeout.
        timeout: Duration,
        /// The worker that was stopped.
        pid: u32,
    },
    /// The task was cancelled before it finished.
    #[error("the task was cancelled")]
    Cancelled,
    /// The arguments could not be encoded (the task was never submitted).
    #[error("the task's arguments could not be encoded: {0}")]
    ArgumentEncode(String),
    /// The task's result could not be encoded in the worker (or held handles).
    #[error("the task's result could not be sent back: {0}")]
    ResultEncode(String),
    /// The arguments or the result did not decode as the expected type.
    #[error("decoding failed: {0}")]
    Decode(String),
    /// The pool was closed (or terminated) before this submission.
    #[error("the pool is closed")]
    Closed,
    /// The pool was terminated before the task finished.
    #[error("the pool was terminated before the task finished")]
    Terminated,
    /// The pool cannot run tasks: its initializer failed, or workers kept dying on start.
    #[error("the pool is broken: {0}")]
    Broken(String),
    /// An argument of the call itself is invalid (say, a chunk size of 0); nothing was submitted.
    #[error("invalid argument: {0}")]
    InvalidInput(String),
    /// (A [cluster](crate::cluster) pool.) The task failed on node `node` as `error` says — the
    /// same error a local pool gives, with the node it happened on. [`TaskError::cause`] looks
    /// through it.
    #[error("on node {node}: {error}")]
    OnNode {
        /// The node's name (its host and agent pid, unless it was given one).
        node: String,
        /// What happened there.
        error: Box<TaskError>,
    },
    /// (A [cluster](crate::cluster) pool.) The nodes that took the task were lost while they
    /// held it — they died, or were cut off past their lease — as many times as the pool
    /// allows deliveries; the task is not tried again.
    #[error("the task was lost with its node {deliveries} times (last on node {node}): no more deliveries")]
    WorkerLost {
        /// The last node that held it.
        node: String,
        /// How many times it was handed out.
        deliveries: u32,
    },
}

impl TaskError {
    /// The error itself, looking through [`OnNode`](TaskError::OnNode): code written for a
    /// local pool matches a cluster pool's errors on this.
    ///
    /// ```
    /// use multiproc::pool::TaskError;
    /// let remote = TaskError::OnNode { node: "n1".into(), error: Box::new(TaskError::Cancelled) };
    /// assert_eq!(remote.cause(), &TaskError::Cancelled);
    /// assert_eq!(TaskError::Cancelled.cause(), &TaskError::Cancelled);
    /// ```
    /// Python counterpart: none (Ray wraps the cause in `RayTaskError`, `.cause`).
    pub fn cause(&self) -> &TaskError {
        match self {
            TaskError::OnNode { error, .. } => error.cause(),
            other => other,
        }
    }
}

/// How long a reader keeps looking before it sleeps.
const SPIN: Duration = Duration::from_micros(50);

/// What is known of one item, in four bytes: not finished yet, finished with its value inside
/// delivered chunk `n`, failed (the error is kept aside: errors are rare), or taken by a lazy
/// reader. Four bytes, because a big `map` stores one per item as its chunks come in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Slot(u32);

impl Slot {
    const PENDING: Slot = Slot(u32::MAX);
    const FAILED: Slot = Slot(u32::MAX - 1);
    const TAKEN: Slot = Slot(u32::MAX - 2);

    /// The chunk holding this item's value, if it finished with one.
    fn chunk(self) -> Option<usize> {
        (self.0 < Slot::TAKEN.0).then_some(self.0 as usize)
    }
}

/// The packed values of one finished batch, item `first + i` where `layout` puts item `i`.
pub(crate) struct Chunk {
    /// The index of the batch's first item in the submission.
    pub(crate) first: usize,
    pub(crate) bytes: Vec<u8>,
    pub(crate) layout: Layout,
    /// Values not yet taken by a lazy reader; the bytes are freed at zero.
    pub(crate) remaining: usize,
}

impl Drop for Chunk {
    fn drop(&mut self) {
        crate::pool::spare::give(std::mem::take(&mut self.bytes));
    }
}

/// Every finished item of one submission.
#[derive(Default)]
pub(crate) struct Results {
    /// By item index.
    items: Vec<Slot>,
    chunks: Vec<Chunk>,
    /// The failed items' errors.
    errors: std::collections::HashMap<usize, TaskError>,
}

impl Results {
    /// Room for `n` items, none finished.
    fn with_items(n: usize) -> Results {
        Results { items: vec![Slot::PENDING; n], ..Results::default() }
    }

    /// How many item places there are (the submission's size once it is known).
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether item `i` has an outcome waiting to be read.
    pub(crate) fn finished(&self, i: usize) -> bool {
        self.items.get(i).is_some_and(|&slot| slot != Slot::PENDING && slot != Slot::TAKEN)
    }

    /// Whether every item finished with a value.
    pub(crate) fn all_values(&self) -> bool {
        self.items.iter().all(|slot| slot.chunk().is_some())
    }

    fn value_bytes(&self, chunk: usize, i: usize) -> &[u8] {
        let chunk = &self.chunks[chunk];
        &chunk.bytes[chunk.layout.range(i - chunk.first)]
    }

    /// Item `i`'s outcome decoded as an `R`, if it has finished.
    pub(crate) fn decode<R: DeserializeOwned>(&self, i: usize) -> Option<Result<R, TaskError>> {
        crate::handle::receiving(|| self.decode_within(i))
    }

    /// Decodes the values of the items after those already in `values`, in order, for as long
    /// as they have finished with one: `Ok` where the next item is still pending (or none is
    /// left), `Err` at an item that failed or whose value does not decode (the item at
    /// `values.len()`; [`error_at`](Self::error_at) says why). Runs of items in one chunk are
    /// decoded in a tight loop, with no look-up per item.
    pub(crate) fn decode_ready<R: DeserializeOwned>(&self, values: &mut Vec<R>) -> Result<(), ()> {
        let n = self.items.len();
        let mut i = values.len();
        while i < n {
            let slot = self.items[i];
            if slot == Slot::PENDING {
                return Ok(());
            }
            let c = slot.chunk().ok_or(())?;
            let chunk = &self.chunks[c];
            let run = self.items[i..].iter().take_while(|&&s| s == slot).count();
            match chunk.layout {
                Layout::Flat { stride, .. } => {
                    let stride = stride as usize;
                    let from = (i - chunk.first) * stride;
                    let bytes = chunk.bytes.get(from..from + run * stride).ok_or(())?;
                    values.reserve(run);
                    if stride == 0 {
                        for _ in 0..run {
                            values.push(crate::codec::flat::read(&[]).map_err(drop)?);
                        }
                    } else {
                        for item in bytes.chunks_exact(stride) {
                            values.push(crate::codec::flat::read(item).map_err(drop)?);
                        }
                    }
                }
                Layout::Ends(_) => {
                    for j in i..i + run {
                        let bytes = chunk.bytes.get(chunk.layout.range(j - chunk.first)).ok_or(())?;
                        values.push(postcard::from_bytes(bytes).map_err(drop)?);
                    }
                }
            }
            i += run;
        }
        Ok(())
    }

    /// Why item `i` gives no value: its error, or why its value does not decode.
    pub(crate) fn error_at<R: DeserializeOwned>(&self, i: usize) -> TaskError {
        self.decode_within::<R>(i).and_then(Result::err).unwrap_or_else(no_outcome)
    }

    /// [`decode`](Self::decode) inside a transfer already set up (one for many items).
    #[inline]
    fn decode_within<R: DeserializeOwned>(&self, i: usize) -> Option<Result<R, TaskError>> {
        let slot = *self.items.get(i)?;
        let Some(chunk) = slot.chunk() else {
            return (slot == Slot::FAILED).then(|| Err(self.errors[&i].clone()));
        };
        let bytes = self.value_bytes(chunk, i);
        let decoded = if self.chunks[chunk].layout.is_flat() {
            crate::codec::flat::read(bytes).map_err(|e| format!("{}: {e}", crate::error::type_name::<R>()))
        } else {
            postcard::from_bytes(bytes).map_err(|e| crate::codec::decode_failure::<R>(bytes, &e))
        };
        Some(decoded.map_err(|why| TaskError::Decode(format!("result of item {i}: not a {why}"))))
    }

    /// As [`decode`](Self::decode), and forgets the item (freeing its chunk once all are taken).
    pub(crate) fn take<R: DeserializeOwned>(&mut self, i: usize) -> Option<Result<R, TaskError>> {
        let decoded = self.decode(i)?;
        let slot = std::mem::replace(&mut self.items[i], Slot::TAKEN);
        match slot.chunk() {
            Some(chunk) => {
                let chunk = &mut self.chunks[chunk];
                chunk.remaining -= 1;
                if chunk.remaining == 0 {
                    crate::pool::spare::give(std::mem::take(&mut chunk.bytes));
                    chunk.layout = Layout::Flat { stride: 0, count: 0 };
                }
            }
            None => {
                self.errors.remove(&i);
            }
        }
        Some(decoded)
    }

    /// The outcomes as they lie, for sending on whole: each chunk of values (its first item,
    /// bytes and layout) and each failed item's error. A failed item's place inside a chunk
    /// holds no value.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn parts(&self) -> Parts<'_> {
        let chunks = self.chunks.iter().map(|c| (c.first, c.bytes.as_slice(), &c.layout)).collect();
        let mut failures: Vec<(usize, &TaskError)> = self.errors.iter().map(|(&i, e)| (i, e)).collect();
        failures.sort_unstable_by_key(|(i, _)| *i);
        (chunks, failures)
    }

    #[inline]
    fn slot(&mut self, index: usize) -> &mut Slot {
        if self.items.len() <= index {
            self.items.resize(index + 1, Slot::PENDING);
        }
        &mut self.items[index]
    }
}

/// A submission's outcomes as they lie (see [`Results::parts`]).
pub(crate) type Parts<'a> = (Vec<(usize, &'a [u8], &'a Layout)>, Vec<(usize, &'a TaskError)>);

/// Runs once, in the result thread, when a collector's last item is in (before waiters see it).
pub(crate) type OnComplete = Box<dyn FnOnce(&Results) + Send>;

/// What a waiter on a collector waits for, so that deliveries wake it only when it may care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Interest {
    /// The whole submission.
    Complete,
    /// This item.
    Item(usize),
    /// Any item.
    Any,
}

/// The items of one submission (one `apply_async`, one `map`, …), filled in as they finish.
pub(crate) struct Collector {
    state: Mutex<Collected>,
    changed: Condvar,
}

pub(crate) struct Collected {
    pub(crate) results: Results,
    /// Items finished so far.
    pub(crate) finished: usize,
    /// Items that will be submitted in all (`None` while a lazy `imap` is still reading input).
    pub(crate) expected: Option<usize>,
    /// Indexes in the order they finished, for unordered readers.
    pub(crate) completion: std::collections::VecDeque<usize>,
    pub(crate) on_complete: Option<OnComplete>,
    /// Run (in order) once complete; for `add_done_callback`.
    pub(crate) done_callbacks: Vec<Box<dyn FnOnce() + Send>>,
    pub(crate) wakers: Vec<Waker>,
    /// Woken by every delivery: streams waiting for their next item.
    pub(crate) item_wakers: Vec<Waker>,
    /// Whether anyone reads `completion` (only unordered readers do; others let it stay empty).
    pub(crate) track_completion: bool,
    /// Every item is in and the completion callbacks have run: readers may look.
    pub(crate) settled: bool,
    /// Threads waiting, and what for.
    waiters: usize,
    interest: Interest,
    /// Advanced as items finish (`PoolBuilder::progress`).
    #[cfg(feature = "progress")]
    pub(crate) progress: Option<indicatif::ProgressBar>,
}

impl Collected {
    /// Whether the submission is finished, callbacks included.
    pub(crate) fn is_complete(&self) -> bool {
        self.settled
    }

    fn all_in(&self) -> bool {
        self.expected == Some(self.finished)
    }
}

/// Outcomes on their way to a collector, handed over once the pool's state lock is released.
pub(crate) enum Delivery {
    /// A finished batch: packed values, and the failed items by index within the batch.
    Chunk { sink: Arc<Collector>, first: usize, bytes: Vec<u8>, layout: Layout, failures: Vec<(u32, TaskError)> },
    /// `n` items from `first` on, all failed alike.
    Errors { sink: Arc<Collector>, first: usize, n: usize, error: TaskError },
}

impl Delivery {
    pub(crate) fn deliver(self) {
        match self {
            Delivery::Chunk { sink, first, bytes, layout, failures } => {
                sink.deliver_chunk(first, Chunk { first, bytes, layout, remaining: 0 }, failures)
            }
            Delivery::Errors { sink, first, n, error } => sink.deliver_errors(first, n, error),
        }
    }
}

impl Collector {
    pub(crate) fn new(expected: Option<usize>, track_completion: bool) -> Arc<Collector> {
        // Known sizes get every slot at once, so storing an outcome is a plain write.
        Arc::new(Collector {
            state: Mutex::new(Collected {
                results: Results::with_items(expected.unwrap_or(0)),
                finished: 0,
                expected,
                completion: Default::default(),
                on_complete: None,
                done_callbacks: Vec::new(),
                wakers: Vec::new(),
                item_wakers: Vec::new(),
                track_completion,
                // Nothing to wait for in an empty submission.
                settled: expected == Some(0),
                waiters: 0,
                interest: Interest::Complete,
                #[cfg(feature = "progress")]
                progress: None,
            }),
            changed: Condvar::new(),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Collected> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sets the number of items once a lazy reader knows it.
    pub(crate) fn set_expected(&self, expected: usize) {
        let mut c = self.lock();
        c.expected = Some(expected);
        c.results.items.truncate(expected);
        #[cfg(feature = "progress")]
        if let Some(bar) = &c.progress {
            bar.set_length(expected as u64);
        }
        self.finish(c, 0..0);
    }

    fn deliver_chunk(&self, first: usize, mut values: Chunk, failures: Vec<(u32, TaskError)>) {
        let n = values.layout.len();
        let mut c = self.lock();
        let chunk = c.results.chunks.len() as u32;
        let mut failures = failures.into_iter().peekable();
        let mut stored = 0;
        // Make room once, then a plain loop over the chunk's slots — or, in the usual case (no
        // failure, nothing cancelled, no unordered reader), one fill.
        if n > 0 {
            c.results.slot(first + n - 1);
        }
        let plain = failures.peek().is_none() && !c.track_completion;
        let slots = &mut c.results.items[first..first + n];
        if plain && slots.iter().all(|&s| s == Slot::PENDING) {
            slots.fill(Slot(chunk));
            c.finished += n;
            stored = n;
        }
        for i in (first..first + n).skip(stored) {
            match failures.next_if(|(at, _)| *at as usize + first == i) {
                Some((_, error)) => {
                    c.store_error(i, error);
                }
                None => {
                    if c.store(i, Slot(chunk)) {
                        stored += 1;
                    }
                }
            }
        }
        values.first = first;
        values.remaining = stored;
        c.results.chunks.push(values);
        self.finish(c, first..first + n);
    }

    fn deliver_errors(&self, first: usize, n: usize, error: TaskError) {
        let mut c = self.lock();
        for i in first..first + n {
            c.store_error(i, error.clone());
        }
        self.finish(c, first..first + n);
    }

    /// Runs completion callbacks if this delivery completed the submission, and wakes the
    /// waiters that may care about items `delivered`.
    fn finish<'a>(&'a self, mut c: MutexGuard<'a, Collected>, delivered: std::ops::Range<usize>) {
        let completed = c.all_in() && !c.settled;
        #[cfg(feature = "progress")]
        if let Some(bar) = &c.progress {
            // Never back: the ticker may have shown items of running chunks already.
            let done = c.finished as u64;
            if done > bar.position() {
                bar.set_position(done);
            }
            if completed {
                bar.finish();
            }
        }
        if completed {
            // Callbacks run before anyone waiting is told, as Python's pool does; a panicking
            // callback is contained so that results keep flowing.
            if let Some(on_complete) = c.on_complete.take() {
                let results = std::mem::take(&mut c.results);
                drop(c);
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| on_complete(&results)));
                c = self.lock();
                c.results = results;
            }
            c.settled = true;
        }
        let wake = c.waiters > 0
            && (completed
                || match c.interest {
                    Interest::Complete => false,
                    Interest::Item(i) => delivered.contains(&i),
                    Interest::Any => !delivered.is_empty(),
                });
        let (callbacks, mut wakers) = if completed {
            (std::mem::take(&mut c.done_callbacks), std::mem::take(&mut c.wakers))
        } else {
            (Vec::new(), Vec::new())
        };
        if completed || !delivered.is_empty() {
            wakers.append(&mut c.item_wakers);
        }
        drop(c);
        for callback in callbacks {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(callback));
        }
        for waker in wakers {
            waker.wake();
        }
        if wake {
            self.changed.notify_all();
        }
    }

    /// Moves the progress bar (if any) to the items finished plus `running`, the items of
    /// chunks still running that their workers are past: the bar advances per item, not per
    /// chunk. Never moves it back.
    #[cfg(feature = "progress")]
    pub(crate) fn show_running(&self, running: u64) {
        let c = self.lock();
        if let Some(bar) = &c.progress {
            let at = c.finished as u64 + running;
            if at > bar.position() && !c.settled {
                bar.set_position(at);
            }
        }
    }

    /// Every value in input order, as [`assemble_all`] makes them once all are in — but decoded
    /// chunk by chunk as they arrive, while later chunks still run, so that the caller is not
    /// left decoding them all after the last one comes. As `assemble_all`, the first failing
    /// item's error in input order, once every item has finished (Python's `map`).
    pub(crate) fn collect_in_order<R: DeserializeOwned>(&self) -> Result<Vec<R>, TaskError> {
        let mut values: Vec<R> = Vec::new();
        loop {
            let next = values.len();
            let arrived = |c: &Collected| c.is_complete() || c.results.finished(next);
            // No spinning between chunks: the workers and the thread that takes their reports
            // need the CPUs more than this thread needs a quick wake-up.
            let spin = if next == 0 { SPIN } else { Duration::ZERO };
            let c = self.wait_until_spinning(None, Interest::Item(next), arrived, spin).expect("no deadline");
            if values.capacity() == 0 {
                values.reserve_exact(c.results.len());
            }
            let decoded = crate::handle::receiving(|| c.results.decode_ready(&mut values));
            match decoded {
                Ok(()) if c.is_complete() && values.len() == c.results.len() => return Ok(values),
                Ok(()) if !c.is_complete() => continue,
                Ok(()) | Err(()) => {
                    drop(c);
                    // The first failure in input order is this one; it is told once all are in.
                    let c = self.wait_until(None, Interest::Complete, Collected::is_complete).expect("no deadline");
                    return Err(c.results.error_at::<R>(values.len()));
                }
            }
        }
    }

    /// Waits until `ready` holds of the collected state, or `deadline` passes; `interest` says
    /// which deliveries may make it hold.
    pub(crate) fn wait_until(
        &self,
        deadline: Option<Instant>,
        interest: Interest,
        ready: impl Fn(&Collected) -> bool,
    ) -> Option<MutexGuard<'_, Collected>> {
        // Results often follow one another closely: look again for a few tens of microseconds
        // (yielding the CPU in between) before paying for a sleep and a wake-up.
        self.wait_until_spinning(deadline, interest, ready, SPIN)
    }

    /// [`wait_until`](Self::wait_until), looking again for `spin` before it sleeps.
    pub(crate) fn wait_until_spinning(
        &self,
        deadline: Option<Instant>,
        interest: Interest,
        ready: impl Fn(&Collected) -> bool,
        spin: Duration,
    ) -> Option<MutexGuard<'_, Collected>> {
        let mut c = self.lock();
        let spin_until = Instant::now() + spin;
        while !ready(&c) && deadline.is_none_or(|d| Instant::now() < d) && Instant::now() < spin_until {
            drop(c);
            std::thread::yield_now();
            c = self.lock();
        }
        loop {
            if ready(&c) {
                return Some(c);
            }
            c.interest = if c.waiters == 0 || c.interest == interest { interest } else { Interest::Any };
            c.waiters += 1;
            let timed_out = match deadline {
                None => {
                    c = self.changed.wait(c).unwrap_or_else(|p| p.into_inner());
                    false
                }
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if !left.is_zero() {
                        c = self.changed.wait_timeout(c, left).unwrap_or_else(|p| p.into_inner()).0;
                    }
                    Instant::now() >= deadline
                }
            };
            c.waiters -= 1;
            if timed_out {
                return ready(&c).then_some(c);
            }
        }
    }
}

impl Collected {
    /// Stores an item's outcome unless it already has one (say, cancelled); returns whether it
    /// was stored.
    #[inline]
    fn store(&mut self, index: usize, outcome: Slot) -> bool {
        let slot = self.results.slot(index);
        if *slot != Slot::PENDING {
            return false;
        }
        *slot = outcome;
        self.finished += 1;
        if self.track_completion {
            self.completion.push_back(index);
        }
        true
    }

    /// Stores an item's error unless it already has an outcome.
    fn store_error(&mut self, index: usize, error: TaskError) {
        if self.store(index, Slot::FAILED) {
            self.results.errors.insert(index, error);
        }
    }
}

/// What an [`AsyncResult`] turns its collected items into.
pub(crate) type Assemble<R> = fn(&Results) -> Result<R, TaskError>;

/// One item's value.
pub(crate) fn assemble_one<R: DeserializeOwned>(results: &Results) -> Result<R, TaskError> {
    results.decode(0).unwrap_or_else(|| Err(TaskError::Decode("no outcome".into())))
}

/// Every item's value in order, or the first error in order (Python's `map`).
pub(crate) fn assemble_all<R: DeserializeOwned>(results: &Results) -> Result<Vec<R>, TaskError> {
    crate::handle::receiving(|| {
        let mut values = Vec::with_capacity(results.len());
        match results.decode_ready(&mut values) {
            Ok(()) if values.len() == results.len() => Ok(values),
            Ok(()) | Err(()) => Err(results.error_at::<R>(values.len())),
        }
    })
}

fn no_outcome() -> TaskError {
    TaskError::Decode("no outcome".into())
}

/// The result of [`Pool::apply_async`](crate::Pool::apply_async) or
/// [`map_async`](crate::Pool::map_async): a value that arrives later.
///
/// ```
/// use multiproc::Pool;
/// fn square(x: u64) -> u64 { x * x }
/// let pool = Pool::new(2).unwrap();
/// let result = pool.apply_async(square, (7,)).unwrap();
/// result.wait();
/// assert!(result.ready() && result.successful() == Some(true));
/// assert_eq!(result.get().unwrap(), 49);
/// ```
/// Python counterpart: `multiprocessing.pool.AsyncResult`.
pub struct AsyncResult<R> {
    pub(crate) collector: Arc<Collector>,
    pub(crate) assemble: Assemble<R>,
    pub(crate) _type: PhantomData<fn() -> R>,
}

impl<R> Clone for AsyncResult<R> {
    fn clone(&self) -> AsyncResult<R> {
        AsyncResult { collector: self.collector.clone(), assemble: self.assemble, _type: PhantomData }
    }
}

/// An `AsyncResult` can be awaited (its output is [`get`](AsyncResult::get)'s), without blocking
/// the thread; dropping the future leaves the task running.
///
/// ```
/// fn square(x: u64) -> u64 { x * x }
/// let pool = multiproc::Pool::new(1).unwrap();
/// let result = pool.apply_async(square, (7,)).unwrap();
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// assert_eq!(rt.block_on(result).unwrap(), 49);
/// ```
/// Python counterpart: none (`await loop.run_in_executor(None, result.get)`).
impl<R> std::future::Future for AsyncResult<R> {
    type Output = Result<R, TaskError>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let mut c = self.collector.lock();
        if c.is_complete() {
            return std::task::Poll::Ready((self.assemble)(&c.results));
        }
        if !c.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            c.wakers.push(cx.waker().clone());
        }
        std::task::Poll::Pending
    }
}

impl<R> std::fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult").field("ready", &self.ready()).finish()
    }
}

impl<R> AsyncResult<R> {
    /// Waits for the value (or the error) for as long as it takes.
    ///
    /// # Errors
    /// The task's [`TaskError`]; for `map_async`, the first failing item's, in input order.
    ///
    /// ```
    /// fn double(x: i32) -> i32 { 2 * x }
    /// let pool = multiproc::Pool::new(1).unwrap();
    /// assert_eq!(pool.map_async(double, vec![1, 2]).unwrap().get().unwrap(), [2, 4]);
    /// ```
    /// Python counterpart: `result.get()`.
    pub fn get(&self) -> Result<R, TaskError> {
        let c = self.collector.wait_until(None, Interest::Complete, Collected::is_complete).expect("no deadline");
        (self.assemble)(&c.results)
    }

    /// Waits up to `timeout` for the value.
    ///
    /// # Errors
    /// [`ResultTimeoutError::Timeout`] if it has not arrived by then (the task goes on);
    /// [`ResultTimeoutError::Failed`] with the task's error.
    ///
    /// ```
    /// use std::time::Duration;
    /// fn nap(ms: u64) { std::thread::sleep(Duration::from_millis(ms)) }
    /// let pool = multiproc::Pool::new(1).unwrap();
    /// let result = pool.apply_async(nap, (200,)).unwrap();
    /// assert!(result.get_timeout(Duration::from_millis(10)).is_err());
    /// assert_eq!(result.get_timeout(Duration::from_secs(30)), Ok(()));
    /// ```
    /// Python counterpart: `result.get(timeout)` (raising `multiprocessing.TimeoutError`).
    pub fn get_timeout(&self, timeout: Duration) -> Result<R, ResultTimeoutError> {
        match self.collector.wait_until(deadline_after(timeout), Interest::Complete, Collected::is_complete) {
            Some(c) => (self.assemble)(&c.results).map_err(ResultTimeoutError::Failed),
            None => Err(ResultTimeoutError::Timeout),
        }
    }

    /// Waits until the result is ready.
    ///
    /// ```
    /// let pool = multiproc::Pool::new(1).unwrap();
    /// let result = pool.apply_async(|| 1, ()).unwrap();
    /// result.wait();
    /// assert!(result.ready());
    /// ```
    /// Python counterpart: `result.wait()`.
    pub fn wait(&self) {
        let _ = self.collector.wait_until(None, Interest::Complete, Collected::is_complete);
    }

    /// Waits up to `timeout` until the result is ready; returns whether it is.
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = multiproc::Pool::new(1).unwrap();
    /// let result = pool.apply_async(|| 1, ()).unwrap();
    /// assert!(result.wait_timeout(Duration::from_secs(30)));
    /// ```
    /// Python counterpart: `result.wait(timeout)`.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.collector.wait_until(deadline_after(timeout), Interest::Complete, Collected::is_complete).is_some()
    }

    /// Whether the result is ready (a value or an error).
    ///
    /// ```
    /// let pool = multiproc::Pool::new(1).unwrap();
    /// let result = pool.apply_async(|| 1, ()).unwrap();
    /// result.wait();
    /// assert!(result.ready());
    /// ```
    /// Python counterpart: `result.ready()`.
    pub fn ready(&self) -> bool {
        self.collector.lock().is_complete()
    }

    /// Whether it succeeded: `None` while not ready (Python raises `ValueError` then).
    ///
    /// ```
    /// fn fail() { panic!("no") }
    /// let pool = multiproc::Pool::new(1).unwrap();
    /// let result = pool.apply_async(fail, ()).unwrap();
    /// result.wait();
    /// assert_eq!(result.successful(), Some(false));
    /// ```
    /// Python counterpart: `result.successful()`.
    pub fn successful(&self) -> Option<bool> {
        let c = self.collector.lock();
        c.is_complete().then(|| c.results.all_values())
    }
}
