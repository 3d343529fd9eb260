//! [`ProcessPoolExecutor`] and its futures: Python's `concurrent.futures` over a [`Pool`].

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::Waker;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Backend;
use super::result::{Collected, Collector, Interest, TaskError, assemble_one};
use super::{Imap, Pool, PoolBuilder, ResultTimeoutError};
use crate::asyncio::{self, Watch};
use crate::error::Result;
use crate::process::Signal;
use crate::process::task::Task;
use crate::sync::deadline_after;

/// A pool with Python's `concurrent.futures` interface: [`submit`](Self::submit) returns a
/// [`TaskFuture`].
///
/// Unlike a [`Pool`]'s workers, which are daemons as in Python, an executor's
/// workers may start processes and pools of their own (as CPython's and loky's may); those die
/// with the worker that started them.
///
/// ```
/// use multiproc::ProcessPoolExecutor;
/// fn fetch(url: String) -> usize { url.len() }
/// let executor = ProcessPoolExecutor::new(2).unwrap();
/// let future = executor.submit(fetch, ("https://example.org".to_string(),)).unwrap();
/// future.add_done_callback(|f| println!("done: {:?}", f.result()));
/// assert_eq!(future.result().unwrap(), 19);
/// executor.shutdown(true, false);
/// ```
/// Python counterpart: `concurrent.futures.ProcessPoolExecutor`.
#[derive(Debug)]
pub struct ProcessPoolExecutor {
    pool: Pool,
}

impl ProcessPoolExecutor {
    pub(crate) fn from_pool(pool: Pool) -> ProcessPoolExecutor {
        ProcessPoolExecutor { pool }
    }

    /// An executor of `max_workers` processes.
    ///
    /// # Errors
    /// As [`PoolBuilder::build`].
    ///
    /// ```
    /// let executor = multiproc::ProcessPoolExecutor::new(1).unwrap();
    /// # drop(executor);
    /// ```
    /// Python counterpart: `ProcessPoolExecutor(max_workers)`.
    pub fn new(max_workers: usize) -> Result<ProcessPoolExecutor> {
        PoolBuilder::default().processes(max_workers).build_executor()
    }

