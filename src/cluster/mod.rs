//! Past one machine: a pool whose workers are other machines, and queues, dicts, locks and the
//! rest on a Redis-protocol server (Redis ≥ 6.2, or Valkey), reachable by every process that can
//! reach the server (feature `cluster`).
//!
//! # The pool
//! A program moves from one machine to many by changing where its pool is built:
//!
//! ```no_run
//! use multiproc::{Pool, cluster::Cluster};
//!
//! fn simulate(seed: u64) -> f64 { seed as f64 * 0.5 }
//!
//! // MULTIPROC_CLUSTER=redis://:secret@10.0.0.5:6379 runs it on the cluster; unset, here.
//! let pool = match Cluster::from_env().unwrap() {
//!     Some(cluster) => cluster.pool().build().unwrap(),
//!     None => Pool::new(4).unwrap(),
//! };
//! let results = pool.map(simulate, 0..10_000).unwrap();
//! ```
//! Everything else is the same [`Pool`](crate::Pool) (or
//! [`ProcessPoolExecutor`](crate::ProcessPoolExecutor), with
//! [`build_executor`](ClusterPoolBuilder::build_executor)): `map`, `imap`, `starmap`,
//! `apply_async` with callbacks (run in the driver), `submit`, `as_completed`, `cancel`,
//! per-task timeouts, progress bars, the same result types.
//!
//! **Nodes** run the tasks: the same binary, started with [`NODE_VAR`] naming the cluster,
//! becomes a node agent before `main` runs. It reads batches off the namespace's task stream and
//! runs them in a local pool of [`NODE_PROCESSES_VAR`] processes, so a task that panics,
//! segfaults or is OOM-killed fails at once ([`TaskError::OnNode`], with the node, the pid and
//! the signal) and the node goes on. Nodes join and leave at any time; SIGTERM drains one.
//!
//! ```text
//! redis-server --requirepass secret --bind 10.0.0.5          # the server
//! MULTIPROC_CLUSTER=redis://:secret@10.0.0.5 ./sims          # the driver
//! MULTIPROC_NODE=redis://:secret@10.0.0.5 ./sims             # each worker machine
//! ```
//!
//! What differs from a local pool, and why:
//! - Functions travel as offsets into the binary, as locally, so every node must run **the
//!   same build**: a node of another build refuses to serve and says so to the drivers
//!   ([`Cluster::refused_nodes`]); a driver of another build than live nodes is refused at
//!   connect.
//! - `processes` only sizes chunks (4 per process, as locally); by default it is the live
//!   nodes' processes. The nodes decide how many tasks run at once; `resize` is refused.
//! - Arguments and results must not hold handles of one machine (pipes, local queues, shared
//!   memory): the cluster's own objects, below, travel instead.
//! - Errors that happened on a node come wrapped in [`TaskError::OnNode`]; [`TaskError::cause`]
//!   looks through it.
//! - `cancel` withdraws a task that has not started; one already running on a node finishes
//!   there and its result is dropped.
//! - `stats` is empty: the workers are the nodes'.
//!
//! # The failure contract
//! Tasks are **at least once, with leases**: a node renews the leases of the batches it holds
//! every third of the lease (default 30 s, [`ClusterPoolBuilder::lease`]).
//!
//! | what happens | what the driver sees |
//! |---|---|
//! | a task panics, segfaults, exits, is OOM-killed | that task fails at once ([`TaskError::OnNode`]); the node goes on |
//! | a node dies, or is cut off from the server | its batches run again on other nodes after the lease |
//! | … as many times as [`max_deliveries`](ClusterPoolBuilder::max_deliveries) (3) | [`TaskError::WorkerLost`] |
//! | a cut-off node comes back and reports late | dropped: the first result wins, callbacks run once |
//! | the driver dies | nodes drop its batches (stopping running ones) once its heartbeat expires |
//! | the server restarts with its data (AOF) | nothing: calls reconnect with backoff and are issued again |
//! | the server restarts without its data | every outstanding task fails ([`TaskError::Broken`]), every object call with [`ErrorKind::StateLost`] |
//! | the server stays unreachable past [`Cluster::set_unreachable_timeout`] (30 s) | [`ErrorKind::Disconnected`]; the pool is broken |
//!
//! Nothing waits for ever: every blocking call has a deadline or a lease behind it.
//!
//! # The objects
//! Named objects live under the handle's *namespace*; programs that share the server's address
//! and the namespace meet at the same objects, and every handle rides in a process's or a
//! task's arguments as a local one does: [`Queue`] (bounded too), [`JoinableQueue`] (an item
//! whose consumer dies before `task_done` goes to another after its lease), [`List`], [`Dict`],
//! [`Value`] and [`Namespace`] with atomic `add` and `apply` (run here, retried if another
//! write came in between — the server never runs our code), [`Lock`] and [`RLock`] with leases,
//! fencing tokens and the owner-died outcome, [`Semaphore`], [`Event`] and [`Barrier`]. Every key
//! of one object shares a hash tag (`mp:{namespace:name}:…`), so that scripts and transactions
//! over it stay valid on Redis Cluster.
//!
//! # The server
//! At connect the server is checked: its `maxmemory-policy` must be `noeviction` (a server
//! allowed to evict would drop queue items and locks silently). The password or ACL user in the
//! URL (`redis://user:password@host:6379`) plays the part of the authkey; a wrong one is
//! [`ErrorKind::Authentication`]. Anyone who can write to the namespace can make its nodes run
//! any function of the binary: give the server a password (or an ACL user per namespace), bind
//! it to a private network, and use TLS across untrusted ones (`rediss://` — see the README).
//!
//! ```no_run
//! use multiproc::cluster::Cluster;
//! let cluster = Cluster::connect("redis://127.0.0.1:6379", "crawl").unwrap();
//! let urls = cluster.queue::<String>("urls").unwrap();
//! urls.put(&"https://example.com".to_string()).unwrap();
//! assert_eq!(urls.get().unwrap(), "https://example.com");
//! ```
//! Python counterpart: `ray.util.multiprocessing.Pool` for the pool; for the objects, none in
//! the standard library (a `BaseManager` served over TCP).
//!
//! [`TaskError::OnNode`]: crate::pool::TaskError::OnNode
//! [`TaskError::WorkerLost`]: crate::pool::TaskError::WorkerLost
//! [`TaskError::Broken`]: crate::pool::TaskError::Broken
//! [`TaskError::cause`]: crate::pool::TaskError::cause

