//! Queues between processes: [`Queue`], [`SimpleQueue`] and [`JoinableQueue`].
//!
//! A queue is a ring of bytes in shared memory (see the `ring` module for its layout and its
//! crash-safety argument): `put` encodes the item in the caller — so an item that cannot be
//! encoded fails right there, never silently in a background thread as in Python — and copies it
//! into the ring; `get` copies it out and decodes it. There is no feeder thread, so a process that
//! put items can always exit, and joining it never deadlocks. Producers and consumers spin
//! briefly before they sleep on a futex, so a queue between two running processes moves millions
//! of small items a second.
//!
//! Messages larger than half the ring stream through it in chunks, so items of any size pass a
//! queue of any capacity. A process killed in the middle of a `put` or `get` leaves the queue
//! usable by everyone else: nothing torn or duplicated is ever delivered; at most the one message
//! in flight in the killed process is lost.
//!
//! Items must not contain handles (locks, descriptors): a ring of bytes cannot carry descriptors.
//! Send those over a [`Connection`](crate::Connection). A queue's own handle, however, can be
//! put in a process's arguments or sent over a connection.
//!
//! ```
//! use multiproc::{Process, Queue};
//!
//! fn cook(q: Queue<Option<String>>) {
//!     for dish in ["noodles", "dumplings", "rice"] {
//!         q.put(Some(dish.to_string())).unwrap();
//!     }
//!     q.put(None).unwrap(); // the sentinel: no more dishes
//! }
//!
//! let q = Queue::new().unwrap();
//! let mut cook = Process::spawn(cook, (q.clone(),)).unwrap();
//! let mut eaten = Vec::new();
//! while let Some(dish) = q.get().unwrap() {
//!     eaten.push(dish);
//! }
//! cook.join().unwrap();
//! assert_eq!(eaten, ["noodles", "dumplings", "rice"]);
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::asyncio::{self, Step, Watch};
use crate::connection::{WaitSource, Waitable};
use crate::error::{Error, ErrorKind, Result};
use crate::handle;
use crate::sync::deadline_after;

pub(crate) mod ring;

use ring::{Ring, RingError};

/// The ring size of a queue made without one: 4 MiB (pages are only touched as they are used).
///
/// ```
/// // Items up to half the ring go in whole; bigger ones stream through in chunks.
/// assert_eq!(multiproc::queue::DEFAULT_CAPACITY, 4 << 20);
/// ```
/// Python counterpart: none (Python's queue buffers in the feeder thread's memory and the pipe).
pub const DEFAULT_CAPACITY: usize = 4 << 20;

macro_rules! item_error {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident),* }) => {
        $(#[$meta])*
        pub enum $name<T> {
            $($(#[$vmeta])* $variant(T),)*
            /// The item could not be encoded, or the queue is broken; the item is handed back.
            Failed(T, Error),
        }

        impl<T> $name<T> {
            /// The item that was not put.
            ///
            /// ```
            /// let q = multiproc::Queue::bounded(1).unwrap();
            /// q.put(1).unwrap();
            /// let refused = q.try_put(2).unwrap_err();
            /// assert_eq!(refused.into_inner(), 2);
            /// ```
            /// Python counterpart: none; Python's `put` keeps the object in the caller's hands.
            pub fn into_inner(self) -> T {
                match self {
                    $($name::$variant(item) => item,)*
                    $name::Failed(item, _) => item,
                }
            }
        }

        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $($name::$variant(_) => f.write_str(concat!(stringify!($variant), "(..)")),)*
                    $name::Failed(_, err) => f.debug_tuple("Failed").field(&"..").field(err).finish(),
                }
            }
        }

        impl<T> std::error::Error for $name<T> {}
    };
}

item_error!(
    /// Why [`Queue::put`] did not put the item (it is handed back).
    ///
    /// ```
    /// use multiproc::{Queue, queue::PutError};
    /// let q = Queue::new().unwrap();
    /// q.close();
    /// assert!(matches!(q.put(1), Err(PutError::Closed(1))));
    /// ```
    /// Python counterpart: the `ValueError` of a put on a closed queue, or the pickling error.
    PutError {
        /// This handle was closed.
        Closed
    }
);
item_error!(
    /// Why [`Queue::try_put`] did not put the item (it is handed back).
    ///
    /// ```
    /// use multiproc::{Queue, queue::TryPutError};
    /// let q = Queue::bounded(1).unwrap();
    /// q.try_put(1).unwrap();
    /// assert!(matches!(q.try_put(2), Err(TryPutError::Full(2))));
    /// ```
    /// Python counterpart: `queue.Full` from `put_nowait`.
    TryPutError {
        /// The queue is at its `maxsize` (or its ring is full).
        Full,
        /// This handle was closed.
        Closed
    }
);
item_error!(
    /// Why [`Queue::put_timeout`] did not put the item (it is handed back).
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::{Queue, queue::PutTimeoutError};
    /// let q = Queue::bounded(1).unwrap();
    /// q.put(1).unwrap();
    /// assert!(matches!(q.put_timeout(2, Duration::from_millis(10)), Err(PutTimeoutError::Timeout(2))));
    /// ```
    /// Python counterpart: `queue.Full` from `put(obj, timeout=t)`.
    PutTimeoutError {
        /// There was no room before the deadline.
        Timeout,
        /// This handle was closed.
        Closed
    }
);

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Closed(_) => f.write_str("queue is closed"),
            PutError::Failed(_, err) => err.fmt(f),
        }
    }
}

