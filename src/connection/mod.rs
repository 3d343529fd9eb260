//! Connections: the two ends of a pipe between processes, carrying typed messages.
//!
//! [`pipe`] makes a connected pair of [`Connection`]s (a Unix stream socket pair); either end can
//! be passed to a child in its arguments. Each message is one frame:
//!
//! ```text
//! frame = length:u64le payload     (the payload is the postcard encoding of a T, or raw bytes)
//! ```
//!
//! with the descriptors of any handles inside the message attached to its first byte
//! (`SCM_RIGHTS`), so a [`Lock`](crate::Lock), an [`Fd`](crate::Fd) or another connection can be
//! sent over a connection too. A receiver that finds nothing to read spins for a few
//! microseconds before it sleeps in `poll`, which makes a round trip between two running
//! processes several times cheaper than a blocking wake-up (see `BENCHMARKS.md`).
//!
//! [`wait()`] waits for any of several connections, processes (and later queues) to be ready.
//!
//! # End of stream
//! A receiver sees [`RecvError::Disconnected`] once every copy of the other end is closed and
//! everything sent has been read. Under the `fork` start method a child inherits *every*
//! descriptor of its parent, including ends of pipes it was not given, and keeps them until it
//! exits; so, as in Python, end a conversation with a message of its own, or close the pipe
//! ends before forking, rather than wait for end-of-file from a forked child's peer. Children
//! started by `spawn` and `forkserver` (the default) hold only what they were given.

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::asyncio::{Step, Watch};
use crate::error::{Error, ErrorKind};
use crate::handle;
use crate::process::registry::lock;
use crate::sync::deadline_after;
use crate::sys;
use crate::sys::poll::Ready;

mod net;
mod wait;

pub use net::{Listener, NetConnection, client};
pub use wait::{WaitSource, Waitable, wait};

/// How long a receiver spins (re-checking the socket) before it sleeps.
const SPIN: Duration = Duration::from_micros(50);

/// Why a send failed. The message was not sent.
///
/// ```
/// use multiproc::connection::{SendError, pipe};
/// let (a, b) = pipe::<u8>().unwrap();
/// drop(b);
/// assert!(matches!(a.send(&1), Err(SendError::Disconnected)));
/// ```
/// Python counterpart: `BrokenPipeError` / `OSError` from `send`, or the pickling error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The other end is closed (or its process is gone).
    #[error("the other end of the connection is closed")]
    Disconnected,
    /// This end was made for receiving only (Python: `Pipe(duplex=False)`'s first end).
    #[error("connection is read-only")]
    ReadOnly,
    /// The message could not be encoded, or the OS failed; see [`Error::kind`].
    #[error(transparent)]
    Failed(#[from] Error),
}

/// Why a blocking receive failed.
///
/// ```
/// use multiproc::connection::{RecvError, pipe};
/// let (a, b) = pipe::<u8>().unwrap();
/// b.send(&1).unwrap();
/// drop(b);
/// assert_eq!(a.recv().unwrap(), 1); // what was sent is still read
/// assert!(matches!(a.recv(), Err(RecvError::Disconnected)));
/// ```
/// Python counterpart: `EOFError` from `recv`, or the unpickling error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The other end is closed and every message it sent has been read.
    #[error("the other end of the connection is closed")]
    Disconnected,
    /// This end was made for sending only (Python: `Pipe(duplex=False)`'s second end).
    #[error("connection is write-only")]
    WriteOnly,
    /// A message arrived but could not be decoded as the expected type (it is consumed; the
    /// connection stays usable), or the OS failed; see [`Error::kind`].
    #[error(transparent)]
    Failed(#[from] Error),
}