/// A named object travels as its cluster, its name and up to two numbers of its make (a
/// lease, a capacity); the receiving process makes the same object again with `make`.
macro_rules! travels_by_name {
    ($ty:ident $(<$($g:ident),+>)?, |$me:ident| $extra:expr, |$cluster:ident, $name:ident, $x:ident| $make:expr) => {
        impl $(<$($g),+>)? serde::Serialize for $ty $(<$($g),+>)? {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
                let $me = self;
                let extra: [u64; 2] = $extra;
                (&$me.cluster, &$me.name, extra).serialize(serializer)
            }
        }

        impl<'de $(, $($g),+)?> serde::Deserialize<'de> for $ty $(<$($g),+>)? {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
                let ($cluster, $name, $x): ($crate::cluster::Cluster, String, [u64; 2]) =
                    serde::Deserialize::deserialize(deserializer)?;
                let _ = &$x;
                $make.map_err(serde::de::Error::custom)
            }
        }
    };
}

mod barrier;
mod dict;
mod event;
mod joinable;
mod list;
mod lock;
pub(crate) mod node;
mod pool;
mod queue;
mod semaphore;
mod value;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};

pub use barrier::Barrier;
pub use dict::Dict;
pub use event::Event;
pub use joinable::JoinableQueue;
pub use list::List;
pub use lock::{Lock, LockGuard, RLock, RLockGuard};
pub use node::{NODE_MAX_TASKS_VAR, NODE_NAME_VAR, NODE_PROCESSES_VAR, NODE_VAR};
pub use pool::ClusterPoolBuilder;
pub use queue::Queue;
pub use semaphore::{Semaphore, SemaphoreGuard};
pub use value::{Namespace, Value};

