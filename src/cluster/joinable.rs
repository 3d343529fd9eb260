//! [`JoinableQueue`] on the cluster: a Redis Stream read through a consumer group, with a
//! count of unfinished items.

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Cluster;
use crate::error::{Error, ErrorKind, Result};

const GROUP: &str = "consumers";

/// A queue on the cluster whose consumers say when each item is done, and whose
/// [`join`](Self::join) waits until every item put is done — with leases: an item taken by a
/// consumer that dies (or is cut off) before its [`task_done`](Self::task_done) goes to another
/// consumer once its lease runs out, so `join` still returns.
///
/// `task_done` marks the oldest item this handle took and has not marked yet, so the usual
/// `get` … `task_done` loop reads as in Python. A handle renews the leases of the items it took
/// (a thread of its own, every third of the lease) until they are done.
///
/// ```no_run
/// use std::time::Duration;
/// let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap();
/// let q = cluster.joinable_queue::<String>("pages", Duration::from_secs(30)).unwrap();
/// q.put(&"https://example.com".to_string()).unwrap();
/// let page = q.get().unwrap();
/// q.task_done().unwrap();
/// q.join().unwrap();
/// ```
/// Python counterpart: `multiprocessing.JoinableQueue`, reached through a manager (where an item
/// whose consumer died is never done, and `join` hangs).
pub struct JoinableQueue<T> {
    cluster: Cluster,
    name: String,
    keys: [String; 2],
    lease: Duration,
    taken: Arc<Taken>,
    _type: PhantomData<fn(T) -> T>,
}

/// The items this handle took and has not marked done, and the name it reads under.
struct Taken {
    consumer: String,
    ids: Mutex<VecDeque<String>>,
    renewing: Mutex<bool>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> JoinableQueue<T> {
        JoinableQueue {
            cluster: self.cluster.clone(),
            name: self.name.clone(),
            keys: self.keys.clone(),
            lease: self.lease,
            taken: self.taken.clone(),
            _type: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("cluster::JoinableQueue").field("name", &self.name).field("lease", &self.lease).finish()
    }
}

travels_by_name!(JoinableQueue<T>, |q| [q.lease.as_millis() as u64, 0], |cluster, name, x| JoinableQueue::named(
    cluster,
    name,
    Duration::from_millis(x[0])
));

impl<T> JoinableQueue<T> {
    fn named(cluster: Cluster, name: String, lease: Duration) -> Result<JoinableQueue<T>> {
        let keys = [cluster.key(&name, "items"), cluster.key(&name, "unfinished")];
        let consumer = super::holder_id(true)?;
        cluster.call("making a joinable queue", |c| {
            match redis::cmd("XGROUP").arg("CREATE").arg(&keys[0]).arg(GROUP).arg("0").arg("MKSTREAM").query::<()>(c) {
                Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
                other => other,
            }
        })?;
        let taken = Arc::new(Taken { consumer, ids: Mutex::new(VecDeque::new()), renewing: Mutex::new(false) });
        Ok(JoinableQueue { cluster, name, keys, lease, taken, _type: PhantomData })
    }
}

impl Cluster {
    /// The joinable queue named `name` in this namespace, whose consumers hold each item they
    /// take by a lease of `lease` (renewed while they live; a dead consumer's item goes to
    /// another after it).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a bad name or a lease under 10 ms; the server's errors.
    ///
    /// ```no_run
    /// let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap();
    /// let q = cluster.joinable_queue::<u64>("work", std::time::Duration::from_secs(10)).unwrap();
    /// ```
    /// Python counterpart: `manager.JoinableQueue()` registered under a name.
    pub fn joinable_queue<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        lease: Duration,
    ) -> Result<JoinableQueue<T>> {
        super::check_name(name)?;
        if lease < Duration::from_millis(10) {
            return Err(Error::new(ErrorKind::InvalidInput, format!("a lease of {lease:?} (at least 10 ms)")));
        }
        JoinableQueue::named(self.clone(), name.to_owned(), lease)
    }
}

