//! The parent side of a pool: workers, batches, dispatch, and the two threads that keep it going.
//!
//! - The **result thread** takes every [`Report`] off the shared report queue, in order: finished
//!   batches (delivered to their collectors, and the worker is given more), failed initializers,
//!   and ended workers. It is the only thread that changes the set of workers.
//! - The **supervisor thread** sleeps in `poll` on every worker's pidfd and on a wake-up eventfd,
//!   with a deadline when a task timeout is due. When a worker ends it puts `Ended` on the report
//!   queue — behind everything that worker reported before it died, so its finished batches are
//!   never mistaken for lost ones. When a task runs past its timeout it sends SIGTERM, then
//!   SIGKILL after a grace period.
//!
//! Each worker has its own order queue and a few batches in hand (two to sixteen: as many as
//! keep it busy for [`PREFETCH_HORIZON_NS`] by how long its batches take); the rest wait
//! in the parent, so a batch is always in exactly one place: pending here, in one worker's hands,
//! or finished. That is what lets a dead worker's batches be sorted out exactly (see `worker`).
//! Batches in a worker's hands that it has not started can be taken back (a fence in its slot
//! that its claim of each order must pass): when another worker goes idle, and when they are
//! cancelled.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_bytes::ByteBuf;

use crate::connection::{Connection, pipe};
use crate::error::{Error, ErrorKind, Result};
use crate::handle::Fd;
use crate::pool::result::{Collector, Delivery, TaskError};
use crate::pool::worker::{self, Layout, Order, Packed, Report, Setup, Slot, Wire};
use crate::process::{ExitStatus, JoinError, Process, Signal, StartMethod};
use crate::queue::Queue;
use crate::shm::Shared;
use crate::sys;

/// Batches a worker holds at least (the one it runs and one more), and at most.
const PREFETCH: usize = 2;
const MAX_PREFETCH: usize = 16;
/// A worker holds enough batches to keep it busy this long without the parent: short tasks get
/// a deeper queue (so a worker never waits for a parent that shares its CPUs), long ones a
/// shallow one (so the queue behind a long task does not idle the other workers).
const PREFETCH_HORIZON_NS: u64 = 200_000;

/// A worker initializer: its entry, encoded arguments and the descriptors of their handles.
pub(crate) type Initializer = (i64, ByteBuf, Arc<Vec<OwnedFd>>);

/// How a pool is set up (from its builder).
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) processes: usize,
    pub(crate) initializer: Option<Initializer>,
    pub(crate) max_tasks_per_child: u64,
    /// Replace a worker whose resident memory passed this many bytes (0: never).
    pub(crate) max_memory_per_child: u64,
    /// A worker idle this long exits, and its place is filled again when work comes.
    pub(crate) idle_timeout: Option<Duration>,
    /// Submissions have progress bars, which the supervisor moves per item.
    #[cfg(feature = "progress")]
    pub(crate) progress: bool,
    pub(crate) method: Option<StartMethod>,
    pub(crate) task_timeout: Option<Duration>,
    /// Between SIGTERM and SIGKILL for a worker being stopped.
    pub(crate) kill_grace: Duration,
    pub(crate) name: String,
    /// Whether workers may start children (an executor's may; a `Pool`'s are daemons, as in
    /// Python). Either way the pool terminates its workers at exit.
    pub(crate) workers_start_children: bool,
}

impl Config {
    /// Whether the supervisor moves progress bars per item (see `running_items`).
    fn ticks_progress(&self) -> bool {
        #[cfg(feature = "progress")]
        return self.progress;
        #[cfg(not(feature = "progress"))]
        false
    }
}

/// One submitted batch: items of one submission run by one worker in one go.
pub(crate) struct Batch {
    /// The task's batch entry.
    pub(crate) entry: i64,
    /// The items' encoded arguments, packed; item `i` ends at `ends[i]`.
    pub(crate) args: Packed,
    pub(crate) layout: Layout,
    /// Descriptors for the (single) item's handles.
    pub(crate) fds: Vec<OwnedFd>,
    pub(crate) sink: Arc<Collector>,
    /// Index in the sink of the first item.
    pub(crate) first: usize,
    /// The worker holding it, if dispatched, and the order's number there.
    worker: Option<u32>,
    seq: u32,
    /// Its own time limit per item, over the pool's `task_timeout`.
    pub(crate) timeout: Option<Duration>,
}