/// The environment variable naming the cluster for [`Cluster::from_env`].
pub const CLUSTER_VAR: &str = "MULTIPROC_CLUSTER";
/// The environment variable naming the namespace for [`Cluster::from_env`] (default `multiproc`).
pub const NAMESPACE_VAR: &str = "MULTIPROC_NAMESPACE";

/// A connection to a Redis-protocol server under one namespace. Cheap to clone (clones share the
/// connection). It travels in a process's arguments (or any message): the other side connects
/// to the same server and namespace, on whatever machine it runs.
///
/// ```no_run
/// let cluster = multiproc::cluster::Cluster::connect("redis+unix:///run/redis.sock", "jobs").unwrap();
/// assert_eq!(cluster.namespace(), "jobs");
/// ```
/// Python counterpart: `BaseManager(address, authkey).connect()`, for a server of another kind.
#[derive(Clone)]
pub struct Cluster {
    shared: Arc<Shared>,
}

struct Shared {
    url: String,
    namespace: String,
    connection: Mutex<redis::Connection>,
    /// Connections for blocking calls, kept between them (a fresh one costs a connect and an
    /// `AUTH`, more than a short wait itself).
    spare: Mutex<Vec<redis::Connection>>,
    /// The server's epoch when we connected: a random value kept in the namespace. A server
    /// that comes back without it (or with another) lost its data.
    epoch: String,
    /// How long calls keep reconnecting to an unreachable server before they fail (ms).
    unreachable_ms: AtomicU64,
}

/// How long calls reconnect to an unreachable server before they fail, unless set.
const UNREACHABLE: Duration = Duration::from_secs(30);
/// A reply slower than this on a live connection means the link is gone (a blocking call
/// waits this much longer than it asked the server to).
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster").field("namespace", &self.shared.namespace).finish_non_exhaustive()
    }
}

/// A connection for a blocking call, back to the spare list when dropped (unless the call
/// failed: a connection in an unknown state is closed).
pub(crate) struct Blocking<'a> {
    cluster: &'a Cluster,
    connection: Option<redis::Connection>,
}

impl Blocking<'_> {
    /// Closes the connection instead of keeping it (after an error).
    pub(crate) fn discard(mut self) {
        self.connection = None;
    }
}

impl std::ops::Deref for Blocking<'_> {
    type Target = redis::Connection;

    fn deref(&self) -> &redis::Connection {
        self.connection.as_ref().expect("held until dropped")
    }
}

impl std::ops::DerefMut for Blocking<'_> {
    fn deref_mut(&mut self) -> &mut redis::Connection {
        self.connection.as_mut().expect("held until dropped")
    }
}

impl Drop for Blocking<'_> {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            self.cluster.shared.spare.lock().unwrap_or_else(|p| p.into_inner()).push(connection);
        }
    }
}

/// A cluster handle travels as its address and namespace (password included: it plays the
/// part of the authkey): the receiving process connects again and checks again.
impl serde::Serialize for Cluster {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.shared.url, &self.shared.namespace).serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for Cluster {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Cluster, D::Error> {
        let (url, namespace) = <(String, String)>::deserialize(deserializer)?;
        Cluster::connect(&url, &namespace).map_err(serde::de::Error::custom)
    }
}

/// What a server error means to a caller.
pub(crate) fn server_error(doing: &str, e: redis::RedisError) -> Error {
    let kind = match e.kind() {
        redis::ErrorKind::AuthenticationFailed => ErrorKind::Authentication,
        _ if e.code() == Some("WRONGPASS") || e.code() == Some("NOAUTH") || e.code() == Some("NOPERM") => {
            ErrorKind::Authentication
        }
        _ if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() => {
            ErrorKind::Disconnected
        }
        _ => ErrorKind::Protocol,
    };
    Error::with_source(kind, format!("cluster: {doing}"), e)
}

