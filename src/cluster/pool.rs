//! The driver's side of a pool on the cluster: a [`Pool`] or [`ProcessPoolExecutor`] whose
//! batches go on a Redis Stream that node agents ([`node`](super::node)) read through a consumer
//! group, and whose results come back on a list of the driver's own.
//!
//! Everything a local pool gives its caller — [`AsyncResult`](crate::pool::AsyncResult),
//! [`TaskFuture`](crate::pool::TaskFuture), `imap`'s iterator, callbacks, progress bars — is
//! built on the same collectors; only where batches run differs (see
//! [`pool::Backend`](crate::pool::Backend)). Three threads keep the driver going:
//! - the **sender** puts submitted batches on the stream, many in one pipeline;
//! - the **receiver** reads results off the driver's own stream and delivers them: the first
//!   result of a batch wins, a later one (from a node that was cut off and came back) is
//!   dropped;
//! - the **heartbeat** keeps the driver's key alive (nodes drop the work of a driver whose key
//!   expired), renews the namespace's build stamp, and checks the server's epoch: a server that
//!   lost its data breaks the pool, failing every outstanding task.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::Cluster;
use crate::error::{Error, ErrorKind, Result};
use crate::pool::worker::Layout;
use crate::pool::{Backend, Batch, Collector, Delivery, Pool, ProcessPoolExecutor, TaskError, WorkerStats};
use crate::process::Signal;

/// The consumer group every node reads the task stream through.
pub(crate) const GROUP: &str = "nodes";
/// How long a driver's result stream outlives its last write (ms): results nobody will read go.
pub(crate) const RESULTS_TTL_MS: u64 = 600_000;

/// A batch on the task stream.
#[derive(Serialize, Deserialize)]
pub(crate) struct TaskEntry {
    pub(crate) driver: String,
    pub(crate) batch: u64,
    /// The task's batch entry (an offset into the binary: the same build runs it).
    pub(crate) entry: i64,
    pub(crate) layout: Layout,
    pub(crate) args: ByteBuf,
    /// Per item, if the task has a time limit.
    pub(crate) timeout: Option<Duration>,
    /// Deliveries allowed before the batch fails with [`TaskError::WorkerLost`].
    pub(crate) max_deliveries: u32,
}

/// What a node sends back for one batch.
#[derive(Serialize, Deserialize)]
pub(crate) struct Report {
    pub(crate) batch: u64,
    pub(crate) outcome: Outcome,
}

#[derive(Serialize, Deserialize)]
pub(crate) enum Outcome {
    /// The batch ran: its values as the node's pool packed them (first item, bytes, layout),
    /// and its failed items.
    Ran { chunks: Vec<(u64, ByteBuf, Layout)>, failures: Vec<(u64, TaskError)> },
    /// Every item failed alike (the batch was lost too often, or could not be run at all).
    Failed(TaskError),
}

/// The keys of the namespace's pool (one hash tag, so that a node's `MULTI` over the task
/// stream and a driver's result stream stays valid on Redis Cluster).
pub(crate) struct Keys {
    pub(crate) tasks: String,
    pub(crate) config: String,
    pub(crate) nodes: String,
    pub(crate) refusals: String,
}

impl Keys {
    pub(crate) fn of(cluster: &Cluster) -> Keys {
        Keys {
            tasks: cluster.key("pool", "tasks"),
            config: cluster.key("pool", "config"),
            nodes: cluster.key("pool", "nodes"),
            refusals: cluster.key("pool", "refusals"),
        }
    }

    pub(crate) fn results(cluster: &Cluster, driver: &str) -> String {
        cluster.key("pool", &format!("results.{driver}"))
    }

    pub(crate) fn driver(cluster: &Cluster, driver: &str) -> String {
        cluster.key("pool", &format!("driver.{driver}"))
    }

    pub(crate) fn node(cluster: &Cluster, node: &str) -> String {
        cluster.key("pool", &format!("node.{node}"))
    }
}