impl Batch {
    pub(crate) fn new(
        entry: i64,
        args: Vec<u8>,
        ends: Vec<u64>,
        fds: Vec<OwnedFd>,
        sink: Arc<Collector>,
        first: usize,
    ) -> Batch {
        Batch {
            entry,
            args: Packed(Arc::new(args)),
            layout: Layout::ends(ends),
            fds,
            sink,
            first,
            worker: None,
            seq: 0,
            timeout: None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.layout.len()
    }

    /// Items `range` as a batch of their own (without descriptors).
    fn part(&self, range: std::ops::Range<usize>) -> Batch {
        let (start, end) = match range.len() {
            0 => (0, 0),
            _ => (self.layout.range(range.start).start, self.layout.range(range.end - 1).end),
        };
        let args = self.args.0[start..end].to_vec();
        let mut part =
            Batch::new(self.entry, args, Vec::new(), Vec::new(), self.sink.clone(), self.first + range.start);
        part.layout = match &self.layout {
            Layout::Ends(ends) => Layout::ends(ends.0[range].iter().map(|e| e - start as u64).collect()),
            Layout::Flat { stride, .. } => Layout::Flat { stride: *stride, count: range.len() as u64 },
        };
        part
    }

    fn fail(self, error: TaskError) -> Delivery {
        Delivery::Errors { n: self.len(), sink: self.sink, first: self.first, error }
    }
}

/// Why the parent is stopping a worker.
#[derive(Clone, Copy, Debug)]
enum Stopping {
    /// Item `item` of `batch` ran past the timeout.
    Timeout { batch: u64, item: u32 },
    /// Batch `batch` was cancelled while item `item` ran.
    Cancel { batch: u64 },
    /// The pool is being terminated.
    Terminate,
}

struct WorkerHandle {
    process: Process<()>,
    pid: u32,
    pidfd: Arc<OwnedFd>,
    orders: Queue<Order>,
    handles: Connection<Vec<Fd>>,
    slot: Shared<Slot>,
    in_flight: VecDeque<u64>,
    /// The supervisor has seen it end (an `Ended` report is on its way).
    ended: bool,
    stopping: Option<Stopping>,
    kill_at: Option<Instant>,
    /// Told to stop: its exit is expected.
    retiring: bool,
    /// Orders sent so far (the last order's number).
    sent: u32,
    /// The batch it was running when its other batches were taken back: until that one is done,
    /// it gets nothing new (it would only sit behind it again, next to the skipped orders).
    held_back: Option<u64>,
    /// Since when it has had nothing to do (`None` while it holds batches).
    idle_since: Option<Instant>,
    /// When its order ring last had no room for an order: nothing more is offered to it until it
    /// reports a batch or [`FULL_RETRY`] has passed. Orders are never waited for — the thread
    /// that hands them out also takes the reports, and a worker blocked on a full report ring
    /// would never make room for them.
    full_since: Option<Instant>,
    /// Told to stop for good (idle past the pool's idle timeout, or its place removed by a
    /// shrink): its place is not filled when it ends.
    leaving: bool,
}

impl WorkerHandle {
    /// Whether it may be given a batch now.
    fn can_take(&self) -> bool {
        !self.ended
            && self.stopping.is_none()
            && !self.retiring
            && self.full_since.is_none()
            && self.in_flight.len() < self.prefetch()
            && self.held_back.is_none_or(|b| !self.in_flight.contains(&b))
    }