impl Cluster {
    /// Connects to the server at `url` under `namespace`, and checks it (see the
    /// [module docs](self)). `redis://host:port`, `redis+unix:///path/to/socket`, and with the
    /// feature `cluster-tls`, `rediss://host:port` over TLS — trusting the system's certificate
    /// authorities, or those of a PEM file named by a `ca` query parameter
    /// (`rediss://:secret@10.0.0.5:6380/?ca=/etc/multiproc/ca.pem`). The password or ACL user
    /// in the URL is the authkey.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a bad URL or namespace, or a server whose
    /// `maxmemory-policy` may evict keys; [`ErrorKind::Authentication`] for a wrong password or
    /// user; [`ErrorKind::Disconnected`] if the server cannot be reached;
    /// [`ErrorKind::BuildMismatch`] if the namespace was made by another build.
    ///
    /// ```no_run
    /// let cluster = multiproc::cluster::Cluster::connect("redis://:secret@10.0.0.5:6379", "etl").unwrap();
    /// ```
    /// Python counterpart: `BaseManager(address, authkey).connect()`.
    pub fn connect(url: &str, namespace: &str) -> Result<Cluster> {
        let cluster = Cluster::connect_unchecked(url, namespace)?;
        cluster.check_build()?;
        Ok(cluster)
    }