/// Makes the task stream and its group if they are not there yet.
pub(crate) fn ensure_group(cluster: &Cluster, tasks: &str) -> Result<()> {
    let made: redis::RedisResult<String> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(tasks)
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query(&mut *cluster.connection());
    match made {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        Err(_) => cluster
            .call("making the task stream", |c| {
                let made: redis::RedisResult<String> =
                    redis::cmd("XGROUP").arg("CREATE").arg(tasks).arg(GROUP).arg("0").arg("MKSTREAM").query(c);
                match made {
                    Err(e) if e.code() == Some("BUSYGROUP") => Ok(String::new()),
                    other => other,
                }
            })
            .map(drop),
    }
}

/// How a pool on the cluster is set up: [`Cluster::pool`].
///
/// ```no_run
/// use std::time::Duration;
/// let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "sims").unwrap();
/// let pool = cluster.pool().lease(Duration::from_secs(10)).max_deliveries(2).build().unwrap();
/// ```
/// Python counterpart: `ray.util.multiprocessing.Pool(ray_address=...)`.
#[derive(Clone, Debug)]
pub struct ClusterPoolBuilder {
    cluster: Cluster,
    processes: Option<usize>,
    lease: Duration,
    max_deliveries: u32,
    heartbeat: Duration,
    task_timeout: Option<Duration>,
    in_flight: usize,
    #[cfg(feature = "progress")]
    progress: bool,
}

impl Cluster {
    /// A builder for a [`Pool`] (or [`ProcessPoolExecutor`]) whose tasks run on the nodes of
    /// this cluster: processes of this same binary started with `MULTIPROC_NODE` set (see
    /// [`NODE_VAR`](super::NODE_VAR)), on this machine or others.
    ///
    /// ```no_run
    /// fn square(x: u64) -> u64 { x * x }
    /// let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "sims").unwrap();
    /// let pool = cluster.pool().build().unwrap();
    /// assert_eq!(pool.map(square, 1..=3).unwrap(), [1, 4, 9]);
    /// ```
    /// Python counterpart: `ray.util.multiprocessing.Pool(ray_address=...)`.
    pub fn pool(&self) -> ClusterPoolBuilder {
        ClusterPoolBuilder {
            cluster: self.clone(),
            processes: None,
            lease: Duration::from_secs(30),
            max_deliveries: 3,
            heartbeat: Duration::from_secs(10),
            task_timeout: None,
            in_flight: 256,
            #[cfg(feature = "progress")]
            progress: false,
        }
    }
}

impl ClusterPoolBuilder {
    /// The number of processes chunk sizes are computed for (`map` makes four chunks per
    /// process, as locally). By default, the processes of the nodes alive when each `map` is
    /// submitted (or this machine's CPU count while there are none). It bounds nothing: the
    /// nodes decide how many tasks run at once.
    ///
    /// ```no_run
    /// # let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "sims").unwrap();
    /// let pool = cluster.pool().processes(64).build().unwrap();
    /// ```
    /// Python counterpart: `Pool(processes)`.
    pub fn processes(mut self, n: usize) -> ClusterPoolBuilder {
        self.processes = Some(n.max(1));
        self
    }

    /// How long a node holds a batch without renewing before another node may take it (default
    /// 30 s; nodes renew every third of it while the batch runs). A node that dies or is cut off
    /// loses its batches after this long. Shared by the namespace: the last pool built sets it.
    ///
    /// ```no_run
    /// # let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "sims").unwrap();
    /// let pool = cluster.pool().lease(std::time::Duration::from_secs(5)).build().unwrap();
    /// ```
    /// Python counterpart: Celery's `visibility_timeout`.
    pub fn lease(mut self, lease: Duration) -> ClusterPoolBuilder {
        self.lease = lease.max(Duration::from_millis(100));
        self
    }

    /// How many times a batch is handed out before it fails with [`TaskError::WorkerLost`]
    /// (default 3): each node that takes it and is lost counts once.
    ///
    /// ```no_run
    /// # let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "sims").unwrap();
    /// let pool = cluster.pool().max_deliveries(1).build().unwrap();
    /// ```
    /// Python counterpart: Dask's `allowed-failures`.
    pub fn max_deliveries(mut self, n: u32) -> ClusterPoolBuilder {
        self.max_deliveries = n.max(1);
        self
    }

