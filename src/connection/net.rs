//! Python's `Listener` and `Client`: typed, authenticated connections over TCP, between programs
//! that share nothing but an address and a key — on the manager's machinery (length-prefixed
//! frames, HMAC-SHA256 challenge–response both ways).

use std::fmt;
use std::marker::PhantomData;
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind, Result};
use crate::manager::wire::{self, AuthKey, Refused};
use crate::sys;

/// Waits for authenticated connections on a TCP address.
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
    listener: TcpListener,
    key: AuthKey,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener").field("address", &self.listener.local_addr().ok()).finish_non_exhaustive()
    }
}

impl Listener {
    /// Listens on `address` (`"127.0.0.1:0"` picks a free port) for clients that know `authkey`.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if the address cannot be bound.
    ///
    /// ```
    /// let listener = multiproc::connection::Listener::bind("127.0.0.1:0", b"k").unwrap();
    /// # drop(listener);
    /// ```
    /// Python counterpart: `Listener(address, authkey=authkey)`.
    pub fn bind(address: impl ToSocketAddrs, authkey: &[u8]) -> Result<Listener> {
        let listener = TcpListener::bind(address).map_err(|e| Error::os("binding a listener", e))?;
        Ok(Listener { listener, key: wire::derive_key(authkey) })
    }

    /// The address it listens on, with the port the system chose.
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
        Ok(self.listener.local_addr().map_err(|e| Error::os("the listener's address", e))?.to_string())
    }

    /// Waits for the next client that proves it knows the key. Clients that do not (or that
    /// send garbage) are turned away and the wait goes on.
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
            let (mut stream, _) = self.listener.accept().map_err(|e| Error::os("accepting a connection", e))?;
            let _ = stream.set_nodelay(true);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
            if wire::accept(&mut stream, &self.key).is_ok() {
                let _ = stream.set_read_timeout(None);
                return Ok(NetConnection { stream, _type: PhantomData });
            }
        }
    }
}

/// Connects to a [`Listener`] at `address`, proving it knows `authkey` (and checking that the
/// listener does too).
///
/// # Errors
/// [`ErrorKind::Authentication`] for a wrong key (either side); [`ErrorKind::Disconnected`] if
/// nobody listens there.
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
    let mut stream = TcpStream::connect(address)
        .map_err(|e| Error::with_source(ErrorKind::Disconnected, format!("connecting to {address}"), e))?;
    let _ = stream.set_nodelay(true);
    match wire::connect(&mut stream, &wire::derive_key(authkey), sys::build_id::fingerprint()) {
        Ok(()) => Ok(NetConnection { stream, _type: PhantomData }),
        Err(Refused::Authentication) => {
            Err(Error::new(ErrorKind::Authentication, "the listener did not accept our authkey"))
        }
        Err(Refused::Io(e)) => Err(Error::with_source(ErrorKind::Disconnected, "the listener hung up", e)),
    }
}

/// An authenticated connection from [`Listener::accept`] or [`client`]: typed messages both ways.
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
    stream: TcpStream,
    _type: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for NetConnection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetConnection").field("peer", &self.stream.peer_addr().ok()).finish()
    }
}

impl<T: Serialize + DeserializeOwned> NetConnection<T> {
    /// Sends a message.
    ///
    /// # Errors
    /// [`ErrorKind::Encode`] if it cannot be encoded (nothing is sent); [`ErrorKind::Disconnected`]
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
    pub fn send(&self, message: &T) -> Result<()> {
        let mut stream = &self.stream;
        wire::send(&mut stream, message).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidInput => {
                Error::with_source(ErrorKind::Encode, std::any::type_name::<T>().to_owned(), e)
            }
            _ => Error::with_source(ErrorKind::Disconnected, "the peer is gone", e),
        })
    }

    /// Receives a message, waiting for as long as it takes.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] once the peer has closed; [`ErrorKind::Decode`] for a
    /// message that is not a `T` (or an oversized frame: the connection is then unusable).
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
    pub fn recv(&self) -> Result<T> {
        let mut stream = &self.stream;
        wire::spin_until_readable(&self.stream);
        wire::receive(&mut stream).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => Error::with_source(
                ErrorKind::Decode,
                format!("a message that is not a {}", std::any::type_name::<T>()),
                e,
            ),
            _ => Error::with_source(ErrorKind::Disconnected, "the peer is gone", e),
        })
    }

    /// Whether a message is ready, waiting up to `timeout`.
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
    /// assert!(!conn.poll(std::time::Duration::from_millis(10)).unwrap());
    /// # drop(t);
    /// ```
    /// Python counterpart: `conn.poll(timeout)`.
    pub fn poll(&self, timeout: Duration) -> Result<bool> {
        use std::os::fd::AsFd;
        let deadline = crate::sync::deadline_after(timeout);
        let ready = sys::poll::wait_readable(&[self.stream.as_fd()], deadline).map_err(|e| Error::os("waiting", e))?;
        Ok(ready[0])
    }
}
