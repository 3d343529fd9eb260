//! Queues hosted by a manager: [`QueueProxy`] and [`JoinableQueueProxy`], with the verbs and the
//! errors of [`Queue`](crate::Queue).

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Manager;
use super::protocol::{Kind, New, QueueOp, Reply, Request, Wait};
use super::proxy::{Address, call, call_waited, decode, encode, proxy_type, sealed::Sealed, unexpected, wait_ms};
use crate::error::{Error, Result};
use crate::queue::{GetError, GetTimeoutError, PutError, PutTimeoutError, TryGetError, TryPutError};

impl Manager {
    /// An unbounded queue hosted by the manager: usable by any process that has the proxy,
    /// including one that inherited nothing.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) if the server is gone.
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// let q = manager.queue::<String>().unwrap();
    /// q.put("hello".into()).unwrap();
    /// assert_eq!(q.get().unwrap(), "hello");
    /// ```
    /// Python counterpart: `manager.Queue()`.
    pub fn queue<T>(&self) -> Result<QueueProxy<T>> {
        self.queue_bounded(0)
    }

    /// A queue of at most `maxsize` items (0: unbounded, as in Python): a `put` into a full one
    /// waits for room.
    ///
    /// # Errors
    /// As [`queue`](Self::queue).
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// let q = manager.queue_bounded(1).unwrap();
    /// q.put(1u8).unwrap();
    /// assert!(q.is_full().unwrap());
    /// assert!(q.try_put(2).is_err());
    /// ```
    /// Python counterpart: `manager.Queue(maxsize)`.
    pub fn queue_bounded<T>(&self, maxsize: usize) -> Result<QueueProxy<T>> {
        self.new_object(New::Queue { maxsize: bound(maxsize), joinable: false })
    }

    /// As [`dict_named`](Self::dict_named), for an unbounded queue.
    ///
    /// # Errors
    /// As [`dict_named`](Self::dict_named).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// m.queue_named::<u8>("jobs").unwrap().put(3).unwrap();
    /// assert_eq!(m.queue_named::<u8>("jobs").unwrap().get().unwrap(), 3);
    /// ```
    /// Python counterpart: `BaseManager.register("get_queue", callable=lambda: queue)`.
    pub fn queue_named<T>(&self, name: &str) -> Result<QueueProxy<T>> {
        self.named(name, New::Queue { maxsize: None, joinable: false })
    }

    /// A queue hosted by the manager that counts unfinished items: consumers mark each item done
    /// with [`task_done`](JoinableQueueProxy::task_done), and [`join`](JoinableQueueProxy::join)
    /// waits until all are.
    ///
    /// # Errors
    /// As [`queue`](Self::queue).
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// let q = manager.joinable_queue().unwrap();
    /// q.put(1u8).unwrap();
    /// q.get().unwrap();
    /// q.task_done().unwrap();
    /// q.join().unwrap();
    /// ```
    /// Python counterpart: `manager.JoinableQueue()`.
    pub fn joinable_queue<T>(&self) -> Result<JoinableQueueProxy<T>> {
        self.joinable_queue_bounded(0)
    }

    /// As [`joinable_queue`](Self::joinable_queue), of at most `maxsize` items (0: unbounded).
    ///
    /// # Errors
    /// As [`queue`](Self::queue).
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// let q = manager.joinable_queue_bounded::<u8>(4).unwrap();
    /// # drop(q);
    /// ```
    /// Python counterpart: `manager.JoinableQueue(maxsize)`.
    pub fn joinable_queue_bounded<T>(&self, maxsize: usize) -> Result<JoinableQueueProxy<T>> {
        self.new_object(New::Queue { maxsize: bound(maxsize), joinable: true })
    }
}

fn bound(maxsize: usize) -> Option<u64> {
    (maxsize > 0).then_some(maxsize as u64)
}