    /// A builder (initializer, max tasks per child, start method, …); finish with
    /// [`PoolBuilder::build_executor`].
    ///
    /// ```
    /// let executor = multiproc::ProcessPoolExecutor::builder().processes(1).build_executor().unwrap();
    /// # drop(executor);
    /// ```
    /// Python counterpart: `ProcessPoolExecutor(...)` with keyword arguments.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// Starts `f(args)` in a worker.
    ///
    /// # Errors
    /// [`TaskError::ArgumentEncode`] if the arguments cannot be encoded; [`TaskError::Closed`]
    /// after [`shutdown`](Self::shutdown); [`TaskError::Broken`].
    ///
    /// ```
    /// fn add(a: u32, b: u32) -> u32 { a + b }
    /// let executor = multiproc::ProcessPoolExecutor::new(2).unwrap();
    /// assert_eq!(executor.submit(add, (1, 2)).unwrap().result().unwrap(), 3);
    /// ```
    /// Python counterpart: `executor.submit(f, *args)`.
    pub fn submit<F, A>(&self, f: F, args: A) -> std::result::Result<TaskFuture<F::Output>, TaskError>
    where
        F: Task<A>,
        A: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        let _ = f;
        self.submit_within::<F, A>(&args, None)
    }

    /// As [`submit`](Self::submit), with a time limit of its own: a task still running after
    /// `timeout` has its worker stopped and replaced, and its future fails with
    /// [`TaskError::TimedOut`] (see [`Pool::apply_async_timeout`](crate::Pool::apply_async_timeout)).
    ///
    /// # Errors
    /// As [`submit`](Self::submit).
    ///
    /// ```
    /// use std::time::Duration;
    /// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    /// let executor = multiproc::ProcessPoolExecutor::new(1).unwrap();
    /// let f = executor.submit_timeout(nap, (60_000,), Duration::from_millis(100)).unwrap();
    /// assert!(matches!(f.result(), Err(multiproc::pool::TaskError::TimedOut { .. })));
    /// ```
    /// Python counterpart: pebble's `ProcessPool.schedule(f, args, timeout=t)`.
    pub fn submit_timeout<F, A>(
        &self,
        f: F,
        args: A,
        timeout: Duration,
    ) -> std::result::Result<TaskFuture<F::Output>, TaskError>
    where
        F: Task<A>,
        A: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        let _ = f;
        self.submit_within::<F, A>(&args, super::own_timeout(timeout))
    }

    /// [`submit`](Self::submit) with its own time limit, if any.
    fn submit_within<F, A>(
        &self,
        args: &A,
        timeout: Option<Duration>,
    ) -> std::result::Result<TaskFuture<F::Output>, TaskError>
    where
        F: Task<A>,
        A: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        let sink = Collector::new(Some(1), false);
        let id = self.pool.submit_one::<F, A>(args, &sink, timeout)?;
        Ok(TaskFuture { core: self.pool.core.clone(), batch: id, sink, _type: PhantomData })
    }

    /// `f(item)` for every item, lazily (a bounded number ahead of the reader), in input order,
    /// `chunksize` items per batch.
    ///
    /// # Errors
    /// [`TaskError::Closed`] after [`shutdown`](Self::shutdown).
    ///
    /// ```
    /// let executor = multiproc::ProcessPoolExecutor::new(2).unwrap();
    /// let doubled: Vec<u32> = executor.map(|x: u32| x * 2, 0..4, 1).unwrap().map(Result::unwrap).collect();
    /// assert_eq!(doubled, [0, 2, 4, 6]);
    /// ```
    /// Python counterpart: `executor.map(f, iterable, chunksize=n)` (whose input is read at once).
    pub fn map<F, I>(
        &self,
        f: F,
        items: I,
        chunksize: usize,
    ) -> std::result::Result<Imap<'_, I::IntoIter, F::Output>, TaskError>
    where
        I: IntoIterator,
        F: Task<(I::Item,)>,
        I::Item: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        self.pool.imap_chunked(f, items, chunksize)
    }

    /// Stops accepting tasks. With `cancel_futures`, tasks not yet started are cancelled; with
    /// `wait`, returns once every task in hand has finished and the workers have exited.
    ///
    /// ```
    /// let executor = multiproc::ProcessPoolExecutor::new(1).unwrap();
    /// let f = executor.submit(|| 1, ()).unwrap();
    /// executor.shutdown(true, false);
    /// assert_eq!(f.result().unwrap(), 1);
    /// assert!(executor.submit(|| 2, ()).is_err());
    /// ```
    /// Python counterpart: `executor.shutdown(wait, cancel_futures=...)`.
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) {
        let core = &self.pool.core;
        core.close();
        if cancel_futures {
            core.cancel_pending();
        }
        if wait && !core.is_finished() {
            core.join();
        }
    }

    /// Makes the executor `max_workers` processes while it runs (see [`Pool::resize`]).
    ///
    /// # Errors
    /// As [`Pool::resize`].
    ///
    /// ```
    /// let executor = multiproc::ProcessPoolExecutor::new(1).unwrap();
    /// executor.resize(2).unwrap();
    /// assert_eq!(executor.stats().len(), 2);
    /// ```
    /// Python counterpart: none (loky's `get_reusable_executor(max_workers=n)` resizes).
    pub fn resize(&self, max_workers: usize) -> Result<()> {
        self.pool.resize(max_workers)
    }

    /// Stops every worker with SIGTERM (then SIGKILL after the kill grace); unfinished tasks fail
    /// with [`TaskError::Terminated`].
    ///
    /// ```
    /// let executor = multiproc::ProcessPoolExecutor::new(1).unwrap();
    /// executor.terminate_workers();
    /// assert!(executor.submit(|| 1, ()).is_err());
    /// ```
    /// Python counterpart: `executor.terminate_workers()` (Python 3.14).
    pub fn terminate_workers(&self) {
        self.pool.core.terminate(Signal::TERM);
    }

    /// As [`terminate_workers`](Self::terminate_workers), with SIGKILL.
    ///
    /// ```
    /// let executor = multiproc::ProcessPoolExecutor::new(1).unwrap();
    /// executor.kill_workers();
    /// ```
    /// Python counterpart: `executor.kill_workers()` (Python 3.14).
    pub fn kill_workers(&self) {
        self.pool.core.terminate(Signal::KILL);
    }

    /// Per-worker statistics (see [`Pool::stats`]).
    ///
    /// ```
    /// let executor = multiproc::ProcessPoolExecutor::new(2).unwrap();
    /// assert_eq!(executor.stats().len(), 2);
    /// ```
    /// Python counterpart: none.
    pub fn stats(&self) -> Vec<super::WorkerStats> {
        self.pool.stats()
    }
}

