//! Python's `Listener` and `Client`: typed, authenticated connections over TCP or a Unix socket,
//! between programs that share nothing but an address and a key — on the manager's machinery
//! (HMAC-SHA256 challenge–response both ways, then length-prefixed frames encrypted and
//! authenticated with AES-256-GCM under keys of that connection alone: a frame changed,
//! replayed or dropped on the way ends the connection). A [`NetConnection`] has
//! the verbs and errors of a pipe's [`Connection`](super::Connection).
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::net::{TcpListener, ToSocketAddrs};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{RecvError, RecvTimeoutError, SendError, WaitSource, Waitable};
use crate::error::{Error, ErrorKind, Result};
use crate::sync::deadline_after;
use crate::sys;
use crate::wire::gate::{self, Gate, Peer};
use crate::wire::{self, AuthKey, Endpoint, Refused, Socket};

/// Waits for authenticated connections on a TCP address or a Unix socket.
///
/// ```
/// use multiproc::connection::{Listener, client};
///
/// let listener = Listener::bind("127.0.0.1:0", b"secret").unwrap();
/// let address = listener.address().unwrap();
/// let other = std::thread::spawn(move || {
///     let conn = client::<String>(&address, b"secret").unwrap();
///     conn.send(&"hello".to_string()).unwrap();
/// });
/// let conn = listener.accept::<String>().unwrap();
/// assert_eq!(conn.recv().unwrap(), "hello");
/// other.join().unwrap();
/// ```
/// Python counterpart: `multiprocessing.connection.Listener(address, authkey=...)`.
pub struct Listener {
    socket: Listening,
    key: AuthKey,
    door: Arc<Door>,
}

/// Connections in their handshakes (each on a thread of its own), and those that finished it.
struct Door {
    gate: Arc<Gate>,
    ready: Mutex<VecDeque<(Socket, wire::Session)>>,
    /// Written when a connection is ready, to wake `accept`.
    wake: OwnedFd,
}

impl Door {
    fn new() -> Result<Arc<Door>> {
        let wake = crate::sys::poll::eventfd().map_err(|e| Error::os("eventfd", e))?;
        Ok(Arc::new(Door { gate: Gate::new(), ready: Mutex::new(VecDeque::new()), wake }))
    }
}

enum Listening {
    Tcp(TcpListener),
    /// With the socket file, removed when the listener is dropped.
    Unix(UnixListener, PathBuf),
    /// In Linux's abstract namespace (no file), with its name.
    Abstract(UnixListener, String),
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener").field("address", &self.address().ok()).finish_non_exhaustive()
    }
}

impl Listener {
    /// Listens on TCP address `address` (`"127.0.0.1:0"` picks a free port) for clients that
    /// know `authkey`.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if the address cannot be bound.
    ///
    /// ```
    /// let listener = multiproc::connection::Listener::bind("127.0.0.1:0", b"k").unwrap();
    /// # drop(listener);
    /// ```
    /// Python counterpart: `Listener((host, port), authkey=authkey)`.
    pub fn bind(address: impl ToSocketAddrs, authkey: &[u8]) -> Result<Listener> {
        let listener = TcpListener::bind(address).map_err(|e| Error::os("binding a listener", e))?;
        Listener::new(Listening::Tcp(listener), authkey)
    }

