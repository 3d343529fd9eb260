//! [`Queue`] on the cluster: a Redis list of encoded items, bounded or not.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Cluster;
use crate::error::{Error, Result};

/// Appends the item if the list is shorter than the capacity; returns whether it did.
const PUT_BOUNDED: &str = r"
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[1])
return 1
";

/// A FIFO queue that lives on the cluster under a name: any process of the namespace, on any
/// machine, puts and gets. Items are encoded as locally (postcard) and must not hold handles. The
/// handle itself travels in a process's arguments (or a task's), as a local queue's does. A
/// queue made with [`Cluster::queue_with_capacity`] holds at most that many items: `put` waits
/// for room.
///
/// ```no_run
/// use multiproc::cluster::Cluster;
/// let cluster = Cluster::connect("redis://127.0.0.1", "jobs").unwrap();
/// let q = cluster.queue::<(u32, String)>("work").unwrap();
/// q.put(&(1, "one".into())).unwrap();
/// assert_eq!(q.get().unwrap(), (1, "one".to_string()));
/// ```
/// Python counterpart: `multiprocessing.Queue`, reached through a manager on another machine.
pub struct Queue<T> {
    cluster: Cluster,
    name: String,
    key: String,
    /// At most this many items (0: no bound).
    capacity: usize,
    _type: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Queue<T> {
        Queue::named(self.cluster.clone(), self.name.clone(), self.capacity)
    }
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("cluster::Queue").field("name", &self.name).field("capacity", &self.capacity).finish()
    }
}

travels_by_name!(Queue<T>, |q| [q.capacity as u64, 0], |cluster, name, x| Ok::<_, Error>(Queue::named(
    cluster,
    name,
    x[0] as usize
)));

impl<T> Queue<T> {
    fn named(cluster: Cluster, name: String, capacity: usize) -> Queue<T> {
        let key = cluster.key(&name, "items");
        Queue { cluster, name, key, capacity, _type: PhantomData }
    }
}

impl Cluster {
    /// The queue named `name` in this namespace (made on first put), with no bound.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) for a bad name (see [`Cluster::connect`]'s rules).
    ///
    /// ```no_run
    /// let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap();
    /// let q = cluster.queue::<u64>("numbers").unwrap();
    /// ```
    /// Python counterpart: `manager.Queue()` registered under a name.
    pub fn queue<T: Serialize + DeserializeOwned>(&self, name: &str) -> Result<Queue<T>> {
        self.queue_with_capacity(name, 0)
    }