impl<T> fmt::Display for TryPutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryPutError::Full(_) => f.write_str("queue is full"),
            TryPutError::Closed(_) => f.write_str("queue is closed"),
            TryPutError::Failed(_, err) => err.fmt(f),
        }
    }
}

impl<T> fmt::Display for PutTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutTimeoutError::Timeout(_) => f.write_str("timed out waiting for room in the queue"),
            PutTimeoutError::Closed(_) => f.write_str("queue is closed"),
            PutTimeoutError::Failed(_, err) => err.fmt(f),
        }
    }
}

/// Why [`Queue::get`] returned no item.
///
/// ```
/// use multiproc::{Queue, queue::GetError};
/// let q = Queue::<u8>::new().unwrap();
/// q.close();
/// assert!(matches!(q.get(), Err(GetError::Closed)));
/// ```
/// Python counterpart: the `ValueError` of a get on a closed queue, or the unpickling error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GetError {
    /// This handle was closed.
    #[error("queue is closed")]
    Closed,
    /// An item arrived but could not be decoded as the expected type (it is consumed; the queue
    /// stays usable), or the queue is broken.
    #[error(transparent)]
    Failed(Error),
}

/// Why [`Queue::try_get`] returned no item.
///
/// ```
/// use multiproc::{Queue, queue::TryGetError};
/// let q = Queue::<u8>::new().unwrap();
/// assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
/// ```
/// Python counterpart: `queue.Empty` from `get_nowait`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TryGetError {
    /// The queue was empty.
    #[error("queue is empty")]
    Empty,
    /// This handle was closed.
    #[error("queue is closed")]
    Closed,
    /// As [`GetError::Failed`].
    #[error(transparent)]
    Failed(Error),
}

/// Why [`Queue::get_timeout`] returned no item.
///
/// ```
/// use std::time::Duration;
/// use multiproc::{Queue, queue::GetTimeoutError};
/// let q = Queue::<u8>::new().unwrap();
/// assert!(matches!(q.get_timeout(Duration::from_millis(10)), Err(GetTimeoutError::Timeout)));
/// ```
/// Python counterpart: `queue.Empty` from `get(timeout=t)`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GetTimeoutError {
    /// Nothing arrived before the deadline.
    #[error("timed out waiting for an item")]
    Timeout,
    /// This handle was closed.
    #[error("queue is closed")]
    Closed,
    /// As [`GetError::Failed`].
    #[error(transparent)]
    Failed(Error),
}

/// A multi-producer, multi-consumer queue between processes, optionally bounded.
///
/// Items from one producer arrive in the order it put them. [`len`](Self::len),
/// [`is_empty`](Self::is_empty) and [`is_full`](Self::is_full) are snapshots: exact at the instant
/// they read the shared counter, and possibly stale by the time the caller looks (as in Python).
///
/// Unlike Python's, an unbounded queue is unbounded in items, not in bytes: a `put` that finds
/// the ring (4 MiB by default) full waits until consumers make room. Python's feeder thread
/// would instead buffer without limit in the producer's memory — and then keep that process
/// from exiting until someone drains it; ours never does.
///
/// ```
/// use multiproc::{Process, Queue};
///
/// fn square(jobs: Queue<Option<u64>>, results: Queue<u64>) {
///     while let Some(n) = jobs.get().unwrap() {
///         results.put(n * n).unwrap();
///     }
/// }
///
/// let (jobs, results) = (Queue::new().unwrap(), Queue::new().unwrap());
/// let mut worker = Process::spawn(square, (jobs.clone(), results.clone())).unwrap();
/// for n in 1..=3 {
///     jobs.put(Some(n)).unwrap();
/// }
/// jobs.put(None).unwrap();
/// worker.join().unwrap();
/// let squares: Vec<u64> = (0..3).map(|_| results.get().unwrap()).collect();
/// assert_eq!(squares, [1, 4, 9]);
/// ```
/// See also the [module docs](self).
///
/// Python counterpart: `multiprocessing.Queue`.
pub struct Queue<T> {
    ring: Ring,
    closed: AtomicBool,
    _type: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    /// Another handle to the same queue (open, whatever this one's state).
    fn clone(&self) -> Queue<T> {
        Queue { ring: self.ring.clone(), closed: AtomicBool::new(false), _type: PhantomData }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue").field("len", &self.len()).field("maxsize", &self.ring.maxsize()).finish()
    }
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.ring.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Queue<T>, D::Error> {
        Ok(Queue { ring: Ring::deserialize(deserializer)?, closed: AtomicBool::new(false), _type: PhantomData })
    }
}

impl<T> Queue<T> {
    /// An unbounded queue (see the type's docs for what a full ring does).
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if no shared memory can be had.
    ///
    /// ```
    /// let q = multiproc::Queue::<String>::new().unwrap();
    /// assert_eq!(q.maxsize(), 0);
    /// ```
    /// Python counterpart: `Queue()`.
    pub fn new() -> Result<Queue<T>> {
        Queue::with_capacity(0, DEFAULT_CAPACITY)
    }

    /// A queue of at most `maxsize` items (0: unbounded, as in Python).
    ///
    /// `maxsize` is a `usize`, so Python's negative sizes (meaning unbounded) cannot be written.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if no shared memory can be had.
    ///
    /// ```
    /// let q = multiproc::Queue::bounded(2).unwrap();
    /// q.put(1).unwrap();
    /// q.put(2).unwrap();
    /// assert!(q.is_full());
    /// ```
    /// Python counterpart: `Queue(maxsize)`.
    pub fn bounded(maxsize: usize) -> Result<Queue<T>> {
        Queue::with_capacity(maxsize, DEFAULT_CAPACITY)
    }