/// Why a receive with a deadline (or none at all) returned no message.
///
/// ```
/// use multiproc::connection::{RecvTimeoutError, pipe};
/// let (a, _b) = pipe::<u8>().unwrap();
/// assert!(matches!(a.try_recv(), Err(RecvTimeoutError::Timeout)));
/// ```
/// Python counterpart: `conn.poll(timeout)` returning `False`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvTimeoutError {
    /// Nothing arrived in time (for `try_recv`: nothing was there).
    #[error("timed out waiting for a message")]
    Timeout,
    /// See [`RecvError`].
    #[error(transparent)]
    Recv(#[from] RecvError),
}

/// Why [`Connection::recv_bytes_into`] did not fill the buffer.
///
/// ```
/// use multiproc::connection::{RecvIntoError, pipe};
/// let (a, b) = pipe::<()>().unwrap();
/// b.send_bytes(b"too long").unwrap();
/// let mut buf = [0u8; 3];
/// match a.recv_bytes_into(&mut buf) {
///     Err(RecvIntoError::TooSmall(whole)) => assert_eq!(whole, b"too long"),
///     other => panic!("{other:?}"),
/// }
/// ```
/// Python counterpart: `multiprocessing.BufferTooShort`, whose `args[0]` is the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvIntoError {
    /// The message is longer than the buffer; here it is, whole (nothing is lost).
    #[error("message of {} bytes does not fit the buffer", .0.len())]
    TooSmall(Vec<u8>),
    /// See [`RecvError`].
    #[error(transparent)]
    Recv(#[from] RecvError),
}

/// A whole frame: its payload and the descriptors that came with it.
type Frame = (Vec<u8>, Vec<OwnedFd>);

/// A frame being read, kept across calls so that a timeout never loses half a message.
struct Reader {
    header: [u8; 8],
    header_got: usize,
    body: Vec<u8>,
    body_got: usize,
    fds: Vec<OwnedFd>,
}

impl Reader {
    fn new() -> Reader {
        Reader { header: [0; 8], header_got: 0, body: Vec::new(), body_got: 0, fds: Vec::new() }
    }

    /// Reads what is there without blocking; `Some` once a whole frame is in.
    fn advance(&mut self, sock: BorrowedFd<'_>) -> Result<Option<Frame>, RecvError> {
        loop {
            let (buf, header) = if self.header_got < 8 {
                (&mut self.header[self.header_got..], true)
            } else {
                (&mut self.body[self.body_got..], false)
            };
            if !header && buf.is_empty() {
                let body = std::mem::take(&mut self.body);
                let fds = std::mem::take(&mut self.fds);
                self.header_got = 0;
                self.body_got = 0;
                return Ok(Some((body, fds)));
            }
            match sys::socket::recv_with_fds(sock, buf, &mut self.fds, true) {
                Ok(None) => return Ok(None),
                Ok(Some(0)) => return Err(RecvError::Disconnected),
                Ok(Some(n)) if header => {
                    self.header_got += n;
                    if self.header_got == 8 {
                        let len = u64::from_le_bytes(self.header);
                        let len = usize::try_from(len).map_err(|_| too_large(len))?;
                        let mut body = Vec::new();
                        body.try_reserve_exact(len).map_err(|_| too_large(len as u64))?;
                        body.resize(len, 0);
                        self.body = body;
                    }
                }
                Ok(Some(n)) => self.body_got += n,
                Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => return Err(RecvError::Disconnected),
                Err(e) => return Err(Error::os("receiving", e).into()),
            }
        }
    }
}

fn too_large(len: u64) -> RecvError {
    Error::new(ErrorKind::Decode, format!("incoming message of {len} bytes cannot be held in memory")).into()
}

