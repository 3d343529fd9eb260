//! [`Event`] on the cluster: a flag, and a one-element list its waiters block on.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::Cluster;
use crate::error::Result;

/// Raises the flag and puts the one element in the waiters' list: every waiter blocked on it
/// wakes (each moves the element back where it was, for the next).
const SET: &str = r"
redis.call('SET', KEYS[1], '1')
redis.call('DEL', KEYS[2])
redis.call('RPUSH', KEYS[2], '1')
return 1
";

/// A flag on the cluster that processes of the namespace, on any machine, wait for: set once,
/// every waiter wakes. Waiters block on the server (a non-consuming `BLMOVE` of a one-element
/// list onto itself), so a set reaches them at once, with no polling.
///
/// ```no_run
/// let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap();
/// let go = cluster.event("go").unwrap();
/// go.set().unwrap();
/// assert!(go.wait_timeout(std::time::Duration::from_secs(1)).unwrap());
/// ```
/// Python counterpart: `multiprocessing.Event`, reached through a manager.
#[derive(Clone, Debug)]
pub struct Event {
    cluster: Cluster,
    name: String,
    keys: [String; 2],
}

/// An event travels as its cluster and name (see [`Cluster`]'s serialization).
impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.cluster, &self.name).serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Event, D::Error> {
        let (cluster, name) = <(Cluster, String)>::deserialize(deserializer)?;
        let keys = [cluster.key(&name, "flag"), cluster.key(&name, "waiters")];
        Ok(Event { cluster, name, keys })
    }
}

impl Cluster {
    /// The event named `name` in this namespace (clear until first set).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) for a bad name.
    ///
    /// ```no_run
    /// let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap();
    /// let ready = cluster.event("ready").unwrap();
    /// ```
    /// Python counterpart: `manager.Event()` registered under a name.
    pub fn event(&self, name: &str) -> Result<Event> {
        super::check_name(name)?;
        let keys = [self.key(name, "flag"), self.key(name, "waiters")];
        Ok(Event { cluster: self.clone(), name: name.to_owned(), keys })
    }
}

impl Event {
    /// Sets the flag and wakes every waiter.
    ///
    /// # Errors
    /// The server's errors (see [`Cluster::connect`]).
    ///
    /// ```no_run
    /// # let e = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "j").unwrap().event("e").unwrap();
    /// e.set().unwrap();
    /// assert!(e.is_set().unwrap());
    /// ```
    /// Python counterpart: `event.set()`.
    pub fn set(&self) -> Result<()> {
        self.cluster.call("setting an event", |c| {
            redis::Script::new(SET).key(&self.keys[0]).key(&self.keys[1]).invoke::<i64>(c)
        })?;
        Ok(())
    }

    /// Clears the flag.
    ///
    /// # Errors
    /// The server's errors.
    ///
    /// ```no_run
    /// # let e = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "j").unwrap().event("e").unwrap();
    /// e.set().unwrap();
    /// e.clear().unwrap();
    /// assert!(!e.is_set().unwrap());
    /// ```
    /// Python counterpart: `event.clear()`.
    pub fn clear(&self) -> Result<()> {
        self.cluster
            .call("clearing an event", |c| redis::cmd("DEL").arg(&self.keys[0]).arg(&self.keys[1]).query::<i64>(c))?;
        Ok(())
    }

    /// Whether the flag is set.
    ///
    /// # Errors
    /// The server's errors.
    ///
    /// ```no_run
    /// # let e = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "j").unwrap().event("e").unwrap();
    /// assert!(!e.is_set().unwrap());
    /// ```
    /// Python counterpart: `event.is_set()`.
    pub fn is_set(&self) -> Result<bool> {
        self.cluster.call("reading an event", |c| redis::cmd("EXISTS").arg(&self.keys[0]).query::<bool>(c))
    }

    /// Waits until the flag is set.
    ///
    /// # Errors
    /// The server's errors.
    ///
    /// ```no_run
    /// # let e = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "j").unwrap().event("e").unwrap();
    /// e.set().unwrap();
    /// e.wait().unwrap();
    /// ```
    /// Python counterpart: `event.wait()`.
    pub fn wait(&self) -> Result<()> {
        while !self.wait_timeout(Duration::from_secs(3600))? {}
        Ok(())
    }

    /// Waits up to `timeout` for the flag; whether it is set.
    ///
    /// # Errors
    /// The server's errors.
    ///
    /// ```no_run
    /// # let e = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "j").unwrap().event("e").unwrap();
    /// assert!(!e.wait_timeout(std::time::Duration::from_millis(10)).unwrap());
    /// ```
    /// Python counterpart: `event.wait(timeout)`.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        if self.is_set()? {
            return Ok(true);
        }
        // A blocking move holds its connection on the server: it gets one of its own. The
        // element moves from the list's end back to its end: nothing is consumed, and every
        // waiter blocked on the list wakes when a set puts it there.
        let moved = self.cluster.wait_call("waiting for an event", Some(Instant::now() + timeout), |c, left| {
            redis::cmd("BLMOVE")
                .arg(&self.keys[1])
                .arg(&self.keys[1])
                .arg("RIGHT")
                .arg("RIGHT")
                .arg(left.as_secs_f64())
                .query::<Option<String>>(c)
        })?;
        if moved.is_some() { Ok(true) } else { self.is_set() }
    }
}