    /// A queue of at most `maxsize` items (0: unbounded) over a ring of `bytes` bytes (at least
    /// 4 KiB). Items larger than half the ring stream through it in chunks.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if no shared memory can be had, [`ErrorKind::InvalidInput`] if `bytes`
    /// is absurdly large.
    ///
    /// ```
    /// // A 64 KiB ring: a 1 MiB item still passes, in chunks, as the consumer takes them.
    /// let q = multiproc::Queue::<Vec<u8>>::with_capacity(0, 64 << 10).unwrap();
    /// let consumer = std::thread::spawn({
    ///     let q = q.clone();
    ///     move || q.get().unwrap()
    /// });
    /// q.put(vec![7u8; 1 << 20]).unwrap();
    /// assert_eq!(consumer.join().unwrap().len(), 1 << 20);
    /// ```
    /// Python counterpart: none (Python's pipe buffer is the kernel's).
    pub fn with_capacity(maxsize: usize, bytes: usize) -> Result<Queue<T>> {
        Ok(Queue { ring: Ring::new(maxsize as u64, bytes)?, closed: AtomicBool::new(false), _type: PhantomData })
    }

    /// The number of items in the queue (a snapshot).
    ///
    /// Exact when nobody is putting or getting; otherwise it may be one behind for each put in
    /// progress (an item is counted once it can be taken). Unlike Python's `qsize()`, it works on
    /// every platform.
    ///
    /// ```
    /// let q = multiproc::Queue::new().unwrap();
    /// q.put('a').unwrap();
    /// q.put('b').unwrap();
    /// q.get().unwrap();
    /// assert_eq!(q.len(), 1);
    /// ```
    /// Python counterpart: `q.qsize()`.
    #[doc(alias = "qsize")]
    pub fn len(&self) -> usize {
        self.ring.len() as usize
    }

    /// Whether the queue is empty (a snapshot, as [`len`](Self::len)).
    ///
    /// ```
    /// let q = multiproc::Queue::<u8>::new().unwrap();
    /// assert!(q.is_empty());
    /// ```
    /// Python counterpart: `q.empty()`.
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the queue holds `maxsize` items (a snapshot; never for an unbounded queue, even
    /// when its ring is momentarily full).
    ///
    /// ```
    /// let q = multiproc::Queue::bounded(1).unwrap();
    /// q.put(()).unwrap();
    /// assert!(q.is_full());
    /// ```
    /// Python counterpart: `q.full()`.
    #[doc(alias = "full")]
    pub fn is_full(&self) -> bool {
        let max = self.ring.maxsize();
        max > 0 && self.ring.len() >= max
    }

    /// The bound given at creation (0: unbounded).
    ///
    /// ```
    /// assert_eq!(multiproc::Queue::<u8>::bounded(5).unwrap().maxsize(), 5);
    /// ```
    /// Python counterpart: `q._maxsize` (private in Python).
    pub fn maxsize(&self) -> usize {
        self.ring.maxsize() as usize
    }

    /// Closes this handle: later `put`s and `get`s through it fail with `Closed`. Other handles
    /// (in this or other processes) are not affected, and nothing already put is lost.
    ///
    /// ```
    /// let q = multiproc::Queue::new().unwrap();
    /// let other = q.clone();
    /// q.put(1).unwrap();
    /// q.close();
    /// assert!(q.get().is_err());
    /// assert_eq!(other.get().unwrap(), 1);
    /// ```
    /// Python counterpart: `q.close()`.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
}

/// What a put or get ended with, before it is dressed in the caller's error type.
enum Outcome {
    Timeout,
    Failed(Error),
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    fn encode_error(item: &T, e: postcard::Error) -> Error {
        Error::new(ErrorKind::Encode, crate::codec::encode_failure(item, &e))
    }

    fn put_until(&self, item: &T, deadline: Option<Instant>) -> std::result::Result<(), Outcome> {
        let ring_error = |e| match e {
            RingError::Timeout => Outcome::Timeout,
            RingError::Failed(err) => Outcome::Failed(err),
        };
        handle::sending(|| {
            // The common case: an item of bytes only that fits goes straight into the ring,
            // measured and then encoded in place, with no buffer in between.
            match handle::bytes_only_size(item) {
                Some(len) if len <= self.ring.whole_limit() => self
                    .ring
                    .put_whole(len, deadline, &mut |room| {
                        postcard::to_slice(item, room).map(drop).map_err(|e| Self::encode_error(item, e))
                    })
                    .map_err(ring_error),
                _ => self.put_measured(item, deadline).map_err(ring_error),
            }
        })
    }

    /// The careful put: measure the item and look for handles with a side table open (and say
    /// why it cannot go, if it cannot); a big item is encoded into a buffer and streamed in
    /// chunks.
    #[cold]
    fn put_measured(&self, item: &T, deadline: Option<Instant>) -> std::result::Result<(), RingError> {
        let (len, has_handles) = handle::measure(item).map_err(|e| RingError::Failed(Self::encode_error(item, e)))?;
        if has_handles {
            return Err(RingError::Failed(Error::new(
                ErrorKind::HandleOutsideTransfer,
                "a queue carries bytes only; send handles over a Connection",
            )));
        }
        // Measured and encoded as a transfer alike: both passes must agree byte for byte.
        if len <= self.ring.whole_limit() {
            self.ring.put_whole(len, deadline, &mut |room| {
                postcard::to_slice(item, room).map(drop).map_err(|e| Self::encode_error(item, e))
            })
        } else {
            let bytes = postcard::to_stdvec(item).map_err(|e| RingError::Failed(Self::encode_error(item, e)))?;
            self.ring.put(&bytes, deadline)
        }
    }

