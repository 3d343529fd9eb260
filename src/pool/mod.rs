//! Process pools: [`Pool`] (Python's `multiprocessing.Pool`) and [`ProcessPoolExecutor`]
//! (Python's `concurrent.futures.ProcessPoolExecutor`).
//!
//! A pool keeps a fixed number of worker processes and feeds them tasks: a plain function (or a
//! closure that captures nothing) and its arguments, exactly as for [`Process::spawn`](crate::Process::spawn). Results
//! come back typed. Unlike Python's pools, nothing here can hang you:
//!
//! - A task that **panics** fails alone ([`TaskError::Panicked`]); its worker goes on.
//! - A worker that **dies** mid-task (SIGKILL, the OOM killer, `abort`, `exit`) fails that one
//!   task ([`TaskError::WorkerDied`], with the pid and the signal or exit code) and is replaced;
//!   every other task completes. Python's `Pool.map` hangs forever here; its executor breaks.
//! - A **task timeout** ([`PoolBuilder::task_timeout`]) stops the worker that overran (SIGTERM,
//!   then SIGKILL if it is ignored) and fails that task with [`TaskError::TimedOut`].
//! - An **initializer** that fails breaks the pool with a clear error ([`TaskError::Broken`]);
//!   workers that keep dying on start do too, instead of respawning forever.
//! - **Ctrl-C**: workers ignore SIGINT, so the terminal's Ctrl-C reaches only the parent, which
//!   ends by default; its workers die with it (they never outlive their parent), silently.
//! - [`Pool::imap`] reads its input lazily, a bounded number of items ahead.
//!
//! ```
//! use multiproc::Pool;
//!
//! fn collatz_steps(mut n: u64) -> u32 {
//!     let mut steps = 0;
//!     while n != 1 {
//!         n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
//!         steps += 1;
//!     }
//!     steps
//! }
//!
//! let pool = Pool::new(2).unwrap();
//! let steps = pool.map(collatz_steps, 1..=10).unwrap();
//! assert_eq!(steps, [0, 1, 7, 2, 5, 8, 16, 3, 19, 6]);
//! ```
//!
//! # How it works
//! Each worker has its own order queue in shared memory and a few batches in hand (more when
//! its tasks are short); the rest wait in the parent. Workers report on one shared queue, read by a result thread in the
//! parent, which delivers results, runs callbacks (in completion order) and hands out more work. A
//! supervisor thread watches every worker's pidfd and the task deadlines. Before running an item a
//! worker writes what it runs into a slot of shared memory, so when it dies the parent knows which
//! item killed it. A chunk (`chunksize` items) is reported whole: if its worker dies, the items of
//! the chunk it had already finished run again on another worker.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;

use crate::error::{Error, ErrorKind, Result};
use crate::handle;
use crate::pool::batch::{ItemWire, batch_entry_offset};
use crate::pool::worker::Layout;
use crate::process::task::{Task, entry_offset};
use crate::process::{Signal, StartMethod, cpu_count};

mod backend;
mod batch;
mod core;
mod executor;
mod result;
mod spare;
pub(crate) mod worker;

pub(crate) use self::backend::Backend;
pub(crate) use self::core::Batch;
pub use self::core::WorkerStats;
use self::core::{Config, Core, Initializer};
pub(crate) use self::result::{Collector, Delivery, Results};
pub use executor::{
    AsCompleted, CancelOnDrop, ProcessPoolExecutor, ReturnWhen, TaskFuture, Timeout, as_completed,
    get_reusable_executor, wait,
};
pub use result::{AsyncResult, TaskError};
use result::{Collected, Interest, assemble_all, assemble_one};

/// Why a wait with a timeout returned no value.
///
/// ```
/// use std::time::Duration;
/// use multiproc::pool::{Pool, ResultTimeoutError};
/// fn nap() { std::thread::sleep(Duration::from_millis(300)) }
/// let pool = Pool::new(1).unwrap();
/// let result = pool.apply_async(nap, ()).unwrap();
/// assert_eq!(result.get_timeout(Duration::from_millis(10)), Err(ResultTimeoutError::Timeout));
/// ```
/// Python counterpart: `multiprocessing.TimeoutError` / `concurrent.futures.TimeoutError`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResultTimeoutError {
    /// The value did not arrive in time; the task goes on.
    #[error("timed out waiting for the result")]
    Timeout,
    /// The task failed.
    #[error(transparent)]
    Failed(#[from] TaskError),
}

/// Builds a [`Pool`] (or a [`ProcessPoolExecutor`]) with options.
///
/// ```
/// use std::time::Duration;
/// use multiproc::{Pool, StartMethod};
///
/// fn setup(greeting: String) { println!("{greeting} from {}", std::process::id()) }
///
/// let pool = Pool::builder()
///     .processes(2)
///     .initializer(setup, ("hello".to_string(),))
///     .max_tasks_per_child(100)
///     .task_timeout(Duration::from_secs(60))
///     .start_method(StartMethod::ForkServer)
///     .build()
///     .unwrap();
/// assert_eq!(pool.apply(|| 7, ()).unwrap(), 7);
/// ```
/// Python counterpart: `Pool(processes, initializer, initargs, maxtasksperchild, context)`.
#[derive(Clone)]
pub struct PoolBuilder {
    processes: Option<usize>,
    initializer: Option<std::result::Result<Initializer, String>>,
    max_tasks_per_child: u64,
    max_memory_per_child: u64,
    idle_timeout: Option<Duration>,
    method: Option<StartMethod>,
    task_timeout: Option<Duration>,
    kill_grace: Duration,
    in_flight: Option<usize>,
    name: String,
    #[cfg(feature = "progress")]
    progress: bool,
}

impl Default for PoolBuilder {
    fn default() -> PoolBuilder {
        PoolBuilder {
            processes: None,
            initializer: None,
            max_tasks_per_child: 0,
            max_memory_per_child: 0,
            idle_timeout: None,
            method: None,
            task_timeout: None,
            kill_grace: Duration::from_secs(1),
            in_flight: None,
            name: "pool".into(),
            #[cfg(feature = "progress")]
            progress: false,
        }
    }
}

fn encode_args<A: Serialize>(args: &A) -> std::result::Result<(ByteBuf, Vec<std::os::fd::OwnedFd>), TaskError> {
    let (bytes, fds) =
        handle::encode(args).map_err(|e| TaskError::ArgumentEncode(crate::codec::encode_failure(args, &e)))?;
    let fds = fds
        .iter()
        .map(|fd| fd.try_clone_to_owned())
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| TaskError::ArgumentEncode(format!("duplicating a handle: {e}")))?;
    Ok((ByteBuf::from(bytes), fds))
}

/// Encodes one item's arguments, with owned copies of the descriptors of its handles.
fn encode_one<A: Serialize>(
    scope: &mut handle::EncodeScope,
    args: &A,
    out: &mut Vec<u8>,
) -> std::result::Result<Vec<std::os::fd::OwnedFd>, TaskError> {
    let fds = scope.append(args, out).map_err(|e| TaskError::ArgumentEncode(crate::codec::encode_failure(args, &e)))?;
    if fds.is_empty() {
        return Ok(Vec::new());
    }
    fds.iter()
        .map(|fd| fd.try_clone_to_owned())
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| TaskError::ArgumentEncode(format!("duplicating a handle: {e}")))
}