proxy_type!(
    /// A queue hosted by a [`Manager`], with the verbs and errors of [`Queue`](crate::Queue):
    /// an item that cannot be sent is handed back in the error.
    ///
    /// ```
    /// use multiproc::{Manager, Process, manager::QueueProxy};
    /// fn produce(q: QueueProxy<u32>) { (0..3).for_each(|i| q.put(i).unwrap()) }
    /// let manager = Manager::start().unwrap();
    /// let q = manager.queue().unwrap();
    /// let mut p = Process::spawn(produce, (q.clone(),)).unwrap();
    /// let got: Vec<u32> = (0..3).map(|_| q.get().unwrap()).collect();
    /// p.join().unwrap();
    /// assert_eq!(got, [0, 1, 2]);
    /// ```
    /// Python counterpart: the proxy of `manager.Queue()`.
    QueueProxy<T> = Kind::Queue(std::any::type_name::<T>().into()), fn(T) -> T
);

/// Why a put through a proxy did not put the item.
enum NotPut {
    /// No room before the wait ran out.
    Full,
    Failed(Error),
}

/// Why a get through a proxy returned no item.
enum NotGot {
    /// Nothing came before the wait ran out.
    Empty,
    Failed(Error),
}

fn put<T: Serialize>(address: &Address, id: u64, item: &T, wait: Wait) -> std::result::Result<(), NotPut> {
    let bytes = encode(item).map_err(NotPut::Failed)?;
    match call(address, &Request::Queue { id, op: QueueOp::Put { item: bytes, wait } }) {
        Ok(Reply::Done) => Ok(()),
        Ok(Reply::TimedOut) => Err(NotPut::Full),
        Ok(other) => Err(NotPut::Failed(unexpected(other))),
        Err(e) => Err(NotPut::Failed(e)),
    }
}