    /// How many batches this worker should hold, from how long its batches have taken so far.
    fn prefetch(&self) -> usize {
        let (done, busy) = (self.slot.batches_done(), self.slot.busy().as_nanos() as u64);
        if done < 4 {
            return PREFETCH;
        }
        let per_batch = (busy / done).max(1);
        ((PREFETCH_HORIZON_NS / per_batch) as usize).clamp(PREFETCH, MAX_PREFETCH)
    }
}

/// Statistics of one worker place, across the processes that filled it.
#[derive(Clone, Debug, Default)]
struct PlaceStats {
    restarts: u32,
    items_before: u64,
    busy_before: Duration,
    since: Option<Instant>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Running,
    /// No new submissions; work in hand goes on.
    Closed,
    /// Workers killed, everything unfinished failed.
    Terminated,
}

pub(crate) struct State {
    /// Worker places; `None` where nobody is (an idle worker left, or a start failed). Places
    /// at `target` and beyond are being removed by a shrink.
    workers: Vec<Option<WorkerHandle>>,
    /// How many places the pool has (its size; `resize` changes it).
    target: usize,
    stats: Vec<PlaceStats>,
    batches: HashMap<u64, Batch>,
    pending: VecDeque<u64>,
    next_batch: u64,
    pub(crate) phase: Phase,
    broken: Option<String>,
    /// Workers in a row that ended before becoming ready.
    startup_deaths: u32,
    /// Set when every thread should end.
    finished: bool,
}

/// The shared core of a [`Pool`](crate::Pool) or an executor.
pub(crate) struct Core {
    pub(crate) config: Config,
    state: Mutex<State>,
    /// Signalled whenever batches finish (for `join`).
    drained: Condvar,
    reports: Queue<Report>,
    /// Written to wake the supervisor when workers or deadlines change.
    wake: OwnedFd,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Per-worker statistics, from [`Pool::stats`](crate::Pool::stats).
///
/// ```
/// let pool = multiproc::Pool::new(2).unwrap();
/// pool.map(|x: u32| x + 1, 0..100).unwrap();
/// let stats = pool.stats();
/// assert_eq!(stats.len(), 2);
/// assert_eq!(stats.iter().map(|s| s.tasks_done).sum::<u64>(), 100);
/// ```
/// Python counterpart: none (mpire's `worker_insights` is the nearest).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WorkerStats {
    /// The pid of the process now in this place (`None` if there is none at the moment).
    pub pid: Option<u32>,
    /// Items finished in this place, by all the processes that held it.
    pub tasks_done: u64,
    /// Time spent running items.
    pub busy: Duration,
    /// Time alive and not running items.
    pub idle: Duration,
    /// Processes started to replace ended ones (after a crash, a timeout, `max_tasks_per_child` or
    /// `max_memory_per_child`).
    pub restarts: u32,
}

/// Outcomes to deliver once the state lock is released.
type Deliveries = Vec<Delivery>;

impl Core {
    /// Starts the workers and the two threads.
    pub(crate) fn start(config: Config) -> Result<Arc<Core>> {
        if config.processes == 0 {
            return Err(Error::new(ErrorKind::InvalidInput, "a pool needs at least one process"));
        }
        let wake = sys::poll::eventfd().map_err(|e| Error::os("eventfd", e))?;
        let core = Arc::new(Core {
            state: Mutex::new(State {
                workers: (0..config.processes).map(|_| None).collect(),
                target: config.processes,
                stats: vec![PlaceStats::default(); config.processes],
                batches: HashMap::new(),
                pending: VecDeque::new(),
                next_batch: 0,
                phase: Phase::Running,
                broken: None,
                startup_deaths: 0,
                finished: false,
            }),
            drained: Condvar::new(),
            reports: Queue::new()?,
            wake,
            threads: Mutex::new(Vec::new()),
            config,
        });
        {
            let mut st = core.lock();
            for index in 0..core.config.processes as u32 {
                if let Err(err) = core.spawn_worker(&mut st, index) {
                    for w in st.workers.iter_mut().flatten() {
                        let _ = w.process.kill();
                        let _ = w.process.join();
                    }
                    return Err(err);
                }
            }
        }
        let results = {
            let core = core.clone();
            std::thread::Builder::new()
                .name(format!("{}-results", core.config.name))
                .spawn(move || core.result_loop())
                .map_err(|e| Error::os("starting the pool's result thread", e))?
        };
        let supervisor = {
            let core = core.clone();
            std::thread::Builder::new()
                .name(format!("{}-supervisor", core.config.name))
                .spawn(move || core.supervise())
                .map_err(|e| Error::os("starting the pool's supervisor thread", e))?
        };
        core.threads.lock().unwrap_or_else(|p| p.into_inner()).extend([results, supervisor]);
        Ok(core)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn wake_supervisor(&self) {
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }

    fn spawn_worker(&self, st: &mut State, index: u32) -> Result<()> {
        let (handles, worker_handles) = pipe::<Vec<Fd>>()?;
        let orders = Queue::new()?;
        let slot = Shared::new(Slot::new())?;
        let setup = Setup {
            worker: index,
            orders: orders.clone(),
            reports: self.reports.clone(),
            handles: worker_handles,
            slot: slot.clone(),
            initializer: match &self.config.initializer {
                None => None,
                Some((entry, args, fds)) => {
                    let fds = fds.iter().map(|fd| fd.try_clone().map(Fd::from)).collect::<std::io::Result<Vec<Fd>>>();
                    Some((*entry, args.clone(), fds.map_err(|e| Error::os("duplicating a handle", e))?))
                }
            },
            max_batches: self.config.max_tasks_per_child,
            max_memory: self.config.max_memory_per_child,
            timed: self.config.task_timeout.is_some(),
        };
        let mut builder = Process::builder()
            .name(format!("{}-worker-{index}", self.config.name))
            .daemon(true)
            .daemon_may_start_children(self.config.workers_start_children);
        if let Some(method) = self.config.method {
            builder = builder.start_method(method);
        }
        let mut process = builder.spawn(worker::worker_main, (setup,))?;
        let pid = process.pid();
        let pidfd = match process.sentinel().try_clone_to_owned() {
            Ok(pidfd) => Arc::new(pidfd),
            Err(e) => {
                // A worker nobody can watch must not be left waiting for orders.
                let _ = process.kill();
                let _ = process.join();
                return Err(Error::os("duplicating a pidfd", e));
            }
        };
        st.stats[index as usize].since.get_or_insert_with(Instant::now);
        st.workers[index as usize] = Some(WorkerHandle {
            process,
            pid,
            pidfd,
            orders,
            handles,
            slot,
            in_flight: VecDeque::new(),
            ended: false,
            stopping: None,
            kill_at: None,
            retiring: false,
            sent: 0,
            held_back: None,
            idle_since: Some(Instant::now()),
            full_since: None,
            leaving: false,
        });
        self.wake_supervisor();
        Ok(())
    }

    /// Queues batches for dispatch (under the state lock) and dispatches what fits.
    pub(crate) fn submit(&self, st: &mut State, batches: Vec<Batch>) -> std::result::Result<(), TaskError> {
        if st.phase != Phase::Running {
            return Err(TaskError::Closed);
        }
        if let Some(why) = &st.broken {
            return Err(TaskError::Broken(why.clone()));
        }
        for batch in batches {
            let id = st.next_batch;
            st.next_batch += 1;
            st.batches.insert(id, batch);
            st.pending.push_back(id);
        }
        self.dispatch(st);
        Ok(())
    }

    /// Gives pending batches to workers with room, the least loaded first; then, while a worker
    /// is idle and batches wait unstarted behind a running one elsewhere, takes those back and
    /// gives them out again — a short task never waits on a long neighbour while a worker idles.
    fn dispatch(&self, st: &mut State) {
        // Each round leaves one more worker busy, so this many rounds are enough.
        for _ in 0..=st.workers.len() {
            self.hand_out(st);
            if !st.pending.is_empty() || !self.rebalance(st) {
                return;
            }
        }
    }

    /// If a worker is idle and another holds batches it has not started behind one it runs,
    /// takes the waiting ones back to the front of the queue; returns whether it did.
    fn rebalance(&self, st: &mut State) -> bool {
        if !st.workers.iter().flatten().any(|w| w.can_take() && w.in_flight.is_empty()) {
            return false;
        }
        let victim = st
            .workers
            .iter()
            .enumerate()
            .filter_map(|(i, w)| w.as_ref().map(|w| (i, w)))
            .filter(|(_, w)| !w.ended && w.stopping.is_none())
            .map(|(i, w)| {
                let claimed = w.slot.claimed();
                let seqs = w.in_flight.iter().map(|id| st.batches[id].seq);
                let (started, waiting) =
                    seqs.fold((0, 0), |(s, n), seq| if seq <= claimed { (s + 1, n) } else { (s, n + 1) });
                (i, started, waiting)
            })
            .filter(|&(_, started, waiting)| started > 0 && waiting > 0)
            .max_by_key(|&(_, _, waiting)| waiting);
        let Some((index, _, _)) = victim else { return false };
        let back = take_back(st, index);
        let w = st.workers[index].as_mut().expect("chosen above");
        w.held_back = w.in_flight.front().copied();
        for &id in back.iter().rev() {
            st.pending.push_front(id);
        }
        !back.is_empty()
    }

    /// Gives pending batches to workers with room, the least loaded first; fills an empty place
    /// (a worker that left idle) when nobody has room.
    fn hand_out(&self, st: &mut State) {
        while let Some(&id) = st.pending.front() {
            let chosen = st
                .workers
                .iter()
                .enumerate()
                .filter_map(|(i, w)| w.as_ref().map(|w| (i, w)))
                .filter(|(_, w)| w.can_take())
                .min_by_key(|(_, w)| w.in_flight.len())
                .map(|(i, _)| i);
            let index = match chosen {
                Some(index) => index,
                None => match self.fill_empty_place(st) {
                    Some(index) => index,
                    None => return,
                },
            };
            st.pending.pop_front();
            let batch = st.batches.get_mut(&id).expect("pending batches are known");
            let worker = st.workers[index].as_mut().expect("chosen above");
            worker.sent += 1;
            batch.seq = worker.sent;
            let sent = send(worker, id, batch);
            if sent == Sent::Full {
                // Offered again once it has made room (see `full_since`).
                worker.sent -= 1;
                worker.full_since = Some(Instant::now());
                st.pending.push_front(id);
                continue;
            }
            if sent == Sent::Yes {
                batch.worker = Some(index as u32);
                worker.in_flight.push_back(id);
                worker.idle_since = None;
                if self.config.task_timeout.is_some() || batch.timeout.is_some() || self.config.ticks_progress() {
                    // The supervisor must start watching this batch's clock (or, for progress
                    // bars, start counting the items of running chunks).
                    self.wake_supervisor();
                }
            } else {
                // The worker cannot take orders (it is dying): the batch waits for another, and
                // this worker's end is handled when the supervisor sees it.
                st.pending.push_front(id);
                worker.retiring = true;
            }
        }
    }

    /// Starts a worker in an empty place below the target, if the pool is open and there is one;
    /// returns its index.
    fn fill_empty_place(&self, st: &mut State) -> Option<usize> {
        if st.phase == Phase::Terminated || st.broken.is_some() {
            return None;
        }
        let index = (0..st.target.min(st.workers.len())).find(|&i| st.workers[i].is_none())?;
        match self.spawn_worker(st, index as u32) {
            Ok(()) => Some(index),
            Err(_err) => {
                crate::trace::event!(warn, pool = %self.config.name, worker = index, error = %_err, "a pool worker could not be started");
                None
            }
        }
    }

    /// Makes the pool `n` places: new places get a worker at once; removed ones (the last) give
    /// back the batches they have not started, finish the one they run, and end.
    pub(crate) fn resize(&self, n: usize) -> Result<()> {
        if n == 0 || n > super::MAX_PROCESSES {
            return Err(Error::new(ErrorKind::InvalidInput, format!("a pool of {n} processes")));
        }
        let mut st = self.lock();
        if st.phase != Phase::Running {
            return Err(Error::new(ErrorKind::InvalidInput, "the pool is closed"));
        }
        st.target = n;
        // Growing: places removed by an earlier shrink that have not ended yet stay as they are
        // (they end, and their place is filled below or by `hand_out`).
        while st.workers.len() < n {
            st.workers.push(None);
            st.stats.push(PlaceStats::default());
        }
        for index in 0..n {
            // Without an idle timeout every place has a worker; with one, places fill on demand.
            if st.workers[index].is_none() && self.config.idle_timeout.is_none() {
                self.spawn_worker(&mut st, index as u32)?;
            }
        }
        // Shrinking: the places past `n` wind down.
        for index in n..st.workers.len() {
            let back = take_back(&mut st, index);
            for &id in back.iter().rev() {
                st.pending.push_front(id);
            }
            if let Some(w) = st.workers[index].as_mut() {
                w.leaving = true;
                if !w.retiring {
                    w.retiring = true;
                    let _ = w.orders.try_put(Order::Stop);
                }
            }
        }
        self.trim_places(&mut st);
        self.dispatch(&mut st);
        Ok(())
    }

    /// Drops the empty places past the target from the end.
    fn trim_places(&self, st: &mut State) {
        while st.workers.len() > st.target && st.workers.last().is_some_and(Option::is_none) {
            st.workers.pop();
            st.stats.pop();
        }
    }

    /// The pool's size now.
    pub(crate) fn size(&self) -> usize {
        self.lock().target
    }

    /// Waits until no batch is pending or in flight.
    pub(crate) fn wait_drained(&self) {
        let mut st = self.lock();
        while !st.batches.is_empty() && st.phase != Phase::Terminated {
            st = self.drained.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Closes the pool to new submissions; workers exit as soon as they have nothing to do.
    pub(crate) fn close(&self) {
        let mut st = self.lock();
        if st.phase == Phase::Running {
            st.phase = Phase::Closed;
        }
        self.retire_idle(&mut st);
    }

    /// In a closed pool with nothing left to hand out: tells every idle worker to exit, as
    /// Python's workers do once a closed pool's queue is empty (none is replaced: see
    /// `on_ended`).
    fn retire_idle(&self, st: &mut State) {
        if st.phase != Phase::Closed || !st.pending.is_empty() {
            return;
        }
        for w in st.workers.iter_mut().flatten() {
            if w.in_flight.is_empty() && !w.ended && !w.retiring && w.stopping.is_none() {
                w.retiring = true;
                let _ = w.orders.try_put(Order::Stop);
            }
        }
    }

    /// After `close`: waits for the work in hand, stops the workers and the threads.
    pub(crate) fn join(&self) {
        self.wait_drained();
        {
            let mut st = self.lock();
            for w in st.workers.iter_mut().flatten() {
                w.retiring = true;
                let _ = w.orders.put_timeout(Order::Stop, Duration::from_secs(1));
            }
        }
        self.finish();
    }

    /// Kills the workers (SIGTERM, then SIGKILL after the grace period), fails everything
    /// unfinished with [`TaskError::Terminated`], and stops the threads.
    pub(crate) fn terminate(&self, signal: Signal) {
        let deliveries = {
            let mut st = self.lock();
            if st.finished {
                return;
            }
            st.phase = Phase::Terminated;
            let now = Instant::now();
            for w in st.workers.iter_mut().flatten() {
                w.stopping = Some(Stopping::Terminate);
                w.kill_at = Some(now + self.config.kill_grace);
                let _ = w.process.signal(signal);
            }
            let deliveries: Deliveries =
                st.batches.drain().map(|(_, batch)| batch.fail(TaskError::Terminated)).collect();
            st.pending.clear();
            for w in st.workers.iter_mut().flatten() {
                w.in_flight.clear();
            }
            deliveries
        };
        self.drained.notify_all();
        deliver(deliveries);
        self.wake_supervisor();
        self.finish();
    }

    /// Waits for every worker to end, then ends the threads.
    fn finish(&self) {
        {
            let mut st = self.lock();
            st.phase = if st.phase == Phase::Running { Phase::Closed } else { st.phase };
        }
        // The result thread reaps the workers as their `Ended` reports come in; wait for that.
        let mut st = self.lock();
        while st.workers.iter().any(Option::is_some) {
            st = self.drained.wait_timeout(st, Duration::from_millis(50)).unwrap_or_else(|p| p.into_inner()).0;
        }
        st.finished = true;
        drop(st);
        let _ = self.reports.put(Report::Wake);
        self.wake_supervisor();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for thread in threads {
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.lock().finished
    }

    /// Cancels batch `id` if it has not finished; returns whether it was cancelled. Its outcome
    /// becomes [`TaskError::Cancelled`] at once. A batch not started yet (in the parent or in a
    /// worker's hands) is dropped; a running one has its worker stopped (SIGTERM, then SIGKILL)
    /// and replaced.
    pub(crate) fn cancel(&self, id: u64) -> bool {
        let mut st = self.lock();
        let Some(batch) = st.batches.get(&id) else { return false };
        let cancelled = Delivery::Errors {
            sink: batch.sink.clone(),
            first: batch.first,
            n: batch.len(),
            error: TaskError::Cancelled,
        };
        match batch.worker {
            None => {
                st.pending.retain(|&b| b != id);
                st.batches.remove(&id);
            }
            Some(index) => self.cancel_held(&mut st, index as usize, id, true),
        }
        self.dispatch(&mut st);
        drop(st);
        self.wake_supervisor();
        self.drained.notify_all();
        cancelled.deliver();
        true
    }

    /// Cancels batch `id`, held by worker `index`: taken back if it has not started (the worker's
    /// other waiting batches go back to the queue), or, with `running`, its worker stopped if it
    /// runs. One the worker finished but has not reported yet is simply forgotten.
    fn cancel_held(&self, st: &mut State, index: usize, id: u64, running: bool) {
        let back = take_back(st, index);
        for &other in back.iter().rev().filter(|&&other| other != id) {
            st.pending.push_front(other);
        }
        if back.contains(&id) {
            st.batches.remove(&id);
            return;
        }
        let grace = self.config.kill_grace;
        let w = st.workers[index].as_mut().expect("a batch's worker is present");
        if running && w.stopping.is_none() && w.slot.running().is_some_and(|(b, _, _)| b == id) {
            w.stopping = Some(Stopping::Cancel { batch: id });
            w.kill_at = Some(Instant::now() + grace);
            let _ = w.process.terminate();
        }
    }

    /// Cancels every unfinished batch of one submission: those not started are dropped, and
    /// with `running`, running ones have their workers stopped (their outcome is
    /// [`TaskError::Cancelled`]); without, they finish and their outcome is ignored. Returns how
    /// many items were cancelled.
    pub(crate) fn cancel_submission(&self, sink: &Arc<Collector>, running: bool) -> usize {
        let mut st = self.lock();
        let mut ids: Vec<u64> =
            st.batches.iter().filter(|(_, b)| Arc::ptr_eq(&b.sink, sink)).map(|(&id, _)| id).collect();
        ids.sort_unstable();
        let mut deliveries = Deliveries::new();
        let mut n = 0;
        for id in ids {
            let Some(batch) = st.batches.get(&id) else { continue };
            let (worker, len) = (batch.worker, batch.len());
            let cancelled = Delivery::Errors {
                sink: batch.sink.clone(),
                first: batch.first,
                n: batch.len(),
                error: TaskError::Cancelled,
            };
            match worker {
                None => {
                    st.pending.retain(|&b| b != id);
                    st.batches.remove(&id);
                }
                Some(index) => {
                    self.cancel_held(&mut st, index as usize, id, running);
                    if st.batches.contains_key(&id) && !running {
                        continue;
                    }
                }
            }
            n += len;
            deliveries.push(cancelled);
        }
        self.dispatch(&mut st);
        drop(st);
        self.wake_supervisor();
        self.drained.notify_all();
        deliver(deliveries);
        n
    }

    /// Cancels every batch still waiting in the parent.
    pub(crate) fn cancel_pending(&self) {
        let deliveries: Deliveries = {
            let mut st = self.lock();
            let pending: Vec<u64> = st.pending.drain(..).collect();
            pending.into_iter().filter_map(|id| st.batches.remove(&id)).map(|b| b.fail(TaskError::Cancelled)).collect()
        };
        self.drained.notify_all();
        deliver(deliveries);
    }

    /// Whether batch `id` is being run right now.
    pub(crate) fn is_running(&self, id: u64) -> bool {
        let st = self.lock();
        let Some(index) = st.batches.get(&id).and_then(|b| b.worker) else { return false };
        st.workers[index as usize].as_ref().and_then(|w| w.slot.running()).is_some_and(|(b, _, _)| b == id)
    }

    /// The id the next submitted batch will get.
    pub(crate) fn next_batch_id(st: &State) -> u64 {
        st.next_batch
    }

    pub(crate) fn stats(&self) -> Vec<WorkerStats> {
        let st = self.lock();
        st.stats
            .iter()
            .zip(&st.workers)
            .map(|(place, w)| {
                let (items, busy) = w.as_ref().map_or((0, Duration::ZERO), |w| (w.slot.items_done(), w.slot.busy()));
                let busy = place.busy_before + busy;
                let alive = place.since.map_or(Duration::ZERO, |s| s.elapsed());
                WorkerStats {
                    pid: w.as_ref().map(|w| w.pid),
                    tasks_done: place.items_before + items,
                    busy,
                    idle: alive.saturating_sub(busy),
                    restarts: place.restarts,
                }
            })
            .collect()
    }

    // ----- the result thread -----

    fn result_loop(&self) {
        loop {
            let report = match self.reports.get() {
                Ok(report) => report,
                // A report that does not decode cannot come from our workers; skip it.
                Err(_) => continue,
            };
            let deliveries = {
                let mut st = self.lock();
                let deliveries = match report {
                    Report::Done { batch, values, layout, failures } => {
                        self.on_done(&mut st, batch, Arc::unwrap_or_clone(values.0), layout, failures)
                    }
                    Report::InitFailed { worker, pid, message } => self.on_init_failed(&mut st, worker, pid, message),
                    Report::Ended { worker, pid } => self.on_ended(&mut st, worker, pid),
                    Report::Wake => Deliveries::new(),
                };
                self.dispatch(&mut st);
                self.retire_idle(&mut st);
                if st.finished {
                    return;
                }
                deliveries
            };
            self.drained.notify_all();
            deliver(deliveries);
        }
    }

    fn on_done(
        &self,
        st: &mut State,
        id: u64,
        values: Vec<u8>,
        layout: Layout,
        failures: Vec<(u32, Wire)>,
    ) -> Deliveries {
        let Some(mut batch) = st.batches.remove(&id) else { return Deliveries::new() };
        // Its arguments' buffer, for the next chunks to be packed.
        if let Ok(args) = Arc::try_unwrap(std::mem::take(&mut batch.args.0)) {
            crate::pool::spare::give(args);
        }
        let mut pid = 0;
        if let Some(index) = batch.worker {
            if let Some(w) = st.workers[index as usize].as_mut() {
                w.in_flight.retain(|&b| b != id);
                w.full_since = None;
                pid = w.pid;
                st.startup_deaths = 0;
                if w.in_flight.is_empty() && self.config.idle_timeout.is_some() {
                    w.idle_since = Some(Instant::now());
                    // Its idle deadline is new: the supervisor must look at it.
                    self.wake_supervisor();
                }
            }
        }
        let failures = failures
            .into_iter()
            .map(|(i, wire)| {
                let error = match wire {
                    Wire::Panicked(crate::process::task::Panic { message, location }) => {
                        TaskError::Panicked { message, pid, location }
                    }
                    // The worker knows the item's place in its batch only; name it in the submission.
                    Wire::Failed { encode: true, message } => {
                        TaskError::ResultEncode(format!("item {}: {message}", batch.first + i as usize))
                    }
                    Wire::Failed { encode: false, message } => {
                        TaskError::Decode(format!("item {}: {message}", batch.first + i as usize))
                    }
                };
                (i, error)
            })
            .collect();
        vec![Delivery::Chunk { sink: batch.sink, first: batch.first, bytes: values, layout, failures }]
    }

    fn on_init_failed(&self, st: &mut State, _worker: u32, pid: u32, message: String) -> Deliveries {
        let why = format!("the initializer failed in worker {pid}: {message}");
        self.break_pool(st, why)
    }

    /// Marks the pool broken and fails every unfinished batch.
    fn break_pool(&self, st: &mut State, why: String) -> Deliveries {
        st.broken.get_or_insert(why.clone());
        st.pending.clear();
        for w in st.workers.iter_mut().flatten() {
            w.in_flight.clear();
        }
        st.batches.drain().map(|(_, b)| b.fail(TaskError::Broken(why.clone()))).collect()
    }

    fn on_ended(&self, st: &mut State, index: u32, pid: u32) -> Deliveries {
        let Some(mut w) = st.workers[index as usize].take_if(|w| w.pid == pid) else { return Deliveries::new() };
        let status = match w.process.join() {
            Err(JoinError::Exited(status)) => status,
            _ => ExitStatus::Code(0),
        };
        let place = &mut st.stats[index as usize];
        place.items_before += w.slot.items_done();
        place.busy_before += w.slot.busy();
        let mut deliveries = Deliveries::new();
        // The item it was running, if its batch is still unreported, fails; the batch's other
        // items, and its other batches, go back to the front of the queue.
        let running = w.slot.running();
        let mut requeue = Vec::new();
        for id in w.in_flight.drain(..) {
            let Some(batch) = st.batches.get_mut(&id) else { continue };
            batch.worker = None;
            let _ = &batch;
            let failed_item = match running {
                Some((b, item, _)) if b == id => Some(item),
                _ => None,
            };
            let cancelled_here = matches!(w.stopping, Some(Stopping::Cancel { batch }) if batch == id);
            if cancelled_here {
                let batch = st.batches.remove(&id).expect("present");
                deliveries.push(batch.fail(TaskError::Cancelled));
                continue;
            }
            if let Some(item) = failed_item {
                let error = match w.stopping {
                    Some(Stopping::Timeout { batch: b, item: i }) if b == id && i == item => {
                        TaskError::TimedOut { timeout: self.timeout_of(st, id).unwrap_or_default(), pid }
                    }
                    Some(Stopping::Terminate) => TaskError::Terminated,
                    _ => TaskError::WorkerDied { pid, status },
                };
                // Split the batch: the failed item is settled now, the rest run again.
                let batch = st.batches.remove(&id).expect("present");
                let item = (item as usize).min(batch.len().saturating_sub(1));
                deliveries.push(Delivery::Errors { sink: batch.sink.clone(), first: batch.first + item, n: 1, error });
                for part in [batch.part(0..item), batch.part(item + 1..batch.len())] {
                    if part.len() > 0 {
                        requeue.push(part);
                    }
                }
            } else {
                st.pending.push_front(id);
            }
        }
        for batch in requeue.into_iter().rev() {
            let id = st.next_batch;
            st.next_batch += 1;
            st.batches.insert(id, batch);
            st.pending.push_front(id);
        }
        let died_on_start = !w.slot.is_ready() && !w.retiring;
        let (w_retiring, w_leaving) = (w.retiring, w.leaving);
        drop(w);
        // A worker that left a place still wanted (shrunk, then grown again) is replaced as any
        // other, unless places fill on demand.
        if index as usize >= st.target || (w_leaving && self.config.idle_timeout.is_some()) {
            // Left for good (idle, or its place removed): the place stays empty until work
            // needs it, or goes.
            self.trim_places(st);
            return deliveries;
        }
        // Replace it, unless the pool is winding down or workers keep dying before they start.
        if died_on_start {
            st.startup_deaths += 1;
        }
        let storm = st.startup_deaths as usize >= 2 * st.target + 2;
        if storm && st.broken.is_none() {
            deliveries.extend(self.break_pool(st, format!("workers keep dying on start (the last: {status})")));
        }
        let replace = st.phase != Phase::Terminated
            && st.broken.is_none()
            && (st.phase == Phase::Running || !st.batches.is_empty());
        if replace {
            if !w_retiring {
                crate::trace::event!(warn, pool = %self.config.name, worker = index, pid, status = %status, "a pool worker ended and is replaced");
            }
            st.stats[index as usize].restarts += 1;
            if let Err(err) = self.spawn_worker(st, index) {
                deliveries.extend(self.break_pool(st, format!("could not start a worker: {err}")));
            }
        }
        deliveries
    }

    // ----- the supervisor thread -----

    fn supervise(&self) {
        let mut buf = [0u8; 8];
        #[cfg(feature = "progress")]
        let mut ticks: Vec<(Arc<Collector>, u64)> = Vec::new();
        loop {
            let (watched, deadline) = {
                let st = self.lock();
                if st.finished {
                    return;
                }
                let watched: Vec<(u32, u32, Arc<OwnedFd>)> = st
                    .workers
                    .iter()
                    .flatten()
                    .filter(|w| !w.ended)
                    .map(|w| (index_of(&st, w.pid), w.pid, w.pidfd.clone()))
                    .collect();
                (watched, self.next_deadline(&st))
            };
            let mut fds: Vec<BorrowedFd<'_>> = vec![self.wake.as_fd()];
            fds.extend(watched.iter().map(|(_, _, fd)| fd.as_fd()));
            let ready = sys::poll::wait_readable(&fds, deadline).unwrap_or_default();
            if ready.first().copied().unwrap_or(false) {
                let _ = rustix::io::read(&self.wake, &mut buf);
            }
            let mut ended = Vec::new();
            {
                let mut st = self.lock();
                for ((index, pid, _), &is_ready) in watched.iter().zip(ready.iter().skip(1)) {
                    if is_ready {
                        if let Some(w) = st.workers[*index as usize].as_mut().filter(|w| w.pid == *pid) {
                            w.ended = true;
                            ended.push((*index, *pid));
                        }
                    }
                }
                self.enforce_deadlines(&mut st);
                // Workers whose order rings were full are offered orders again.
                let now = Instant::now();
                let mut retry = false;
                for w in st.workers.iter_mut().flatten() {
                    if w.full_since.is_some_and(|at| now >= at + FULL_RETRY) {
                        w.full_since = None;
                        retry = true;
                    }
                }
                if retry {
                    self.dispatch(&mut st);
                }
                #[cfg(feature = "progress")]
                if self.config.progress {
                    ticks = running_items(&st);
                }
            }
            // Outside the state lock: a collector's lock is never taken inside it.
            #[cfg(feature = "progress")]
            for (sink, items) in ticks.drain(..) {
                sink.show_running(items);
            }
            for (worker, pid) in ended {
                let _ = self.reports.put(Report::Ended { worker, pid });
            }
        }
    }

    /// Batch `id`'s time limit per item: its own, else the pool's.
    fn timeout_of(&self, st: &State, id: u64) -> Option<Duration> {
        st.batches.get(&id).and_then(|b| b.timeout).or(self.config.task_timeout)
    }

    /// The next instant the supervisor must act: a task's timeout, or a SIGKILL after a SIGTERM.
    fn next_deadline(&self, st: &State) -> Option<Instant> {
        let now_ns = worker::now_ns();
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        #[cfg(feature = "progress")]
        if self.config.ticks_progress() && !st.batches.is_empty() {
            // Progress bars move per item: look at the running chunks ten times a second.
            next = Some(now + PROGRESS_TICK);
        }
        for w in st.workers.iter().flatten().filter(|w| !w.ended) {
            let mut consider = |at: Instant| next = Some(next.map_or(at, |n: Instant| n.min(at)));
            if let Some(at) = w.kill_at {
                consider(at);
            }
            if let Some(at) = w.full_since {
                consider(at + FULL_RETRY);
            }
            if let (Some(limit), Some(since)) = (self.config.idle_timeout, w.idle_since) {
                if !w.retiring {
                    consider(since + limit);
                }
            }
            if w.stopping.is_none() {
                match w.slot.running() {
                    Some((batch, _, started)) => {
                        if let Some(timeout) = self.timeout_of(st, batch) {
                            let due_ns = started.saturating_add(timeout.as_nanos() as u64);
                            consider(now + Duration::from_nanos(due_ns.saturating_sub(now_ns)));
                        }
                    }
                    // Work handed over but not started yet: nothing tells the supervisor when it
                    // starts, so look again soon (a fraction of the shortest timeout, at most 50 ms).
                    None => {
                        if let Some(timeout) = w.in_flight.iter().filter_map(|&b| self.timeout_of(st, b)).min() {
                            consider(now + (timeout / 4).min(Duration::from_millis(50)));
                        }
                    }
                }
            }
        }
        next
    }

    fn enforce_deadlines(&self, st: &mut State) {
        let now_ns = worker::now_ns();
        let now = Instant::now();
        let State { workers, batches, .. } = st;
        for w in workers.iter_mut().flatten().filter(|w| !w.ended) {
            let idle_past = |since: Instant| self.config.idle_timeout.is_some_and(|limit| now >= since + limit);
            if !w.retiring && w.in_flight.is_empty() && w.idle_since.is_some_and(idle_past) {
                // Idle too long: it leaves, and its place is filled again when work comes.
                w.retiring = true;
                w.leaving = true;
                let _ = w.orders.try_put(Order::Stop);
                continue;
            }
            if w.kill_at.is_some_and(|at| at <= now) {
                w.kill_at = None;
                let _ = w.process.kill();
                continue;
            }
            if w.stopping.is_some() {
                continue;
            }
            let Some((batch, item, started)) = w.slot.running() else { continue };
            let Some(timeout) = batches.get(&batch).and_then(|b| b.timeout).or(self.config.task_timeout) else {
                continue;
            };
            if now_ns.saturating_sub(started) >= timeout.as_nanos() as u64 && w.in_flight.contains(&batch) {
                w.stopping = Some(Stopping::Timeout { batch, item });
                w.kill_at = Some(now + self.config.kill_grace);
                let _ = w.process.terminate();
            }
        }
    }
}

/// How often the supervisor moves progress bars by the items of running chunks.
#[cfg(feature = "progress")]
const PROGRESS_TICK: Duration = Duration::from_millis(100);

/// Per submission with running chunks: how many of their items the workers are past.
#[cfg(feature = "progress")]
fn running_items(st: &State) -> Vec<(Arc<Collector>, u64)> {
    let mut found: Vec<(Arc<Collector>, u64)> = Vec::new();
    for w in st.workers.iter().flatten().filter(|w| !w.ended) {
        let Some((id, item, _)) = w.slot.running() else { continue };
        let Some(batch) = st.batches.get(&id) else { continue };
        match found.iter_mut().find(|(sink, _)| Arc::ptr_eq(sink, &batch.sink)) {
            Some((_, items)) => *items += u64::from(item),
            None => found.push((batch.sink.clone(), u64::from(item))),
        }
    }
    found
}

/// Takes back every batch worker `index` holds but has not started (see [`Slot::take_back`]);
/// returns their ids, oldest first. They are nobody's until queued again.
fn take_back(st: &mut State, index: usize) -> Vec<u64> {
    let State { workers, batches, .. } = st;
    let Some(w) = workers[index].as_mut() else { return Vec::new() };
    let claimed = w.slot.take_back(w.sent);
    let mut back = Vec::new();
    w.in_flight.retain(|id| {
        let batch = batches.get_mut(id).expect("batches in flight are known");
        if batch.seq <= claimed {
            return true;
        }
        batch.worker = None;
        back.push(*id);
        false
    });
    back
}

fn index_of(st: &State, pid: u32) -> u32 {
    st.workers.iter().position(|w| w.as_ref().is_some_and(|w| w.pid == pid)).expect("a worker's place") as u32
}

/// What became of an order offered to a worker.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Sent {
    Yes,
    /// Its order ring has no room now.
    Full,
    /// It cannot take orders (it is dying).
    No,
}

/// Hands a batch to a worker if its order ring has room now: the order, then its descriptors
/// (on the worker's connection; the worker waits for them once it reads the order).
fn send(w: &WorkerHandle, id: u64, batch: &Batch) -> Sent {
    let with_fds = !batch.fds.is_empty();
    // Copied before the order goes: once it is in, its descriptors must follow.
    let fds: Vec<Fd> = match batch.fds.iter().map(|fd| fd.try_clone().map(Fd::from)).collect() {
        Ok(fds) => fds,
        Err(_) => return Sent::No,
    };
    let order = Order::Run {
        batch: id,
        seq: batch.seq,
        entry: batch.entry,
        args: batch.args.clone(),
        layout: batch.layout.clone(),
        with_fds,
    };
    match w.orders.try_put(order) {
        Ok(()) if with_fds && w.handles.send(&fds).is_err() => Sent::No,
        Ok(()) => Sent::Yes,
        Err(crate::queue::TryPutError::Full(_)) => Sent::Full,
        Err(_) => Sent::No,
    }
}

/// How soon a worker whose order ring was full is offered orders again if it has not reported
/// a batch meanwhile (its pending orders may all have been taken back).
const FULL_RETRY: Duration = Duration::from_millis(1);

/// Delivers outcomes to their collectors (with the state lock released: callbacks run here).
fn deliver(deliveries: Deliveries) {
    for delivery in deliveries {
        delivery.deliver();
    }
}