/// A batch of one item: `f(args)`, its outcome going to item 0 of `sink`.
fn single_batch<F, A>(args: &A, sink: &Arc<Collector>) -> std::result::Result<Batch, TaskError>
where
    F: Task<A>,
    A: Serialize + DeserializeOwned,
    F::Output: Serialize + DeserializeOwned,
{
    if !crate::codec::fits_the_wire(args) {
        return Err(TaskError::ArgumentEncode(crate::codec::encode_failure(args, &postcard::Error::SerdeSerCustom)));
    }
    let mut bytes = Vec::new();
    let fds = encode_one(&mut handle::EncodeScope::begin(), args, &mut bytes)?;
    let end = bytes.len() as u64;
    Ok(Batch::new(batch_entry_offset::<F, A>(), bytes, vec![end], fds, sink.clone(), 0))
}

impl PoolBuilder {
    /// The number of worker processes (default: [`cpu_count`], which honours affinity and cgroup
    /// quotas).
    ///
    /// ```
    /// let pool = multiproc::Pool::builder().processes(3).build().unwrap();
    /// assert_eq!(pool.stats().len(), 3);
    /// ```
    /// Python counterpart: `Pool(processes=n)`.
    pub fn processes(mut self, n: usize) -> PoolBuilder {
        self.processes = Some(n);
        self
    }

    /// A function every worker runs once, with `args`, before any task. The arguments may hold
    /// handles (a queue, a lock), which every worker receives. If it panics (or its arguments do
    /// not decode), the pool is broken: every task fails with [`TaskError::Broken`] naming the
    /// cause — no respawn storm.
    ///
    /// ```
    /// fn fail() { panic!("no database") }
    /// let pool = multiproc::Pool::builder().processes(1).initializer(fail, ()).build().unwrap();
    /// assert!(matches!(pool.apply(|| 1, ()), Err(multiproc::pool::TaskError::Broken(why)) if why.contains("no database")));
    /// ```
    /// Python counterpart: `Pool(initializer=f, initargs=args)`.
    pub fn initializer<F, A>(mut self, _f: F, args: A) -> PoolBuilder
    where
        F: Task<A, Output = ()>,
        A: Serialize + DeserializeOwned,
    {
        let encoded = match encode_args(&args) {
            Ok((bytes, fds)) => Ok((entry_offset::<F, A>(), bytes, Arc::new(fds))),
            Err(err) => Err(err.to_string()),
        };
        self.initializer = Some(encoded);
        self
    }

    /// Replace a worker after it has run `n` tasks (a chunk counts as one, as in Python); 0 (the
    /// default) never.
    ///
    /// ```
    /// let pool = multiproc::Pool::builder().processes(1).max_tasks_per_child(1).build().unwrap();
    /// let a = pool.apply(std::process::id, ()).unwrap();
    /// let b = pool.apply(std::process::id, ()).unwrap();
    /// assert_ne!(a, b);
    /// ```
    /// Python counterpart: `Pool(maxtasksperchild=n)`, `ProcessPoolExecutor(max_tasks_per_child=n)`.
    pub fn max_tasks_per_child(mut self, n: u64) -> PoolBuilder {
        self.max_tasks_per_child = n;
        self
    }

    /// Replace a worker once its resident memory passes `bytes` (0, the default: never): the
    /// cure for tasks that leak, or that leave a worker holding memory it will not give back.
    /// The worker looks after a batch (at most every 10 ms, and after any batch that ran
    /// longer), finishes it, and is replaced; no task fails for it. A task that needs more
    /// than the limit still runs.
    ///
    /// ```
    /// fn hoard(mb: usize) -> u32 {
    ///     std::mem::forget(vec![1u8; mb << 20]); // leaked, and touched
    ///     std::process::id()
    /// }
    /// let pool = multiproc::Pool::builder().processes(1).max_memory_per_child(64 << 20).build().unwrap();
    /// let first = pool.apply(hoard, (100,)).unwrap();
    /// let next = pool.apply(hoard, (0,)).unwrap();
    /// assert_ne!(first, next); // the hoarder was replaced
    /// ```
    /// Python counterpart: none in the standard library (loky's reusable executor recycles
    /// workers past a memory limit; pebble's `max_tasks` is the usual workaround).
    pub fn max_memory_per_child(mut self, bytes: u64) -> PoolBuilder {
        self.max_memory_per_child = bytes;
        self
    }

    /// Let a worker that has had nothing to do for `timeout` exit; its place is filled again
    /// when work comes (default: workers stay). A pool that sits idle between bursts then holds
    /// no processes, at the cost of a worker start on the first task after a pause.
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = multiproc::Pool::builder().processes(1).idle_timeout(Duration::from_millis(50)).build().unwrap();
    /// let first = pool.apply(std::process::id, ()).unwrap();
    /// std::thread::sleep(Duration::from_millis(500));
    /// assert_eq!(pool.stats()[0].pid, None); // gone while idle
    /// let next = pool.apply(std::process::id, ()).unwrap(); // started again on demand
    /// assert_ne!(first, next);
    /// ```
    /// Python counterpart: none in `multiprocessing` (loky's executor `timeout`).
    pub fn idle_timeout(mut self, timeout: Duration) -> PoolBuilder {
        self.idle_timeout = Some(timeout);
        self
    }

    /// How workers are started (default: the process-wide default).
    ///
    /// ```
    /// let pool = multiproc::Pool::builder().processes(1).start_method(multiproc::StartMethod::Fork).build().unwrap();
    /// assert_eq!(pool.apply(|| 2 + 2, ()).unwrap(), 4);
    /// ```
    /// Python counterpart: `Pool(context=get_context(method))`.
    pub fn start_method(mut self, method: StartMethod) -> PoolBuilder {
        self.method = Some(method);
        self
    }

    /// The longest one task may run. A task past it has its worker stopped (SIGTERM, then SIGKILL
    /// after the kill grace) and fails with [`TaskError::TimedOut`]; a new worker takes the place.
    ///
    /// ```
    /// use std::time::Duration;
    /// fn hang() { std::thread::sleep(Duration::from_secs(30)) }
    /// let pool = multiproc::Pool::builder().processes(1).task_timeout(Duration::from_millis(100)).build().unwrap();
    /// assert!(matches!(pool.apply(hang, ()), Err(multiproc::pool::TaskError::TimedOut { .. })));
    /// assert_eq!(pool.apply(|| 5, ()).unwrap(), 5); // the pool goes on
    /// ```
    /// Python counterpart: none (pebble's `timeout`).
    pub fn task_timeout(mut self, timeout: Duration) -> PoolBuilder {
        self.task_timeout = Some(timeout);
        self
    }

    /// How long a worker being stopped may take to end after SIGTERM before it gets SIGKILL
    /// (default 1 s).
    ///
    /// ```
    /// let pool = multiproc::Pool::builder().kill_grace(std::time::Duration::from_millis(200)).build().unwrap();
    /// # drop(pool);
    /// ```
    /// Python counterpart: none.
    pub fn kill_grace(mut self, grace: Duration) -> PoolBuilder {
        self.kill_grace = grace;
        self
    }

    /// How many batches (chunks) `imap` and friends keep submitted ahead of the reader
    /// (default: 64 per worker, at least 256 — deep enough that workers never wait for the
    /// reader). Counted in batches, not items, so that large chunks still keep every worker busy.
    ///
    /// ```
    /// let pool = multiproc::Pool::builder().processes(2).max_in_flight(4).build().unwrap();
    /// let first: Vec<u64> = pool.imap(|x: u64| x, 0..).unwrap().take(3).map(Result::unwrap).collect();
    /// assert_eq!(first, [0, 1, 2]);
    /// ```
    /// Python counterpart: none (Python's `imap` reads the whole input first).
    pub fn max_in_flight(mut self, batches: usize) -> PoolBuilder {
        self.in_flight = Some(batches.max(1));
        self
    }