/// The process's reusable executor, with the process it belongs to (a forked child inherits
/// the value, not the workers).
static REUSABLE: std::sync::Mutex<Option<(u32, Arc<ProcessPoolExecutor>)>> = std::sync::Mutex::new(None);

/// The process-wide executor of `max_workers` workers, started on first use and shared by
/// every caller after: libraries and repeated calls reuse warm workers instead of starting a
/// pool each time. Asking for a different size resizes it (see [`Pool::resize`]: no task
/// fails); after someone shut it down, the next call starts a new one.
///
/// # Errors
/// As [`ProcessPoolExecutor::new`].
///
/// ```
/// use std::sync::Arc;
/// let a = multiproc::pool::get_reusable_executor(2).unwrap();
/// let b = multiproc::pool::get_reusable_executor(2).unwrap();
/// assert!(Arc::ptr_eq(&a, &b)); // the same warm workers
/// assert_eq!(b.submit(|| 6 * 7, ()).unwrap().result().unwrap(), 42);
/// let c = multiproc::pool::get_reusable_executor(3).unwrap(); // resized, still the same
/// assert!(Arc::ptr_eq(&a, &c) && a.stats().len() == 3);
/// ```
/// Python counterpart: `loky.get_reusable_executor(max_workers)` (joblib's default backend).
pub fn get_reusable_executor(max_workers: usize) -> Result<Arc<ProcessPoolExecutor>> {
    let mut reusable = REUSABLE.lock().unwrap_or_else(|p| p.into_inner());
    let me = std::process::id();
    if let Some((pid, executor)) = reusable.as_ref() {
        let core = &executor.pool.core;
        if *pid == me && core.is_open() {
            if core.size() != max_workers {
                executor.resize(max_workers)?;
            }
            return Ok(executor.clone());
        }
    }
    let executor = Arc::new(ProcessPoolExecutor::new(max_workers)?);
    *reusable = Some((me, executor.clone()));
    Ok(executor)
}

/// The eventual outcome of [`ProcessPoolExecutor::submit`]. Also a `std::future::Future`, so it
/// can be awaited.
///
/// ```
/// let executor = multiproc::ProcessPoolExecutor::new(1).unwrap();
/// let f = executor.submit(|| 6 * 7, ()).unwrap();
/// assert_eq!(f.result().unwrap(), 42);
/// assert!(f.done() && !f.cancelled());
/// ```
/// Python counterpart: `concurrent.futures.Future`.
pub struct TaskFuture<R> {
    core: Arc<dyn Backend>,
    batch: u64,
    sink: Arc<Collector>,
    _type: PhantomData<fn() -> R>,
}

impl<R> Clone for TaskFuture<R> {
    fn clone(&self) -> TaskFuture<R> {
        TaskFuture { core: self.core.clone(), batch: self.batch, sink: self.sink.clone(), _type: PhantomData }
    }
}

impl<R> std::fmt::Debug for TaskFuture<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskFuture").field("done", &self.done()).finish()
    }
}