    /// As [`connect`](Self::connect), without the build check (a node makes its own, and
    /// reports a refusal to the drivers).
    pub(crate) fn connect_unchecked(url: &str, namespace: &str) -> Result<Cluster> {
        let bad_name = namespace.is_empty() || namespace.contains(['{', '}', ':']) || namespace.len() > 100;
        if bad_name {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("namespace {namespace:?}: 1 to 100 characters, none of {{, }} or :"),
            ));
        }
        let client = client(url)?;
        let mut connection = open(&client).map_err(|e| server_error("connecting", e))?;
        check_eviction(&mut connection)?;
        let epoch = epoch_of(&mut connection, namespace)?;
        let cluster = Cluster {
            shared: Arc::new(Shared {
                url: url.to_owned(),
                namespace: namespace.to_owned(),
                connection: Mutex::new(connection),
                spare: Mutex::new(Vec::new()),
                epoch,
                unreachable_ms: AtomicU64::new(UNREACHABLE.as_millis() as u64),
            }),
        };
        Ok(cluster)
    }

    /// Connects to the cluster the environment names, if it names one: the URL in
    /// `MULTIPROC_CLUSTER`, the namespace in `MULTIPROC_NAMESPACE` (default `multiproc`). The same
    /// program then runs on one machine or against a cluster without a change.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    ///
    /// ```
    /// // With no MULTIPROC_CLUSTER set, there is no cluster to use.
    /// # unsafe { std::env::remove_var("MULTIPROC_CLUSTER") };
    /// assert!(multiproc::cluster::Cluster::from_env().unwrap().is_none());
    /// ```
    /// Python counterpart: none (Ray's `RAY_ADDRESS`).
    pub fn from_env() -> Result<Option<Cluster>> {
        let Ok(url) = std::env::var(CLUSTER_VAR) else { return Ok(None) };
        let namespace = std::env::var(NAMESPACE_VAR).unwrap_or_else(|_| "multiproc".to_owned());
        Cluster::connect(&url, &namespace).map(Some)
    }

    /// The namespace this handle works in.
    ///
    /// ```no_run
    /// let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap();
    /// assert_eq!(cluster.namespace(), "jobs");
    /// ```
    /// Python counterpart: none.
    pub fn namespace(&self) -> &str {
        &self.shared.namespace
    }

    /// How long calls keep reconnecting (with backoff) to a server that cannot be reached before
    /// they fail with [`ErrorKind::Disconnected`] (default 30 s). A blocking call cut off by a
    /// restart is issued again once the server is back; a server that came back without its
    /// data fails every call with [`ErrorKind::StateLost`].
    ///
    /// ```no_run
    /// let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap();
    /// cluster.set_unreachable_timeout(std::time::Duration::from_secs(5));
    /// ```
    /// Python counterpart: none.
    pub fn set_unreachable_timeout(&self, timeout: Duration) {
        self.shared.unreachable_ms.store(timeout.as_millis().min(u128::from(u64::MAX)) as u64, Ordering::Relaxed);
    }

    fn unreachable_timeout(&self) -> Duration {
        Duration::from_millis(self.shared.unreachable_ms.load(Ordering::Relaxed))
    }

    /// Runs `call` on the shared connection. If the connection is lost, reconnects with backoff
    /// (for as long as the unreachable timeout allows), checks that the server kept its data,
    /// and runs it again — so a call may reach the server twice, as any retried call can.
    pub(crate) fn call<T>(
        &self,
        doing: &str,
        mut call: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        let mut connection = self.connection();
        let mut outcome = call(&mut connection);
        let mut backoff = Backoff::new(self.unreachable_timeout());
        loop {
            match outcome {
                Ok(value) => return Ok(value),
                Err(e) if !lost_link(&e) => return Err(server_error(doing, e)),
                Err(e) => {
                    backoff.pause(doing, e)?;
                    match self.reconnect() {
                        Ok(fresh) => {
                            *connection = fresh;
                            outcome = call(&mut connection);
                        }
                        Err(e) if e.kind() == ErrorKind::Disconnected => outcome = Err(lost()),
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }

    /// Which of `keys` exist, in one round trip.
    pub(crate) fn exist(&self, doing: &str, keys: &[String]) -> Result<Vec<bool>> {
        self.call(doing, |c| {
            let mut pipe = redis::pipe();
            for key in keys {
                pipe.cmd("EXISTS").arg(key);
            }
            pipe.query(c)
        })
    }

    /// Runs a call that blocks on the server for up to the time it is given, until `deadline`
    /// (`None`: for ever), on a connection of its own (see [`blocking_connection`]); `call`
    /// returns `None` while it has nothing. A lost connection is replaced (as in [`call`]) and
    /// the call issued again for the time left.
    ///
    /// [`blocking_connection`]: Self::blocking_connection
    /// [`call`]: Self::call
    pub(crate) fn wait_call<T>(
        &self,
        doing: &str,
        deadline: Option<Instant>,
        mut call: impl FnMut(&mut redis::Connection, Duration) -> redis::RedisResult<Option<T>>,
    ) -> Result<Option<T>> {
        let mut connection = self.blocking_connection()?;
        let mut backoff = Backoff::new(self.unreachable_timeout());
        loop {
            let left = deadline.map_or(Duration::from_secs(5), |d| d.saturating_duration_since(Instant::now()));
            if left.is_zero() {
                return Ok(None);
            }
            // The server takes seconds as a float, rounded to its clock; the loop goes on until
            // the deadline has really passed.
            let left = left.min(Duration::from_secs(5)).max(Duration::from_millis(1));
            let _ = connection.set_read_timeout(Some(left + REPLY_TIMEOUT));
            match call(&mut connection, left) {
                Ok(Some(value)) => return Ok(Some(value)),
                Ok(None) => backoff = Backoff::new(self.unreachable_timeout()),
                Err(e) if !lost_link(&e) => {
                    connection.discard();
                    return Err(server_error(doing, e));
                }
                Err(e) => {
                    backoff.pause(doing, e)?;
                    match self.reconnect() {
                        Ok(fresh) => connection.connection = Some(fresh),
                        Err(e) if e.kind() == ErrorKind::Disconnected => {}
                        Err(e) => {
                            connection.discard();
                            return Err(e);
                        }
                    }
                }
            }
        }
    }

    /// A new connection, checked to be to the server we knew: the epoch we connected under
    /// must still be there.
    fn reconnect(&self) -> Result<redis::Connection> {
        let client = client(&self.shared.url)?;
        let mut connection = open(&client).map_err(|e| server_error("reconnecting", e))?;
        self.check_epoch(&mut connection)?;
        Ok(connection)
    }

    /// Fails with [`ErrorKind::StateLost`] if the server no longer holds the epoch we
    /// connected under.
    pub(crate) fn check_epoch(&self, connection: &mut redis::Connection) -> Result<()> {
        let key = format!("mp:{{{}}}:epoch", self.shared.namespace);
        let now: Option<String> =
            redis::cmd("GET").arg(&key).query(connection).map_err(|e| server_error("reading the epoch", e))?;
        if now.as_deref() == Some(self.shared.epoch.as_str()) {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::StateLost,
            format!(
                "the cluster server of namespace {:?} lost its data (it restarted without persistence, or was \
                 flushed): queued items, tasks and locks from before are gone",
                self.shared.namespace
            ),
        ))
    }

    /// Whether the server still holds the data we knew (a check for the pool's heartbeat).
    pub(crate) fn epoch_holds(&self) -> Result<()> {
        let mut connection = self.connection();
        match self.check_epoch(&mut connection) {
            Err(e) if e.kind() == ErrorKind::Disconnected => {
                drop(connection);
                self.call("checking the epoch", |c| redis::cmd("PING").query::<String>(c))?;
                self.check_epoch(&mut self.connection())
            }
            other => other,
        }
    }

    /// The nodes that refused to serve this namespace, newest first: each a
    /// [`ErrorKind::BuildMismatch`] naming the node and both builds (the node exits, telling
    /// this too on its standard error).
    ///
    /// # Errors
    /// The server's errors.
    ///
    /// ```no_run
    /// let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap();
    /// for refusal in cluster.refused_nodes().unwrap() {
    ///     eprintln!("{refusal}");
    /// }
    /// ```
    /// Python counterpart: none.
    pub fn refused_nodes(&self) -> Result<Vec<Error>> {
        let key = self.key("pool", "refusals");
        let said: Vec<String> =
            self.call("reading refusals", |c| redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).query(c))?;
        Ok(said.into_iter().map(|why| Error::new(ErrorKind::BuildMismatch, why)).collect())
    }

    /// An optimistic update of one value at `key`: `read` fetches it under `WATCH`, `change`
    /// makes the new bytes (and what to return), `write` adds the commands that store them to a
    /// transaction, which the server refuses if another write reached `key` since the read —
    /// then it all runs again. A `change` that fails leaves everything as it was. `change` runs
    /// in this process: the server never runs our code.
    pub(crate) fn watched<T>(
        &self,
        key: &str,
        read: impl Fn(&mut redis::Connection) -> redis::RedisResult<Option<Vec<u8>>>,
        mut change: impl FnMut(Option<Vec<u8>>) -> Result<(Vec<u8>, T)>,
        write: impl Fn(&mut redis::Pipeline, Vec<u8>),
    ) -> Result<T> {
        let mut c = self.connection();
        loop {
            let old = redis::cmd("WATCH")
                .arg(key)
                .query::<()>(&mut *c)
                .and_then(|()| read(&mut c))
                .map_err(|e| server_error("reading a value to change", e))?;
            let (bytes, made) = match change(old) {
                Ok(made) => made,
                Err(e) => {
                    let _ = redis::cmd("UNWATCH").query::<()>(&mut *c);
                    return Err(e);
                }
            };
            let mut pipe = redis::pipe();
            pipe.atomic();
            write(&mut pipe, bytes);
            let done: Option<()> = pipe.query(&mut *c).map_err(|e| server_error("storing a changed value", e))?;
            if done.is_some() {
                return Ok(made);
            }
            // Another write came in between: look again.
        }
    }

    /// The key of `part` of object `object` (all of one object's keys share a hash tag).
    pub(crate) fn key(&self, object: &str, part: &str) -> String {
        format!("mp:{{{}:{object}}}:{part}", self.shared.namespace)
    }

    /// The connection, for one command or a few.
    pub(crate) fn connection(&self) -> MutexGuard<'_, redis::Connection> {
        self.shared.connection.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection of its own, for calls that block on the server (`BLPOP`), so that they do
    /// not hold up the others; it goes back to a spare list when the guard drops.
    pub(crate) fn blocking_connection(&self) -> Result<Blocking<'_>> {
        let kept = self.shared.spare.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let connection = match kept {
            Some(connection) => connection,
            None => match self.reconnect() {
                Ok(connection) => connection,
                // Unreachable for now: the caller's retries (see `wait_call`) wait it out.
                Err(e) if e.kind() == ErrorKind::Disconnected => {
                    self.call("connecting", |c| redis::cmd("PING").query::<String>(c))?;
                    self.reconnect()?
                }
                Err(e) => return Err(e),
            },
        };
        Ok(Blocking { cluster: self, connection: Some(connection) })
    }

    /// Checks the namespace's build stamp, if a live pool or node left one.
    fn check_build(&self) -> Result<()> {
        let theirs: Option<String> =
            self.call("reading the namespace's stamp", |c| redis::cmd("GET").arg(self.build_key()).query(c))?;
        match theirs {
            Some(theirs) if theirs != build() => Err(self.mismatch(&theirs)),
            _ => Ok(()),
        }
    }

    /// Stamps the namespace with this build for `ttl` (pools and nodes renew it while they
    /// live: tasks travel as offsets into the binary, so the processes that run them must be
    /// one build), or fails if another build holds it.
    pub(crate) fn claim_build(&self, ttl: Duration) -> Result<()> {
        const CLAIM: &str = "local v = redis.call('GET', KEYS[1]) \
            if v == false or v == ARGV[1] then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return '' end \
            return v";
        let ours = build();
        let theirs: String = self.call("stamping the namespace", |c| {
            redis::Script::new(CLAIM).key(self.build_key()).arg(&ours).arg(ttl.as_millis() as u64).invoke(c)
        })?;
        if theirs.is_empty() { Ok(()) } else { Err(self.mismatch(&theirs)) }
    }

    fn build_key(&self) -> String {
        format!("mp:{{{}}}:build", self.shared.namespace)
    }

    fn mismatch(&self, theirs: &str) -> Error {
        Error::new(
            ErrorKind::BuildMismatch,
            format!(
                "namespace {:?} is in use by build {theirs} and this program is build {}: every process of \
                 a namespace's pool must run the same binary (stop the others, or use another namespace)",
                self.shared.namespace,
                build(),
            ),
        )
    }
}