    /// Draw a progress bar on stderr for every `map`, `starmap` and `imap` (and their `_async`
    /// and `_unordered` forms): items done out of items submitted, with rate and time left. An
    /// `imap` takes its total from its input's `size_hint` (a range, a `Vec`) until the input
    /// runs out; an input that does not know its length shows what was read so far. The bar
    /// moves per item, chunks included: ten times a second it counts the items the workers are
    /// past in the chunks they run, so rates and the time left are steady. Needs the `progress`
    /// feature.
    ///
    /// ```
    /// let pool = multiproc::Pool::builder().processes(2).progress(true).build().unwrap();
    /// assert_eq!(pool.map(|x: u32| x, 0..1000).unwrap().len(), 1000);
    /// ```
    /// Python counterpart: none (mpire's `progress_bar=True`, or `tqdm` around `imap`).
    #[cfg(feature = "progress")]
    pub fn progress(mut self, show: bool) -> PoolBuilder {
        self.progress = show;
        self
    }

    fn config(&self, name: &str) -> Result<Config> {
        let initializer = match &self.initializer {
            None => None,
            Some(Ok(init)) => Some(init.clone()),
            Some(Err(why)) => return Err(Error::new(ErrorKind::Encode, format!("pool initializer: {why}"))),
        };
        let processes = self.processes.unwrap_or_else(cpu_count);
        if processes > MAX_PROCESSES {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("a pool of {processes} processes (at most {MAX_PROCESSES})"),
            ));
        }
        Ok(Config {
            processes,
            initializer,
            max_tasks_per_child: self.max_tasks_per_child,
            max_memory_per_child: self.max_memory_per_child,
            idle_timeout: self.idle_timeout.filter(|&t| t < NEVER),
            #[cfg(feature = "progress")]
            progress: self.progress,
            method: self.method,
            // Longer than a century is no timeout at all.
            task_timeout: self.task_timeout.filter(|&t| t < NEVER),
            kill_grace: self.kill_grace.min(NEVER),
            workers_start_children: false,
            name: name.to_owned(),
        })
    }

    /// Starts the pool's workers.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for zero processes; [`ErrorKind::Encode`] if the initializer's
    /// arguments cannot be encoded; [`ErrorKind::Os`] if workers cannot be started.
    ///
    /// ```
    /// assert!(multiproc::Pool::builder().processes(0).build().is_err());
    /// ```
    /// Python counterpart: `Pool(...)`.
    pub fn build(self) -> Result<Pool> {
        let config = self.config(&self.name)?;
        let in_flight = self.in_flight.unwrap_or((config.processes * 64).max(256));
        Ok(Pool {
            core: Core::start(config)?,
            in_flight,
            #[cfg(feature = "progress")]
            progress: self.progress,
        })
    }

    /// Starts an executor with these options.
    ///
    /// # Errors
    /// As [`build`](Self::build).
    ///
    /// ```
    /// let executor = multiproc::Pool::builder().processes(2).build_executor().unwrap();
    /// assert_eq!(executor.submit(|| 1, ()).unwrap().result().unwrap(), 1);
    /// ```
    /// Python counterpart: `ProcessPoolExecutor(max_workers, mp_context, initializer, initargs, max_tasks_per_child)`.
    pub fn build_executor(self) -> Result<ProcessPoolExecutor> {
        let mut config = self.config("executor")?;
        // As in CPython (and loky), an executor's workers may start processes and pools of
        // their own; those die with the worker.
        config.workers_start_children = true;
        let in_flight = self.in_flight.unwrap_or((config.processes * 64).max(256));
        Ok(ProcessPoolExecutor::from_pool(Pool {
            core: Core::start(config)?,
            in_flight,
            #[cfg(feature = "progress")]
            progress: self.progress,
        }))
    }
}

/// A pool of worker processes. See the [module docs](self).
///
/// Dropping a pool that was not joined terminates it (Python's `with Pool() as p:` exit).
///
/// ```
/// use multiproc::Pool;
/// fn shout(word: String) -> String { word.to_uppercase() }
/// let pool = Pool::new(2).unwrap();
/// assert_eq!(pool.map(shout, ["a".to_string(), "b".to_string()]).unwrap(), ["A", "B"]);
/// pool.close();
/// pool.join().unwrap();
/// ```
/// Python counterpart: `multiprocessing.Pool`.
pub struct Pool {
    pub(crate) core: Arc<dyn Backend>,
    /// Batches `imap` keeps submitted ahead of its reader.
    in_flight: usize,
    #[cfg(feature = "progress")]
    progress: bool,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("processes", &self.core.size()).finish()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if !self.core.is_finished() {
            self.core.terminate(Signal::TERM);
        }
    }
}

/// Python's `ValueError` for `chunksize=0`.
const ZERO_CHUNKSIZE: &str = "chunksize must be at least 1";

/// At most this many processes in a pool: far more than any machine runs usefully, and few
/// enough that the pool's own tables stay small.
const MAX_PROCESSES: usize = 1 << 15;

/// Timeouts and grace periods beyond this mean "never" (and no clock arithmetic overflows).
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A task's own time limit: `None` (no limit) for one beyond [`NEVER`].
pub(crate) fn own_timeout(timeout: Duration) -> Option<Duration> {
    (timeout < NEVER).then_some(timeout)
}

/// How many items `submit_items` gathers, then encodes, at a time.
const BLOCK: usize = 256;

/// The most items a default chunk of a local pool holds.
const MAX_DEFAULT_CHUNK: usize = 4096;

/// Python's default chunk size — four chunks per worker — but at most `max` items
/// ([`MAX_DEFAULT_CHUNK`] for a local pool). Python's big chunks spread the cost of a chunk (a
/// pickle, a pipe write) over many items; a local chunk of ours costs a few microseconds, while
/// a big chunk's buffers and ring space are fresh memory, whose page faults cost more than that
/// on a pool's first map. Chunks of at most 4096 items keep a map's rings and buffers to a few
/// warm pages, and still many items per chunk.
fn default_chunksize(items: usize, processes: usize, max: usize) -> usize {
    items.div_ceil(processes * 4).clamp(1, max.max(1))
}