    /// Listens on a Unix socket at `path` (an absolute path, which must not exist yet); clients
    /// connect to `"unix:<path>"`. The socket file is removed when the listener is dropped.
    /// A path `@name` listens in Linux's abstract namespace instead (no file), where clients
    /// reach it as `"unix:@name"`.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if the path cannot be bound; [`ErrorKind::InvalidInput`] for a relative
    /// or non-UTF-8 path.
    ///
    /// ```
    /// use multiproc::connection::{Listener, client};
    /// let path = std::env::temp_dir().join(format!("mp-listener-doc-{}", std::process::id()));
    /// let listener = Listener::bind_unix(&path, b"k").unwrap();
    /// let address = listener.address().unwrap();
    /// assert_eq!(address, format!("unix:{}", path.display()));
    /// let t = std::thread::spawn(move || client::<u8>(&address, b"k").unwrap().send(&1).unwrap());
    /// assert_eq!(listener.accept::<u8>().unwrap().recv().unwrap(), 1);
    /// t.join().unwrap();
    /// ```
    /// Python counterpart: `Listener("/path/to/socket", authkey=authkey)`.
    pub fn bind_unix(path: impl AsRef<Path>, authkey: &[u8]) -> Result<Listener> {
        let path = path.as_ref();
        if let Some(name) = path.to_str().and_then(|p| p.strip_prefix('@')) {
            let address = crate::sys::socket::abstract_address(name.as_bytes())
                .map_err(|e| Error::with_source(ErrorKind::InvalidInput, format!("abstract socket name @{name}"), e))?;
            let listener = UnixListener::bind_addr(&address).map_err(|e| Error::os("binding a listener", e))?;
            return Listener::new(Listening::Abstract(listener, name.to_owned()), authkey);
        }
        if !path.to_str().is_some_and(|p| p.starts_with('/')) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("{} is not an absolute UTF-8 path", path.display()),
            ));
        }
        let listener = UnixListener::bind(path).map_err(|e| Error::os("binding a listener", e))?;
        Listener::new(Listening::Unix(listener, path.to_owned()), authkey)
    }

    fn new(socket: Listening, authkey: &[u8]) -> Result<Listener> {
        // `accept` waits in poll, and takes only what is there.
        let nonblocking = match &socket {
            Listening::Tcp(l) => l.set_nonblocking(true),
            Listening::Unix(l, _) | Listening::Abstract(l, _) => l.set_nonblocking(true),
        };
        nonblocking.map_err(|e| Error::os("setting up a listener", e))?;
        Ok(Listener { socket, key: wire::derive_key(authkey), door: Door::new()? })
    }

    /// The address it listens on, as [`client`] takes it: `host:port` with the port the system
    /// chose, or `unix:/path`.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if the socket cannot say.
    ///
    /// ```
    /// let listener = multiproc::connection::Listener::bind("127.0.0.1:0", b"k").unwrap();
    /// assert!(listener.address().unwrap().starts_with("127.0.0.1:"));
    /// ```
    /// Python counterpart: `listener.address`.
    pub fn address(&self) -> Result<String> {
        match &self.socket {
            Listening::Tcp(l) => Ok(l.local_addr().map_err(|e| Error::os("the listener's address", e))?.to_string()),
            Listening::Unix(_, path) => Ok(Endpoint::Unix(path.display().to_string()).to_string()),
            Listening::Abstract(_, name) => Ok(Endpoint::Abstract(name.clone()).to_string()),
        }
    }

    /// Waits for the next client that proves it knows the key. Clients that do not (or that
    /// send garbage, or nothing for 5 s) are turned away and the wait goes on. Handshakes run
    /// side by side, each on a thread of its own, so a silent stranger delays nobody; and
    /// strangers cannot crowd clients out (see below).
    ///
    /// Connections still in their handshake are capped: 256 in all, 32 from one IP address (or
    /// user, on a Unix socket). A newcomer is never refused for want of room: the oldest waiting
    /// connection of its peer, or of all, is closed instead. A client that connects finishes
    /// its handshake within milliseconds, so a thousand held silent connections cannot keep it
    /// out.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if accepting fails.
    ///
    /// ```
    /// use multiproc::connection::{Listener, client};
    /// let listener = Listener::bind("127.0.0.1:0", b"k").unwrap();
    /// let address = listener.address().unwrap();
    /// let t = std::thread::spawn(move || client::<u8>(&address, b"k").unwrap().send(&1).unwrap());
    /// assert_eq!(listener.accept::<u8>().unwrap().recv().unwrap(), 1);
    /// t.join().unwrap();
    /// ```
    /// Python counterpart: `listener.accept()`.
    pub fn accept<T>(&self) -> Result<NetConnection<T>> {
        loop {
            if let Some((socket, session)) = self.door.ready.lock().unwrap_or_else(|p| p.into_inner()).pop_front() {
                return Ok(NetConnection::new(socket, session));
            }
            let listening = match &self.socket {
                Listening::Tcp(l) => l.as_fd(),
                Listening::Unix(l, _) | Listening::Abstract(l, _) => l.as_fd(),
            };
            let ready = sys::poll::wait_readable(&[listening, self.door.wake.as_fd()], None)
                .map_err(|e| Error::os("waiting for a connection", e))?;
            if ready[1] {
                let _ = rustix::io::read(&self.door.wake, &mut [0u8; 8]);
            }
            if ready[0] {
                self.admit()?;
            }
        }
    }

    /// Takes a connection that is waiting to be accepted, if any, and starts its handshake.
    fn admit(&self) -> Result<()> {
        let accepted = match &self.socket {
            Listening::Tcp(l) => l.accept().map(|(s, from)| (Socket::Tcp(s), Peer::Ip(from.ip()))),
            Listening::Unix(l, _) | Listening::Abstract(l, _) => l.accept().map(|(s, _)| {
                let peer = Peer::of_unix(s.as_fd());
                (Socket::Unix(s), peer)
            }),
        };
        let (socket, peer) = match accepted {
            Ok(accepted) => accepted,
            // Another thread took it, or it was gone by now.
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::ConnectionAborted) => {
                return Ok(());
            }
            Err(e) => return Err(Error::os("accepting a connection", e)),
        };
        let blocking = match &socket {
            Socket::Tcp(s) => s.set_nonblocking(false),
            Socket::Unix(s) => s.set_nonblocking(false),
        };
        if blocking.is_err() {
            return Ok(());
        }
        let Some(pass) = self.door.gate.enter(peer, socket.as_fd()) else { return Ok(()) };
        socket.tune();
        let (door, key) = (self.door.clone(), self.key);
        // No thread: the connection is dropped (the client sees it closed).
        let _ = std::thread::Builder::new().name("listener-handshake".into()).spawn(move || {
            let keys = [wire::Accepted { key: &key, bound_to: None }];
            let shook = wire::accept(&socket, &keys, 0, Instant::now() + gate::HANDSHAKE);
            drop(pass);
            match shook {
                Err(_) => crate::trace::event!(debug, "a listener connection failed its handshake"),
                Ok((_, _, session)) => {
                    door.ready.lock().unwrap_or_else(|p| p.into_inner()).push_back((socket, session));
                    let _ = rustix::io::write(&door.wake, &1u64.to_ne_bytes());
                }
            }
        });
        Ok(())
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listening::Unix(_, path) = &self.socket {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Connects to a [`Listener`] at `address` — `host:port`, `unix:/path` (or an absolute `/path`),
/// or `unix:@name` for Linux's abstract namespace — proving it knows `authkey` (and checking that
/// the listener does too).
///
/// # Errors
/// [`ErrorKind::Authentication`] for a wrong key (either side); [`ErrorKind::Disconnected`] if
/// nobody listens there; [`ErrorKind::InvalidInput`] if `address` is not an address;
/// [`ErrorKind::Protocol`] if the listener is another release of this crate.
///
/// ```
/// use multiproc::{ErrorKind, connection::{Listener, client}};
/// let listener = Listener::bind("127.0.0.1:0", b"right").unwrap();
/// let address = listener.address().unwrap();
/// let t = std::thread::spawn(move || { let _ = listener.accept::<u8>(); });
/// assert_eq!(client::<u8>(&address, b"wrong").unwrap_err().kind(), ErrorKind::Authentication);
/// # drop(t);
/// ```
/// Python counterpart: `multiprocessing.connection.Client(address, authkey=...)`.
pub fn client<T>(address: &str, authkey: &[u8]) -> Result<NetConnection<T>> {
    let endpoint = Endpoint::parse(address);
    let socket = endpoint.connect().map_err(|e| endpoint.connect_error(e))?;
    let deadline = Instant::now() + wire::HANDSHAKE;
    let named = endpoint.to_string();
    match wire::connect(&socket, &wire::derive_key(authkey), &named, sys::build_id::fingerprint(), deadline) {
        Ok((_, session)) => Ok(NetConnection::new(socket, session)),
        Err(Refused::Authentication) => {
            Err(Error::new(ErrorKind::Authentication, format!("the listener at {endpoint} did not accept our authkey")))
        }
        Err(Refused::Protocol(why)) => Err(Error::new(ErrorKind::Protocol, why)),
        Err(Refused::Io(e)) => {
            Err(Error::with_source(ErrorKind::Disconnected, format!("the listener at {endpoint} hung up"), e))
        }
    }
}

/// An authenticated connection from [`Listener::accept`] or [`client`]: typed messages both
/// ways, with the verbs and errors of a pipe's [`Connection`](super::Connection). Messages keep
/// their boundaries; several threads may send (or receive) at once, one whole message at a time.
///
/// ```
/// use multiproc::connection::{Listener, client};
/// let listener = Listener::bind("127.0.0.1:0", b"k").unwrap();
/// let address = listener.address().unwrap();
/// let t = std::thread::spawn(move || {
///     let conn = client::<(u8, String)>(&address, b"k").unwrap();
///     conn.send(&(1, "one".into())).unwrap();
///     conn.recv().unwrap()
/// });
/// let conn = listener.accept::<(u8, String)>().unwrap();
/// let (n, word) = conn.recv().unwrap();
/// conn.send(&(n + 1, word.to_uppercase())).unwrap();
/// assert_eq!(t.join().unwrap(), (2, "ONE".to_string()));
/// ```
/// Python counterpart: the `Connection` that `Listener.accept()` and `Client()` return.
pub struct NetConnection<T> {
    socket: Socket,
    /// Each direction's half of the session, also what keeps messages whole: one sender (or
    /// receiver) at a time.
    sending: Mutex<wire::Sealer>,
    receiving: Mutex<wire::Opener>,
    _type: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for NetConnection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetConnection").field("socket", &self.socket).finish()
    }
}