    /// How long the driver's heartbeat key lives without renewal (default 10 s; renewed every
    /// third of it). Once it expires, nodes drop this driver's work: a killed driver leaves
    /// nothing running for long.
    ///
    /// ```no_run
    /// # let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "sims").unwrap();
    /// let pool = cluster.pool().heartbeat(std::time::Duration::from_secs(3)).build().unwrap();
    /// ```
    /// Python counterpart: none.
    pub fn heartbeat(mut self, ttl: Duration) -> ClusterPoolBuilder {
        self.heartbeat = ttl.max(Duration::from_millis(300));
        self
    }

    /// A time limit for each task, enforced on its node as a local pool's is
    /// ([`TaskError::TimedOut`] inside [`TaskError::OnNode`]).
    ///
    /// ```no_run
    /// # let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "sims").unwrap();
    /// let pool = cluster.pool().task_timeout(std::time::Duration::from_secs(60)).build().unwrap();
    /// ```
    /// Python counterpart: pebble's `timeout`.
    pub fn task_timeout(mut self, timeout: Duration) -> ClusterPoolBuilder {
        self.task_timeout = crate::pool::own_timeout(timeout);
        self
    }

    /// Shows a progress bar for each `map`-like call, as [`PoolBuilder::progress`] does.
    ///
    /// [`PoolBuilder::progress`]: crate::pool::PoolBuilder::progress
    ///
    /// ```no_run
    /// # let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "sims").unwrap();
    /// let pool = cluster.pool().progress(true).build().unwrap();
    /// ```
    /// Python counterpart: mpire's `progress_bar=True`.
    #[cfg(feature = "progress")]
    pub fn progress(mut self, show: bool) -> ClusterPoolBuilder {
        self.progress = show;
        self
    }

    /// Starts the driver's threads and returns the pool.
    ///
    /// # Errors
    /// [`ErrorKind::BuildMismatch`] if live pools or nodes of the namespace are another build;
    /// the server's errors.
    ///
    /// ```no_run
    /// # let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "sims").unwrap();
    /// let pool = cluster.pool().build().unwrap();
    /// ```
    /// Python counterpart: `Pool(...)`.
    pub fn build(self) -> Result<Pool> {
        let (in_flight, progress) = (self.in_flight, self.progress_on());
        Ok(Pool::with_backend(Dispatcher::start(self)?, in_flight, progress))
    }

    /// As [`build`](Self::build), with Python's `concurrent.futures` interface.
    ///
    /// # Errors
    /// As [`build`](Self::build).
    ///
    /// ```no_run
    /// # let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "sims").unwrap();
    /// let executor = cluster.pool().build_executor().unwrap();
    /// assert_eq!(executor.submit(|| 6 * 7, ()).unwrap().result().unwrap(), 42);
    /// ```
    /// Python counterpart: `ProcessPoolExecutor(...)`.
    pub fn build_executor(self) -> Result<ProcessPoolExecutor> {
        self.build().map(ProcessPoolExecutor::from_pool)
    }

    fn progress_on(&self) -> bool {
        #[cfg(feature = "progress")]
        return self.progress;
        #[cfg(not(feature = "progress"))]
        false
    }
}

/// Where a submitted batch stands.
struct Sent {
    sink: Arc<Collector>,
    first: usize,
    len: usize,
    /// The encoded entry, until the sender has put it on the stream.
    entry: Option<Vec<u8>>,
    /// Its id on the stream, once it is there.
    stream_id: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Open,
    Closed,
    /// Joined or terminated: the threads end.
    Finished,
}

struct State {
    phase: Phase,
    broken: Option<String>,
    next_id: u64,
    /// Batches submitted and not finished.
    batches: HashMap<u64, Sent>,
    /// Batches to put on the stream, in order.
    outbox: VecDeque<u64>,
    /// Stream entries of batches cancelled after they were sent: deleted by the sender.
    withdraw: Vec<String>,
}