/// A client for `url`; `rediss://` ones over TLS, trusting the system's certificate
/// authorities, or those in the PEM file a `ca=PATH` query parameter names.
fn client(url: &str) -> Result<redis::Client> {
    let bad = |e| Error::with_source(ErrorKind::InvalidInput, format!("cluster address {}", redacted(url)), e);
    if !url.starts_with("rediss://") {
        return redis::Client::open(url).map_err(bad);
    }
    #[cfg(feature = "cluster-tls")]
    {
        // The process-wide default, unless the program installed another.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (url, ca) = split_ca(url);
        let Some(path) = ca else { return redis::Client::open(url).map_err(bad) };
        let pem = std::fs::read(&path)
            .map_err(|e| Error::with_source(ErrorKind::InvalidInput, format!("the cluster's CA file {path}"), e))?;
        redis::Client::build_with_tls(url, redis::TlsCertificates { client_tls: None, root_cert: Some(pem) })
            .map_err(bad)
    }
    #[cfg(not(feature = "cluster-tls"))]
    Err(Error::new(
        ErrorKind::InvalidInput,
        format!("cluster address {}: TLS (rediss://) needs the feature cluster-tls", redacted(url)),
    ))
}

/// `url` without its `ca=PATH` query parameter, and the path.
#[cfg(feature = "cluster-tls")]
fn split_ca(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else { return (url.to_owned(), None) };
    let mut ca = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix("ca=") {
            Some(path) => {
                ca = Some(path.to_owned());
                false
            }
            None => true,
        })
        .collect();
    let url = if rest.is_empty() { base.to_owned() } else { format!("{base}?{}", rest.join("&")) };
    (url, ca)
}