    fn get_until(&self, deadline: Option<Instant>) -> std::result::Result<T, Outcome> {
        let mut decoded = None;
        self.ring
            .get(deadline, &mut |bytes| {
                decoded = Some(
                    handle::receiving(|| handle::decode_exact::<T>(bytes))
                        .map_err(|e| crate::codec::decode_failure::<T>(bytes, &e)),
                )
            })
            .map_err(|e| match e {
                RingError::Timeout => Outcome::Timeout,
                RingError::Failed(err) => Outcome::Failed(err),
            })?;
        decoded
            .expect("a message was taken")
            .map_err(|why| Outcome::Failed(Error::new(ErrorKind::Decode, format!("an item is not a {why}"))))
    }

    /// Puts an item, waiting for room in a bounded queue for as long as it takes.
    ///
    /// # Errors
    /// [`PutError::Failed`] with [`ErrorKind::Encode`] if the item cannot be encoded, or
    /// [`ErrorKind::HandleOutsideTransfer`] if it contains handles; [`PutError::Closed`] on a
    /// closed handle. The item is handed back either way.
    ///
    /// ```
    /// let q = multiproc::Queue::new().unwrap();
    /// q.put(String::from("dumplings")).unwrap();
    /// assert_eq!(q.get().unwrap(), "dumplings");
    /// ```
    /// Python counterpart: `q.put(obj)`.
    pub fn put(&self, item: T) -> std::result::Result<(), PutError<T>> {
        if self.is_closed() {
            return Err(PutError::Closed(item));
        }
        match self.put_until(&item, None) {
            Ok(()) => Ok(()),
            Err(Outcome::Failed(err)) => Err(PutError::Failed(item, err)),
            Err(Outcome::Timeout) => unreachable!("no deadline"),
        }
    }

    /// Puts an item if there is room now.
    ///
    /// # Errors
    /// [`TryPutError::Full`] if there is not; otherwise as [`put`](Self::put).
    ///
    /// ```
    /// let q = multiproc::Queue::bounded(1).unwrap();
    /// assert!(q.try_put(1).is_ok());
    /// assert_eq!(q.try_put(2).unwrap_err().into_inner(), 2);
    /// ```
    /// Python counterpart: `q.put_nowait(obj)` / `q.put(obj, block=False)`.
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, item: T) -> std::result::Result<(), TryPutError<T>> {
        if self.is_closed() {
            return Err(TryPutError::Closed(item));
        }
        match self.put_until(&item, Some(Instant::now())) {
            Ok(()) => Ok(()),
            Err(Outcome::Timeout) => Err(TryPutError::Full(item)),
            Err(Outcome::Failed(err)) => Err(TryPutError::Failed(item, err)),
        }
    }

    /// Puts an item, waiting up to `timeout` for room.
    ///
    /// # Errors
    /// [`PutTimeoutError::Timeout`] once it has passed; otherwise as [`put`](Self::put).
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = multiproc::Queue::bounded(1).unwrap();
    /// q.put_timeout(1, Duration::from_secs(1)).unwrap();
    /// assert!(q.put_timeout(2, Duration::from_millis(10)).is_err());
    /// ```
    /// Python counterpart: `q.put(obj, timeout=t)`.
    pub fn put_timeout(&self, item: T, timeout: Duration) -> std::result::Result<(), PutTimeoutError<T>> {
        self.put_deadline(item, deadline_after(timeout))
    }

    /// Puts an item, waiting until `deadline` (`None`: forever) for room.
    ///
    /// # Errors
    /// As for [`put_timeout`](Self::put_timeout).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let q = multiproc::Queue::new().unwrap();
    /// q.put_deadline('x', Some(Instant::now() + Duration::from_secs(1))).unwrap();
    /// ```
    /// Python counterpart: `q.put(obj, timeout=deadline - time.monotonic())`.
    pub fn put_deadline(&self, item: T, deadline: Option<Instant>) -> std::result::Result<(), PutTimeoutError<T>> {
        if self.is_closed() {
            return Err(PutTimeoutError::Closed(item));
        }
        match self.put_until(&item, deadline) {
            Ok(()) => Ok(()),
            Err(Outcome::Timeout) => Err(PutTimeoutError::Timeout(item)),
            Err(Outcome::Failed(err)) => Err(PutTimeoutError::Failed(item, err)),
        }
    }

    /// Takes the oldest item, waiting for one for as long as it takes.
    ///
    /// # Errors
    /// [`GetError::Failed`] with [`ErrorKind::Decode`] if the item is not a `T` (it is consumed;
    /// the queue stays usable); [`GetError::Closed`] on a closed handle.
    ///
    /// ```
    /// let q = multiproc::Queue::new().unwrap();
    /// q.put((1, String::from("one"))).unwrap();
    /// let (n, word) = q.get().unwrap();
    /// assert_eq!((n, word.as_str()), (1, "one"));
    /// ```
    /// Python counterpart: `q.get()`.
    pub fn get(&self) -> std::result::Result<T, GetError> {
        if self.is_closed() {
            return Err(GetError::Closed);
        }
        match self.get_until(None) {
            Ok(item) => Ok(item),
            Err(Outcome::Failed(err)) => Err(GetError::Failed(err)),
            Err(Outcome::Timeout) => unreachable!("no deadline"),
        }
    }