fn held<S>(m: &Mutex<S>) -> MutexGuard<'_, S> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn send_failed(e: io::Error) -> SendError {
    match e.kind() {
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::NotConnected => {
            SendError::Disconnected
        }
        io::ErrorKind::InvalidInput => SendError::Failed(Error::with_source(ErrorKind::InvalidInput, "a message", e)),
        _ => SendError::Failed(Error::os("sending", e)),
    }
}

impl<T> NetConnection<T> {
    fn new(socket: Socket, session: wire::Session) -> NetConnection<T> {
        let wire::Session { sealer, opener } = session;
        NetConnection { socket, sending: Mutex::new(sealer), receiving: Mutex::new(opener), _type: PhantomData }
    }

    /// Sends `bytes` as one message, as they are.
    ///
    /// # Errors
    /// [`SendError::Disconnected`] if the peer is gone; [`SendError::Failed`] for a message over
    /// 256 MiB.
    ///
    /// ```
    /// # use multiproc::connection::{Listener, client};
    /// # let listener = Listener::bind("127.0.0.1:0", b"k").unwrap();
    /// # let address = listener.address().unwrap();
    /// # let t = std::thread::spawn(move || client::<()>(&address, b"k").unwrap().recv_bytes().unwrap());
    /// let conn = listener.accept::<()>().unwrap();
    /// conn.send_bytes(b"raw").unwrap();
    /// # assert_eq!(t.join().unwrap(), b"raw");
    /// ```
    /// Python counterpart: `conn.send_bytes(buf)`.
    pub fn send_bytes(&self, bytes: &[u8]) -> std::result::Result<(), SendError> {
        held(&self.sending).send_bytes(&self.socket, bytes).map_err(send_failed)
    }