impl<R: DeserializeOwned> TaskFuture<R> {
    /// Waits for the value.
    ///
    /// # Errors
    /// The task's [`TaskError`] ([`TaskError::Cancelled`] if it was cancelled).
    ///
    /// ```
    /// fn fail() -> u8 { panic!("boom") }
    /// let executor = multiproc::ProcessPoolExecutor::new(1).unwrap();
    /// assert!(executor.submit(fail, ()).unwrap().result().is_err());
    /// ```
    /// Python counterpart: `future.result()`.
    pub fn result(&self) -> std::result::Result<R, TaskError> {
        let c = self.sink.wait_until(None, Interest::Complete, Collected::is_complete).expect("no deadline");
        assemble_one(&c.results)
    }

    /// Waits up to `timeout` for the value.
    ///
    /// # Errors
    /// [`ResultTimeoutError::Timeout`] if it has not arrived (the task goes on);
    /// [`ResultTimeoutError::Failed`] with the task's error.
    ///
    /// ```
    /// use std::time::Duration;
    /// let executor = multiproc::ProcessPoolExecutor::new(1).unwrap();
    /// let f = executor.submit(|| 1, ()).unwrap();
    /// assert_eq!(f.result_timeout(Duration::from_secs(30)), Ok(1));
    /// ```
    /// Python counterpart: `future.result(timeout)`.
    pub fn result_timeout(&self, timeout: Duration) -> std::result::Result<R, ResultTimeoutError> {
        match self.sink.wait_until(deadline_after(timeout), Interest::Complete, Collected::is_complete) {
            Some(c) => assemble_one(&c.results).map_err(ResultTimeoutError::Failed),
            None => Err(ResultTimeoutError::Timeout),
        }
    }

    /// Waits for the task and returns its error, if it failed.
    ///
    /// ```
    /// let executor = multiproc::ProcessPoolExecutor::new(1).unwrap();
    /// assert_eq!(executor.submit(|| 1, ()).unwrap().exception(), None);
    /// ```
    /// Python counterpart: `future.exception()`.
    pub fn exception(&self) -> Option<TaskError> {
        self.result().err()
    }

    /// Calls `callback` with this future once it is done: at once (in this thread) if it already
    /// is, otherwise in the executor's result thread. A callback that panics is contained.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// let executor = multiproc::ProcessPoolExecutor::new(1).unwrap();
    /// let (tx, rx) = mpsc::channel();
    /// let f = executor.submit(|| 5u8, ()).unwrap();
    /// f.add_done_callback(move |f| tx.send(f.result().unwrap()).unwrap());
    /// assert_eq!(rx.recv().unwrap(), 5);
    /// ```
    /// Python counterpart: `future.add_done_callback(fn)`.
    pub fn add_done_callback(&self, callback: impl FnOnce(&TaskFuture<R>) + Send + 'static)
    where
        R: 'static,
    {
        let me = self.clone();
        let mut c = self.sink.lock();
        if c.is_complete() {
            drop(c);
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| callback(&me)));
        } else {
            c.done_callbacks.push(Box::new(move || callback(&me)));
        }
    }
}

impl<R> TaskFuture<R> {
    /// Cancels the task unless it has finished; returns whether it was cancelled. Beyond Python
    /// (which cannot cancel a running task), a running task has its worker stopped (SIGTERM, then
    /// SIGKILL) and replaced. A task waiting in a worker behind another is taken back from it and
    /// never runs.
    ///
    /// ```
    /// fn nap() { std::thread::sleep(std::time::Duration::from_secs(60)) }
    /// let executor = multiproc::ProcessPoolExecutor::new(1).unwrap();
    /// let f = executor.submit(nap, ()).unwrap();
    /// assert!(f.cancel());
    /// assert!(f.cancelled());
    /// ```
    /// Python counterpart: `future.cancel()`.
    pub fn cancel(&self) -> bool {
        if self.done() {
            return false;
        }
        self.core.cancel(self.batch)
    }