    /// Takes an item if one is there now.
    ///
    /// # Errors
    /// [`TryGetError::Empty`] if none is; otherwise as [`get`](Self::get).
    ///
    /// ```
    /// let q = multiproc::Queue::new().unwrap();
    /// assert!(q.try_get().is_err());
    /// q.put(5u8).unwrap();
    /// assert_eq!(q.try_get().unwrap(), 5);
    /// ```
    /// Python counterpart: `q.get_nowait()` / `q.get(block=False)`.
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> std::result::Result<T, TryGetError> {
        if self.is_closed() {
            return Err(TryGetError::Closed);
        }
        match self.get_until(Some(Instant::now())) {
            Ok(item) => Ok(item),
            Err(Outcome::Timeout) => Err(TryGetError::Empty),
            Err(Outcome::Failed(err)) => Err(TryGetError::Failed(err)),
        }
    }

    /// Takes an item, waiting up to `timeout`.
    ///
    /// # Errors
    /// [`GetTimeoutError::Timeout`] once it has passed; otherwise as [`get`](Self::get).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let q = multiproc::Queue::<u8>::new().unwrap();
    /// let began = Instant::now();
    /// assert!(q.get_timeout(Duration::from_millis(20)).is_err());
    /// assert!(began.elapsed() >= Duration::from_millis(20));
    /// ```
    /// Python counterpart: `q.get(timeout=t)`.
    pub fn get_timeout(&self, timeout: Duration) -> std::result::Result<T, GetTimeoutError> {
        self.get_deadline(deadline_after(timeout))
    }

    /// Takes an item, waiting until `deadline` (`None`: forever). A large item whose first part
    /// has arrived is received whole even if that takes past the deadline.
    ///
    /// # Errors
    /// As for [`get_timeout`](Self::get_timeout).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let q = multiproc::Queue::new().unwrap();
    /// q.put(1u8).unwrap();
    /// assert_eq!(q.get_deadline(Some(Instant::now() + Duration::from_secs(1))).unwrap(), 1);
    /// ```
    /// Python counterpart: `q.get(timeout=deadline - time.monotonic())`.
    pub fn get_deadline(&self, deadline: Option<Instant>) -> std::result::Result<T, GetTimeoutError> {
        if self.is_closed() {
            return Err(GetTimeoutError::Closed);
        }
        match self.get_until(deadline) {
            Ok(item) => Ok(item),
            Err(Outcome::Timeout) => Err(GetTimeoutError::Timeout),
            Err(Outcome::Failed(err)) => Err(GetTimeoutError::Failed(err)),
        }
    }
}

/// How long an async getter or putter kept out by another one (holding the ring) waits before it
/// looks again: nobody wakes it when the ring is let go.
const CONTENDED: Duration = Duration::from_millis(1);

/// Ready when an item may have come (a put past `seen`, the ring's published mark read before
/// the failed try).
fn watch_items(ring: &Ring, seen: u64) -> Watch {
    let slice = ring.get_contended().then_some(CONTENDED);
    let (sleeper, waker) = (ring.clone(), ring.clone());
    Watch::start(move |stop| sleeper.sleep_consumer(seen, stop.flag(), slice), move || waker.wake_watchers())
}

/// Ready when room may have come (a get past `seen`, the consumed mark).
fn watch_room(ring: &Ring, seen: u64) -> Watch {
    let slice = ring.put_contended().then_some(CONTENDED);
    let (sleeper, waker) = (ring.clone(), ring.clone());
    Watch::start(move |stop| sleeper.sleep_producer(seen, stop.flag(), slice), move || waker.wake_room_watchers())
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// Takes the oldest item, as [`get`](Self::get) does, without blocking the thread: for async
    /// code, on any executor.
    ///
    /// Cancel-safe: the item is taken inside the poll that returns it, so a future dropped before
    /// it is ready (a `select!`, a timeout) has taken nothing. See [`asyncio`].
    ///
    /// # Errors
    /// As [`get`](Self::get).
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::{Process, Queue};
    /// fn late(q: Queue<u8>) { std::thread::sleep(Duration::from_millis(50)); q.put(7).unwrap() }
    ///
    /// let q = Queue::new().unwrap();
    /// let mut child = Process::spawn(late, (q.clone(),)).unwrap();
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    /// rt.block_on(async {
    ///     // A get that times out takes nothing...
    ///     assert!(tokio::time::timeout(Duration::from_millis(1), q.get_async()).await.is_err());
    ///     // ...so the item is there for the next one.
    ///     assert_eq!(q.get_async().await.unwrap(), 7);
    /// });
    /// child.join().unwrap();
    /// ```
    /// Python counterpart: none (`await loop.run_in_executor(None, q.get)` loses the item if
    /// cancelled).
    pub async fn get_async(&self) -> std::result::Result<T, GetError> {
        asyncio::retry(|| {
            let seen = self.ring.published_mark();
            match self.try_get() {
                Ok(item) => Step::Done(Ok(item)),
                Err(TryGetError::Empty) => Step::Wait(watch_items(&self.ring, seen)),
                Err(TryGetError::Closed) => Step::Done(Err(GetError::Closed)),
                Err(TryGetError::Failed(err)) => Step::Done(Err(GetError::Failed(err))),
            }
        })
        .await
    }

    /// Puts an item, as [`put`](Self::put) does, waiting for room in a bounded queue without
    /// blocking the thread.
    ///
    /// Cancel-safe: a future dropped before it is ready has put nothing (the item is dropped
    /// with it).
    ///
    /// # Errors
    /// As [`put`](Self::put).
    ///
    /// ```
    /// let q = multiproc::Queue::bounded(1).unwrap();
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// rt.block_on(async {
    ///     q.put_async(1).await.unwrap();
    ///     let second = q.put_async(2); // waits for room...
    ///     assert_eq!(q.get_async().await.unwrap(), 1);
    ///     second.await.unwrap(); // ...which the get made
    ///     assert_eq!(q.get_async().await.unwrap(), 2);
    /// });
    /// ```
    /// Python counterpart: none (see [`get_async`](Self::get_async)).
    pub async fn put_async(&self, item: T) -> std::result::Result<(), PutError<T>> {
        self.put_async_by(item, Queue::try_put).await
    }

    /// `put_async`, each attempt made by `try_put`.
    async fn put_async_by(
        &self,
        item: T,
        try_put: impl Fn(&Self, T) -> std::result::Result<(), TryPutError<T>>,
    ) -> std::result::Result<(), PutError<T>> {
        let mut item = Some(item);
        asyncio::retry(|| {
            let seen = self.ring.consumed_mark();
            match try_put(self, item.take().expect("kept between attempts")) {
                Ok(()) => Step::Done(Ok(())),
                Err(TryPutError::Full(back)) => {
                    item = Some(back);
                    Step::Wait(watch_room(&self.ring, seen))
                }
                Err(TryPutError::Closed(back)) => Step::Done(Err(PutError::Closed(back))),
                Err(TryPutError::Failed(back, err)) => Step::Done(Err(PutError::Failed(back, err))),
            }
        })
        .await
    }
}