impl Pool {
    /// A pool over a backend other than local workers (a cluster's), keeping `in_flight`
    /// batches of an `imap` ahead of its reader.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn with_backend(core: Arc<dyn Backend>, in_flight: usize, progress: bool) -> Pool {
        #[cfg(not(feature = "progress"))]
        let _ = progress;
        Pool {
            core,
            in_flight,
            #[cfg(feature = "progress")]
            progress,
        }
    }

    /// Submits `f(args)` as a batch of one, its outcome going to item 0 of `sink`, with its own
    /// time limit if any; returns the batch's id (an executor's future cancels by it).
    pub(crate) fn submit_one<F, A>(
        &self,
        args: &A,
        sink: &Arc<Collector>,
        timeout: Option<Duration>,
    ) -> std::result::Result<u64, TaskError>
    where
        F: Task<A>,
        A: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        let mut batch = single_batch::<F, A>(args, sink)?;
        batch.timeout = timeout;
        self.core.submit(vec![batch])
    }

    /// A collector for a `map`-like submission of `expected` items (unknown for `imap`), with a
    /// progress bar if the pool shows them.
    fn collector(&self, expected: Option<usize>, track_completion: bool) -> Arc<Collector> {
        let sink = Collector::new(expected, track_completion);
        #[cfg(feature = "progress")]
        if self.progress {
            let bar = indicatif::ProgressBar::new(expected.unwrap_or(0) as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} items  {per_sec}  {eta} left")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            sink.lock().progress = Some(bar);
        }
        sink
    }

    /// A pool of `processes` workers, started at once.
    ///
    /// # Errors
    /// As [`PoolBuilder::build`].
    ///
    /// ```
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// assert_eq!(pool.apply(|| "hi".to_string(), ()).unwrap(), "hi");
    /// ```
    /// Python counterpart: `Pool(processes)`.
    pub fn new(processes: usize) -> Result<Pool> {
        Pool::builder().processes(processes).build()
    }

    /// A builder for a pool with options.
    ///
    /// ```
    /// let pool = multiproc::Pool::builder().processes(1).build().unwrap();
    /// # drop(pool);
    /// ```
    /// Python counterpart: `Pool(...)` with keyword arguments.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// Submits batches of items of task `F`, whose outcomes go to `sink` from index `first` on;
    /// returns how many items there were.
    fn submit_items<F, A>(
        &self,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
        sink: &Arc<Collector>,
        first: usize,
    ) -> std::result::Result<usize, TaskError>
    where
        F: Task<A>,
        A: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        let entry = batch_entry_offset::<F, A>();
        let mut batches = Vec::new();
        let mut early = Vec::new();
        let (mut buf, mut ends, mut chunk_first) = (Vec::new(), Vec::with_capacity(chunksize.min(1 << 20)), first);
        let mut submit_every = 1;
        // The flat wire while every item so far encoded flat at the first one's size; postcard
        // from the first that did not on (the chunk before it goes flat).
        let mut wire = ItemWire::Undecided;
        // `ends` is kept for every item (it counts them); only postcard chunks send it along.
        let flush = |buf: &mut Vec<u8>, ends: &mut Vec<u64>, chunk_first: usize, batches: &mut Vec<Batch>, wire| {
            if !ends.is_empty() {
                let mut batch =
                    Batch::new(entry, std::mem::take(buf), Vec::new(), Vec::new(), sink.clone(), chunk_first);
                batch.layout = match wire {
                    ItemWire::Flat(stride) => Layout::Flat { stride: stride as u64, count: ends.len() as u64 },
                    _ => Layout::ends(std::mem::take(ends)),
                };
                ends.clear();
                batches.push(batch);
            }
        };
        let mut count = 0;
        let mut items = items.into_iter();
        // Items are gathered a block at a time before they are encoded: no user code (the
        // iterator) may run inside the encoding's scope.
        let mut chunk: Vec<A> = Vec::with_capacity(chunksize.min(BLOCK));
        loop {
            // The flat lane: once the wire is flat, items like the first go straight from the
            // iterator into the chunk's buffer, with no block gathered and no transfer scope. No
            // side table is open (checked), so an item holding a handle fails to encode flat
            // rather than slipping through; it and any other item not like the first are left in
            // `chunk` for the careful way below (as is every item inside another transfer).
            if let ItemWire::Flat(stride) = wire
                && chunk.is_empty()
                && handle::outside_transfers()
            {
                if ends.is_empty() {
                    chunk_first = first + count;
                }
                while ends.len() < chunksize {
                    let Some(item) = items.next() else { break };
                    let before = buf.len();
                    if crate::codec::flat::append(&item, &mut buf).is_err() || buf.len() - before != stride {
                        buf.truncate(before);
                        chunk.push(item);
                        break;
                    }
                    ends.push(buf.len() as u64);
                    count += 1;
                }
            }
            chunk.extend(items.by_ref().take((chunksize - ends.len() - chunk.len()).min(BLOCK)));
            if chunk.is_empty() && ends.len() < chunksize {
                break;
            }
            let mut scope = handle::EncodeScope::begin();
            for item in chunk.drain(..) {
                let index = first + count;
                count += 1;
                if ends.is_empty() {
                    chunk_first = index;
                }
                let before = buf.len();
                if wire != ItemWire::Postcard {
                    if batch::append_if_flat(&mut scope, &item, &mut buf, &mut wire) {
                        ends.push(buf.len() as u64);
                        continue;
                    }
                    // Not like the first: the chunk so far goes flat, the rest by postcard.
                    flush(&mut buf, &mut ends, chunk_first, &mut batches, wire);
                    chunk_first = index;
                    wire = ItemWire::Postcard;
                }
                match encode_one(&mut scope, &item, &mut buf) {
                    Ok(fds) if fds.is_empty() => ends.push(buf.len() as u64),
                    // An item with handles travels alone, with its descriptors.
                    Ok(fds) => {
                        let own = buf.split_off(before);
                        flush(&mut buf, &mut ends, chunk_first, &mut batches, wire);
                        let end = own.len() as u64;
                        batches.push(Batch::new(entry, own, vec![end], fds, sink.clone(), index));
                    }
                    Err(error) => {
                        buf.truncate(before);
                        scope.reset();
                        flush(&mut buf, &mut ends, chunk_first, &mut batches, wire);
                        let error = match error {
                            TaskError::ArgumentEncode(why) => TaskError::ArgumentEncode(format!("item {index}: {why}")),
                            other => other,
                        };
                        early.push(Delivery::Errors { sink: sink.clone(), first: index, n: 1, error });
                    }
                }
            }
            drop(scope);
            if ends.len() >= chunksize {
                let chunk_bytes = buf.len();
                flush(&mut buf, &mut ends, chunk_first, &mut batches, wire);
                buf = spare::take(chunk_bytes); // the next chunk is likely the same size
                // Hand batches over as they are made, so workers start while the rest is
                // encoded: the first at once, then in groups (one lock for many).
                ends.reserve(chunksize.min(1 << 20));
                if batches.len() >= submit_every {
                    self.core.submit(std::mem::take(&mut batches))?;
                    submit_every = 64;
                }
            }
        }
        flush(&mut buf, &mut ends, chunk_first, &mut batches, wire);
        self.core.submit(batches)?;
        for delivery in early {
            delivery.deliver();
        }
        Ok(count)
    }

    /// Runs `f(args)` in a worker and waits for its value.
    ///
    /// # Errors
    /// The task's [`TaskError`].
    ///
    /// ```
    /// fn add(a: i32, b: i32) -> i32 { a + b }
    /// let pool = multiproc::Pool::new(1).unwrap();
    /// assert_eq!(pool.apply(add, (2, 3)).unwrap(), 5);
    /// ```
    /// Python counterpart: `pool.apply(f, args)`.
    pub fn apply<F, A>(&self, f: F, args: A) -> std::result::Result<F::Output, TaskError>
    where
        F: Task<A>,
        A: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        self.apply_async(f, args)?.get()
    }

    /// Starts `f(args)` in a worker; the value arrives in the returned [`AsyncResult`].
    ///
    /// # Errors
    /// [`TaskError::ArgumentEncode`] if the arguments cannot be encoded (in the caller, at once);
    /// [`TaskError::Closed`] after [`close`](Self::close); [`TaskError::Broken`].
    ///
    /// ```
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// let results: Vec<_> = (0..4).map(|x| pool.apply_async(square, (x,)).unwrap()).collect();
    /// let squares: Vec<u64> = results.iter().map(|r| r.get().unwrap()).collect();
    /// assert_eq!(squares, [0, 1, 4, 9]);
    /// ```
    /// Python counterpart: `pool.apply_async(f, args)`.
    pub fn apply_async<F, A>(&self, f: F, args: A) -> std::result::Result<AsyncResult<F::Output>, TaskError>
    where
        F: Task<A>,
        A: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        let _ = f;
        self.apply_async_within::<F, A>(&args, None)
    }

    /// As [`apply_async`](Self::apply_async), with a time limit of its own: a task still running
    /// after `timeout` has its worker stopped (SIGTERM, then SIGKILL after the kill grace) and
    /// replaced, and fails with [`TaskError::TimedOut`]. It overrides the pool's
    /// [`task_timeout`](PoolBuilder::task_timeout) for this task; the clock starts when the task
    /// starts, not when it is submitted. A timeout of 100 years or more means none.
    ///
    /// # Errors
    /// As [`apply_async`](Self::apply_async).
    ///
    /// ```
    /// use std::time::Duration;
    /// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    /// let pool = multiproc::Pool::new(1).unwrap();
    /// let slow = pool.apply_async_timeout(nap, (60_000,), Duration::from_millis(100)).unwrap();
    /// assert!(matches!(slow.get(), Err(multiproc::pool::TaskError::TimedOut { .. })));
    /// let quick = pool.apply_async_timeout(nap, (1,), Duration::from_secs(30)).unwrap();
    /// assert_eq!(quick.get(), Ok(1));
    /// ```
    /// Python counterpart: pebble's `pool.schedule(f, args, timeout=t)` (none in
    /// `multiprocessing`).
    pub fn apply_async_timeout<F, A>(
        &self,
        f: F,
        args: A,
        timeout: Duration,
    ) -> std::result::Result<AsyncResult<F::Output>, TaskError>
    where
        F: Task<A>,
        A: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        let _ = f;
        self.apply_async_within::<F, A>(&args, own_timeout(timeout))
    }

    /// [`apply_async`](Self::apply_async) with its own time limit, if any.
    fn apply_async_within<F, A>(
        &self,
        args: &A,
        timeout: Option<Duration>,
    ) -> std::result::Result<AsyncResult<F::Output>, TaskError>
    where
        F: Task<A>,
        A: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        let sink = Collector::new(Some(1), false);
        self.submit_one::<F, A>(args, &sink, timeout)?;
        Ok(AsyncResult { collector: sink, assemble: assemble_one::<F::Output>, _type: PhantomData })
    }

    /// As [`apply_async`](Self::apply_async), with callbacks: `callback` gets the value, or
    /// `error_callback` the error. Both run in this process, on the pool's result thread, in the
    /// order tasks finish, before [`AsyncResult::get`] returns. A callback that panics is
    /// contained: other results keep flowing. Keep callbacks short, and never wait in one for
    /// another result of the same pool: that result would be delivered by the very thread that
    /// is waiting (Python's pool has the same rule).
    ///
    /// # Errors
    /// As [`apply_async`](Self::apply_async).
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// fn page(n: u32) -> String { format!("<html>page {n}</html>") }
    /// let parsed = Arc::new(Mutex::new(Vec::new()));
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// let results: Vec<_> = (0..3)
    ///     .map(|n| {
    ///         let parsed = parsed.clone();
    ///         pool.apply_async_with(page, (n,), move |html: &String| parsed.lock().unwrap().push(html.len()), |_| {})
    ///             .unwrap()
    ///     })
    ///     .collect();
    /// results.iter().for_each(|r| r.wait());
    /// assert_eq!(parsed.lock().unwrap().len(), 3);
    /// ```
    /// Python counterpart: `pool.apply_async(f, args, callback=cb, error_callback=ecb)`.
    pub fn apply_async_with<F, A>(
        &self,
        f: F,
        args: A,
        callback: impl FnOnce(&F::Output) + Send + 'static,
        error_callback: impl FnOnce(&TaskError) + Send + 'static,
    ) -> std::result::Result<AsyncResult<F::Output>, TaskError>
    where
        F: Task<A>,
        A: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        let _ = f;
        let sink = Collector::new(Some(1), false);
        sink.lock().on_complete = Some(Box::new(move |results: &Results| match assemble_one::<F::Output>(results) {
            Ok(value) => callback(&value),
            Err(err) => error_callback(&err),
        }));
        self.submit_one::<F, A>(&args, &sink, None)?;
        Ok(AsyncResult { collector: sink, assemble: assemble_one::<F::Output>, _type: PhantomData })
    }

    fn map_collect<F, A>(
        &self,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> std::result::Result<Arc<Collector>, TaskError>
    where
        F: Task<A>,
        A: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        let items = items.into_iter();
        // The count sets the default chunk size, as in Python; an iterator that knows its length
        // is read once, as it is encoded, instead of being collected first.
        let (low, high) = items.size_hint();
        if high != Some(low) {
            let items: Vec<A> = items.collect();
            return self.map_collect::<F, A>(items, chunksize);
        }
        if chunksize == Some(0) {
            return Err(TaskError::InvalidInput(ZERO_CHUNKSIZE.into()));
        }
        let chunksize =
            chunksize.unwrap_or_else(|| default_chunksize(low, self.core.size(), self.core.max_default_chunk()));
        let sink = self.collector(Some(low), false);
        let submitted = self.submit_items::<F, A>(items, chunksize, &sink, 0)?;
        if submitted != low {
            sink.set_expected(submitted); // the iterator's size_hint was wrong
        }
        Ok(sink)
    }

    /// `f(item)` for every item, in parallel, in input order; waits for all of them. Items go to
    /// workers in chunks: Python's default of four chunks per worker, but at most 4096 items
    /// each (a cluster's pool: no limit). Values are decoded chunk by chunk as they come back.
    ///
    /// # Errors
    /// The first failing item's [`TaskError`] in input order, once every item has finished (as
    /// Python's `map` raises). For every item's own outcome, use [`imap`](Self::imap).
    ///
    /// ```
    /// fn cube(x: i64) -> i64 { x * x * x }
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// assert_eq!(pool.map(cube, -2..=2).unwrap(), [-8, -1, 0, 1, 8]);
    /// ```
    /// Python counterpart: `pool.map(f, iterable)`.
    pub fn map<F, T>(&self, f: F, items: impl IntoIterator<Item = T>) -> std::result::Result<Vec<F::Output>, TaskError>
    where
        F: Task<(T,)>,
        T: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        let _ = f;
        let sink = self.map_collect::<F, (T,)>(items.into_iter().map(|item| (item,)), None)?;
        sink.collect_in_order()
    }

    /// [`map`](Self::map) with an explicit chunk size.
    ///
    /// # Errors
    /// As [`map`](Self::map).
    ///
    /// ```
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// assert_eq!(pool.map_chunked(|x: u8| x + 1, 0..4, 1).unwrap(), [1, 2, 3, 4]);
    /// ```
    /// Python counterpart: `pool.map(f, iterable, chunksize)`.
    pub fn map_chunked<F, T>(
        &self,
        f: F,
        items: impl IntoIterator<Item = T>,
        chunksize: usize,
    ) -> std::result::Result<Vec<F::Output>, TaskError>
    where
        F: Task<(T,)>,
        T: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        let _ = f;
        let sink = self.map_collect::<F, (T,)>(items.into_iter().map(|item| (item,)), Some(chunksize))?;
        AsyncResult { collector: sink, assemble: assemble_all::<F::Output>, _type: PhantomData }.get()
    }

    /// [`map`](Self::map) without waiting: the values arrive in an [`AsyncResult`].
    ///
    /// # Errors
    /// [`TaskError::Closed`] after [`close`](Self::close), [`TaskError::Broken`].
    ///
    /// ```
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// let pending = pool.map_async(|x: u32| x * 10, [1, 2, 3]).unwrap();
    /// assert_eq!(pending.get().unwrap(), [10, 20, 30]);
    /// ```
    /// Python counterpart: `pool.map_async(f, iterable)`.
    pub fn map_async<F, T>(
        &self,
        f: F,
        items: impl IntoIterator<Item = T>,
    ) -> std::result::Result<AsyncResult<Vec<F::Output>>, TaskError>
    where
        F: Task<(T,)>,
        T: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        let _ = f;
        let sink = self.map_collect::<F, (T,)>(items.into_iter().map(|item| (item,)), None)?;
        Ok(AsyncResult { collector: sink, assemble: assemble_all::<F::Output>, _type: PhantomData })
    }

    /// [`map_async`](Self::map_async) with callbacks, as [`apply_async_with`](Self::apply_async_with):
    /// `callback` gets every value, or `error_callback` the first error in input order.
    ///
    /// # Errors
    /// As [`map_async`](Self::map_async).
    ///
    /// ```
    /// use std::sync::mpsc;
    /// let (tx, rx) = mpsc::channel();
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// let r = pool.map_async_with(|x: u8| x, [1, 2], move |all: &Vec<u8>| tx.send(all.len()).unwrap(), |_| {}).unwrap();
    /// r.wait();
    /// assert_eq!(rx.recv().unwrap(), 2);
    /// ```
    /// Python counterpart: `pool.map_async(f, iterable, callback=cb, error_callback=ecb)`.
    pub fn map_async_with<F, T>(
        &self,
        f: F,
        items: impl IntoIterator<Item = T>,
        callback: impl FnOnce(&Vec<F::Output>) + Send + 'static,
        error_callback: impl FnOnce(&TaskError) + Send + 'static,
    ) -> std::result::Result<AsyncResult<Vec<F::Output>>, TaskError>
    where
        F: Task<(T,)>,
        T: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        let _ = f;
        let items: Vec<(T,)> = items.into_iter().map(|item| (item,)).collect();
        let chunksize = default_chunksize(items.len(), self.core.size(), self.core.max_default_chunk());
        let sink = self.collector(Some(items.len()), false);
        sink.lock().on_complete = Some(Box::new(move |results: &Results| match assemble_all::<F::Output>(results) {
            Ok(values) => callback(&values),
            Err(err) => error_callback(&err),
        }));
        self.submit_items::<F, (T,)>(items, chunksize, &sink, 0)?;
        Ok(AsyncResult { collector: sink, assemble: assemble_all::<F::Output>, _type: PhantomData })
    }

    /// `f(a, b, …)` for every tuple of arguments, in input order.
    ///
    /// # Errors
    /// As [`map`](Self::map).
    ///
    /// ```
    /// fn power(base: u64, exp: u32) -> u64 { base.pow(exp) }
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// assert_eq!(pool.starmap(power, [(2, 10), (3, 3)]).unwrap(), [1024, 27]);
    /// ```
    /// Python counterpart: `pool.starmap(f, iterable)`.
    pub fn starmap<F, A>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
    ) -> std::result::Result<Vec<F::Output>, TaskError>
    where
        F: Task<A>,
        A: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        self.starmap_async(f, items)?.get()
    }

    /// [`starmap`](Self::starmap) without waiting.
    ///
    /// # Errors
    /// As [`map_async`](Self::map_async).
    ///
    /// ```
    /// fn add(a: i32, b: i32) -> i32 { a + b }
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// assert_eq!(pool.starmap_async(add, [(1, 2), (3, 4)]).unwrap().get().unwrap(), [3, 7]);
    /// ```
    /// Python counterpart: `pool.starmap_async(f, iterable)`.
    pub fn starmap_async<F, A>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
    ) -> std::result::Result<AsyncResult<Vec<F::Output>>, TaskError>
    where
        F: Task<A>,
        A: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        let _ = f;
        let sink = self.map_collect::<F, A>(items, None)?;
        Ok(AsyncResult { collector: sink, assemble: assemble_all::<F::Output>, _type: PhantomData })
    }

    /// `f(item)` for every item, lazily: items are read and submitted a bounded number ahead of
    /// the reader, and each item's outcome comes out in input order. Works on endless iterators.
    ///
    /// # Errors
    /// [`TaskError::Closed`] after [`close`](Self::close).
    ///
    /// ```
    /// fn is_prime(n: u64) -> bool { n > 1 && (2..n).take_while(|d| d * d <= n).all(|d| n % d != 0) }
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// let primes: Vec<u64> = pool
    ///     .imap(is_prime, 0..) // endless: only what is needed is read
    ///     .unwrap()
    ///     .enumerate()
    ///     .filter(|(_, prime)| *prime.as_ref().unwrap())
    ///     .map(|(n, _)| n as u64)
    ///     .take(5)
    ///     .collect();
    /// assert_eq!(primes, [2, 3, 5, 7, 11]);
    /// ```
    /// Python counterpart: `pool.imap(f, iterable)` (which reads the whole input first).
    pub fn imap<F, I>(&self, f: F, items: I) -> std::result::Result<Imap<'_, I::IntoIter, F::Output>, TaskError>
    where
        I: IntoIterator,
        F: Task<(I::Item,)>,
        I::Item: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        self.imap_chunked(f, items, 1)
    }

    /// [`imap`](Self::imap) with `chunksize` items per batch.
    ///
    /// # Errors
    /// As [`imap`](Self::imap).
    ///
    /// ```
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// let out: Vec<u32> = pool.imap_chunked(|x: u32| x * 2, 0..100, 10).unwrap().map(Result::unwrap).collect();
    /// assert_eq!(out[99], 198);
    /// ```
    /// Python counterpart: `pool.imap(f, iterable, chunksize)`.
    pub fn imap_chunked<F, I>(
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
        self.imap_inner(f, items, chunksize, false)
    }

    /// [`imap`](Self::imap), but outcomes come out as they finish, each once.
    ///
    /// # Errors
    /// As [`imap`](Self::imap).
    ///
    /// ```
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// let mut out: Vec<u32> = pool.imap_unordered(|x: u32| x + 1, 0..5).unwrap().map(Result::unwrap).collect();
    /// out.sort();
    /// assert_eq!(out, [1, 2, 3, 4, 5]);
    /// ```
    /// Python counterpart: `pool.imap_unordered(f, iterable)`.
    pub fn imap_unordered<F, I>(
        &self,
        f: F,
        items: I,
    ) -> std::result::Result<Imap<'_, I::IntoIter, F::Output>, TaskError>
    where
        I: IntoIterator,
        F: Task<(I::Item,)>,
        I::Item: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        self.imap_inner(f, items, 1, true)
    }

    /// [`imap_unordered`](Self::imap_unordered) with `chunksize` items per batch.
    ///
    /// # Errors
    /// As [`imap`](Self::imap).
    ///
    /// ```
    /// let pool = multiproc::Pool::new(2).unwrap();
    /// assert_eq!(pool.imap_unordered_chunked(|x: u32| x, 0..50, 8).unwrap().count(), 50);
    /// ```
    /// Python counterpart: `pool.imap_unordered(f, iterable, chunksize)`.
    pub fn imap_unordered_chunked<F, I>(
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
        self.imap_inner(f, items, chunksize, true)
    }

    fn imap_inner<F, I>(
        &self,
        f: F,
        items: I,
        chunksize: usize,
        unordered: bool,
    ) -> std::result::Result<Imap<'_, I::IntoIter, F::Output>, TaskError>
    where
        I: IntoIterator,
        F: Task<(I::Item,)>,
        I::Item: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned,
    {
        let _ = f;
        if !self.core.is_open() {
            return Err(TaskError::Closed);
        }
        if chunksize == 0 {
            return Err(TaskError::InvalidInput(ZERO_CHUNKSIZE.into()));
        }
        let items = items.into_iter();
        // The progress bar's total, until the input runs out: what the iterator says it holds
        // (at least), so that the bar shows a real total for `imap` over a `Vec` or a range.
        #[cfg(feature = "progress")]
        let hinted = items.size_hint().0;
        let sink = self.collector(None, unordered);
        #[cfg(feature = "progress")]
        if let Some(bar) = &sink.lock().progress {
            bar.set_length(hinted as u64);
        }
        Ok(Imap {
            pool: self,
            items,
            submit: submit_chunk::<F, I::Item>,
            sink,
            #[cfg(feature = "progress")]
            hinted,
            chunksize,
            ahead: self.in_flight.saturating_mul(chunksize),
            submitted: 0,
            yielded: 0,
            exhausted: false,
            unordered,
            _type: PhantomData,
        })
    }

    /// Stops accepting tasks; those in hand still run. Then [`join`](Self::join).
    ///
    /// ```
    /// let pool = multiproc::Pool::new(1).unwrap();
    /// pool.close();
    /// assert_eq!(pool.apply(|| 1, ()), Err(multiproc::pool::TaskError::Closed));
    /// ```
    /// Python counterpart: `pool.close()`.
    pub fn close(&self) {
        self.core.close();
    }

    /// After [`close`](Self::close) (or [`terminate`](Self::terminate)): waits for the tasks in
    /// hand to finish and the workers to exit.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if the pool is still open (Python's `ValueError`).
    ///
    /// ```
    /// let pool = multiproc::Pool::new(1).unwrap();
    /// let r = pool.apply_async(|| 3, ()).unwrap();
    /// assert!(pool.join().is_err()); // not closed yet
    /// pool.close();
    /// pool.join().unwrap();
    /// assert_eq!(r.get().unwrap(), 3);
    /// ```
    /// Python counterpart: `pool.join()`.
    pub fn join(&self) -> Result<()> {
        if self.core.is_open() {
            return Err(Error::new(ErrorKind::InvalidInput, "join() on a pool that is still open: close() it first"));
        }
        if !self.core.is_finished() {
            self.core.join();
        }
        Ok(())
    }

    /// Stops the workers now (SIGTERM, then SIGKILL after the kill grace); unfinished tasks fail
    /// with [`TaskError::Terminated`].
    ///
    /// ```
    /// fn nap() { std::thread::sleep(std::time::Duration::from_secs(60)) }
    /// let pool = multiproc::Pool::new(1).unwrap();
    /// let r = pool.apply_async(nap, ()).unwrap();
    /// pool.terminate();
    /// assert_eq!(r.get(), Err(multiproc::pool::TaskError::Terminated));
    /// ```
    /// Python counterpart: `pool.terminate()`.
    pub fn terminate(&self) {
        self.core.terminate(Signal::TERM);
    }

    /// Makes the pool `processes` workers while it runs. Growing starts the new workers at once
    /// (on demand with an [idle timeout](PoolBuilder::idle_timeout)); shrinking takes back the
    /// batches the removed workers have not started — they go to the others — and lets each
    /// finish the batch it runs before it exits. No task fails for it.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for 0 processes (or more than the pool's limit) and on a
    /// closed pool; [`ErrorKind::Os`] if a new worker cannot be started.
    ///
    /// ```
    /// let pool = multiproc::Pool::new(1).unwrap();
    /// pool.resize(3).unwrap();
    /// assert_eq!(pool.size(), 3);
    /// assert_eq!(pool.map(|x: u32| x * 2, 0..100).unwrap().len(), 100);
    /// pool.resize(1).unwrap();
    /// assert_eq!(pool.size(), 1);
    /// ```
    /// Python counterpart: none (loky's `get_reusable_executor(max_workers=n)` resizes).
    pub fn resize(&self, processes: usize) -> Result<()> {
        self.core.resize(processes)
    }

    /// The number of workers the pool has (what [`resize`](Self::resize) last set), whether or
    /// not each is running at the moment.
    ///
    /// ```
    /// assert_eq!(multiproc::Pool::new(2).unwrap().size(), 2);
    /// ```
    /// Python counterpart: `pool._processes`.
    pub fn size(&self) -> usize {
        self.core.size()
    }

    /// Per-worker statistics: tasks done, busy and idle time, restarts.
    ///
    /// ```
    /// let pool = multiproc::Pool::new(1).unwrap();
    /// pool.apply(|| (), ()).unwrap();
    /// assert_eq!(pool.stats()[0].tasks_done, 1);
    /// ```
    /// Python counterpart: none.
    pub fn stats(&self) -> Vec<WorkerStats> {
        self.core.stats()
    }
}