/// One stream entry as a reply gives it.
type Entry = (String, HashMap<String, Vec<u8>>);
/// A claimed entry (its fields are gone if it was deleted meanwhile).
type Claimed = (String, Option<HashMap<String, Vec<u8>>>);

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// Appends an item (one more unfinished).
    ///
    /// # Errors
    /// [`ErrorKind::Encode`] if it cannot be encoded; the server's errors.
    ///
    /// ```no_run
    /// # let q = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "j").unwrap().joinable_queue::<u8>("q", std::time::Duration::from_secs(5)).unwrap();
    /// q.put(&1).unwrap();
    /// ```
    /// Python counterpart: `q.put(obj)`.
    pub fn put(&self, item: &T) -> Result<()> {
        let bytes = crate::handle::encode_bytes_only(item, "a cluster joinable queue")?;
        self.cluster.call("putting", |c| {
            redis::pipe()
                .atomic()
                .cmd("XADD")
                .arg(&self.keys[0])
                .arg("*")
                .arg("i")
                .arg(&bytes)
                .ignore()
                .cmd("INCR")
                .arg(&self.keys[1])
                .ignore()
                .query::<()>(c)
        })
    }

    /// Takes the oldest item (or one whose consumer's lease ran out), waiting for as long as it
    /// takes.
    ///
    /// # Errors
    /// [`ErrorKind::Decode`] if the item is not a `T` (it stays unfinished until marked done);
    /// the server's errors.
    ///
    /// ```no_run
    /// # let q = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "j").unwrap().joinable_queue::<u8>("q", std::time::Duration::from_secs(5)).unwrap();
    /// q.put(&1).unwrap();
    /// assert_eq!(q.get().unwrap(), 1);
    /// q.task_done().unwrap();
    /// ```
    /// Python counterpart: `q.get()`.
    pub fn get(&self) -> Result<T> {
        loop {
            if let Some(item) = self.get_timeout(Duration::from_secs(3600))? {
                return Ok(item);
            }
        }
    }

    /// Takes an item if one comes within `timeout`.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    ///
    /// ```no_run
    /// # let q = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "j").unwrap().joinable_queue::<u8>("q", std::time::Duration::from_secs(5)).unwrap();
    /// assert_eq!(q.get_timeout(std::time::Duration::from_millis(10)).unwrap(), None);
    /// ```
    /// Python counterpart: `q.get(timeout=t)`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<Option<T>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(entry) = self.reclaim()? {
                return self.took(entry).map(Some);
            }
            // A blocking read wakes for a new item, not for a lease that runs out: it blocks a
            // third of a lease at most, then looks for lost items again.
            let step = (Instant::now() + self.lease / 3).min(deadline);
            let read = self.cluster.wait_call("waiting for an item", Some(step), |c, left| {
                let read: Option<Vec<(String, Vec<Entry>)>> = redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(GROUP)
                    .arg(&self.taken.consumer)
                    .arg("COUNT")
                    .arg(1)
                    .arg("BLOCK")
                    .arg(left.as_millis().max(1) as u64)
                    .arg("STREAMS")
                    .arg(&self.keys[0])
                    .arg(">")
                    .query(c)?;
                Ok(read.and_then(|streams| streams.into_iter().next()).and_then(|(_, mut entries)| entries.pop()))
            })?;
            if let Some(entry) = read {
                return self.took(entry).map(Some);
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    /// An item whose consumer's lease ran out, taken over by this handle.
    fn reclaim(&self) -> Result<Option<Entry>> {
        let reply: Vec<redis::Value> = self.cluster.call("looking for lost items", |c| {
            redis::cmd("XAUTOCLAIM")
                .arg(&self.keys[0])
                .arg(GROUP)
                .arg(&self.taken.consumer)
                .arg(self.lease.as_millis() as u64)
                .arg("0-0")
                .arg("COUNT")
                .arg(1)
                .query(c)
        })?;
        let entries: Vec<Claimed> = match reply.get(1) {
            Some(v) => redis::from_redis_value_ref(v).map_err(|e| Error::new(ErrorKind::Protocol, e.to_string()))?,
            None => Vec::new(),
        };
        Ok(entries.into_iter().find_map(|(id, fields)| fields.map(|f| (id, f))))
    }

    /// Records a taken entry (for `task_done` and the renewals) and decodes its item.
    fn took(&self, (id, fields): Entry) -> Result<T> {
        self.taken.ids.lock().unwrap_or_else(|p| p.into_inner()).push_back(id);
        self.renew_while_taken();
        super::decode(fields.get("i").map_or(&[][..], Vec::as_slice), "a cluster joinable queue")
    }

    /// Starts the thread that renews this handle's taken items, if it is not running.
    fn renew_while_taken(&self) {
        let mut renewing = self.taken.renewing.lock().unwrap_or_else(|p| p.into_inner());
        if *renewing {
            return;
        }
        let (taken, cluster, key, lease): (Weak<Taken>, _, _, _) =
            (Arc::downgrade(&self.taken), self.cluster.clone(), self.keys[0].clone(), self.lease);
        let started = std::thread::Builder::new().name("multiproc-lease".into()).spawn(move || {
            loop {
                std::thread::sleep(lease / 3);
                let Some(taken) = taken.upgrade() else { return };
                let ids: Vec<String> = {
                    // Looked at under the flag: an item taken meanwhile either is seen here or
                    // finds the flag down and starts a new thread.
                    let mut renewing = taken.renewing.lock().unwrap_or_else(|p| p.into_inner());
                    let ids: Vec<String> =
                        taken.ids.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect();
                    if ids.is_empty() {
                        *renewing = false;
                        return;
                    }
                    ids
                };
                // Claiming one's own entry resets its idle time: the lease.
                let _ = cluster.call("renewing leases", |c| {
                    redis::cmd("XCLAIM")
                        .arg(&key)
                        .arg(GROUP)
                        .arg(&taken.consumer)
                        .arg(0)
                        .arg(&ids)
                        .arg("JUSTID")
                        .query::<Vec<String>>(c)
                });
            }
        });
        *renewing = started.is_ok();
    }

    /// Marks the oldest item this handle took as done.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if this handle has no item left to mark (Python's
    /// `ValueError`); the server's errors.
    ///
    /// ```no_run
    /// # let q = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "j").unwrap().joinable_queue::<u8>("q", std::time::Duration::from_secs(5)).unwrap();
    /// assert!(q.task_done().is_err()); // nothing taken
    /// ```
    /// Python counterpart: `q.task_done()`.
    pub fn task_done(&self) -> Result<()> {
        let Some(id) = self.taken.ids.lock().unwrap_or_else(|p| p.into_inner()).pop_front() else {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "task_done() called more times than this handle took items",
            ));
        };
        // Done once: an item that was taken over meanwhile (this handle's lease ran out) is
        // acknowledged by whoever finishes first, and counted once.
        const DONE: &str = r"
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('XDEL', KEYS[1], ARGV[2])
  redis.call('DECR', KEYS[2])