/// A queue with nothing but `put`, `get` and `is_empty`: no bound, no timeouts.
///
/// ```
/// let q = multiproc::SimpleQueue::new().unwrap();
/// q.put(1u8).unwrap();
/// assert_eq!(q.get().unwrap(), 1);
/// assert!(q.is_empty());
/// ```
/// Python counterpart: `multiprocessing.SimpleQueue`.
pub struct SimpleQueue<T> {
    queue: Queue<T>,
}

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> SimpleQueue<T> {
        SimpleQueue { queue: self.queue.clone() }
    }
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimpleQueue").field("len", &self.queue.len()).finish()
    }
}

impl<T> Serialize for SimpleQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.queue.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for SimpleQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<SimpleQueue<T>, D::Error> {
        Ok(SimpleQueue { queue: Queue::deserialize(deserializer)? })
    }
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// A new, empty queue.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if no shared memory can be had.
    ///
    /// ```
    /// let q = multiproc::SimpleQueue::<u32>::new().unwrap();
    /// assert!(q.is_empty());
    /// ```
    /// Python counterpart: `SimpleQueue()`.
    pub fn new() -> Result<SimpleQueue<T>> {
        Ok(SimpleQueue { queue: Queue::new()? })
    }

    /// Puts an item.
    ///
    /// # Errors
    /// As [`Queue::put`].
    ///
    /// ```
    /// let q = multiproc::SimpleQueue::new().unwrap();
    /// q.put(String::from("hi")).unwrap();
    /// ```
    /// Python counterpart: `q.put(obj)`.
    pub fn put(&self, item: T) -> std::result::Result<(), PutError<T>> {
        self.queue.put(item)
    }

    /// Takes the oldest item, waiting for one.
    ///
    /// # Errors
    /// As [`Queue::get`].
    ///
    /// ```
    /// let q = multiproc::SimpleQueue::new().unwrap();
    /// q.put(3).unwrap();
    /// assert_eq!(q.get().unwrap(), 3);
    /// ```
    /// Python counterpart: `q.get()`.
    pub fn get(&self) -> std::result::Result<T, GetError> {
        self.queue.get()
    }

    /// Puts an item without blocking the thread (see [`Queue::put_async`]).
    ///
    /// # Errors
    /// As [`Queue::put`].
    ///
    /// ```
    /// let q = multiproc::SimpleQueue::new().unwrap();
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// rt.block_on(q.put_async(String::from("hi"))).unwrap();
    /// assert_eq!(q.get().unwrap(), "hi");
    /// ```
    /// Python counterpart: none.
    pub async fn put_async(&self, item: T) -> std::result::Result<(), PutError<T>> {
        self.queue.put_async(item).await
    }

    /// Takes the oldest item without blocking the thread; cancel-safe (see [`Queue::get_async`]).
    ///
    /// # Errors
    /// As [`Queue::get`].
    ///
    /// ```
    /// let q = multiproc::SimpleQueue::new().unwrap();
    /// q.put(3).unwrap();
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// assert_eq!(rt.block_on(q.get_async()).unwrap(), 3);
    /// ```
    /// Python counterpart: none.
    pub async fn get_async(&self) -> std::result::Result<T, GetError> {
        self.queue.get_async().await
    }

    /// Whether the queue is empty (a snapshot).
    ///
    /// ```
    /// let q = multiproc::SimpleQueue::new().unwrap();
    /// q.put(1).unwrap();
    /// assert!(!q.is_empty());
    /// ```
    /// Python counterpart: `q.empty()`.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Closes this handle (see [`Queue::close`]).
    ///
    /// ```
    /// let q = multiproc::SimpleQueue::<u8>::new().unwrap();
    /// q.close();
    /// assert!(q.put(1).is_err());
    /// ```
    /// Python counterpart: `q.close()`.
    pub fn close(&self) {
        self.queue.close()
    }
}