    /// Receives one message as bytes, waiting for as long as it takes.
    ///
    /// # Errors
    /// As [`recv`](Self::recv), without the decoding.
    ///
    /// ```
    /// # use multiproc::connection::{Listener, client};
    /// # let listener = Listener::bind("127.0.0.1:0", b"k").unwrap();
    /// # let address = listener.address().unwrap();
    /// # let t = std::thread::spawn(move || client::<()>(&address, b"k").unwrap().send_bytes(b"hi").unwrap());
    /// let conn = listener.accept::<()>().unwrap();
    /// assert_eq!(conn.recv_bytes().unwrap(), b"hi");
    /// # t.join().unwrap();
    /// ```
    /// Python counterpart: `conn.recv_bytes()`.
    pub fn recv_bytes(&self) -> std::result::Result<Vec<u8>, RecvError> {
        self.recv_frame(None).map_err(|e| match e {
            RecvTimeoutError::Recv(e) => e,
            RecvTimeoutError::Timeout => unreachable!("no deadline"),
        })
    }

    /// One frame, waiting until `deadline`.
    fn recv_frame(&self, deadline: Option<Option<Instant>>) -> std::result::Result<Vec<u8>, RecvTimeoutError> {
        let mut opener = held(&self.receiving);
        match deadline {
            None => wire::spin_until_readable(&self.socket),
            Some(deadline) => {
                let ready = sys::poll::wait_readable(&[self.socket.as_fd()], deadline)
                    .map_err(|e| RecvError::Failed(Error::os("waiting", e)))?;
                if !ready[0] {
                    return Err(RecvTimeoutError::Timeout);
                }
            }
        }
        opener.receive_bytes(&self.socket).map_err(|e| {
            RecvTimeoutError::Recv(match e.kind() {
                io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => RecvError::Disconnected,
                io::ErrorKind::InvalidData => {
                    // The rest of an oversized frame cannot be skipped, and after a frame that
                    // failed its seal nothing more will open: end the connection, so that later
                    // receives say so instead of reading garbage.
                    let _ = sys::socket::shutdown_read(self.socket.as_fd());
                    RecvError::Failed(Error::with_source(
                        ErrorKind::Decode,
                        "a message refused (oversized, or failing its seal)",
                        e,
                    ))
                }
                _ => RecvError::Failed(Error::os("receiving", e)),
            })
        })
    }