    /// The queue named `name`, holding at most `capacity` items (0: no bound): `put` waits for
    /// room. Every handle of the queue should give the same capacity.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) for a bad name.
    ///
    /// ```no_run
    /// let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap();
    /// let q = cluster.queue_with_capacity::<u64>("numbers", 100).unwrap();
    /// assert!(q.try_put(&1).unwrap());
    /// ```
    /// Python counterpart: `manager.Queue(maxsize)`.
    pub fn queue_with_capacity<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        capacity: usize,
    ) -> Result<Queue<T>> {
        super::check_name(name)?;
        Ok(Queue::named(self.clone(), name.to_owned(), capacity))
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// Appends an item, waiting for room in a bounded queue for as long as it takes.
    ///
    /// # Errors
    /// [`ErrorKind::Encode`](crate::ErrorKind::Encode) if it cannot be encoded (or holds a handle); the server's errors as
    /// for [`Cluster::connect`].
    ///
    /// ```no_run
    /// # let q = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap().queue::<u8>("q").unwrap();
    /// q.put(&7).unwrap();
    /// ```
    /// Python counterpart: `q.put(obj)`.
    pub fn put(&self, item: &T) -> Result<()> {
        let bytes = crate::handle::encode_bytes_only(item, "a cluster queue")?;
        let mut pause = Duration::from_millis(1);
        // Nobody tells a waiting putter that room was made: look again, less often the longer
        // the queue stays full.
        while !self.put_encoded(&bytes)? {
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Appends an item if there is room now; whether it did (an unbounded queue always has).
    ///
    /// # Errors
    /// As [`put`](Self::put).
    ///
    /// ```no_run
    /// # let q = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap().queue_with_capacity::<u8>("q", 1).unwrap();
    /// assert!(q.try_put(&1).unwrap());
    /// assert!(!q.try_put(&2).unwrap());
    /// ```
    /// Python counterpart: `q.put_nowait(obj)` (which raises `queue.Full`).
    pub fn try_put(&self, item: &T) -> Result<bool> {
        self.put_encoded(&crate::handle::encode_bytes_only(item, "a cluster queue")?)
    }

    /// Appends an item if room comes within `timeout`; whether it did.
    ///
    /// # Errors
    /// As [`put`](Self::put).
    ///
    /// ```no_run
    /// # let q = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap().queue_with_capacity::<u8>("q", 1).unwrap();
    /// q.put(&1).unwrap();
    /// assert!(!q.put_timeout(&2, std::time::Duration::from_millis(10)).unwrap());
    /// ```
    /// Python counterpart: `q.put(obj, timeout=t)`.
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<bool> {
        let bytes = crate::handle::encode_bytes_only(item, "a cluster queue")?;
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            if self.put_encoded(&bytes)? {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    fn put_encoded(&self, bytes: &[u8]) -> Result<bool> {
        if self.capacity == 0 {
            self.cluster.call("putting", |c| redis::cmd("RPUSH").arg(&self.key).arg(bytes).query::<i64>(c))?;
            return Ok(true);
        }
        let put: i64 = self.cluster.call("putting", |c| {
            redis::Script::new(PUT_BOUNDED).key(&self.key).arg(bytes).arg(self.capacity).invoke(c)
        })?;
        Ok(put == 1)
    }

    /// Whether a bounded queue is full (a snapshot).
    ///
    /// # Errors
    /// The server's errors.
    ///
    /// ```no_run
    /// # let q = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap().queue_with_capacity::<u8>("q", 1).unwrap();
    /// assert!(!q.is_full().unwrap());
    /// ```
    /// Python counterpart: `q.full()`.
    pub fn is_full(&self) -> Result<bool> {
        Ok(self.capacity > 0 && self.len()? >= self.capacity)
    }

    /// Takes the oldest item, waiting for one for as long as it takes.
    ///
    /// # Errors
    /// [`ErrorKind::Decode`](crate::ErrorKind::Decode) if the item is not a `T` (it is consumed); the server's errors.
    ///
    /// ```no_run
    /// # let q = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap().queue::<u8>("q").unwrap();
    /// q.put(&7).unwrap();
    /// assert_eq!(q.get().unwrap(), 7);
    /// ```
    /// Python counterpart: `q.get()`.
    pub fn get(&self) -> Result<T> {
        loop {
            if let Some(item) = self.get_timeout(Duration::from_secs(3600))? {
                return Ok(item);
            }
        }
    }

    /// Takes the oldest item if one comes within `timeout`; `None` if none did.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    ///
    /// ```no_run
    /// # let q = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap().queue::<u8>("q").unwrap();
    /// assert_eq!(q.get_timeout(std::time::Duration::from_millis(10)).unwrap(), None);
    /// ```
    /// Python counterpart: `q.get(timeout=t)`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<Option<T>> {
        if let Some(item) = self.try_get()? {
            return Ok(Some(item));
        }
        // A blocking pop holds its connection on the server: it gets one of its own.
        let popped = self.cluster.wait_call("waiting for an item", Some(Instant::now() + timeout), |c, left| {
            let popped: Option<(String, Vec<u8>)> =
                redis::cmd("BLPOP").arg(&self.key).arg(left.as_secs_f64()).query(c)?;
            Ok(popped.map(|(_, bytes)| bytes))
        })?;
        popped.map(|bytes| super::decode(&bytes, "a cluster queue")).transpose()
    }

    /// Takes the oldest item if there is one now.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    ///
    /// ```no_run
    /// # let q = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap().queue::<u8>("q").unwrap();
    /// assert_eq!(q.try_get().unwrap(), None);
    /// ```
    /// Python counterpart: `q.get_nowait()`.
    pub fn try_get(&self) -> Result<Option<T>> {
        let popped: Option<Vec<u8>> =
            self.cluster.call("taking an item", |c| redis::cmd("LPOP").arg(&self.key).query(c))?;
        popped.map(|bytes| super::decode(&bytes, "a cluster queue")).transpose()
    }

    /// The number of items (a snapshot).
    ///
    /// # Errors
    /// The server's errors.
    ///
    /// ```no_run
    /// # let q = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap().queue::<u8>("q").unwrap();
    /// assert_eq!(q.len().unwrap(), 0);
    /// ```
    /// Python counterpart: `q.qsize()`.
    pub fn len(&self) -> Result<usize> {
        self.cluster.call("counting items", |c| redis::cmd("LLEN").arg(&self.key).query::<usize>(c))
    }

    /// Whether the queue is empty (a snapshot).
    ///
    /// # Errors
    /// The server's errors.
    ///
    /// ```no_run
    /// # let q = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap().queue::<u8>("q").unwrap();
    /// assert!(q.is_empty().unwrap());
    /// ```
    /// Python counterpart: `q.empty()`.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
}
