//! [`Queue`] on the cluster: a Redis list of encoded items.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Cluster;
use crate::error::Result;

/// A FIFO queue that lives on the cluster under a name: any process of the namespace, on any
/// machine, puts and gets. Items are encoded as locally (postcard) and must not hold handles. The
/// handle itself travels in a process's arguments, as a local queue's does.
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
    _type: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Queue<T> {
        Queue { cluster: self.cluster.clone(), name: self.name.clone(), key: self.key.clone(), _type: PhantomData }
    }
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("cluster::Queue").field("name", &self.name).finish()
    }
}

/// A queue travels as its cluster and name, like a local queue's handle: the receiving process
/// connects to the same queue.
impl<T> Serialize for Queue<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.cluster, &self.name).serialize(serializer)
    }
}

impl<'de, T> serde::Deserialize<'de> for Queue<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Queue<T>, D::Error> {
        let (cluster, name) = <(Cluster, String)>::deserialize(deserializer)?;
        let key = cluster.key(&name, "items");
        Ok(Queue { cluster, name, key, _type: PhantomData })
    }
}

impl Cluster {
    /// The queue named `name` in this namespace (made on first put).
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
        super::check_name(name)?;
        Ok(Queue { cluster: self.clone(), name: name.to_owned(), key: self.key(name, "items"), _type: PhantomData })
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// Appends an item.
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
        self.cluster.call("putting", |c| redis::cmd("RPUSH").arg(&self.key).arg(&bytes).query::<i64>(c))?;
        Ok(())
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