/// Submits one chunk of `imap` items as a batch; the typed part of an [`Imap`].
type SubmitChunk<T> = fn(&Pool, Vec<T>, &Arc<Collector>, usize) -> std::result::Result<(), TaskError>;

fn submit_chunk<F, T>(
    pool: &Pool,
    items: Vec<T>,
    sink: &Arc<Collector>,
    first: usize,
) -> std::result::Result<(), TaskError>
where
    F: Task<(T,)>,
    T: Serialize + DeserializeOwned,
    F::Output: Serialize + DeserializeOwned,
{
    let n = items.len();
    pool.submit_items::<F, (T,)>(items.into_iter().map(|item| (item,)), n, sink, first).map(drop)
}

/// The lazy iterator of [`Pool::imap`] and friends: each item's outcome, in input order (or in
/// completion order for the `unordered` forms).
///
/// ```
/// let pool = multiproc::Pool::new(2).unwrap();
/// let mut it = pool.imap(|x: u8| x, [5, 6]).unwrap();
/// assert_eq!(it.next(), Some(Ok(5)));
/// assert_eq!(it.next(), Some(Ok(6)));
/// assert_eq!(it.next(), None);
/// ```
/// Python counterpart: `multiprocessing.pool.IMapIterator`.
pub struct Imap<'p, I: Iterator, R> {
    pool: &'p Pool,
    items: I,
    submit: SubmitChunk<I::Item>,
    sink: Arc<Collector>,
    chunksize: usize,
    /// Items kept submitted ahead of the reader.
    ahead: usize,
    /// How many items the input said it held at least (its `size_hint`).
    #[cfg(feature = "progress")]
    hinted: usize,
    submitted: usize,
    yielded: usize,
    exhausted: bool,
    unordered: bool,
    _type: PhantomData<fn() -> R>,
}