/// One end of a pipe, sending and receiving messages of type `T`.
///
/// # Example
/// ```
/// use multiproc::{Process, connection::{pipe, Connection}};
///
/// fn echo(conn: Connection<String>) {
///     while let Ok(text) = conn.recv() {
///         conn.send(&text.to_uppercase()).unwrap();
///     }
/// }
///
/// let (ours, theirs) = pipe::<String>().unwrap();
/// let mut child = Process::spawn(echo, (theirs,)).unwrap();
/// ours.send(&"hello".to_string()).unwrap();
/// assert_eq!(ours.recv().unwrap(), "HELLO");
/// drop(ours); // the child's recv now reports the disconnection, and it returns
/// child.join().unwrap(); // (under fork, see "End of stream" in the module docs)
/// ```
/// Python counterpart: `multiprocessing.connection.Connection`.
pub struct Connection<T> {
    sock: OwnedFd,
    readable: bool,
    writable: bool,
    /// Shared with this end's clones, so that their frames never interleave.
    reader: Arc<Mutex<Reader>>,
    writer: Arc<Mutex<()>>,
    _type: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for Connection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection").field("readable", &self.readable).field("writable", &self.writable).finish()
    }
}

/// A connected pair of duplex connections: what one end sends, the other receives.
///
/// # Errors
/// [`ErrorKind::Os`] if the OS has no socket pair to give.
///
/// ```
/// use multiproc::{Process, pipe, Connection};
///
/// fn greet(conn: Connection<String>) {
///     let name = conn.recv().unwrap();
///     conn.send(&format!("hello, {name}")).unwrap();
/// }
///
/// let (ours, theirs) = pipe().unwrap();
/// let mut child = Process::spawn(greet, (theirs,)).unwrap();
/// ours.send(&"world".to_string()).unwrap();
/// assert_eq!(ours.recv().unwrap(), "hello, world");
/// child.join().unwrap();
/// ```
/// Python counterpart: `multiprocessing.Pipe()`.
pub fn pipe<T>() -> crate::Result<(Connection<T>, Connection<T>)> {
    let (a, b) = sys::socket::stream_pair().map_err(|e| Error::os("socketpair", e))?;
    Ok((Connection::from_fd(a, true, true), Connection::from_fd(b, true, true)))
}

/// A one-way pipe: `(receiver, sender)`, in Python's order.
///
/// # Errors
/// [`ErrorKind::Os`] if the OS has no socket pair to give.
///
/// ```
/// let (receiver, sender) = multiproc::pipe_one_way::<u32>().unwrap();
/// sender.send(&7).unwrap();
/// assert_eq!(receiver.recv().unwrap(), 7);
/// assert!(receiver.send(&8).is_err()); // the receiving end cannot send
/// ```
/// Python counterpart: `multiprocessing.Pipe(duplex=False)`.
pub fn pipe_one_way<T>() -> crate::Result<(Connection<T>, Connection<T>)> {
    let (a, b) = sys::socket::stream_pair().map_err(|e| Error::os("socketpair", e))?;
    // Shut the unused directions, so that a misuse fails at once instead of filling a buffer.
    let _ = sys::socket::shutdown_write(a.as_fd());
    let _ = sys::socket::shutdown_read(b.as_fd());
    Ok((Connection::from_fd(a, true, false), Connection::from_fd(b, false, true)))
}

impl<T> Connection<T> {
    fn from_fd(sock: OwnedFd, readable: bool, writable: bool) -> Connection<T> {
        Connection {
            sock,
            readable,
            writable,
            reader: Arc::new(Mutex::new(Reader::new())),
            writer: Arc::new(Mutex::new(())),
            _type: PhantomData,
        }
    }

    /// Another handle to this end, with its own descriptor: say, one to move into a thread that
    /// receives while this one sends. The handles share the stream and take turns by whole
    /// messages: a message is never split between two receivers, nor are two senders' messages
    /// mixed. A receive on one clone waits its turn behind a receive in progress on another
    /// (its timeout counts from when its turn comes).
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if the descriptor cannot be duplicated.
    ///
    /// ```
    /// let (a, b) = multiproc::pipe::<u32>().unwrap();
    /// let receiver = a.try_clone().unwrap();
    /// let listening = std::thread::spawn(move || receiver.recv().unwrap());
    /// b.send(&5).unwrap();
    /// assert_eq!(listening.join().unwrap(), 5);
    /// a.send(&6).unwrap(); // the original still works
    /// assert_eq!(b.recv().unwrap(), 6);
    /// ```
    /// Python counterpart: none (`os.dup` of `conn.fileno()` loses the framing).
    pub fn try_clone(&self) -> crate::Result<Connection<T>> {
        let sock = self.sock.as_fd().try_clone_to_owned().map_err(|e| Error::os("duplicating a connection", e))?;
        Ok(Connection {
            sock,
            readable: self.readable,
            writable: self.writable,
            reader: self.reader.clone(),
            writer: self.writer.clone(),
            _type: PhantomData,
        })
    }