    /// Whether the task was cancelled.
    ///
    /// ```
    /// let executor = multiproc::ProcessPoolExecutor::new(1).unwrap();
    /// let f = executor.submit(|| 1, ()).unwrap();
    /// f.result().unwrap();
    /// assert!(!f.cancelled());
    /// ```
    /// Python counterpart: `future.cancelled()`.
    pub fn cancelled(&self) -> bool {
        let c = self.sink.lock();
        c.is_complete() && matches!(c.results.decode::<serde::de::IgnoredAny>(0), Some(Err(TaskError::Cancelled)))
    }

    /// Whether a worker is running the task right now.
    ///
    /// ```
    /// let executor = multiproc::ProcessPoolExecutor::new(1).unwrap();
    /// let f = executor.submit(|| 1, ()).unwrap();
    /// f.result().unwrap();
    /// assert!(!f.running());
    /// ```
    /// Python counterpart: `future.running()`.
    pub fn running(&self) -> bool {
        !self.done() && self.core.is_running(self.batch)
    }

    /// Whether the task has finished (a value, an error, or cancelled).
    ///
    /// ```
    /// let executor = multiproc::ProcessPoolExecutor::new(1).unwrap();
    /// let f = executor.submit(|| 1, ()).unwrap();
    /// f.result().unwrap();
    /// assert!(f.done());
    /// ```
    /// Python counterpart: `future.done()`.
    pub fn done(&self) -> bool {
        self.sink.lock().is_complete()
    }

    /// Calls `notify` once this future is done (at once if it is).
    fn on_done(&self, notify: impl FnOnce() + Send + 'static) {
        let mut c = self.sink.lock();
        if c.is_complete() {
            drop(c);
            notify();
        } else {
            c.done_callbacks.push(Box::new(notify));
        }
    }
}

impl<R: DeserializeOwned> std::future::Future for TaskFuture<R> {
    type Output = std::result::Result<R, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let mut c = self.sink.lock();
        if c.is_complete() {
            return Poll::Ready(assemble_one(&c.results));
        }
        if !c.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            c.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl<R> TaskFuture<R> {
    /// This future, made to cancel its task when dropped before it is done (as
    /// [`cancel`](Self::cancel) does). A plain `TaskFuture` dropped unfinished leaves its task to
    /// run, as Python's does: the executor, not the future, owns the work. Opt in where the
    /// awaiting code owns it — a request handler whose client went away, a `select!` whose
    /// other branch won.
    ///
    /// ```
    /// use std::time::Duration;
    /// fn nap() { std::thread::sleep(Duration::from_secs(60)) }
    /// let executor = multiproc::ProcessPoolExecutor::new(1).unwrap();
    /// let f = executor.submit(nap, ()).unwrap();
    /// let watcher = f.clone();
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    /// let waited = rt.block_on(async { tokio::time::timeout(Duration::from_millis(10), f.cancel_on_drop()).await });
    /// assert!(waited.is_err()); // timed out, and the future was dropped...
    /// assert!(watcher.cancelled()); // ...which cancelled the task
    /// ```
    /// Python counterpart: none (asyncio's `wrap_future` cancels the wrapper, not the work).
    pub fn cancel_on_drop(self) -> CancelOnDrop<R> {
        CancelOnDrop(self)
    }
}

/// A [`TaskFuture`] that cancels its task if dropped before it is done; made by
/// [`TaskFuture::cancel_on_drop`]. Awaits to the same output.
///
/// ```
/// let executor = multiproc::ProcessPoolExecutor::new(1).unwrap();
/// let f = executor.submit(|| 2, ()).unwrap().cancel_on_drop();
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// assert_eq!(rt.block_on(f).unwrap(), 2);
/// ```
/// Python counterpart: none.
#[derive(Debug)]
pub struct CancelOnDrop<R>(TaskFuture<R>);

impl<R> std::ops::Deref for CancelOnDrop<R> {
    type Target = TaskFuture<R>;

    fn deref(&self) -> &TaskFuture<R> {
        &self.0
    }
}

impl<R> Drop for CancelOnDrop<R> {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl<R: DeserializeOwned> std::future::Future for CancelOnDrop<R> {
    type Output = std::result::Result<R, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.get_mut().0).poll(cx)
    }
}