end
return 1
";
        self.cluster.call("marking an item done", |c| {
            redis::Script::new(DONE).key(&self.keys[0]).key(&self.keys[1]).arg(GROUP).arg(&id).invoke::<i64>(c)
        })?;
        Ok(())
    }

    /// Waits until every item put has been marked done.
    ///
    /// # Errors
    /// The server's errors.
    ///
    /// ```no_run
    /// # let q = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "j").unwrap().joinable_queue::<u8>("q", std::time::Duration::from_secs(5)).unwrap();
    /// q.join().unwrap(); // nothing unfinished
    /// ```
    /// Python counterpart: `q.join()`.
    pub fn join(&self) -> Result<()> {
        while !self.join_timeout(Duration::from_secs(3600))? {}
        Ok(())
    }

    /// As [`join`](Self::join), for at most `timeout`; whether every item was done.
    ///
    /// # Errors
    /// The server's errors.
    ///
    /// ```no_run
    /// # let q = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "j").unwrap().joinable_queue::<u8>("q", std::time::Duration::from_secs(5)).unwrap();
    /// q.put(&1).unwrap();
    /// assert!(!q.join_timeout(std::time::Duration::from_millis(10)).unwrap());
    /// ```
    /// Python counterpart: none (`join` takes no timeout).
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            if self.unfinished()? == 0 {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// Items put and not yet marked done (a snapshot).
    ///
    /// # Errors
    /// The server's errors.
    ///
    /// ```no_run
    /// # let q = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "j").unwrap().joinable_queue::<u8>("q", std::time::Duration::from_secs(5)).unwrap();
    /// assert_eq!(q.unfinished().unwrap(), 0);
    /// ```
    /// Python counterpart: `q._unfinished_tasks`.
    pub fn unfinished(&self) -> Result<u64> {
        let n: Option<i64> =
            self.cluster.call("counting unfinished items", |c| redis::cmd("GET").arg(&self.keys[1]).query(c))?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }
}