    /// Whether this end can receive.
    ///
    /// ```
    /// let (receiver, sender) = multiproc::pipe_one_way::<u8>().unwrap();
    /// assert!(receiver.readable() && !sender.readable());
    /// ```
    /// Python counterpart: `conn.readable`.
    pub fn readable(&self) -> bool {
        self.readable
    }

    /// Whether this end can send.
    ///
    /// ```
    /// let (receiver, sender) = multiproc::pipe_one_way::<u8>().unwrap();
    /// assert!(sender.writable() && !receiver.writable());
    /// ```
    /// Python counterpart: `conn.writable`.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Sends one frame of raw bytes (with descriptors attached, for handles).
    fn send_frame(&self, payload: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), SendError> {
        if !self.writable {
            return Err(SendError::ReadOnly);
        }
        let mut frame = Vec::with_capacity(8 + payload.len().min(1 << 16));
        frame.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        let _writer = lock(&self.writer);
        let sent = if payload.len() <= 1 << 16 {
            frame.extend_from_slice(payload);
            sys::socket::send_with_fds(self.sock.as_fd(), &frame, fds)
        } else {
            // A large payload goes out from where it is, without being copied behind a header.
            sys::socket::send_with_fds(self.sock.as_fd(), &frame, fds)
                .and_then(|()| sys::socket::send_all(self.sock.as_fd(), payload))
        };
        sent.map_err(|e| match e.raw_os_error() {
            Some(libc::EPIPE) | Some(libc::ECONNRESET) => SendError::Disconnected,
            _ => SendError::Failed(Error::os("sending", e)),
        })
    }

    /// Sends raw bytes as one message; the other end reads them with
    /// [`recv_bytes`](Self::recv_bytes).
    ///
    /// # Errors
    /// [`SendError::Disconnected`] if the other end is closed; [`SendError::ReadOnly`] on the
    /// receiving end of a one-way pipe.
    ///
    /// ```
    /// let (a, b) = multiproc::pipe::<()>().unwrap();
    /// a.send_bytes(b"raw").unwrap();
    /// a.send_bytes(b"").unwrap(); // empty messages keep their boundary
    /// assert_eq!(b.recv_bytes().unwrap(), b"raw");
    /// assert_eq!(b.recv_bytes().unwrap(), b"");
    /// ```
    /// Python counterpart: `conn.send_bytes(buf)`.
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<(), SendError> {
        self.send_frame(bytes, &[])
    }

    /// Receives one message's raw bytes, waiting for as long as it takes.
    ///
    /// # Errors
    /// [`RecvError::Disconnected`] once the other end is closed and everything it sent was read.
    ///
    /// ```
    /// let (a, b) = multiproc::pipe::<()>().unwrap();
    /// b.send_bytes(&[1, 2, 3]).unwrap();
    /// assert_eq!(a.recv_bytes().unwrap(), [1, 2, 3]);
    /// ```
    /// Python counterpart: `conn.recv_bytes()`.
    pub fn recv_bytes(&self) -> Result<Vec<u8>, RecvError> {
        self.recv_frame(None).map(|(bytes, _)| bytes).map_err(|e| match e {
            RecvTimeoutError::Recv(e) => e,
            RecvTimeoutError::Timeout => unreachable!("no deadline"),
        })
    }