impl<I: Iterator, R> Imap<'_, I, R> {
    /// Cancels every item that has not finished: those not started yet never run, and running
    /// ones have their workers stopped (SIGTERM, then SIGKILL after the kill grace; the pool
    /// replaces them). No more input is read. The iterator then yields the items that had
    /// finished and [`TaskError::Cancelled`] for the others; returns how many were cancelled.
    ///
    /// ```
    /// fn nap(ms: u64) -> u64 { std::thread::sleep(std::time::Duration::from_millis(ms)); ms }
    /// let executor = multiproc::ProcessPoolExecutor::new(1).unwrap();
    /// let mut results = executor.map(nap, [0, 60_000, 60_000], 1).unwrap();
    /// assert_eq!(results.next(), Some(Ok(0)));
    /// assert_eq!(results.cancel(), 2);
    /// assert!(results.all(|r| r == Err(multiproc::pool::TaskError::Cancelled)));
    /// ```
    /// Python counterpart: `future.cancel()` on each of the map's futures (which in Python
    /// cannot stop a running one).
    pub fn cancel(&mut self) -> usize {
        self.exhausted = true;
        self.sink.set_expected(self.submitted);
        self.pool.core.cancel_submission(&self.sink, true)
    }
}

/// Dropping the iterator before its end cancels the items that have not started (they never
/// run); running ones finish, and their results are dropped. As Python's `executor.map`
/// generator does when it is closed.
impl<I: Iterator, R> Drop for Imap<'_, I, R> {
    fn drop(&mut self) {
        if self.submitted > self.yielded {
            self.pool.core.cancel_submission(&self.sink, false);
        }
    }
}