    /// Whether a message is ready, waiting up to `timeout` (`None`: as long as it takes).
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if waiting fails.
    ///
    /// ```
    /// # use multiproc::connection::{Listener, client};
    /// # let listener = Listener::bind("127.0.0.1:0", b"k").unwrap();
    /// # let address = listener.address().unwrap();
    /// # let t = std::thread::spawn(move || client::<u8>(&address, b"k").unwrap());
    /// let conn = listener.accept::<u8>().unwrap();
    /// assert!(!conn.poll(Some(std::time::Duration::from_millis(10))).unwrap());
    /// # drop(t);
    /// ```
    /// Python counterpart: `conn.poll(timeout)`.
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        let deadline = timeout.and_then(deadline_after);
        let ready = sys::poll::wait_readable(&[self.socket.as_fd()], deadline).map_err(|e| Error::os("waiting", e))?;
        Ok(ready[0])
    }
}

impl<T: Serialize + DeserializeOwned> NetConnection<T> {
    /// Sends a message.
    ///
    /// # Errors
    /// [`SendError::Failed`] if it cannot be encoded (nothing is sent); [`SendError::Disconnected`]
    /// if the peer is gone.
    ///
    /// ```
    /// # use multiproc::connection::{Listener, client};
    /// # let listener = Listener::bind("127.0.0.1:0", b"k").unwrap();
    /// # let address = listener.address().unwrap();
    /// # let t = std::thread::spawn(move || client::<u8>(&address, b"k").unwrap().recv().unwrap());
    /// let conn = listener.accept::<u8>().unwrap();
    /// conn.send(&9).unwrap();
    /// # assert_eq!(t.join().unwrap(), 9);
    /// ```
    /// Python counterpart: `conn.send(obj)`.
    pub fn send(&self, message: &T) -> std::result::Result<(), SendError> {
        let bytes = postcard::to_stdvec(message)
            .map_err(|e| SendError::Failed(Error::new(ErrorKind::Encode, crate::codec::encode_failure(message, &e))))?;
        self.send_bytes(&bytes)
    }