fn get<T: DeserializeOwned>(address: &Address, id: u64, wait: Wait) -> std::result::Result<T, NotGot> {
    match call(address, &Request::Queue { id, op: QueueOp::Get { wait } }) {
        Ok(Reply::Value(Some(bytes))) => decode(&bytes).map_err(NotGot::Failed),
        Ok(Reply::TimedOut) => Err(NotGot::Empty),
        Ok(other) => Err(NotGot::Failed(unexpected(other))),
        Err(e) => Err(NotGot::Failed(e)),
    }
}

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    /// Puts an item, waiting for room in a bounded queue.
    ///
    /// # Errors
    /// [`PutError::Failed`] with the item if it cannot be encoded or the manager is gone
    /// ([`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected)).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// m.queue().unwrap().put(1u8).unwrap();
    /// ```
    /// Python counterpart: `q.put(item)`.
    pub fn put(&self, item: T) -> std::result::Result<(), PutError<T>> {
        match put(&self.address, self.id, &item, None) {
            Ok(()) => Ok(()),
            Err(NotPut::Failed(e)) => Err(PutError::Failed(item, e)),
            Err(NotPut::Full) => Err(PutError::Failed(item, unexpected(Reply::TimedOut))),
        }
    }

    /// Puts an item if there is room now.
    ///
    /// # Errors
    /// [`TryPutError::Full`] with the item; [`TryPutError::Failed`] as for [`put`](Self::put).
    ///
    /// ```
    /// use multiproc::queue::TryPutError;
    /// let m = multiproc::Manager::start().unwrap();
    /// let q = m.queue_bounded(1).unwrap();
    /// q.try_put(1u8).unwrap();
    /// assert!(matches!(q.try_put(2), Err(TryPutError::Full(2))));
    /// ```
    /// Python counterpart: `q.put_nowait(item)` (raising `queue.Full`).
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, item: T) -> std::result::Result<(), TryPutError<T>> {
        match put(&self.address, self.id, &item, Some(0)) {
            Ok(()) => Ok(()),
            Err(NotPut::Full) => Err(TryPutError::Full(item)),
            Err(NotPut::Failed(e)) => Err(TryPutError::Failed(item, e)),
        }
    }

    /// Puts an item, waiting up to `timeout` for room.
    ///
    /// # Errors
    /// [`PutTimeoutError::Timeout`] with the item; [`PutTimeoutError::Failed`] as for
    /// [`put`](Self::put).
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::queue::PutTimeoutError;
    /// let m = multiproc::Manager::start().unwrap();
    /// let q = m.queue_bounded(1).unwrap();
    /// q.put(1u8).unwrap();
    /// assert!(matches!(q.put_timeout(2, Duration::from_millis(10)), Err(PutTimeoutError::Timeout(2))));
    /// ```
    /// Python counterpart: `q.put(item, timeout=t)` (raising `queue.Full`).
    pub fn put_timeout(&self, item: T, timeout: Duration) -> std::result::Result<(), PutTimeoutError<T>> {
        match put(&self.address, self.id, &item, wait_ms(timeout)) {
            Ok(()) => Ok(()),
            Err(NotPut::Full) => Err(PutTimeoutError::Timeout(item)),
            Err(NotPut::Failed(e)) => Err(PutTimeoutError::Failed(item, e)),
        }
    }

    /// Takes the oldest item, waiting for one.
    ///
    /// # Errors
    /// [`GetError::Failed`] if the manager is gone (also while waiting) or the item is not a `T`
    /// (it is consumed).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let q = m.queue().unwrap();
    /// q.put(7u8).unwrap();
    /// assert_eq!(q.get().unwrap(), 7);
    /// ```
    /// Python counterpart: `q.get()`.
    pub fn get(&self) -> std::result::Result<T, GetError> {
        match get(&self.address, self.id, None) {
            Ok(item) => Ok(item),
            Err(NotGot::Failed(e)) => Err(GetError::Failed(e)),
            Err(NotGot::Empty) => Err(GetError::Failed(unexpected(Reply::TimedOut))),
        }
    }

    /// Takes the oldest item if there is one now.
    ///
    /// # Errors
    /// [`TryGetError::Empty`]; [`TryGetError::Failed`] as for [`get`](Self::get).
    ///
    /// ```
    /// use multiproc::queue::TryGetError;
    /// let m = multiproc::Manager::start().unwrap();
    /// assert!(matches!(m.queue::<u8>().unwrap().try_get(), Err(TryGetError::Empty)));
    /// ```
    /// Python counterpart: `q.get_nowait()` (raising `queue.Empty`).
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> std::result::Result<T, TryGetError> {
        match get(&self.address, self.id, Some(0)) {
            Ok(item) => Ok(item),
            Err(NotGot::Empty) => Err(TryGetError::Empty),
            Err(NotGot::Failed(e)) => Err(TryGetError::Failed(e)),
        }
    }

    /// Takes the oldest item, waiting up to `timeout` for one.
    ///
    /// # Errors
    /// [`GetTimeoutError::Timeout`]; [`GetTimeoutError::Failed`] as for [`get`](Self::get).
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::queue::GetTimeoutError;
    /// let m = multiproc::Manager::start().unwrap();
    /// let q = m.queue::<u8>().unwrap();
    /// assert!(matches!(q.get_timeout(Duration::from_millis(10)), Err(GetTimeoutError::Timeout)));
    /// ```
    /// Python counterpart: `q.get(timeout=t)` (raising `queue.Empty`).
    pub fn get_timeout(&self, timeout: Duration) -> std::result::Result<T, GetTimeoutError> {
        match get(&self.address, self.id, wait_ms(timeout)) {
            Ok(item) => Ok(item),
            Err(NotGot::Empty) => Err(GetTimeoutError::Timeout),
            Err(NotGot::Failed(e)) => Err(GetTimeoutError::Failed(e)),
        }
    }

    fn counts(&self) -> Result<(usize, Option<usize>)> {
        match call(&self.address, &Request::Queue { id: self.id, op: QueueOp::Len })? {
            Reply::Queue { len, maxsize } => Ok((len as usize, maxsize.map(|m| m as usize))),
            other => Err(unexpected(other)),
        }
    }

    /// The number of items queued (a snapshot).
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let q = m.queue().unwrap();
    /// q.put(()).unwrap();
    /// assert_eq!(q.len().unwrap(), 1);
    /// ```
    /// Python counterpart: `q.qsize()`.
    #[doc(alias = "qsize")]
    pub fn len(&self) -> Result<usize> {
        Ok(self.counts()?.0)
    }

    /// Whether the queue is empty (a snapshot).
    ///
    /// # Errors
    /// As [`len`](Self::len).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// assert!(m.queue::<u8>().unwrap().is_empty().unwrap());
    /// ```
    /// Python counterpart: `q.empty()`.
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Whether a bounded queue holds its `maxsize` items (a snapshot; never for an unbounded one).
    ///
    /// # Errors
    /// As [`len`](Self::len).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let q = m.queue_bounded(1).unwrap();
    /// q.put(0u8).unwrap();
    /// assert!(q.is_full().unwrap());
    /// ```
    /// Python counterpart: `q.full()`.
    #[doc(alias = "full")]
    pub fn is_full(&self) -> Result<bool> {
        let (len, maxsize) = self.counts()?;
        Ok(maxsize.is_some_and(|max| len >= max))
    }
}