/// The futures of `futures` as they finish: indexes into the slice, each once. After `timeout`
/// (`None`: no limit) with some still running, yields one `Err(Timeout)` and ends.
///
/// ```
/// use multiproc::pool::{ProcessPoolExecutor, as_completed};
/// fn nap(ms: u64) -> u64 { std::thread::sleep(std::time::Duration::from_millis(ms)); ms }
/// let executor = ProcessPoolExecutor::new(2).unwrap();
/// let futures = vec![executor.submit(nap, (300,)).unwrap(), executor.submit(nap, (10,)).unwrap()];
/// let order: Vec<usize> = as_completed(&futures, None).map(Result::unwrap).collect();
/// assert_eq!(order, [1, 0]);
/// ```
/// Python counterpart: `concurrent.futures.as_completed(futures, timeout)`.
pub fn as_completed<R>(futures: &[TaskFuture<R>], timeout: Option<Duration>) -> AsCompleted {
    let finished = Arc::new(Finished::default());
    for (index, future) in futures.iter().enumerate() {
        let finished = finished.clone();
        future.on_done(move || finished.push(index));
    }
    AsCompleted {
        finished,
        left: futures.len(),
        deadline: timeout.and_then(deadline_after),
        timed_out: false,
        timer: None,
    }
}

/// The indexes of finished futures, handed from the executor's result thread to an
/// [`AsCompleted`].
#[derive(Default)]
struct Finished {
    state: Mutex<(VecDeque<usize>, Option<Waker>)>,
    changed: Condvar,
}

impl Finished {
    fn push(&self, index: usize) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.0.push_back(index);
        let waker = state.1.take();
        drop(state);
        self.changed.notify_one();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The iterator of [`as_completed`]; also a [`Stream`](futures_core::Stream) of the same items
/// for async code (the timeout counts there too).
///
/// ```
/// let executor = multiproc::ProcessPoolExecutor::new(1).unwrap();
/// let futures = [executor.submit(|| 1, ()).unwrap()];
/// assert_eq!(multiproc::pool::as_completed(&futures, None).count(), 1);
/// ```
///
/// ```
/// use std::future::poll_fn;
/// use std::pin::Pin;
/// use futures_core::Stream;
/// use multiproc::pool::{ProcessPoolExecutor, as_completed};
/// fn nap(ms: u64) -> u64 { std::thread::sleep(std::time::Duration::from_millis(ms)); ms }
///
/// let executor = ProcessPoolExecutor::new(2).unwrap();
/// let futures = vec![executor.submit(nap, (300,)).unwrap(), executor.submit(nap, (10,)).unwrap()];
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// rt.block_on(async {
///     let mut done = as_completed(&futures, None);
///     let first = poll_fn(|cx| Pin::new(&mut done).poll_next(cx)).await;
///     assert_eq!(first, Some(Ok(1)));
/// });
/// ```
/// Python counterpart: the generator `as_completed` returns.
pub struct AsCompleted {
    finished: Arc<Finished>,
    left: usize,
    deadline: Option<Instant>,
    timed_out: bool,
    /// For the stream: wakes the task at the deadline.
    timer: Option<Watch>,
}

impl std::fmt::Debug for AsCompleted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsCompleted").field("left", &self.left).field("deadline", &self.deadline).finish()
    }
}

/// [`as_completed`] or [`wait`] gave up before every future was done.
///
/// ```
/// use std::time::Duration;
/// use multiproc::pool::{ProcessPoolExecutor, as_completed, Timeout};
/// fn nap() { std::thread::sleep(Duration::from_secs(60)) }
/// let executor = ProcessPoolExecutor::new(1).unwrap();
/// let futures = [executor.submit(nap, ()).unwrap()];
/// let first = as_completed(&futures, Some(Duration::from_millis(10))).next();
/// assert_eq!(first, Some(Err(Timeout)));
/// executor.kill_workers();
/// ```
/// Python counterpart: `concurrent.futures.TimeoutError`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("timed out waiting for futures")]
pub struct Timeout;