/// A [`Queue`] that counts unfinished items: each `put` adds one, each [`task_done`](Self::task_done)
/// removes one, and [`join`](Self::join) waits until none is left.
///
/// # Example
/// ```
/// use multiproc::{JoinableQueue, Process};
///
/// fn eat(q: JoinableQueue<u32>) {
///     loop {
///         let _bun = q.get().unwrap();
///         q.task_done().unwrap();
///     }
/// }
///
/// let q = JoinableQueue::new().unwrap();
/// let _eater = Process::builder().daemon(true).spawn(eat, (q.clone(),)).unwrap();
/// for bun in 0..10 {
///     q.put(bun).unwrap();
/// }
/// q.join().unwrap(); // every bun eaten; the daemon eater ends with the program
/// ```
/// Python counterpart: `multiprocessing.JoinableQueue`.
pub struct JoinableQueue<T> {
    queue: Queue<T>,
}

/// [`JoinableQueue::task_done`] was called more times than items were put.
///
/// ```
/// let q = multiproc::JoinableQueue::<u8>::new().unwrap();
/// assert_eq!(q.task_done(), Err(multiproc::queue::TaskDoneError));
/// ```
/// Python counterpart: `ValueError: task_done() called too many times`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("task_done() called too many times")]
pub struct TaskDoneError;

/// [`JoinableQueue::join_timeout`] returned before every item was done.
///
/// ```
/// use std::time::Duration;
/// let q = multiproc::JoinableQueue::new().unwrap();
/// q.put(1).unwrap();
/// assert_eq!(q.join_timeout(Duration::from_millis(10)), Err(multiproc::queue::JoinTimeout));
/// ```
/// Python counterpart: none (Python's `JoinableQueue.join` has no timeout).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("timed out waiting for the queue's items to be done")]
pub struct JoinTimeout;

/// A queue is ready for [`wait`](crate::connection::wait) when an item can be taken.
impl<T> Waitable for Queue<T> {
    fn wait_source(&self) -> WaitSource<'_> {
        WaitSource::ring(&self.ring)
    }
}

impl<T> Waitable for SimpleQueue<T> {
    fn wait_source(&self) -> WaitSource<'_> {
        self.queue.wait_source()
    }
}

impl<T> Waitable for JoinableQueue<T> {
    fn wait_source(&self) -> WaitSource<'_> {
        self.queue.wait_source()
    }
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> JoinableQueue<T> {
        JoinableQueue { queue: self.queue.clone() }
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinableQueue").field("len", &self.queue.len()).finish()
    }
}

impl<T> Serialize for JoinableQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.queue.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<JoinableQueue<T>, D::Error> {
        Ok(JoinableQueue { queue: Queue::deserialize(deserializer)? })
    }
}