/// A joinable queue hosted by a [`Manager`]: a [`QueueProxy`] (every queue method works on it
/// directly) that counts unfinished items.
///
/// ```
/// use multiproc::{Manager, Process, manager::JoinableQueueProxy};
/// fn serve(q: JoinableQueueProxy<u32>) {
///     loop {
///         let _dish = q.get().unwrap();
///         q.task_done().unwrap();
///     }
/// }
/// let manager = Manager::start().unwrap();
/// let q = manager.joinable_queue().unwrap();
/// let waiter = Process::builder().daemon(true).spawn(serve, (q.clone(),)).unwrap();
/// (0..5).for_each(|i| q.put(i).unwrap());
/// q.join().unwrap(); // every dish served
/// # drop(waiter);
/// ```
/// Python counterpart: the proxy of `manager.JoinableQueue()`.
pub struct JoinableQueueProxy<T> {
    queue: QueueProxy<T>,
}

impl<T> std::ops::Deref for JoinableQueueProxy<T> {
    type Target = QueueProxy<T>;
    fn deref(&self) -> &QueueProxy<T> {
        &self.queue
    }
}

impl<T> Clone for JoinableQueueProxy<T> {
    fn clone(&self) -> Self {
        JoinableQueueProxy { queue: self.queue.clone() }
    }
}

impl<T> std::fmt::Debug for JoinableQueueProxy<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinableQueueProxy").field("manager", &self.queue.address).field("id", &self.queue.id).finish()
    }
}

impl<T> Serialize for JoinableQueueProxy<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.queue.serialize(serializer)
    }
}

impl<'de, T> serde::Deserialize<'de> for JoinableQueueProxy<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        Ok(JoinableQueueProxy { queue: QueueProxy::deserialize(deserializer)? })
    }
}

impl<T> Sealed for JoinableQueueProxy<T> {
    fn kind() -> Kind {
        Kind::JoinableQueue(std::any::type_name::<T>().into())
    }
    fn parts(&self) -> (&Address, u64) {
        (&self.queue.address, self.queue.id)
    }
    fn from_parts(address: Address, id: u64) -> Self {
        JoinableQueueProxy { queue: QueueProxy::from_parts(address, id) }
    }
}

impl<T> super::Proxy for JoinableQueueProxy<T> {}

impl<T> JoinableQueueProxy<T> {
    /// Marks one item taken from the queue as done.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) if called more often than
    /// items were put; [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let q = m.joinable_queue::<u8>().unwrap();
    /// assert!(q.task_done().is_err());
    /// ```
    /// Python counterpart: `q.task_done()`.
    pub fn task_done(&self) -> Result<()> {
        super::proxy::call_done(&self.queue.address, &Request::Queue { id: self.queue.id, op: QueueOp::TaskDone })
    }

    /// Waits until every item put has been marked done.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// m.joinable_queue::<u8>().unwrap().join().unwrap(); // nothing put, nothing to wait for
    /// ```
    /// Python counterpart: `q.join()`.
    pub fn join(&self) -> Result<()> {
        self.join_wait(None).map(drop)
    }

    /// As [`join`](Self::join), for up to `timeout`; whether every item was done.
    ///
    /// # Errors
    /// As [`join`](Self::join).
    ///
    /// ```
    /// use std::time::Duration;
    /// let m = multiproc::Manager::start().unwrap();
    /// let q = m.joinable_queue().unwrap();
    /// q.put(1u8).unwrap();
    /// assert!(!q.join_timeout(Duration::from_millis(10)).unwrap());
    /// ```
    /// Python counterpart: none (`join` has no timeout in Python).
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        self.join_wait(wait_ms(timeout))
    }

    fn join_wait(&self, wait: Wait) -> Result<bool> {
        call_waited(&self.queue.address, &Request::Queue { id: self.queue.id, op: QueueOp::Join { wait } })
    }
}