    fn decode(bytes: &[u8]) -> std::result::Result<T, RecvError> {
        crate::handle::decode_exact(bytes).map_err(|e| {
            let why = crate::codec::decode_failure::<T>(bytes, &e);
            RecvError::Failed(Error::new(ErrorKind::Decode, format!("a message that is not a {why}")))
        })
    }

    /// Receives a message, waiting for as long as it takes.
    ///
    /// # Errors
    /// [`RecvError::Disconnected`] once the peer has closed; [`RecvError::Failed`] for a message
    /// that does not decode as a whole `T` (it is consumed; the connection stays usable), or an
    /// oversized one (the connection is then closed). Messages carry no type tag: bytes of
    /// another type that happen to decode as a `T` are read as one, so send one type per
    /// connection (an enum, for several kinds of message).
    ///
    /// ```
    /// # use multiproc::connection::{Listener, client};
    /// # let listener = Listener::bind("127.0.0.1:0", b"k").unwrap();
    /// # let address = listener.address().unwrap();
    /// # let t = std::thread::spawn(move || client::<u8>(&address, b"k").unwrap().send(&4).unwrap());
    /// let conn = listener.accept::<u8>().unwrap();
    /// assert_eq!(conn.recv().unwrap(), 4);
    /// # t.join().unwrap();
    /// ```
    /// Python counterpart: `conn.recv()`.
    pub fn recv(&self) -> std::result::Result<T, RecvError> {
        Self::decode(&self.recv_bytes()?)
    }

    /// Receives a message if one is ready now.
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`] if none is; otherwise as [`recv`](Self::recv).
    ///
    /// ```
    /// # use multiproc::connection::{Listener, RecvTimeoutError, client};
    /// # let listener = Listener::bind("127.0.0.1:0", b"k").unwrap();
    /// # let address = listener.address().unwrap();
    /// # let t = std::thread::spawn(move || client::<u8>(&address, b"k").unwrap());
    /// let conn = listener.accept::<u8>().unwrap();
    /// assert!(matches!(conn.try_recv(), Err(RecvTimeoutError::Timeout)));
    /// # drop(t);
    /// ```
    /// Python counterpart: `conn.recv()` after `conn.poll()` returned `True`.
    pub fn try_recv(&self) -> std::result::Result<T, RecvTimeoutError> {
        let bytes = self.recv_frame(Some(Some(Instant::now())))?;
        Ok(Self::decode(&bytes)?)
    }

    /// Receives a message, waiting up to `timeout` for one to start arriving.
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`] if none came; otherwise as [`recv`](Self::recv).
    ///
    /// ```
    /// use std::time::Duration;
    /// # use multiproc::connection::{Listener, RecvTimeoutError, client};
    /// # let listener = Listener::bind("127.0.0.1:0", b"k").unwrap();
    /// # let address = listener.address().unwrap();
    /// # let t = std::thread::spawn(move || client::<u8>(&address, b"k").unwrap());
    /// let conn = listener.accept::<u8>().unwrap();
    /// assert!(matches!(conn.recv_timeout(Duration::from_millis(10)), Err(RecvTimeoutError::Timeout)));
    /// # drop(t);
    /// ```
    /// Python counterpart: `conn.poll(timeout)` then `conn.recv()`.
    pub fn recv_timeout(&self, timeout: Duration) -> std::result::Result<T, RecvTimeoutError> {
        let bytes = self.recv_frame(Some(deadline_after(timeout)))?;
        Ok(Self::decode(&bytes)?)
    }
}

impl<T> Waitable for NetConnection<T> {
    fn wait_source(&self) -> WaitSource<'_> {
        WaitSource::fd(self.socket.as_fd())
    }
}