impl AsCompleted {
    /// The next index if one is in, or the end (`Some(None)`); `None` to wait.
    #[allow(clippy::option_option)]
    fn ready(&mut self, queue: &mut VecDeque<usize>) -> Option<Option<std::result::Result<usize, Timeout>>> {
        if self.left == 0 || self.timed_out {
            return Some(None);
        }
        if let Some(index) = queue.pop_front() {
            self.left -= 1;
            return Some(Some(Ok(index)));
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.timed_out = true;
            return Some(Some(Err(Timeout)));
        }
        None
    }
}

impl Iterator for AsCompleted {
    type Item = std::result::Result<usize, Timeout>;

    fn next(&mut self) -> Option<Self::Item> {
        let finished = self.finished.clone();
        let mut state = finished.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(item) = self.ready(&mut state.0) {
                return item;
            }
            state = match self.deadline {
                None => finished.changed.wait(state).unwrap_or_else(|p| p.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    finished.changed.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0
                }
            };
        }
    }
}

impl futures_core::Stream for AsCompleted {
    type Item = std::result::Result<usize, Timeout>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let finished = this.finished.clone();
        let mut state = finished.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(item) = this.ready(&mut state.0) {
            this.timer = None;
            return Poll::Ready(item);
        }
        state.1 = Some(cx.waker().clone());
        drop(state);
        if let Some(deadline) = this.deadline {
            let timer = this.timer.get_or_insert_with(|| asyncio::timer(deadline));
            if timer.poll(cx).is_ready() {
                // The deadline passed meanwhile: look again now.
                this.timer = None;
                cx.waker().wake_by_ref();
            }
        }
        Poll::Pending
    }
}

/// When [`wait`] returns.
///
/// ```
/// let when = multiproc::pool::ReturnWhen::FirstCompleted;
/// # let _ = when;
/// ```
/// Python counterpart: `FIRST_COMPLETED`, `FIRST_EXCEPTION`, `ALL_COMPLETED`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReturnWhen {
    /// As soon as any future is done.
    FirstCompleted,
    /// As soon as any future fails (or all are done).
    FirstException,
    /// When all are done.
    AllCompleted,
}

/// Waits for `futures` as `when` says, at most `timeout` (`None`: no limit); returns the indexes
/// of the futures done and of those not done.
///
/// ```
/// use multiproc::pool::{ProcessPoolExecutor, ReturnWhen, wait};
/// fn nap(ms: u64) { std::thread::sleep(std::time::Duration::from_millis(ms)) }
/// let executor = ProcessPoolExecutor::new(2).unwrap();
/// let futures = vec![executor.submit(nap, (10,)).unwrap(), executor.submit(nap, (5_000,)).unwrap()];
/// let (done, not_done) = wait(&futures, ReturnWhen::FirstCompleted, None);
/// assert_eq!((done, not_done), (vec![0], vec![1]));
/// executor.kill_workers();
/// ```
/// Python counterpart: `concurrent.futures.wait(futures, timeout, return_when)`.
pub fn wait<R: DeserializeOwned>(
    futures: &[TaskFuture<R>],
    when: ReturnWhen,
    timeout: Option<Duration>,
) -> (Vec<usize>, Vec<usize>) {
    let mut done = vec![false; futures.len()];
    for index in as_completed(futures, timeout) {
        let Ok(index) = index else { break };
        done[index] = true;
        let stop = match when {
            ReturnWhen::FirstCompleted => true,
            ReturnWhen::FirstException => futures[index].exception().is_some(),
            ReturnWhen::AllCompleted => false,
        };
        if stop {
            break;
        }
    }
    // Anything else that finished meanwhile counts as done too, as in Python.
    for (index, future) in futures.iter().enumerate() {
        done[index] |= future.done();
    }
    let (yes, no): (Vec<usize>, Vec<usize>) = (0..futures.len()).partition(|&i| done[i]);
    (yes, no)
}