/// This program's build fingerprint, in hex.
fn build() -> String {
    hex(crate::sys::build_id::fingerprint())
}

/// A connection, with timeouts that keep a dead link from hanging a call.
fn open(client: &redis::Client) -> redis::RedisResult<redis::Connection> {
    let connection = client.get_connection_with_timeout(REPLY_TIMEOUT)?;
    connection.set_read_timeout(Some(REPLY_TIMEOUT))?;
    connection.set_write_timeout(Some(REPLY_TIMEOUT))?;
    Ok(connection)
}

/// The namespace's epoch: made (a random value) by the first program to connect after the
/// server started empty.
fn epoch_of(connection: &mut redis::Connection, namespace: &str) -> Result<String> {
    let key = format!("mp:{{{namespace}}}:epoch");
    let fresh =
        hex(&crate::sys::random::bytes32().map_err(|e| Error::with_source(ErrorKind::Os, "making an epoch", e))?[..16]);
    let _: Option<String> = redis::cmd("SET")
        .arg(&key)
        .arg(&fresh)
        .arg("NX")
        .query(connection)
        .map_err(|e| server_error("reading the epoch", e))?;
    let epoch: Option<String> =
        redis::cmd("GET").arg(&key).query(connection).map_err(|e| server_error("reading the epoch", e))?;
    Ok(epoch.unwrap_or(fresh))
}