    /// Receives one message's raw bytes into `buf`; returns its length.
    ///
    /// # Errors
    /// [`RecvIntoError::TooSmall`] with the whole message if it does not fit; otherwise as
    /// [`recv_bytes`](Self::recv_bytes).
    ///
    /// ```
    /// let (a, b) = multiproc::pipe::<()>().unwrap();
    /// b.send_bytes(b"abc").unwrap();
    /// let mut buf = [0u8; 16];
    /// let n = a.recv_bytes_into(&mut buf).unwrap();
    /// assert_eq!(&buf[..n], b"abc");
    /// ```
    /// Python counterpart: `conn.recv_bytes_into(buf)` (which raises `BufferTooShort` carrying
    /// the message).
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize, RecvIntoError> {
        let bytes = self.recv_bytes()?;
        if bytes.len() > buf.len() {
            return Err(RecvIntoError::TooSmall(bytes));
        }
        buf[..bytes.len()].copy_from_slice(&bytes);
        Ok(bytes.len())
    }

    /// Receives a frame by `deadline` (`None`: no limit); `Some(now)` checks once.
    fn recv_frame(&self, deadline: Option<Instant>) -> Result<Frame, RecvTimeoutError> {
        if !self.readable {
            return Err(RecvError::WriteOnly.into());
        }
        let mut reader = lock(&self.reader);
        if let Some(frame) = reader.advance(self.sock.as_fd())? {
            return Ok(frame);
        }
        let spin_until = Instant::now() + SPIN;
        loop {
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(RecvTimeoutError::Timeout);
            }
            if now < spin_until {
                std::hint::spin_loop();
                std::thread::yield_now();
            } else {
                let ready = sys::poll::wait_readable(&[self.sock.as_fd()], deadline)
                    .map_err(|e| RecvError::Failed(Error::os("waiting for a message", e)))?;
                if !ready[0] {
                    return Err(RecvTimeoutError::Timeout);
                }
            }
            if let Some(frame) = reader.advance(self.sock.as_fd())? {
                return Ok(frame);
            }
        }
    }

    /// Whether a message (or the end of the stream) is ready to be read, waiting up to `timeout`
    /// (`None`: wait until one is).
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if waiting fails; [`ErrorKind::InvalidInput`] on a write-only end
    /// (Python raises `OSError` there).
    ///
    /// ```
    /// use std::time::Duration;
    /// let (a, b) = multiproc::pipe::<u8>().unwrap();
    /// assert!(!a.poll(Some(Duration::from_millis(10))).unwrap());
    /// b.send(&1).unwrap();
    /// assert!(a.poll(None).unwrap());
    /// ```
    /// Python counterpart: `conn.poll(timeout)`.
    pub fn poll(&self, timeout: Option<Duration>) -> crate::Result<bool> {
        if !self.readable {
            return Err(Error::new(ErrorKind::InvalidInput, "connection is write-only"));
        }
        let deadline = timeout.and_then(deadline_after);
        let ready = sys::poll::wait_readable(&[self.sock.as_fd()], deadline)
            .map_err(|e| Error::os("polling a connection", e))?;
        Ok(ready[0])
    }

    /// Closes this end (dropping it does the same).
    ///
    /// ```
    /// let (a, b) = multiproc::pipe::<u8>().unwrap();
    /// a.close();
    /// assert!(b.recv().is_err()); // the other end sees the disconnection
    /// ```
    /// Python counterpart: `conn.close()`.
    pub fn close(self) {}
}

