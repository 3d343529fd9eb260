//! Past one machine: objects on a Redis-protocol server (Redis ≥ 6.2, or Valkey), reachable by
//! every process that can reach the server — on this machine or others (feature `cluster`).
//!
//! A [`Cluster`] is a connection to the server under a *namespace*: every object lives under
//! it, by name, so programs that share the server's address and the namespace meet at the same
//! objects. Every key of one object shares a hash tag (`mp:{namespace:name}:…`), so that scripts
//! and transactions over it stay valid on Redis Cluster.
//!
//! At connect the server is checked:
//! - its `maxmemory-policy` must be `noeviction`: a server allowed to evict would drop queue
//!   items and locks silently, so any other policy is refused with an error that names it;
//! - the namespace is stamped with the build that first used it, and a program of another build
//!   is refused ([`ErrorKind::BuildMismatch`]) — tasks travel as offsets into the binary, which
//!   mean nothing in another build.
//!
//! The password or ACL user in the URL (`redis://user:password@host:6379`) plays the part of the
//! authkey; a wrong one is [`ErrorKind::Authentication`].
//!
//! So far: [`Cluster`], the named [`Queue`], [`Dict`] (with the atomic `add` and `apply`),
//! [`Event`] and [`Lock`] (a lease with a fencing token, whose dead holder's lease runs out and
//! the next acquirer is told). The pool, the node agents and
//! the manager's objects on the cluster are to come (see issue 15).
//!
//! ```no_run
//! use multiproc::cluster::Cluster;
//! let cluster = Cluster::connect("redis://127.0.0.1:6379", "crawl").unwrap();
//! let urls = cluster.queue::<String>("urls").unwrap();
//! urls.put(&"https://example.com".to_string()).unwrap();
//! assert_eq!(urls.get().unwrap(), "https://example.com");
//! ```
//! Python counterpart: none in the standard library (Ray's and Celery's queues, or a
//! `BaseManager` served over TCP).

mod dict;
mod event;
mod lock;
mod queue;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, ErrorKind, Result};

pub use dict::Dict;
pub use event::Event;
pub use lock::{Lock, LockGuard};
pub use queue::Queue;

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
}

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
    /// Connects to the server at `url` (`redis://`, `redis+unix://`) under `namespace`, and
    /// checks it (see the [module docs](self)).
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
        let bad_name = namespace.is_empty() || namespace.contains(['{', '}', ':']) || namespace.len() > 100;
        if bad_name {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("namespace {namespace:?}: 1 to 100 characters, none of {{, }} or :"),
            ));
        }
        let client = redis::Client::open(url).map_err(|e| {
            Error::with_source(ErrorKind::InvalidInput, format!("cluster address {}", redacted(url)), e)
        })?;
        let mut connection = client.get_connection().map_err(|e| server_error("connecting", e))?;
        check_eviction(&mut connection)?;
        let cluster = Cluster {
            shared: Arc::new(Shared {
                url: url.to_owned(),
                namespace: namespace.to_owned(),
                connection: Mutex::new(connection),
                spare: Mutex::new(Vec::new()),
            }),
        };
        cluster.check_build()?;
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
            None => {
                let client = redis::Client::open(self.shared.url.as_str())
                    .map_err(|e| Error::with_source(ErrorKind::InvalidInput, "cluster address", e))?;
                client.get_connection().map_err(|e| server_error("connecting", e))?
            }
        };
        Ok(Blocking { cluster: self, connection: Some(connection) })
    }

    /// Stamps the namespace with this build, or checks the stamp another program left.
    fn check_build(&self) -> Result<()> {
        let ours = hex(crate::sys::build_id::fingerprint());
        let key = format!("mp:{{{}}}:build", self.shared.namespace);
        let mut c = self.connection();
        let set: bool = redis::cmd("SET")
            .arg(&key)
            .arg(&ours)
            .arg("NX")
            .query::<Option<String>>(&mut *c)
            .map_err(|e| server_error("stamping the namespace", e))?
            .is_some();
        if set {
            return Ok(());
        }
        let theirs: Option<String> =
            redis::cmd("GET").arg(&key).query(&mut *c).map_err(|e| server_error("reading the namespace's stamp", e))?;
        match theirs {
            Some(theirs) if theirs == ours => Ok(()),
            theirs => Err(Error::new(
                ErrorKind::BuildMismatch,
                format!(
                    "namespace {:?} belongs to build {} and this program is build {ours}: every process \
                     of a namespace must run the same binary (use another namespace, or clear this one)",
                    self.shared.namespace,
                    theirs.as_deref().unwrap_or("?"),
                ),
            )),
        }
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