/// The driver's backend of a pool on the cluster.
pub(crate) struct Dispatcher {
    cluster: Cluster,
    keys: Keys,
    driver: String,
    results: String,
    heartbeat_key: String,
    builder: ClusterPoolBuilder,
    state: Mutex<State>,
    /// Signalled when the outbox fills, when a batch finishes, and when the phase changes.
    changed: Condvar,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Dispatcher {
    fn start(builder: ClusterPoolBuilder) -> Result<Arc<Dispatcher>> {
        let cluster = builder.cluster.clone();
        cluster.claim_build(builder.heartbeat.max(builder.lease))?;
        let keys = Keys::of(&cluster);
        ensure_group(&cluster, &keys.tasks)?;
        let driver = format!(
            "{}-{}-{:x}",
            crate::sys::process::hostname(),
            std::process::id(),
            u64::from_le_bytes(
                crate::sys::random::bytes32().map_err(|e| Error::with_source(ErrorKind::Os, "a driver id", e))?[..8]
                    .try_into()
                    .expect("8 bytes")
            )
        );
        let heartbeat_key = Keys::driver(&cluster, &driver);
        let lease_ms = builder.lease.as_millis() as u64;
        cluster.call("starting the pool", |c| {
            redis::pipe()
                .cmd("SET")
                .arg(&heartbeat_key)
                .arg(1)
                .arg("PX")
                .arg(builder.heartbeat.as_millis() as u64)
                .ignore()
                .cmd("HSET")
                .arg(&keys.config)
                .arg("lease_ms")
                .arg(lease_ms)
                .ignore()
                .query::<()>(c)
        })?;
        let dispatcher = Arc::new(Dispatcher {
            results: Keys::results(&cluster, &driver),
            cluster,
            keys,
            driver,
            heartbeat_key,
            builder,
            state: Mutex::new(State {
                phase: Phase::Open,
                broken: None,
                next_id: 0,
                batches: HashMap::new(),
                outbox: VecDeque::new(),
                withdraw: Vec::new(),
            }),
            changed: Condvar::new(),
            threads: Mutex::new(Vec::new()),
        });
        let mut threads = Vec::new();
        for (name, body) in [
            ("multiproc-cluster-send", Dispatcher::send_loop as fn(&Dispatcher)),
            ("multiproc-cluster-receive", Dispatcher::receive_loop),
            ("multiproc-cluster-heartbeat", Dispatcher::heartbeat_loop),
        ] {
            let me = dispatcher.clone();
            let thread = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || body(&me))
                .map_err(|e| Error::with_source(ErrorKind::Os, "starting a pool thread", e))?;
            threads.push(thread);
        }
        *dispatcher.threads.lock().unwrap_or_else(|p| p.into_inner()) = threads;
        Ok(dispatcher)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts submitted batches on the stream, up to 256 in one pipeline; deletes withdrawn ones.
    fn send_loop(&self) {
        loop {
            let (ids, entries, withdraw) = {
                let mut st = self.lock();
                while st.outbox.is_empty() && st.withdraw.is_empty() && st.phase != Phase::Finished {
                    st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
                }
                if st.phase == Phase::Finished {
                    return;
                }
                let mut ids = Vec::new();
                let mut entries = Vec::new();
                while ids.len() < 256 {
                    let Some(id) = st.outbox.pop_front() else { break };
                    if let Some(entry) = st.batches.get_mut(&id).and_then(|b| b.entry.take()) {
                        ids.push(id);
                        entries.push(entry);
                    }
                }
                (ids, entries, std::mem::take(&mut st.withdraw))
            };
            if entries.is_empty() && withdraw.is_empty() {
                // Everything taken off the outbox was cancelled before it was sent: nothing to
                // say to the server (an empty pipeline is an error there).
                continue;
            }
            let sent = self.cluster.call("sending tasks", |c| {
                let mut pipe = redis::pipe();
                for entry in &entries {
                    pipe.cmd("XADD").arg(&self.keys.tasks).arg("*").arg("t").arg(entry.as_slice());
                }
                if !withdraw.is_empty() {
                    pipe.cmd("XDEL").arg(&self.keys.tasks).arg(&withdraw).ignore();
                }
                pipe.query::<Vec<String>>(c)
            });
            match sent {
                Ok(stream_ids) => {
                    let mut st = self.lock();
                    let mut late = Vec::new();
                    for (id, stream_id) in ids.into_iter().zip(stream_ids) {
                        match st.batches.get_mut(&id) {
                            Some(batch) => batch.stream_id = Some(stream_id),
                            // Cancelled while it was being sent.
                            None => late.push(stream_id),
                        }
                    }
                    st.withdraw.extend(late);
                }
                Err(e) => self.break_pool(&format!("{e}")),
            }
        }
    }

    /// Reads results off the driver's stream and delivers them. Reading leaves them there, so a
    /// reply lost with the connection (a server restart) is read again from the last id
    /// delivered; entries up to it are trimmed with the next read.
    fn receive_loop(&self) {
        type Read = Option<Vec<(String, Vec<(String, HashMap<String, Vec<u8>>)>)>>;
        let mut last = "0-0".to_owned();
        // Entries read since the stream was last trimmed: trimmed every 64 (or when idle),
        // not at every read, which would cost the server a trim per task.
        let mut untrimmed = 0usize;
        loop {
            if self.lock().phase == Phase::Finished {
                return;
            }
            let deadline = Some(Instant::now() + Duration::from_millis(500));
            let trim = untrimmed >= 64;
            let read = self.cluster.wait_call("waiting for results", deadline, |c, left| {
                let mut pipe = redis::pipe();
                if trim {
                    pipe.cmd("XTRIM").arg(&self.results).arg("MINID").arg(&last).ignore();
                }
                let (read,): (Read,) = pipe
                    .cmd("XREAD")
                    .arg("COUNT")
                    .arg(256)
                    .arg("BLOCK")
                    .arg(left.as_millis().max(1) as u64)
                    .arg("STREAMS")
                    .arg(&self.results)
                    .arg(&last)
                    .query(c)?;
                Ok(read.and_then(|streams| streams.into_iter().next()).map(|(_, entries)| entries))
            });
            if trim {
                untrimmed = 0;
            }
            match read {
                Ok(Some(entries)) => {
                    untrimmed += entries.len();
                    for (id, fields) in entries {
                        if let Some(bytes) = fields.get("r") {
                            self.deliver(bytes);
                        }
                        last = id;
                    }
                }
                // Idle: a good time to trim what was read.
                Ok(None) => untrimmed = untrimmed.max(64 * usize::from(untrimmed > 0)),
                Err(e) => self.break_pool(&format!("{e}")),
            }
        }
    }

    /// Delivers one report, unless its batch already has its outcome (first result wins).
    fn deliver(&self, bytes: &[u8]) {
        let Ok(report) = postcard::from_bytes::<Report>(bytes) else {
            crate::trace::event!(warn, "a result on the cluster did not decode; dropped");
            return;
        };
        let Some(sent) = self.lock().batches.remove(&report.batch) else { return };
        match report.outcome {
            Outcome::Failed(error) => {
                Delivery::Errors { sink: sent.sink, first: sent.first, n: sent.len, error }.deliver();
            }
            Outcome::Ran { chunks, failures } => {
                // Failures first: a failed item's place in a chunk holds no value.
                for (index, error) in failures {
                    Delivery::Errors { sink: sent.sink.clone(), first: sent.first + index as usize, n: 1, error }
                        .deliver();
                }
                for (first, bytes, layout) in chunks {
                    Delivery::Chunk {
                        sink: sent.sink.clone(),
                        first: sent.first + first as usize,
                        bytes: bytes.into_vec(),
                        layout,
                        failures: Vec::new(),
                    }
                    .deliver();
                }
            }
        }
        self.changed.notify_all();
    }

    /// Keeps the driver's key alive and checks the server kept its data.
    fn heartbeat_loop(&self) {
        let ttl = self.builder.heartbeat;
        let every = (ttl / 3).min(Duration::from_secs(1));
        loop {
            {
                let st = self.lock();
                let st = self
                    .changed
                    .wait_timeout_while(st, every, |st| st.phase != Phase::Finished)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
                if st.phase == Phase::Finished {
                    return;
                }
            }
            let beat = self.cluster.epoch_holds().and_then(|()| {
                self.cluster.call("renewing the driver's heartbeat", |c| {
                    redis::cmd("SET")
                        .arg(&self.heartbeat_key)
                        .arg(1)
                        .arg("PX")
                        .arg(ttl.as_millis() as u64)
                        .query::<()>(c)
                })?;
                self.cluster.claim_build(ttl.max(self.builder.lease))
            });
            if let Err(e) = beat {
                self.break_pool(&format!("{e}"));
            }
        }
    }

    /// The pool can no longer run tasks: every outstanding one fails with `why`.
    fn break_pool(&self, why: &str) {
        let failed: Vec<Sent> = {
            let mut st = self.lock();
            if st.broken.is_none() {
                st.broken = Some(why.to_owned());
            }
            st.outbox.clear();
            st.batches.drain().map(|(_, sent)| sent).collect()
        };
        self.changed.notify_all();
        for sent in failed {
            Delivery::Errors {
                sink: sent.sink,
                first: sent.first,
                n: sent.len,
                error: TaskError::Broken(why.to_owned()),
            }
            .deliver();
        }
        // A broken pool's threads idle until it is joined or dropped; back off meanwhile.
        std::thread::sleep(Duration::from_millis(200));
    }

    /// The processes of the nodes alive now.
    fn live_processes(&self) -> Result<usize> {
        let nodes: HashMap<String, usize> =
            self.cluster.call("counting nodes", |c| redis::cmd("HGETALL").arg(&self.keys.nodes).query(c))?;
        let names: Vec<&String> = nodes.keys().collect();
        if names.is_empty() {
            return Ok(0);
        }
        let keys: Vec<String> = names.iter().map(|name| Keys::node(&self.cluster, name)).collect();
        let alive = self.cluster.exist("counting nodes", &keys)?;
        Ok(names.iter().zip(alive).filter(|(_, alive)| *alive).map(|(name, _)| nodes[*name]).sum())
    }

    /// Finishes the threads (after `join` or `terminate`).
    fn finish(&self) {
        {
            let mut st = self.lock();
            st.phase = Phase::Finished;
        }
        self.changed.notify_all();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for thread in threads {
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
        let _ = self
            .cluster
            .call("ending the pool", |c| redis::cmd("DEL").arg(&self.heartbeat_key).arg(&self.results).query::<()>(c));
    }

    /// Cancels the batches `ids` (known, unfinished): withdrawn from the stream, their items
    /// [`TaskError::Cancelled`]. A node already running one finishes it; its result is dropped.
    fn cancel_ids(&self, ids: &[u64]) -> usize {
        let cancelled: Vec<Sent> = {
            let mut st = self.lock();
            let cancelled: Vec<Sent> = ids.iter().filter_map(|id| st.batches.remove(id)).collect();
            let withdrawn: Vec<String> = cancelled.iter().filter_map(|s| s.stream_id.clone()).collect();
            st.withdraw.extend(withdrawn);
            cancelled
        };
        self.changed.notify_all();
        let mut n = 0;
        for sent in cancelled {
            n += sent.len;
            Delivery::Errors { sink: sent.sink, first: sent.first, n: sent.len, error: TaskError::Cancelled }.deliver();
        }
        n
    }
}

impl Backend for Dispatcher {
    fn submit(&self, batches: Vec<Batch>) -> std::result::Result<u64, TaskError> {
        let mut encoded = Vec::with_capacity(batches.len());
        let mut st = self.lock();
        if st.phase != Phase::Open {
            return Err(TaskError::Closed);
        }
        if let Some(why) = &st.broken {
            return Err(TaskError::Broken(why.clone()));
        }
        let first_id = st.next_id;
        for batch in batches {
            if !batch.fds.is_empty() {
                return Err(TaskError::ArgumentEncode(
                    "the arguments hold handles of this machine (descriptors), which cannot reach another; \
                     use the cluster's own objects (cluster::Queue and friends) in tasks"
                        .into(),
                ));
            }
            let id = st.next_id + encoded.len() as u64;
            let entry = TaskEntry {
                driver: self.driver.clone(),
                batch: id,
                entry: batch.entry,
                layout: batch.layout.clone(),
                args: ByteBuf::from(batch.args.0.as_slice()),
                timeout: batch.timeout.or(self.builder.task_timeout),
                max_deliveries: self.builder.max_deliveries,
            };
            let bytes = postcard::to_allocvec(&entry).map_err(|e| TaskError::ArgumentEncode(e.to_string()))?;
            encoded.push((batch, bytes));
        }
        for (batch, bytes) in encoded {
            let id = st.next_id;
            st.next_id += 1;
            let len = batch.len();
            st.batches
                .insert(id, Sent { sink: batch.sink, first: batch.first, len, entry: Some(bytes), stream_id: None });
            st.outbox.push_back(id);
        }
        drop(st);
        self.changed.notify_all();
        Ok(first_id)
    }

    fn is_open(&self) -> bool {
        self.lock().phase == Phase::Open
    }

    fn close(&self) {
        let mut st = self.lock();
        if st.phase == Phase::Open {
            st.phase = Phase::Closed;
        }
    }

    fn join(&self) {
        {
            let mut st = self.lock();
            while !st.batches.is_empty() && st.phase != Phase::Finished {
                st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        }
        self.finish();
    }

    fn is_finished(&self) -> bool {
        self.lock().phase == Phase::Finished
    }

    fn terminate(&self, _signal: Signal) {
        let all: Vec<u64> = {
            let mut st = self.lock();
            if st.phase == Phase::Finished {
                return;
            }
            st.phase = Phase::Closed;
            st.batches.keys().copied().collect()
        };
        let failed: Vec<Sent> = {
            let mut st = self.lock();
            let failed: Vec<Sent> = all.iter().filter_map(|id| st.batches.remove(id)).collect();
            let withdrawn: Vec<String> = failed.iter().filter_map(|s| s.stream_id.clone()).collect();
            st.withdraw.extend(withdrawn.clone());
            drop(st);
            if !withdrawn.is_empty() {
                let _ = self.cluster.call("withdrawing tasks", |c| {
                    redis::cmd("XDEL").arg(&self.keys.tasks).arg(&withdrawn).query::<()>(c)
                });
            }
            failed
        };
        for sent in failed {
            Delivery::Errors { sink: sent.sink, first: sent.first, n: sent.len, error: TaskError::Terminated }
                .deliver();
        }
        self.finish();
    }

    fn resize(&self, _processes: usize) -> Result<()> {
        Err(Error::new(
            ErrorKind::InvalidInput,
            "a pool on the cluster has the nodes' processes: start or stop nodes to resize it",
        ))
    }

    fn size(&self) -> usize {
        if let Some(n) = self.builder.processes {
            return n;
        }
        match self.live_processes() {
            Ok(n) if n > 0 => n,
            _ => crate::process::cpu_count(),
        }
    }

    fn stats(&self) -> Vec<WorkerStats> {
        Vec::new()
    }

    fn cancel(&self, id: u64) -> bool {
        let known = self.lock().batches.contains_key(&id);
        self.cancel_ids(&[id]);
        known
    }

    fn cancel_submission(&self, sink: &Arc<Collector>, _running: bool) -> usize {
        let ids: Vec<u64> =
            self.lock().batches.iter().filter(|(_, s)| Arc::ptr_eq(&s.sink, sink)).map(|(&id, _)| id).collect();
        self.cancel_ids(&ids)
    }

    fn cancel_pending(&self) {
        let ids: Vec<u64> =
            self.lock().batches.iter().filter(|(_, s)| s.stream_id.is_none()).map(|(&id, _)| id).collect();
        self.cancel_ids(&ids);
    }

    fn is_running(&self, id: u64) -> bool {
        let Some(stream_id) = self.lock().batches.get(&id).and_then(|s| s.stream_id.clone()) else { return false };
        // Read by a node (and not finished): in the group's pending list.
        let pending: redis::RedisResult<Vec<redis::Value>> = redis::cmd("XPENDING")
            .arg(&self.keys.tasks)
            .arg(GROUP)
            .arg(&stream_id)
            .arg(&stream_id)
            .arg(1)
            .query(&mut *self.cluster.connection());
        pending.is_ok_and(|p| !p.is_empty())
    }
}
