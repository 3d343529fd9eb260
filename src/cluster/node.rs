//! A cluster node: this same binary, started with [`NODE_VAR`] naming the cluster, becomes a
//! node agent before `main` runs (as a spawned child becomes a child), so no line of the
//! user's `main` is needed for it.
//!
//! The agent reads batches off the namespace's task stream through the consumer group, runs
//! them in its **own local pool** (spawned workers, so a task that segfaults, aborts or is
//! OOM-killed fails at once — [`TaskError::OnNode`] with the pid and signal — and timeouts
//! work as they do locally), and sends each batch's results to its driver, acknowledging the
//! entry in the same transaction. Beside that, a keeper thread:
//! - renews the leases of the batches it holds (an entry's idle time in the group, reset every
//!   third of the lease), and its own liveness key;
//! - takes over batches whose node stopped renewing for a whole lease (died or cut off), or —
//!   once a batch was handed out as many times as allowed — fails it with
//!   [`TaskError::WorkerLost`];
//! - drops the batches of drivers whose heartbeat expired (a killed driver), stopping them in
//!   the local pool.
//!
//! SIGTERM drains the node: it takes no more batches, finishes those it holds, and exits 0.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_bytes::ByteBuf;

use super::Cluster;
use super::pool::{GROUP, Keys, Outcome, RESULTS_TTL_MS, Report, TaskEntry, ensure_group};
use crate::error::{Error, ErrorKind, Result};
use crate::pool::{Batch, Collector, Pool, TaskError};
use crate::process::StartMethod;

/// The environment variable that makes a process of this binary a cluster node: the cluster's
/// URL (as for [`Cluster::connect`]). The namespace comes from `MULTIPROC_NAMESPACE` (default
/// `multiproc`), as for [`Cluster::from_env`].
///
/// ```text
/// MULTIPROC_NODE=redis://:secret@10.0.0.5:6379 MULTIPROC_NAMESPACE=sims ./my-program
/// ```
/// Python counterpart: none (`ray start --address=…`, `celery worker`).
pub const NODE_VAR: &str = "MULTIPROC_NODE";
/// How many local processes a node runs its batches in (default: its CPU count).
pub const NODE_PROCESSES_VAR: &str = "MULTIPROC_NODE_PROCESSES";
/// A node's name in errors and in the registry (default: `host:pid`).
pub const NODE_NAME_VAR: &str = "MULTIPROC_NODE_NAME";
/// Tasks a node's worker process runs before it is replaced by a fresh one (default: no
/// limit), as [`PoolBuilder::max_tasks_per_child`](crate::pool::PoolBuilder::max_tasks_per_child).
pub const NODE_MAX_TASKS_VAR: &str = "MULTIPROC_NODE_MAX_TASKS_PER_CHILD";

/// The lease when no pool has set one yet (ms).
const DEFAULT_LEASE_MS: u64 = 30_000;

/// A batch done this soon after it was handed over counts as short (see `Node::capacity`).
const SHORT: Duration = Duration::from_millis(2);

/// Set by SIGTERM: drain and exit.
static DRAIN: AtomicBool = AtomicBool::new(false);

/// Runs the node agent, then ends the process: 0 after a drain, 1 after an error, 3 when this
/// build was refused by the namespace.
pub(crate) fn run(url: String) -> ! {
    let code = match serve(&url) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("multiproc node: {e}");
            if e.kind() == ErrorKind::BuildMismatch { 3 } else { 1 }
        }
    };
    std::process::exit(code)
}

/// A batch this node holds, by stream id.
struct Held {
    driver: String,
    sink: Arc<Collector>,
    /// When it was handed to the local pool.
    started: Instant,
}

/// A finished batch on its way to its driver.
struct Finished {
    stream_id: String,
    driver: String,
    report: Vec<u8>,
}

struct Node {
    cluster: Cluster,
    keys: Keys,
    name: String,
    processes: usize,
    pool: Pool,
    held: Mutex<HashMap<String, Held>>,
    /// Signalled when a held batch is done with (room for another).
    room: Condvar,
    outbox: Mutex<Vec<Finished>>,
    ready: Condvar,
    lease_ms: AtomicU64,
    /// A moving average of batches' time from hand-over to result (ns; `u64::MAX` until the
    /// first).
    batch_ns: AtomicU64,
    /// Drivers found alive, and when.
    drivers: Mutex<HashMap<String, Instant>>,
    stop: AtomicBool,
}