impl<T: Serialize + DeserializeOwned> Connection<T> {
    /// Sends a message. Handles inside it (locks, descriptors, other connections) travel along.
    ///
    /// # Errors
    /// [`SendError::Failed`] with [`ErrorKind::Encode`] if the message cannot be encoded (in the
    /// caller: nothing is sent); [`SendError::Disconnected`] if the other end is closed.
    ///
    /// ```
    /// let (a, b) = multiproc::pipe::<Vec<u32>>().unwrap();
    /// a.send(&vec![1, 2, 3]).unwrap();
    /// assert_eq!(b.recv().unwrap(), [1, 2, 3]);
    /// ```
    /// Python counterpart: `conn.send(obj)`.
    pub fn send(&self, message: &T) -> Result<(), SendError> {
        let (bytes, fds) = handle::encode(message)
            .map_err(|e| Error::new(ErrorKind::Encode, crate::codec::encode_failure(message, &e)))?;
        if fds.len() > sys::socket::MAX_FDS {
            return Err(Error::new(ErrorKind::TooManyHandles, format!("{} descriptors", fds.len())).into());
        }
        self.send_frame(&bytes, &fds)
    }

    /// Receives a message, waiting for as long as it takes.
    ///
    /// # Errors
    /// [`RecvError::Disconnected`] once the other end is closed and everything it sent was read;
    /// [`RecvError::Failed`] with [`ErrorKind::Decode`] for a message that is not a `T` (it is
    /// consumed; the next one can still be read).
    ///
    /// ```
    /// let (a, b) = multiproc::pipe::<(u8, String)>().unwrap();
    /// b.send(&(1, "one".into())).unwrap();
    /// assert_eq!(a.recv().unwrap(), (1, "one".to_string()));
    /// ```
    /// Python counterpart: `conn.recv()`.
    pub fn recv(&self) -> Result<T, RecvError> {
        self.recv_deadline(None).map_err(|e| match e {
            RecvTimeoutError::Recv(e) => e,
            RecvTimeoutError::Timeout => unreachable!("no deadline"),
        })
    }

    /// Receives a message if one is ready now.
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`] if none is; otherwise as [`recv`](Self::recv).
    ///
    /// ```
    /// let (a, b) = multiproc::pipe::<u8>().unwrap();
    /// assert!(a.try_recv().is_err());
    /// b.send(&2).unwrap();
    /// assert_eq!(a.try_recv().unwrap(), 2);
    /// ```
    /// Python counterpart: `conn.poll(0)` then `conn.recv()`.
    pub fn try_recv(&self) -> Result<T, RecvTimeoutError> {
        self.recv_deadline(Some(Instant::now()))
    }

    /// Receives a message, waiting up to `timeout`.
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`] once it has passed; otherwise as [`recv`](Self::recv).
    ///
    /// ```
    /// use std::time::Duration;
    /// let (a, _b) = multiproc::pipe::<u8>().unwrap();
    /// assert!(a.recv_timeout(Duration::from_millis(10)).is_err());
    /// ```
    /// Python counterpart: `conn.poll(timeout)` then `conn.recv()`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_deadline(deadline_after(timeout))
    }

    /// Receives a message, waiting until `deadline` (`None`: for as long as it takes).
    ///
    /// # Errors
    /// As for [`recv_timeout`](Self::recv_timeout).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let (a, b) = multiproc::pipe::<u8>().unwrap();
    /// b.send(&3).unwrap();
    /// assert_eq!(a.recv_deadline(Some(Instant::now() + Duration::from_secs(1))).unwrap(), 3);
    /// ```
    /// Python counterpart: `conn.poll(deadline - time.monotonic())` then `conn.recv()`.
    pub fn recv_deadline(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        let (bytes, fds) = self.recv_frame(deadline)?;
        handle::provide(fds, || handle::decode_exact(&bytes)).map_err(|e| {
            let why = crate::codec::decode_failure::<T>(&bytes, &e);
            RecvTimeoutError::Recv(RecvError::Failed(Error::new(
                ErrorKind::Decode,
                format!("a message is not a {why}"),
            )))
        })
    }
}

