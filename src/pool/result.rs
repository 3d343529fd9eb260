//! Where a pool's results land: the per-task error, the collector that one submission's items are
//! delivered into, and [`AsyncResult`].

use std::marker::PhantomData;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::pool::ResultTimeoutError;
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
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The task panicked; the worker survived.
    #[error("the task panicked in worker {pid}: {message}")]
    Panicked {
        /// The panic message.
        message: String,
        /// The worker it ran in.
        pid: u32,
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
}

/// The encoded outcome of one item.
pub(crate) type Raw = Result<Vec<u8>, TaskError>;

/// Runs once, in the result thread, when a collector's last item is in (before waiters see it).
pub(crate) type OnComplete = Box<dyn FnOnce(&[Option<Raw>]) + Send>;

/// The items of one submission (one `apply_async`, one `map`, …), filled in as they finish.
pub(crate) struct Collector {
    state: Mutex<Collected>,
    changed: Condvar,
}

pub(crate) struct Collected {
    /// One per item, by index; `None` until it finishes (and again after a lazy reader took it).
    pub(crate) outcomes: Vec<Option<Raw>>,
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
    /// Whether anyone reads `completion` (only unordered readers do; others let it stay empty).
    pub(crate) track_completion: bool,
    /// Every item is in and the completion callbacks have run: readers may look.
    pub(crate) settled: bool,
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

impl Collector {
    pub(crate) fn new(expected: Option<usize>, track_completion: bool) -> Arc<Collector> {
        let outcomes = expected.map(Vec::with_capacity).unwrap_or_default();
        Arc::new(Collector {
            state: Mutex::new(Collected {
                outcomes,
                finished: 0,
                expected,
                completion: Default::default(),
                on_complete: None,
                done_callbacks: Vec::new(),
                wakers: Vec::new(),
                track_completion,
                // Nothing to wait for in an empty submission.
                settled: expected == Some(0),
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
        self.finish_if_complete(c);
    }

    /// Records the outcomes of items `first..first + outcomes.len()`.
    pub(crate) fn deliver(&self, first: usize, outcomes: Vec<Raw>) {
        let mut c = self.lock();
        for (i, outcome) in outcomes.into_iter().enumerate() {
            let index = first + i;
            if c.outcomes.len() <= index {
                c.outcomes.resize_with(index + 1, || None);
            }
            if c.outcomes[index].is_some() {
                continue; // already settled (say, cancelled) — the first outcome stands
            }
            c.outcomes[index] = Some(outcome);
            c.finished += 1;
            if c.track_completion {
                c.completion.push_back(index);
            }
        }
        self.finish_if_complete(c);
    }

    fn finish_if_complete<'a>(&'a self, mut c: MutexGuard<'a, Collected>) {
        if c.all_in() && !c.settled {
            // Callbacks run before anyone waiting is told, as Python's pool does; a panicking
            // callback is contained so that results keep flowing.
            if let Some(on_complete) = c.on_complete.take() {
                let outcomes = std::mem::take(&mut c.outcomes);
                drop(c);
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| on_complete(&outcomes)));
                c = self.lock();
                c.outcomes = outcomes;
            }
            c.settled = true;
            let callbacks = std::mem::take(&mut c.done_callbacks);
            let wakers = std::mem::take(&mut c.wakers);
            drop(c);
            for callback in callbacks {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(callback));
            }
            for waker in wakers {
                waker.wake();
            }
        } else {
            drop(c);
        }
        self.changed.notify_all();
    }

    /// Waits until `ready` holds of the collected state, or `deadline` passes.
    pub(crate) fn wait_until(
        &self,
        deadline: Option<Instant>,
        ready: impl Fn(&Collected) -> bool,
    ) -> Option<MutexGuard<'_, Collected>> {
        let mut c = self.lock();
        loop {
            if ready(&c) {
                return Some(c);
            }
            match deadline {
                None => c = self.changed.wait(c).unwrap_or_else(|p| p.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    c = self.changed.wait_timeout(c, left).unwrap_or_else(|p| p.into_inner()).0;
                }
            }
        }
    }
}

/// Decodes one item's outcome as an `R`.
pub(crate) fn decode<R: DeserializeOwned>(raw: &Raw) -> Result<R, TaskError> {
    match raw {
        Ok(bytes) => postcard::from_bytes(bytes)
            .map_err(|e| TaskError::Decode(format!("the result is not a {}: {e}", std::any::type_name::<R>()))),
        Err(err) => Err(err.clone()),
    }
}

/// What an [`AsyncResult`] turns its collected items into.
pub(crate) type Assemble<R> = fn(&[Option<Raw>]) -> Result<R, TaskError>;

/// One item's value.
pub(crate) fn assemble_one<R: DeserializeOwned>(outcomes: &[Option<Raw>]) -> Result<R, TaskError> {
    match outcomes.first() {
        Some(Some(raw)) => decode(raw),
        _ => Err(TaskError::Decode("no outcome".into())),
    }
}

/// Every item's value in order, or the first error in order (Python's `map`).
pub(crate) fn assemble_all<R: DeserializeOwned>(outcomes: &[Option<Raw>]) -> Result<Vec<R>, TaskError> {
    outcomes.iter().map(|o| o.as_ref().map_or_else(|| Err(TaskError::Decode("no outcome".into())), decode)).collect()
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
        let c = self.collector.wait_until(None, Collected::is_complete).expect("no deadline");
        (self.assemble)(&c.outcomes)
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
        match self.collector.wait_until(deadline_after(timeout), Collected::is_complete) {
            Some(c) => (self.assemble)(&c.outcomes).map_err(ResultTimeoutError::Failed),
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
        let _ = self.collector.wait_until(None, Collected::is_complete);
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
        self.collector.wait_until(deadline_after(timeout), Collected::is_complete).is_some()
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
        c.is_complete().then(|| c.outcomes.iter().all(|o| matches!(o, Some(Ok(_)))))
    }
}