impl<I: Iterator, R: DeserializeOwned> Imap<'_, I, R> {
    fn top_up(&mut self) {
        while !self.exhausted && self.submitted - self.yielded < self.ahead {
            let chunk: Vec<I::Item> = self.items.by_ref().take(self.chunksize).collect();
            if chunk.len() < self.chunksize {
                self.exhausted = true;
            }
            if chunk.is_empty() {
                break;
            }
            let (first, n) = (self.submitted, chunk.len());
            self.submitted += n;
            if let Err(error) = (self.submit)(self.pool, chunk, &self.sink, first) {
                Delivery::Errors { sink: self.sink.clone(), first, n, error }.deliver();
            }
        }
        #[cfg(feature = "progress")]
        if let Some(bar) = &self.sink.lock().progress {
            // What is known of the input so far: the hint until the input ran out or outgrew it.
            let known = if self.exhausted { self.submitted } else { self.submitted.max(self.hinted) };
            bar.set_length(known as u64);
        }
        if self.exhausted {
            self.sink.set_expected(self.submitted);
        }
    }
}

impl<I: Iterator, R: DeserializeOwned> Iterator for Imap<'_, I, R> {
    type Item = std::result::Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.top_up();
        if self.exhausted && self.yielded == self.submitted {
            return None;
        }
        let interest = if self.unordered { Interest::Any } else { Interest::Item(self.yielded) };
        let sink = self.sink.clone();
        let mut c = sink.wait_until(None, interest, |c| self.next_is_in(c)).expect("no deadline");
        Some(self.take_next(&mut c))
    }
}