/// Whether an error means the link to the server is gone (rather than a refused command).
fn lost_link(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

fn lost() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(std::io::ErrorKind::NotConnected, "the server cannot be reached"))
}

/// Pauses between reconnection attempts, doubling from 10 ms to 1 s, until the unreachable
/// timeout runs out.
struct Backoff {
    deadline: Instant,
    pause: Duration,
}

impl Backoff {
    fn new(unreachable: Duration) -> Backoff {
        Backoff { deadline: Instant::now() + unreachable, pause: Duration::from_millis(10) }
    }

    fn pause(&mut self, doing: &str, e: redis::RedisError) -> Result<()> {
        let now = Instant::now();
        if now >= self.deadline {
            return Err(Error::with_source(
                ErrorKind::Disconnected,
                format!("cluster: {doing}: the server stayed unreachable past the unreachable timeout"),
                e,
            ));
        }
        std::thread::sleep(self.pause.min(self.deadline - now));
        self.pause = (self.pause * 2).min(Duration::from_secs(1));
        Ok(())
    }
}

/// Refuses a server that may evict keys. A server that hides its configuration (`CONFIG` not
/// allowed to this user) is taken as configured well: say so in its ACL if not.
fn check_eviction(connection: &mut redis::Connection) -> Result<()> {
    let reply: redis::RedisResult<Vec<String>> =
        redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy").query(connection);
    match reply {
        Ok(pair) => match pair.get(1).map(String::as_str) {
            None | Some("noeviction") => Ok(()),
            Some(policy) => Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "the cluster server's maxmemory-policy is {policy}, which lets it drop queue items and \
                     locks when memory runs short; set it to noeviction (CONFIG SET maxmemory-policy noeviction)"
                ),
            )),
        },
        Err(e) if matches!(e.kind(), redis::ErrorKind::Server(_)) => Ok(()),
        Err(e) => Err(server_error("reading the server's maxmemory-policy", e)),
    }
}

/// Bytes from `holder` (named in errors) as a `T`.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], holder: &str) -> Result<T> {
    crate::handle::receiving(|| crate::handle::decode_exact::<T>(bytes)).map_err(|e| {
        Error::new(ErrorKind::Decode, format!("{holder}: not a {}", crate::codec::decode_failure::<T>(bytes, &e)))
    })
}

/// Refuses an object name that would break the key scheme.
pub(crate) fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains(['{', '}', ':']) || name.len() > 200 {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("object name {name:?}: 1 to 200 characters, none of {{, }} or :"),
        ));
    }
    Ok(())
}

/// `url` with its password hidden, for messages.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://…@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// A name for one holder of a lease or one consumer, unique across machines: the host (with
/// `with_host`), this process and random bytes.
pub(crate) fn holder_id(with_host: bool) -> Result<String> {
    let random = crate::sys::random::bytes32().map_err(|e| Error::os("reading random bytes", e))?;
    let host = if with_host { format!("{}:", crate::sys::process::hostname()) } else { String::new() };
    Ok(format!("{host}{}-{}", std::process::id(), hex(&random[..8])))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