impl<T> std::ops::Deref for JoinableQueue<T> {
    type Target = Queue<T>;
    /// Everything a [`Queue`] does but putting (which must count): `get`, `len`, `close`, ….
    fn deref(&self) -> &Queue<T> {
        &self.queue
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// An unbounded joinable queue.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if no shared memory can be had.
    ///
    /// ```
    /// let q = multiproc::JoinableQueue::<u8>::new().unwrap();
    /// q.join().unwrap(); // nothing put, nothing to wait for
    /// ```
    /// Python counterpart: `JoinableQueue()`.
    pub fn new() -> Result<JoinableQueue<T>> {
        JoinableQueue::bounded(0)
    }

    /// A joinable queue of at most `maxsize` items (0: unbounded).
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if no shared memory can be had.
    ///
    /// ```
    /// let q = multiproc::JoinableQueue::bounded(1).unwrap();
    /// q.put(1).unwrap();
    /// assert!(q.try_put(2).is_err());
    /// ```
    /// Python counterpart: `JoinableQueue(maxsize)`.
    pub fn bounded(maxsize: usize) -> Result<JoinableQueue<T>> {
        let queue = Queue::bounded(maxsize)?;
        queue.ring.set_joinable();
        Ok(JoinableQueue { queue })
    }

    /// How many items were counted done because the process that took them died before calling
    /// [`task_done`](Self::task_done) (see [`join`](Self::join)).
    ///
    /// ```
    /// let q = multiproc::JoinableQueue::<u8>::new().unwrap();
    /// assert_eq!(q.lost(), 0);
    /// ```
    /// Python counterpart: none (Python's `join` hangs on such items).
    pub fn lost(&self) -> u64 {
        self.queue.ring.lost()
    }

    /// Puts an item and counts it as unfinished.
    ///
    /// # Errors
    /// As [`Queue::put`] (a failed put is not counted).
    ///
    /// ```
    /// let q = multiproc::JoinableQueue::new().unwrap();
    /// q.put(String::from("task")).unwrap();
    /// q.get().unwrap();
    /// q.task_done().unwrap();
    /// q.join().unwrap();
    /// ```
    /// Python counterpart: `q.put(obj)`.
    pub fn put(&self, item: T) -> std::result::Result<(), PutError<T>> {
        self.queue.ring.add_unfinished();
        self.queue.put(item).inspect_err(|_| self.queue.ring.remove_unfinished())
    }

    /// Puts an item if there is room now, counting it as unfinished.
    ///
    /// # Errors
    /// As [`Queue::try_put`] (a failed put is not counted).
    ///
    /// ```
    /// let q = multiproc::JoinableQueue::bounded(1).unwrap();
    /// q.try_put(1).unwrap();
    /// assert!(q.try_put(2).is_err());
    /// q.get().unwrap();
    /// q.task_done().unwrap();
    /// q.join().unwrap(); // the refused item was never counted
    /// ```
    /// Python counterpart: `q.put_nowait(obj)`.
    pub fn try_put(&self, item: T) -> std::result::Result<(), TryPutError<T>> {
        self.queue.ring.add_unfinished();
        self.queue.try_put(item).inspect_err(|_| self.queue.ring.remove_unfinished())
    }

    /// Puts an item, waiting up to `timeout` for room, counting it as unfinished.
    ///
    /// # Errors
    /// As [`Queue::put_timeout`] (a failed put is not counted).
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = multiproc::JoinableQueue::new().unwrap();
    /// q.put_timeout(1, Duration::from_secs(1)).unwrap();
    /// ```
    /// Python counterpart: `q.put(obj, timeout=t)`.
    pub fn put_timeout(&self, item: T, timeout: Duration) -> std::result::Result<(), PutTimeoutError<T>> {
        self.queue.ring.add_unfinished();
        self.queue.put_timeout(item, timeout).inspect_err(|_| self.queue.ring.remove_unfinished())
    }

    /// Puts an item without blocking the thread, counting it as unfinished once it is in (see
    /// [`Queue::put_async`]; a dropped future counted nothing).
    ///
    /// # Errors
    /// As [`Queue::put`] (a failed put is not counted).
    ///
    /// ```
    /// let q = multiproc::JoinableQueue::new().unwrap();
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// rt.block_on(q.put_async(1)).unwrap();
    /// assert!(q.join_timeout(std::time::Duration::ZERO).is_err()); // one unfinished
    /// ```
    /// Python counterpart: none.
    pub async fn put_async(&self, item: T) -> std::result::Result<(), PutError<T>> {
        // Each attempt is a whole joinable try_put: counted if and only if it went in.
        self.queue.put_async_by(item, |_, item| self.try_put(item)).await
    }

    /// Waits, without blocking the thread, until every item put has been marked done; like
    /// [`join`](Self::join), it counts done the items of consumers that died holding them.
    ///
    /// ```
    /// let q = multiproc::JoinableQueue::new().unwrap();
    /// q.put(1).unwrap();
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// rt.block_on(async {
    ///     q.get_async().await.unwrap();
    ///     q.task_done().unwrap();
    ///     q.join_async().await;
    /// });
    /// ```
    /// Python counterpart: none (`q.join()` blocks).
    pub async fn join_async(&self) {
        let ring = &self.queue.ring;
        asyncio::retry(|| {
            if ring.is_drained() {
                return Step::Done(());
            }
            let (sleeper, waker) = (ring.clone(), ring.clone());
            Step::Wait(Watch::start(move |stop| sleeper.sleep_joiner(stop.flag()), move || waker.wake_joiners()))
        })
        .await
    }

    /// Marks one item taken with `get` as done.
    ///
    /// # Errors
    /// [`TaskDoneError`] if more items were marked done than were put (Python's `ValueError`).
    ///
    /// ```
    /// let q = multiproc::JoinableQueue::new().unwrap();
    /// q.put(1).unwrap();
    /// q.get().unwrap();
    /// assert!(q.task_done().is_ok());
    /// assert!(q.task_done().is_err());
    /// ```
    /// Python counterpart: `q.task_done()`.
    pub fn task_done(&self) -> std::result::Result<(), TaskDoneError> {
        if self.queue.ring.task_done() { Ok(()) } else { Err(TaskDoneError) }
    }

    /// Waits until every item put has been marked done.
    ///
    /// An item taken with `get` by a process that then dies before its `task_done` can never be
    /// marked done; `join` notices the death (it looks every 50 ms) and counts such items done,
    /// so it cannot hang on a dead consumer (Python's does). [`lost`](Self::lost) says how many
    /// were counted so. The queue follows up to 128 consumer processes at once; items taken by
    /// more are counted only by their `task_done`.
    ///
    /// # Errors
    /// Never; the `Result` keeps the shape of [`join_timeout`](Self::join_timeout).
    ///
    /// See the [type's example](JoinableQueue) for `join` with a consumer process.
    ///
    /// ```
    /// let q = multiproc::JoinableQueue::<u8>::new().unwrap();
    /// q.join().unwrap();
    /// ```
    /// Python counterpart: `q.join()`.
    pub fn join(&self) -> std::result::Result<(), JoinTimeout> {
        self.queue.ring.join(None).map_err(|_| JoinTimeout)
    }

    /// Waits up to `timeout` until every item put has been marked done.
    ///
    /// # Errors
    /// [`JoinTimeout`] if some were still unfinished at the deadline.
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = multiproc::JoinableQueue::new().unwrap();
    /// q.put(1).unwrap();
    /// assert!(q.join_timeout(Duration::from_millis(10)).is_err());
    /// ```
    /// Python counterpart: none (Python's `join` waits without limit).
    pub fn join_timeout(&self, timeout: Duration) -> std::result::Result<(), JoinTimeout> {
        self.queue.ring.join(deadline_after(timeout)).map_err(|_| JoinTimeout)
    }
}