impl<T: Serialize + DeserializeOwned> Connection<T> {
    /// Receives a message, as [`recv`](Self::recv) does, without blocking the thread: for async
    /// code, on any executor (see [`asyncio`](crate::asyncio)).
    ///
    /// Cancel-safe: a message is taken inside the poll that returns it, and the part of one that
    /// has arrived stays in the connection for the next receive.
    ///
    /// # Errors
    /// As [`recv`](Self::recv).
    ///
    /// ```
    /// use multiproc::{Connection, Process, pipe};
    /// fn shout(conn: Connection<String>) {
    ///     let text = conn.recv().unwrap();
    ///     conn.send(&text.to_uppercase()).unwrap();
    /// }
    /// let (ours, theirs) = pipe().unwrap();
    /// let mut child = Process::spawn(shout, (theirs,)).unwrap();
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// rt.block_on(async {
    ///     ours.send_async(&"hello".to_string()).await.unwrap();
    ///     assert_eq!(ours.recv_async().await.unwrap(), "HELLO");
    /// });
    /// child.join().unwrap();
    /// ```
    /// Python counterpart: none (asyncio has no `Connection`).
    pub async fn recv_async(&self) -> Result<T, RecvError> {
        crate::asyncio::retry(|| match self.try_recv() {
            Ok(message) => Step::Done(Ok(message)),
            Err(RecvTimeoutError::Recv(e)) => Step::Done(Err(e)),
            Err(RecvTimeoutError::Timeout) => match self.sock.as_fd().try_clone_to_owned() {
                Ok(fd) => Step::Wait(Watch::fds(vec![(fd, Ready::Read)])),
                Err(e) => Step::Done(Err(Error::os("watching a connection", e).into())),
            },
        })
        .await
    }

    /// Sends a message, as [`send`](Self::send) does, once the connection can take more without
    /// blocking the thread. A message larger than the socket's free buffer is finished in the
    /// poll that began it, as fast as the peer reads.
    ///
    /// # Errors
    /// As [`send`](Self::send).
    ///
    /// ```
    /// let (a, b) = multiproc::pipe::<u8>().unwrap();
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// rt.block_on(a.send_async(&9)).unwrap();
    /// assert_eq!(b.recv().unwrap(), 9);
    /// ```
    /// Python counterpart: none.
    pub async fn send_async(&self, message: &T) -> Result<(), SendError> {
        crate::asyncio::retry(|| {
            if !self.writable {
                return Step::Done(self.send(message));
            }
            let ready = sys::poll::wait_ready(&[(self.sock.as_fd(), Ready::Write)], Some(Instant::now()));
            match ready {
                Ok(ready) if ready[0] => Step::Done(self.send(message)),
                Ok(_) => match self.sock.as_fd().try_clone_to_owned() {
                    Ok(fd) => Step::Wait(Watch::fds(vec![(fd, Ready::Write)])),
                    Err(e) => Step::Done(Err(Error::os("watching a connection", e).into())),
                },
                Err(e) => Step::Done(Err(Error::os("polling a connection", e).into())),
            }
        })
        .await
    }
}

impl<T> AsFd for Connection<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// On the wire a connection is its socket (and which ways it goes).
impl<T> Serialize for Connection<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(serialize_with = "serialize_borrowed")]
            sock: BorrowedFd<'a>,
            readable: bool,
            writable: bool,
        }
        fn serialize_borrowed<S: Serializer>(fd: &BorrowedFd<'_>, s: S) -> Result<S::Ok, S::Error> {
            handle::serialize_fd(*fd, s)
        }
        Wire { sock: self.sock.as_fd(), readable: self.readable, writable: self.writable }.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for Connection<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Connection<T>, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            #[serde(deserialize_with = "handle::deserialize_fd")]
            sock: OwnedFd,
            readable: bool,
            writable: bool,
        }
        let wire = Wire::deserialize(deserializer)?;
        if !wire.readable && !wire.writable {
            return Err(D::Error::custom("a connection that can neither send nor receive"));
        }
        Ok(Connection::from_fd(wire.sock, wire.readable, wire.writable))
    }
}