impl<I: Iterator, R: DeserializeOwned> Imap<'_, I, R> {
    /// Whether the item to yield next has finished.
    fn next_is_in(&self, c: &Collected) -> bool {
        if self.unordered { !c.completion.is_empty() } else { c.results.finished(self.yielded) }
    }

    /// Takes the item to yield next, which has finished.
    fn take_next(&mut self, c: &mut Collected) -> std::result::Result<R, TaskError> {
        let index = if self.unordered { c.completion.pop_front().expect("one is in") } else { self.yielded };
        let outcome = c.results.take::<R>(index).expect("it is in");
        self.yielded += 1;
        outcome
    }
}

/// An `imap` is also a [`Stream`](futures_core::Stream) of the same items, for async code: the
/// task waits for the next item without blocking its thread (see [`asyncio`](crate::asyncio)).
/// Input is read and submitted in the poll, as the iterator does in `next`.
///
/// ```
/// use std::future::poll_fn;
/// use std::pin::Pin;
/// use futures_core::Stream;
///
/// fn square(x: u64) -> u64 { x * x }
/// let pool = multiproc::Pool::new(2).unwrap();
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// rt.block_on(async {
///     let mut squares = pool.imap(square, 1..=3).unwrap();
///     let mut got = Vec::new();
///     // `futures::StreamExt::next` does this; the poll is spelled out here.
///     while let Some(square) = poll_fn(|cx| Pin::new(&mut squares).poll_next(cx)).await {
///         got.push(square.unwrap());
///     }
///     assert_eq!(got, [1, 4, 9]);
/// });
/// ```
/// Python counterpart: none (`IMapIterator` is not an async iterator).
impl<I: Iterator + Unpin, R: DeserializeOwned> futures_core::Stream for Imap<'_, I, R> {
    type Item = std::result::Result<R, TaskError>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let this = self.get_mut();
        this.top_up();
        if this.exhausted && this.yielded == this.submitted {
            return std::task::Poll::Ready(None);
        }
        let sink = this.sink.clone();
        let mut c = sink.lock();
        if !this.next_is_in(&c) {
            if !c.item_wakers.iter().any(|w| w.will_wake(cx.waker())) {
                c.item_wakers.push(cx.waker().clone());
            }
            return std::task::Poll::Pending;
        }
        std::task::Poll::Ready(Some(this.take_next(&mut c)))
    }
}

#[cfg(all(test, feature = "progress"))]
mod tests {
    use super::{Imap, Pool};

    fn same(x: u32) -> u32 {
        x
    }

    fn length<I: Iterator>(it: &Imap<'_, I, u32>) -> Option<u64> {
        it.sink.lock().progress.as_ref().and_then(|bar| bar.length())
    }

    fn slow(x: u32) -> u32 {
        std::thread::sleep(std::time::Duration::from_millis(10));
        x
    }

    #[test]
    fn the_bar_moves_per_item_inside_chunks_still_running() {
        let pool = Pool::builder().processes(2).progress(true).build().unwrap();
        // Let the pool settle, with nothing to watch, before the work comes: the ticker must be
        // woken by the submission.
        pool.apply(slow, (0,)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        // 400 items of 10 ms in Python's chunks (of 50 here): each chunk runs half a second.
        let result = pool.map_async(slow, (0..400u32).collect::<Vec<_>>()).unwrap();
        let mut seen_inside = false;
        while !result.ready() {
            let c = result.collector.lock();
            let position = c.progress.as_ref().map_or(0, |bar| bar.position());
            if position > 0 && c.finished == 0 {
                seen_inside = true; // items counted while no chunk had finished
            }
            drop(c);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(seen_inside, "the bar moved only when chunks finished");
        assert_eq!(result.get().unwrap().len(), 400);
        let c = result.collector.lock();
        assert_eq!(c.progress.as_ref().map(|bar| bar.position()), Some(400));
    }

    #[test]
    fn imap_takes_its_progress_total_from_the_input_and_settles_on_what_came() {
        let pool = Pool::builder().processes(2).progress(true).build().unwrap();
        let mut it = pool.imap(same, 0..1000u32).unwrap();
        assert_eq!(length(&it), Some(1000));
        assert_eq!(it.next().unwrap().unwrap(), 0);
        assert_eq!(length(&it), Some(1000), "the input's length, not the items submitted so far");
        assert_eq!(it.by_ref().count(), 999);
        assert_eq!(length(&it), Some(1000));
        // An input that does not know its length: the total is what was read so far.
        let mut it = pool.imap(same, (0..1000u32).filter(|x| x % 2 == 0)).unwrap();
        assert_eq!(length(&it), Some(0));
        it.next().unwrap().unwrap();
        assert!(length(&it).unwrap() >= 1);
        assert_eq!(it.by_ref().count(), 499);
        assert_eq!(length(&it), Some(500));
        pool.close();
        pool.join().unwrap();
    }
}