fn serve(url: &str) -> Result<()> {
    let namespace = std::env::var(super::NAMESPACE_VAR).unwrap_or_else(|_| "multiproc".to_owned());
    let processes = std::env::var(NODE_PROCESSES_VAR)
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(crate::process::cpu_count);
    let name = std::env::var(NODE_NAME_VAR)
        .unwrap_or_else(|_| format!("{}:{}", crate::sys::process::hostname(), std::process::id()));
    let cluster = Cluster::connect_unchecked(url, &namespace)?;
    let keys = Keys::of(&cluster);
    let lease_ms = read_lease(&cluster, &keys);
    if let Err(e) = cluster.claim_build(Duration::from_millis(lease_ms)) {
        // The drivers learn of it too (Cluster::refused_nodes).
        let _ = cluster.call("reporting a refusal", |c| {
            redis::pipe()
                .cmd("LPUSH")
                .arg(&keys.refusals)
                .arg(format!("node {name}: {e}"))
                .ignore()
                .cmd("LTRIM")
                .arg(&keys.refusals)
                .arg(0)
                .arg(99)
                .ignore()
                .query::<()>(c)
        });
        return Err(e);
    }
    ensure_group(&cluster, &keys.tasks)?;
    crate::sys::process::flag_on_terminate(&DRAIN);
    // Spawned workers: the node's threads are busy with the server, and its SIGTERM handler
    // must not be inherited by workers a timeout stops with SIGTERM.
    let mut builder = Pool::builder().processes(processes).start_method(StartMethod::Spawn);
    if let Some(n) = std::env::var(NODE_MAX_TASKS_VAR).ok().and_then(|n| n.parse::<u64>().ok()) {
        builder = builder.max_tasks_per_child(n);
    }
    let pool = builder.build().map_err(|e| Error::with_source(e.kind(), "starting the node's pool", e))?;
    let node = Arc::new(Node {
        cluster,
        keys,
        name,
        processes,
        pool,
        held: Mutex::new(HashMap::new()),
        room: Condvar::new(),
        outbox: Mutex::new(Vec::new()),
        ready: Condvar::new(),
        lease_ms: AtomicU64::new(lease_ms),
        batch_ns: AtomicU64::new(u64::MAX),
        drivers: Mutex::new(HashMap::new()),
        stop: AtomicBool::new(false),
    });
    node.register()?;
    let reporter = {
        let node = node.clone();
        std::thread::Builder::new().name("multiproc-node-report".into()).spawn(move || node.report_loop())
    };
    let keeper = {
        let node = node.clone();
        std::thread::Builder::new().name("multiproc-node-keep".into()).spawn(move || node.keep_loop())
    };
    let (reporter, keeper) = match (reporter, keeper) {
        (Ok(r), Ok(k)) => (r, k),
        (Err(e), _) | (_, Err(e)) => return Err(Error::with_source(ErrorKind::Os, "starting a node thread", e)),
    };
    let fetched = node.fetch_loop();
    // Draining (or failing): finish what is held, then leave.
    {
        let mut held = node.held();
        while !held.is_empty() && fetched.is_ok() {
            held = node.room.wait_timeout(held, Duration::from_millis(100)).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
    node.stop.store(true, Ordering::SeqCst);
    node.ready.notify_all();
    let _ = reporter.join();
    let _ = keeper.join();
    let _ = node.cluster.call("leaving the cluster", |c| {
        redis::pipe()
            .cmd("HDEL")
            .arg(&node.keys.nodes)
            .arg(&node.name)
            .ignore()
            .cmd("DEL")
            .arg(Keys::node(&node.cluster, &node.name))
            .ignore()
            .query::<()>(c)
    });
    node.pool.terminate();
    fetched
}

/// The namespace's lease, as its last pool set it.
fn read_lease(cluster: &Cluster, keys: &Keys) -> u64 {
    let lease: Result<Option<u64>> =
        cluster.call("reading the lease", |c| redis::cmd("HGET").arg(&keys.config).arg("lease_ms").query(c));
    lease.ok().flatten().unwrap_or(DEFAULT_LEASE_MS).max(100)
}

impl Node {
    fn held(&self) -> MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms.load(Ordering::Relaxed))
    }

    /// Batches held at most: two per process, so each has the next at hand — more while
    /// batches are short (under [`SHORT`] from hand-over to result), so that a node of quick
    /// tasks is not held up by its round trips to the server. Long batches keep it at two, so
    /// that one node does not sit on work another could start.
    fn capacity(&self) -> usize {
        let typical = Duration::from_nanos(self.batch_ns.load(Ordering::Relaxed));
        self.processes * if typical < SHORT { 32 } else { 2 }
    }

    /// Folds one batch's time from hand-over to result into the typical time.
    fn timed(&self, took: Duration) {
        let took = took.as_nanos().min(u128::from(u64::MAX / 2)) as u64;
        let old = self.batch_ns.load(Ordering::Relaxed);
        let new = if old == u64::MAX { took } else { old - old / 8 + took / 8 };
        self.batch_ns.store(new, Ordering::Relaxed);
    }

    /// Puts the node in the registry (drivers size their chunks by it) with a liveness key.
    fn register(&self) -> Result<()> {
        self.cluster.call("registering the node", |c| {
            redis::pipe()
                .cmd("HSET")
                .arg(&self.keys.nodes)
                .arg(&self.name)
                .arg(self.processes)
                .ignore()
                .cmd("SET")
                .arg(Keys::node(&self.cluster, &self.name))
                .arg(1)
                .arg("PX")
                .arg(self.lease_ms.load(Ordering::Relaxed))
                .ignore()
                .query::<()>(c)
        })
    }

    /// Reads new batches while there is room, until SIGTERM.
    fn fetch_loop(self: &Arc<Node>) -> Result<()> {
        while !DRAIN.load(Ordering::SeqCst) {
            let room = {
                let held = self.held();
                let room = self.capacity().saturating_sub(held.len());
                if room == 0 {
                    drop(self.room.wait_timeout(held, Duration::from_millis(100)).unwrap_or_else(|p| p.into_inner()));
                    continue;
                }
                room
            };
            type Read = Option<Vec<(String, Vec<(String, HashMap<String, Vec<u8>>)>)>>;
            let read: Option<Read> = self.cluster.wait_call(
                "reading tasks",
                Some(Instant::now() + Duration::from_millis(200)),
                |c, left| {
                    let read: redis::RedisResult<Read> = redis::cmd("XREADGROUP")
                        .arg("GROUP")
                        .arg(GROUP)
                        .arg(&self.name)
                        .arg("COUNT")
                        .arg(room)
                        .arg("BLOCK")
                        .arg(left.as_millis().max(1) as u64)
                        .arg("STREAMS")
                        .arg(&self.keys.tasks)
                        .arg(">")
                        .query(c);
                    match read {
                        Ok(None) => Ok(None),
                        Ok(some) => Ok(Some(some)),
                        // The stream was deleted (a flush): make it again.
                        Err(e) if e.code() == Some("NOGROUP") => {
                            redis::cmd("XGROUP")
                                .arg("CREATE")
                                .arg(&self.keys.tasks)
                                .arg(GROUP)
                                .arg("0")
                                .arg("MKSTREAM")
                                .query::<()>(c)?;
                            Ok(None)
                        }
                        Err(e) => Err(e),
                    }
                },
            )?;
            for (_, entries) in read.flatten().unwrap_or_default() {
                for (stream_id, fields) in entries {
                    self.start(stream_id, fields.get("t").map(Vec::as_slice));
                }
            }
        }
        Ok(())
    }

    /// Runs one batch from the stream in the local pool.
    fn start(self: &Arc<Node>, stream_id: String, bytes: Option<&[u8]>) {
        let Some(entry) = bytes.and_then(|b| postcard::from_bytes::<TaskEntry>(b).ok()) else {
            // Not ours to read (another release wrote it): dropped, not retried for ever.
            self.done_with(vec![stream_id]);
            return;
        };
        if !self.driver_alive(&entry.driver) {
            self.done_with(vec![stream_id]);
            return;
        }
        let n = entry.layout.len();
        let sink = Collector::new(Some(n), false);
        let finished = {
            let (node, stream_id, driver, batch) = (self.clone(), stream_id.clone(), entry.driver.clone(), entry.batch);
            move |results: &crate::pool::Results| {
                let (chunks, failures) = results.parts();
                let outcome = Outcome::Ran {
                    chunks: chunks
                        .into_iter()
                        .map(|(first, bytes, layout)| (first as u64, ByteBuf::from(bytes), layout.clone()))
                        .collect(),
                    failures: failures.into_iter().map(|(i, e)| (i as u64, node.on_node(e.clone()))).collect(),
                };
                node.send(stream_id, driver, batch, outcome);
            }
        };
        self.held().insert(
            stream_id.clone(),
            Held { driver: entry.driver.clone(), sink: sink.clone(), started: Instant::now() },
        );
        if n == 0 {
            self.send(stream_id, entry.driver, entry.batch, Outcome::Ran { chunks: Vec::new(), failures: Vec::new() });
            return;
        }
        sink.lock().on_complete = Some(Box::new(finished));
        let mut batch = Batch::new(entry.entry, entry.args.into_vec(), Vec::new(), Vec::new(), sink, 0);
        batch.layout = entry.layout;
        batch.timeout = entry.timeout;
        if let Err(error) = self.pool.core.submit(vec![batch]) {
            let error = self.on_node(error);
            self.send(stream_id, entry.driver, entry.batch, Outcome::Failed(error));
        }
    }

    fn on_node(&self, error: TaskError) -> TaskError {
        TaskError::OnNode { node: self.name.clone(), error: Box::new(error) }
    }

    /// Queues a batch's outcome for its driver.
    fn send(&self, stream_id: String, driver: String, batch: u64, outcome: Outcome) {
        if let Some(held) = self.held().get(&stream_id) {
            self.timed(held.started.elapsed());
        }
        let report = match postcard::to_allocvec(&Report { batch, outcome }) {
            Ok(report) => report,
            Err(e) => {
                let failed = Outcome::Failed(self.on_node(TaskError::ResultEncode(e.to_string())));
                postcard::to_allocvec(&Report { batch, outcome: failed }).unwrap_or_default()
            }
        };
        let finished = Finished { stream_id, driver, report };
        let mut outbox = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
        // The only batch in hand (one task after another): sent from here at once, saving the
        // hand-over to the reporter. Otherwise the reporter gathers what finishes meanwhile.
        if outbox.is_empty() && self.held().len() <= 1 {
            drop(outbox);
            self.report(vec![finished]);
            return;
        }
        outbox.push(finished);
        drop(outbox);
        self.ready.notify_all();
    }

    /// Whether `driver`'s heartbeat key is alive (looked up at most once a second per driver).
    fn driver_alive(&self, driver: &str) -> bool {
        if let Some(seen) = self.drivers.lock().unwrap_or_else(|p| p.into_inner()).get(driver) {
            if seen.elapsed() < Duration::from_secs(1) {
                return true;
            }
        }
        let key = Keys::driver(&self.cluster, driver);
        let alive: Result<bool> = self.cluster.call("checking a driver", |c| redis::cmd("EXISTS").arg(&key).query(c));
        let alive = alive.unwrap_or(true);
        if alive {
            self.drivers.lock().unwrap_or_else(|p| p.into_inner()).insert(driver.to_owned(), Instant::now());
        }
        alive
    }

    /// Sends finished batches to their drivers, acknowledging their entries in the same
    /// transaction (so a result is never lost to an acknowledged entry; a node that dies in
    /// between has its batch run again, and the driver keeps the first result).
    fn report_loop(&self) {
        loop {
            let finished = {
                let mut outbox = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
                while outbox.is_empty() && !self.stop.load(Ordering::SeqCst) {
                    outbox = self
                        .ready
                        .wait_timeout(outbox, Duration::from_millis(200))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                if outbox.is_empty() {
                    return;
                }
                std::mem::take(&mut *outbox)
            };
            self.report(finished);
        }
    }

    /// Sends finished batches to their drivers in one transaction (see `report_loop`), and
    /// makes room for more.
    fn report(&self, finished: Vec<Finished>) {
        let sent = self.cluster.call("sending results", |c| {
            let mut pipe = redis::pipe();
            pipe.atomic();
            for f in &finished {
                let results = Keys::results(&self.cluster, &f.driver);
                pipe.cmd("XADD").arg(&results).arg("*").arg("r").arg(f.report.as_slice()).ignore();
                pipe.cmd("PEXPIRE").arg(&results).arg(RESULTS_TTL_MS).ignore();
                pipe.cmd("XACK").arg(&self.keys.tasks).arg(GROUP).arg(&f.stream_id).ignore();
                pipe.cmd("XDEL").arg(&self.keys.tasks).arg(&f.stream_id).ignore();
            }
            pipe.query::<()>(c)
        });
        if let Err(e) = sent {
            eprintln!("multiproc node {}: {e}", self.name);
            DRAIN.store(true, Ordering::SeqCst);
        }
        let mut held = self.held();
        for f in &finished {
            held.remove(&f.stream_id);
        }
        drop(held);
        self.room.notify_all();
    }

    /// Acknowledges entries this node will not run (and forgets them).
    fn done_with(&self, stream_ids: Vec<String>) {
        if stream_ids.is_empty() {
            return;
        }
        let _ = self.cluster.call("dropping tasks", |c| {
            redis::pipe()
                .cmd("XACK")
                .arg(&self.keys.tasks)
                .arg(GROUP)
                .arg(&stream_ids)
                .ignore()
                .cmd("XDEL")
                .arg(&self.keys.tasks)
                .arg(&stream_ids)
                .ignore()
                .query::<()>(c)
        });
        let mut held = self.held();
        for id in &stream_ids {
            held.remove(id);
        }
        drop(held);
        self.room.notify_all();
    }

    /// Every third of the lease: renews, drops dead drivers' work, takes over lost batches.
    fn keep_loop(self: &Arc<Node>) {
        while !self.stop.load(Ordering::SeqCst) {
            let every = (self.lease() / 3).clamp(Duration::from_millis(30), Duration::from_secs(2));
            let began = Instant::now();
            if let Err(e) = self.keep() {
                eprintln!("multiproc node {}: {e}", self.name);
                DRAIN.store(true, Ordering::SeqCst);
                if e.kind() == ErrorKind::StateLost {
                    // Nothing held can be reported: the server forgot the drivers' tasks.
                    for (_, held) in self.held().drain() {
                        self.pool.core.cancel_submission(&held.sink, true);
                    }
                    self.room.notify_all();
                }
            }
            while began.elapsed() < every && !self.stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10).min(every));
            }
        }
    }

    fn keep(self: &Arc<Node>) -> Result<()> {
        self.cluster.epoch_holds()?;
        self.lease_ms.store(read_lease(&self.cluster, &self.keys), Ordering::Relaxed);
        let lease = self.lease();
        self.register()?;
        let _ = self.cluster.claim_build(lease);
        self.renew()?;
        self.drop_orphans()?;
        if !DRAIN.load(Ordering::SeqCst) {
            self.take_over(lease)?;
        }
        Ok(())
    }

    /// Resets the idle time of the entries this node holds and still owns in the group.
    fn renew(&self) -> Result<()> {
        let ids: Vec<String> = self.held().keys().cloned().collect();
        if ids.is_empty() {
            return Ok(());
        }
        let owned: Vec<(String, String, u64, u64)> = self.cluster.call("renewing leases", |c| {
            redis::cmd("XPENDING")
                .arg(&self.keys.tasks)
                .arg(GROUP)
                .arg("-")
                .arg("+")
                .arg(10_000)
                .arg(&self.name)
                .query(c)
        })?;
        let held: HashSet<&String> = ids.iter().collect();
        let mine: Vec<&String> = owned.iter().map(|(id, ..)| id).filter(|id| held.contains(id)).collect();
        if mine.is_empty() {
            return Ok(());
        }
        // Claiming an entry one owns resets its idle time and leaves its delivery count.
        self.cluster.call("renewing leases", |c| {
            redis::cmd("XCLAIM")
                .arg(&self.keys.tasks)
                .arg(GROUP)
                .arg(&self.name)
                .arg(0)
                .arg(&mine)
                .arg("JUSTID")
                .query::<Vec<String>>(c)
        })?;
        Ok(())
    }

    /// Stops and drops the held batches whose driver's heartbeat expired.
    fn drop_orphans(&self) -> Result<()> {
        let drivers: Vec<String> = {
            let held = self.held();
            let set: HashSet<&String> = held.values().map(|h| &h.driver).collect();
            set.into_iter().cloned().collect()
        };
        if drivers.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = drivers.iter().map(|driver| Keys::driver(&self.cluster, driver)).collect();
        let alive = self.cluster.exist("checking drivers", &keys)?;
        let dead: HashSet<&String> = drivers.iter().zip(alive).filter(|(_, a)| !a).map(|(d, _)| d).collect();
        if dead.is_empty() {
            return Ok(());
        }
        let orphans: Vec<(String, Arc<Collector>)> = self
            .held()
            .iter()
            .filter(|(_, h)| dead.contains(&h.driver))
            .map(|(id, h)| (id.clone(), h.sink.clone()))
            .collect();
        for (_, sink) in &orphans {
            // The outcome (cancelled) has nobody to go to: the completion hook still queues
            // it, and the driver's list expires unread.
            self.pool.core.cancel_submission(sink, true);
        }
        self.done_with(orphans.into_iter().map(|(id, _)| id).collect());
        Ok(())
    }

    /// Takes over entries other nodes left idle for a whole lease, as far as there is room;
    /// fails those handed out too often.
    fn take_over(self: &Arc<Node>, lease: Duration) -> Result<()> {
        let room = self.capacity().saturating_sub(self.held().len());
        if room == 0 {
            return Ok(());
        }
        let lease_ms = lease.as_millis() as u64;
        let stale: Vec<(String, String, u64, u64)> = self.cluster.call("looking for lost tasks", |c| {
            redis::cmd("XPENDING")
                .arg(&self.keys.tasks)
                .arg(GROUP)
                .arg("IDLE")
                .arg(lease_ms)
                .arg("-")
                .arg("+")
                .arg(room)
                .query(c)
        })?;
        for (stream_id, owner, _idle, deliveries) in stale {
            if owner == self.name && self.held().contains_key(&stream_id) {
                // Ours, and not renewed (this node was stopped): it is renewed again now. One
                // of ours that we do not hold was lost on its way to us (the reply of a read
                // cut off by a server restart): taken again below.
                continue;
            }
            type Claimed = Vec<(String, Option<HashMap<String, Vec<u8>>>)>;
            let claimed: Claimed = self.cluster.call("taking over a lost task", |c| {
                redis::cmd("XCLAIM")
                    .arg(&self.keys.tasks)
                    .arg(GROUP)
                    .arg(&self.name)
                    .arg(lease_ms)
                    .arg(&stream_id)
                    .query(c)
            })?;
            let Some((stream_id, fields)) = claimed.into_iter().next() else { continue };
            let bytes = fields.as_ref().and_then(|f| f.get("t")).map(Vec::as_slice);
            let entry = bytes.and_then(|b| postcard::from_bytes::<TaskEntry>(b).ok());
            match entry {
                Some(entry) if deliveries >= u64::from(entry.max_deliveries) => {
                    let lost = TaskError::WorkerLost { node: owner, deliveries: deliveries as u32 };
                    self.held().insert(
                        stream_id.clone(),
                        Held {
                            driver: entry.driver.clone(),
                            sink: Collector::new(Some(0), false),
                            started: Instant::now(),
                        },
                    );
                    self.send(stream_id, entry.driver, entry.batch, Outcome::Failed(lost));
                }
                _ => self.start(stream_id, bytes),
            }
        }
        Ok(())
    }
}
