//! The manager: a server process that holds shared objects, reached through typed proxies.
//!
//! [`Manager::start`] starts the server; [`Manager::dict`] makes a shared dict there and returns a
//! [`DictProxy`]. A proxy is a plain value — the server's address, the authkey and the object's
//! id — so it can be put in a process's arguments, in a queue, in a pool task, or handed to a
//! process that inherited nothing: each process connects on first use, proving it knows the
//! authkey (HMAC-SHA256 challenge–response both ways). Values travel encoded; the server stores
//! the bytes and never decodes what clients send, so nothing on the wire can make it run code.
//!
//! Beyond Python: [`DictProxy::apply`] and [`DictProxy::add`] update one entry *in the server,
//! under the dict's own lock*, so concurrent read-modify-write from many processes needs no Lock.
//! The function given to `apply` is this program's own code, named by offset; the server accepts
//! it only from clients of its own build.
//!
//! ```
//! use multiproc::{Manager, Process, manager::DictProxy};
//!
//! fn sell(tickets: DictProxy<String, i64>) {
//!     tickets.add(&"left".to_string(), -1).unwrap(); // atomic in the server
//! }
//!
//! let manager = Manager::start().unwrap();
//! let tickets = manager.dict::<String, i64>().unwrap();
//! tickets.insert("left".to_string(), 10).unwrap();
//! let mut buyers: Vec<_> = (0..10).map(|_| Process::spawn(sell, (tickets.clone(),)).unwrap()).collect();
//! buyers.iter_mut().for_each(|b| b.join().unwrap());
//! assert_eq!(tickets.get(&"left".to_string()).unwrap(), Some(0));
//! ```
//!
//! Shared lists ([`Manager::list`]), namespaces ([`Manager::namespace`]) and values
//! ([`Manager::value`]) work the same way, and the manager hosts queues ([`Manager::queue`]),
//! locks ([`Manager::lock`]) and events ([`Manager::event`]) for processes that share nothing
//! else. A hosted lock belongs to the connection that took it: when its process ends or is
//! killed, the manager releases it.
//!
//! Proxies are plain values, so a proxy stored inside a managed container stays a live
//! reference: fetch it and change it, and everyone sees the change (Python's lost update on
//! nested containers does not exist here).
//!
//! [`Manager::serve`] listens on TCP for other machines, [`Manager::connect`] reaches such a
//! manager with nothing but its address and the key, and objects registered under a name
//! ([`Manager::queue_named`] and friends) are how programs that share nothing else meet.
//!
//! Hosted semaphores ([`Manager::semaphore`]) and joinable queues ([`Manager::joinable_queue`])
//! complete the set used by the seeds.
//!
//! Python's `Listener`/`Client` pair, on the same machinery, is in
//! [`connection`](crate::connection::Listener).
//!
//! Your own types can live in the server too ([`SharedObject`], [`Manager::object`]): typed
//! requests in, typed responses out, one at a time under the object's lock (Python's
//! `BaseManager.register`).
//!
//! Hosted RLocks ([`Manager::rlock`]), barriers ([`Manager::barrier`]) and conditions
//! ([`Manager::condition`]) too. The server notices a client that goes away while it waits (it
//! checks every 100 ms): its locks are released, and a dead waiter takes no notification.

use std::fmt;
use std::marker::PhantomData;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::error::{Error, ErrorKind, Result};
use crate::handle::Fd;
use crate::process::task::apply_entry_offset;
use crate::process::{Process, Signal};
use crate::sys;

mod server;
pub(crate) mod wire;

use wire::{AuthKey, Refused, Reply, Request};

/// Where a manager listens and the key it expects: what a proxy carries.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Address {
    /// An abstract Unix socket name (no file in the filesystem), or a TCP `host:port`.
    name: String,
    /// Whether `name` is a TCP address.
    #[serde(default)]
    tcp: bool,
    authkey: AuthKey,
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        f.debug_struct("Address").field("name", &self.name).finish_non_exhaustive()
    }
}

/// One authenticated connection of this process to a manager.
struct Connection {
    stream: Mutex<Box<dyn wire::Stream>>,
}

/// Who a connection belongs to: a process (a forked child makes its own — it must not share its
/// parent's socket) and a thread (a blocking call, such as a queue's `get`, holds its
/// connection; other threads must not wait behind it).
type Owner = (u32, std::thread::ThreadId);

/// This process's connections, one per thread and manager.
static CONNECTIONS: Mutex<Vec<(Owner, Address, Arc<Connection>)>> = Mutex::new(Vec::new());

fn disconnected(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::with_source(ErrorKind::Disconnected, "the manager is gone", e)
}

fn connect(address: &Address) -> Result<Arc<Connection>> {
    let me = (sys::process::getpid(), std::thread::current().id());
    let mut all = CONNECTIONS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, _, c)) = all.iter().find(|(owner, a, _)| *owner == me && a == address) {
        return Ok(c.clone());
    }
    let mut stream: Box<dyn wire::Stream> = if address.tcp {
        let stream = std::net::TcpStream::connect(&address.name).map_err(disconnected)?;
        let _ = stream.set_nodelay(true);
        Box::new(stream)
    } else {
        let stream = if address.name.starts_with('/') {
            UnixStream::connect(&address.name)
        } else {
            let addr =
                SocketAddr::from_abstract_name(address.name.as_bytes()).map_err(|e| Error::os("manager address", e))?;
            UnixStream::connect_addr(&addr)
        };
        Box::new(stream.map_err(disconnected)?)
    };
    match wire::connect(&mut stream, &address.authkey, sys::build_id::fingerprint()) {
        Ok(()) => {}
        Err(Refused::Authentication) => {
            return Err(Error::new(ErrorKind::Authentication, "the manager did not accept our authkey"));
        }
        Err(Refused::Io(e)) => return Err(disconnected(e)),
    }
    let connection = Arc::new(Connection { stream: Mutex::new(stream) });
    all.retain(|(owner, _, _)| owner.0 == me.0); // connections inherited over fork are not ours to use
    all.push((me, address.clone(), connection.clone()));
    Ok(connection)
}

fn call(address: &Address, request: &Request) -> Result<Reply> {
    let connection = connect(address)?;
    let mut stream = connection.stream.lock().unwrap_or_else(|p| p.into_inner());
    match server::roundtrip(&mut stream, request) {
        Ok(Reply::Refused(why)) => Err(Error::new(ErrorKind::InvalidInput, why)),
        Ok(reply) => Ok(reply),
        Err(e) => {
            drop(stream);
            // Forget the broken connection, so that a later call reports the same clearly.
            let mut all = CONNECTIONS.lock().unwrap_or_else(|p| p.into_inner());
            all.retain(|(_, _, c)| !Arc::ptr_eq(c, &connection));
            Err(disconnected(e))
        }
    }
}

fn unexpected(reply: Reply) -> Error {
    Error::new(ErrorKind::Decode, format!("unexpected reply from the manager: {reply:?}"))
}

/// A running manager server; it stops when this handle is dropped (clients then get
/// [`ErrorKind::Disconnected`]).
///
/// ```
/// let manager = multiproc::Manager::start().unwrap();
/// let d = manager.dict::<u32, String>().unwrap();
/// d.insert(1, "one".into()).unwrap();
/// assert_eq!(d.len().unwrap(), 1);
/// drop(manager);
/// assert_eq!(d.len().unwrap_err().kind(), multiproc::ErrorKind::Disconnected);
/// ```
/// Python counterpart: `multiprocessing.Manager()` / `SyncManager`.
pub struct Manager {
    address: Address,
    /// The server process, if this handle started it (not for [`Manager::connect`]).
    server: Option<Process<()>>,
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("address", &self.address)
            .field("pid", &self.server.as_ref().map(Process::pid))
            .finish()
    }
}

impl Manager {
    /// Starts a manager server (with the default start method) and a fresh random authkey.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if the socket or the process cannot be made.
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// # drop(manager);
    /// ```
    /// Python counterpart: `multiprocessing.Manager()`.
    pub fn start() -> Result<Manager> {
        Manager::start_with(crate::process::get_start_method())
    }

    /// As [`start`](Self::start), with the server started by `method`.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    ///
    /// ```
    /// let manager = multiproc::Manager::start_with(multiproc::StartMethod::Spawn).unwrap();
    /// assert!(manager.dict::<u8, u8>().unwrap().is_empty().unwrap());
    /// ```
    /// Python counterpart: `get_context(method).Manager()`.
    pub fn start_with(method: crate::process::StartMethod) -> Result<Manager> {
        let authkey = wire::random_bytes().map_err(|e| Error::os("reading random bytes", e))?;
        let name = format!(
            "multiproc-manager-{}-{:016x}",
            std::process::id(),
            u64::from_le_bytes(authkey[..8].try_into().expect("8 bytes")) ^ 0x5bd1_e995
        );
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).map_err(|e| Error::os("manager address", e))?;
        let listener = UnixListener::bind_addr(&addr).map_err(|e| Error::os("binding the manager's socket", e))?;
        let setup = server::Setup { listener: Fd::from(listener), tcp: false, authkey };
        let server =
            Process::builder().name("manager").daemon(true).start_method(method).spawn(server::serve, (setup,))?;
        Ok(Manager { address: Address { name, tcp: false, authkey }, server: Some(server) })
    }

    /// Starts a manager server listening on TCP address `address` (`"127.0.0.1:0"` picks a
    /// free port; see [`address`](Self::address)), for processes on this or other machines
    /// that know `authkey`. It stops when this handle is dropped.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if the address cannot be bound (in use, not ours).
    ///
    /// ```
    /// use multiproc::Manager;
    /// let server = Manager::serve("127.0.0.1:0", b"secret").unwrap();
    /// let client = Manager::connect(&server.address(), b"secret").unwrap();
    /// client.queue_named::<String>("jobs").unwrap().put("job 1".into()).unwrap();
    /// assert_eq!(server.queue_named::<String>("jobs").unwrap().get().unwrap(), "job 1");
    /// ```
    /// Python counterpart: `BaseManager(address, authkey).start()` (or `get_server().serve_forever()`).
    pub fn serve(address: impl std::net::ToSocketAddrs, authkey: &[u8]) -> Result<Manager> {
        let listener =
            std::net::TcpListener::bind(address).map_err(|e| Error::os("binding the manager's address", e))?;
        let name = listener.local_addr().map_err(|e| Error::os("the manager's address", e))?.to_string();
        let authkey = wire::derive_key(authkey);
        let setup = server::Setup { listener: Fd::from(listener), tcp: true, authkey };
        let server = Process::builder().name("manager").daemon(true).spawn(server::serve, (setup,))?;
        Ok(Manager { address: Address { name, tcp: true, authkey }, server: Some(server) })
    }

    /// Connects to a manager another program serves at TCP address `address`. Nothing is
    /// checked until the first call, which fails with [`ErrorKind::Authentication`] for a
    /// wrong key. Dropping this handle leaves the server running.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] if nobody answers at `address`.
    ///
    /// ```
    /// use multiproc::{ErrorKind, Manager};
    /// let server = Manager::serve("127.0.0.1:0", b"secret").unwrap();
    /// let wrong = Manager::connect(&server.address(), b"guess").unwrap();
    /// assert_eq!(wrong.dict::<u8, u8>().unwrap_err().kind(), ErrorKind::Authentication);
    /// ```
    /// Python counterpart: `BaseManager(address, authkey).connect()`.
    pub fn connect(address: &str, authkey: &[u8]) -> Result<Manager> {
        let authkey = wire::derive_key(authkey);
        let address = match address.strip_prefix("unix:") {
            Some(path) => Address { name: path.to_owned(), tcp: false, authkey },
            None => Address { name: address.to_owned(), tcp: true, authkey },
        };
        Ok(Manager { address, server: None })
    }

    /// As [`serve`](Self::serve), on a Unix socket at `path` (for processes of this machine that
    /// can reach the path); [`connect`](Self::connect) to it as `"unix:<path>"`. The socket file
    /// is removed when this handle is dropped.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if the path cannot be bound (it exists, the directory is missing);
    /// [`ErrorKind::InvalidInput`] for a relative or non-UTF-8 path.
    ///
    /// ```
    /// use multiproc::Manager;
    /// let path = std::env::temp_dir().join(format!("mp-manager-doc-{}", std::process::id()));
    /// let server = Manager::serve_unix(&path, b"secret").unwrap();
    /// let client = Manager::connect(&format!("unix:{}", path.display()), b"secret").unwrap();
    /// client.dict_named::<u8, u8>("d").unwrap().insert(1, 2).unwrap();
    /// assert_eq!(server.dict_named::<u8, u8>("d").unwrap().get(&1).unwrap(), Some(2));
    /// ```
    /// Python counterpart: `BaseManager(address="/path/to/socket", authkey=...)`.
    pub fn serve_unix(path: impl AsRef<std::path::Path>, authkey: &[u8]) -> Result<Manager> {
        let path = path.as_ref();
        let name = path.to_str().filter(|p| p.starts_with('/')).ok_or_else(|| {
            Error::new(ErrorKind::InvalidInput, format!("{} is not an absolute UTF-8 path", path.display()))
        })?;
        let listener = UnixListener::bind(path).map_err(|e| Error::os("binding the manager's socket", e))?;
        let authkey = wire::derive_key(authkey);
        let setup = server::Setup { listener: Fd::from(listener), tcp: false, authkey };
        let server = Process::builder().name("manager").daemon(true).spawn(server::serve, (setup,))?;
        Ok(Manager { address: Address { name: name.to_owned(), tcp: false, authkey }, server: Some(server) })
    }

    /// The TCP address a [`serve`](Self::serve)d or [`connect`](Self::connect)ed manager is at
    /// (an internal name for a local one).
    ///
    /// ```
    /// let server = multiproc::Manager::serve("127.0.0.1:0", b"k").unwrap();
    /// assert!(server.address().starts_with("127.0.0.1:"));
    /// ```
    /// Python counterpart: `manager.address`.
    pub fn address(&self) -> String {
        self.address.name.clone()
    }

    fn named(&self, kind: wire::Kind, name: &str) -> Result<u64> {
        match call(&self.address, &Request::Named { kind, name: name.to_owned() })? {
            Reply::Id(id) => Ok(id),
            other => Err(unexpected(other)),
        }
    }

    /// The dict registered under `name` in the manager, made empty if there is none yet: how
    /// programs that share nothing but the address and the key find the same object.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if `name` is registered as another kind of object;
    /// [`ErrorKind::Disconnected`]; [`ErrorKind::Authentication`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// m.dict_named::<u8, u8>("config").unwrap().insert(1, 2).unwrap();
    /// assert_eq!(m.dict_named::<u8, u8>("config").unwrap().get(&1).unwrap(), Some(2));
    /// ```
    /// Python counterpart: `BaseManager.register("get_dict", callable=lambda: shared_dict)`.
    pub fn dict_named<K, V>(&self, name: &str) -> Result<DictProxy<K, V>> {
        Ok(DictProxy { address: self.address.clone(), id: self.named(wire::Kind::Dict, name)?, _types: PhantomData })
    }

    /// As [`dict_named`](Self::dict_named), for a list.
    ///
    /// # Errors
    /// As [`dict_named`](Self::dict_named).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// m.list_named::<u8>("log").unwrap().push(1).unwrap();
    /// assert_eq!(m.list_named::<u8>("log").unwrap().len().unwrap(), 1);
    /// ```
    /// Python counterpart: `BaseManager.register("get_list", ...)`.
    pub fn list_named<T>(&self, name: &str) -> Result<ListProxy<T>> {
        Ok(ListProxy { address: self.address.clone(), id: self.named(wire::Kind::List, name)?, _types: PhantomData })
    }

    /// As [`dict_named`](Self::dict_named), for a queue.
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
        Ok(QueueProxy { address: self.address.clone(), id: self.named(wire::Kind::Queue, name)?, _types: PhantomData })
    }

    /// As [`dict_named`](Self::dict_named), for a lock.
    ///
    /// # Errors
    /// As [`dict_named`](Self::dict_named).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let lock = m.lock_named("printer").unwrap();
    /// lock.acquire().unwrap();
    /// lock.release().unwrap();
    /// ```
    /// Python counterpart: `BaseManager.register("get_lock", ...)`.
    pub fn lock_named(&self, name: &str) -> Result<LockProxy> {
        Ok(LockProxy { address: self.address.clone(), id: self.named(wire::Kind::Lock, name)?, _types: PhantomData })
    }

    /// As [`dict_named`](Self::dict_named), for an event.
    ///
    /// # Errors
    /// As [`dict_named`](Self::dict_named).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// m.event_named("ready").unwrap().set().unwrap();
    /// assert!(m.event_named("ready").unwrap().is_set().unwrap());
    /// ```
    /// Python counterpart: `BaseManager.register("get_event", ...)`.
    pub fn event_named(&self, name: &str) -> Result<EventProxy> {
        Ok(EventProxy { address: self.address.clone(), id: self.named(wire::Kind::Event, name)?, _types: PhantomData })
    }

    /// A new, empty shared dict.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] if the server is gone.
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// let counts = manager.dict::<String, u64>().unwrap();
    /// assert!(counts.is_empty().unwrap());
    /// ```
    /// Python counterpart: `manager.dict()`.
    pub fn dict<K, V>(&self) -> Result<DictProxy<K, V>> {
        match call(&self.address, &Request::NewDict)? {
            Reply::Id(id) => Ok(DictProxy { address: self.address.clone(), id, _types: PhantomData }),
            other => Err(unexpected(other)),
        }
    }

    /// Stops the server now (dropping the handle does the same).
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// manager.shutdown();
    /// ```
    /// Python counterpart: `manager.shutdown()`.
    pub fn shutdown(self) {}
}

impl Drop for Manager {
    fn drop(&mut self) {
        if let Some(server) = &mut self.server {
            let _ = server.signal(Signal::KILL);
            let _ = server.join();
            if !self.address.tcp && self.address.name.starts_with('/') {
                let _ = std::fs::remove_file(&self.address.name);
            }
        }
    }
}

/// Implements a proxy's plain-value plumbing (clone, debug, serde as address and id).
macro_rules! proxy_basics {
    ($name:ident) => {
        proxy_basics!($name<>);
    };
    ($name:ident<$($t:ident),*>) => {
        impl<$($t),*> Clone for $name<$($t),*> {
            fn clone(&self) -> Self {
                $name { address: self.address.clone(), id: self.id, _types: PhantomData }
            }
        }

        impl<$($t),*> fmt::Debug for $name<$($t),*> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name)).field("manager", &self.address).field("id", &self.id).finish()
            }
        }

        impl<$($t),*> Serialize for $name<$($t),*> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
                (&self.address, self.id).serialize(serializer)
            }
        }

        impl<'de, $($t),*> Deserialize<'de> for $name<$($t),*> {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
                let (address, id) = <(Address, u64)>::deserialize(deserializer)?;
                Ok($name { address, id, _types: PhantomData })
            }
        }
    };
}

/// A shared dict living in a [`Manager`]: keys `K` and values `V` travel encoded.
///
/// Every method is one round trip to the server. Reads give copies: changing a value you got
/// does not change the dict (put it back with [`insert`](Self::insert), or change it in place
/// with [`apply`](Self::apply)).
///
/// ```
/// let manager = multiproc::Manager::start().unwrap();
/// let d = manager.dict::<String, Vec<u32>>().unwrap();
/// d.insert("primes".into(), vec![2, 3]).unwrap();
/// fn push_five(v: Option<Vec<u32>>) -> Vec<u32> {
///     let mut v = v.unwrap_or_default();
///     v.push(5);
///     v
/// }
/// d.apply(&"primes".to_string(), push_five).unwrap();
/// assert_eq!(d.get(&"primes".to_string()).unwrap(), Some(vec![2, 3, 5]));
/// ```
/// Python counterpart: the `DictProxy` of `manager.dict()`.
pub struct DictProxy<K, V> {
    address: Address,
    id: u64,
    _types: PhantomData<fn(K) -> V>,
}

proxy_basics!(DictProxy<K, V>);

fn encode<T: Serialize>(value: &T) -> Result<ByteBuf> {
    postcard::to_stdvec(value)
        .map(ByteBuf::from)
        .map_err(|e| Error::with_source(ErrorKind::Encode, std::any::type_name::<T>().to_owned(), e))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| {
        Error::with_source(ErrorKind::Decode, format!("a stored value is not a {}", std::any::type_name::<T>()), e)
    })
}

/// Numbers [`DictProxy::add`] can add in the server.
///
/// ```
/// fn addable<N: multiproc::manager::Number>() {}
/// addable::<i64>();
/// addable::<f32>();
/// ```
/// Python counterpart: none (`d[k] += n` under a Lock).
pub trait Number: Serialize + DeserializeOwned + Copy + sealed::Sealed {}

mod sealed {
    /// How a number travels to the server — its kind and its bits — and what keeps `Number`
    /// closed to other types: the server must know how each kind is encoded.
    pub trait Sealed {
        fn kind_and_bits(self) -> (u8, u64);
    }
}

const SIGNED: u8 = 0;
const UNSIGNED: u8 = 1;
const F32: u8 = 2;
const F64: u8 = 3;

macro_rules! number {
    ($kind:ident, $bits:expr; $($t:ty),*) => { $(
        impl sealed::Sealed for $t {
            #[allow(clippy::cast_lossless, clippy::unnecessary_cast, trivial_numeric_casts)]
            fn kind_and_bits(self) -> (u8, u64) {
                ($kind, $bits(self))
            }
        }
        impl Number for $t {}
    )* };
}
number!(SIGNED, |n| n as i64 as u64; i8, i16, i32, i64, isize);
number!(UNSIGNED, |n| n as u64; u8, u16, u32, u64, usize);
number!(F32, |n: f32| u64::from(n.to_bits()); f32);
number!(F64, |n: f64| n.to_bits(); f64);

fn to_wire(kind_and_bits: (u8, u64)) -> wire::Number {
    match kind_and_bits {
        (SIGNED, bits) => wire::Number::Signed(bits as i64),
        (UNSIGNED, bits) => wire::Number::Unsigned(bits),
        (F32, bits) => wire::Number::F32(f32::from_bits(bits as u32)),
        (_, bits) => wire::Number::F64(f64::from_bits(bits)),
    }
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> DictProxy<K, V> {
    fn value(&self, request: Request) -> Result<Option<V>> {
        match call(&self.address, &request)? {
            Reply::Value(v) => v.map(|b| decode(&b)).transpose(),
            other => Err(unexpected(other)),
        }
    }

    /// The value for `key`, if any.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] if the server is gone; [`ErrorKind::Decode`] if the stored
    /// value is not a `V`.
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let d = m.dict::<u8, u8>().unwrap();
    /// assert_eq!(d.get(&1).unwrap(), None);
    /// ```
    /// Python counterpart: `d.get(key)`.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        self.value(Request::DictGet { id: self.id, key: encode(key)? })
    }

    /// Sets `key` to `value`; returns the old value.
    ///
    /// # Errors
    /// As [`get`](Self::get); [`ErrorKind::Encode`] if the key or value cannot be encoded.
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let d = m.dict::<u8, u8>().unwrap();
    /// assert_eq!(d.insert(1, 2).unwrap(), None);
    /// assert_eq!(d.insert(1, 3).unwrap(), Some(2));
    /// ```
    /// Python counterpart: `d[key] = value`.
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>> {
        self.value(Request::DictInsert { id: self.id, key: encode(&key)?, value: encode(&value)? })
    }

    /// Removes `key`; returns its value.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let d = m.dict::<u8, u8>().unwrap();
    /// d.insert(1, 2).unwrap();
    /// assert_eq!(d.remove(&1).unwrap(), Some(2));
    /// ```
    /// Python counterpart: `d.pop(key, None)`.
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        self.value(Request::DictRemove { id: self.id, key: encode(key)? })
    }

    /// Whether `key` is present.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let d = m.dict::<u8, u8>().unwrap();
    /// d.insert(1, 2).unwrap();
    /// assert!(d.contains_key(&1).unwrap());
    /// ```
    /// Python counterpart: `key in d`.
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        match call(&self.address, &Request::DictContains { id: self.id, key: encode(key)? })? {
            Reply::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    /// The number of entries.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] if the server is gone.
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// assert_eq!(m.dict::<u8, u8>().unwrap().len().unwrap(), 0);
    /// ```
    /// Python counterpart: `len(d)`.
    pub fn len(&self) -> Result<usize> {
        match call(&self.address, &Request::DictLen { id: self.id })? {
            Reply::Len(n) => Ok(n as usize),
            other => Err(unexpected(other)),
        }
    }

    /// Whether the dict is empty.
    ///
    /// # Errors
    /// As [`len`](Self::len).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// assert!(m.dict::<u8, u8>().unwrap().is_empty().unwrap());
    /// ```
    /// Python counterpart: `not d`.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// A snapshot of every entry (in no particular order).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let d = m.dict::<u8, u8>().unwrap();
    /// d.insert(1, 2).unwrap();
    /// assert_eq!(d.items().unwrap(), [(1, 2)]);
    /// ```
    /// Python counterpart: `d.items()`.
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        match call(&self.address, &Request::DictItems { id: self.id })? {
            Reply::Items(items) => items.iter().map(|(k, v)| Ok((decode(k)?, decode(v)?))).collect(),
            other => Err(unexpected(other)),
        }
    }

    /// A snapshot of the keys.
    ///
    /// # Errors
    /// As [`items`](Self::items).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let d = m.dict::<u8, u8>().unwrap();
    /// d.insert(7, 0).unwrap();
    /// assert_eq!(d.keys().unwrap(), [7]);
    /// ```
    /// Python counterpart: `d.keys()`.
    pub fn keys(&self) -> Result<Vec<K>> {
        Ok(self.items()?.into_iter().map(|(k, _)| k).collect())
    }

    /// A snapshot of the values.
    ///
    /// # Errors
    /// As [`items`](Self::items).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let d = m.dict::<u8, u8>().unwrap();
    /// d.insert(7, 9).unwrap();
    /// assert_eq!(d.values().unwrap(), [9]);
    /// ```
    /// Python counterpart: `d.values()`.
    pub fn values(&self) -> Result<Vec<V>> {
        Ok(self.items()?.into_iter().map(|(_, v)| v).collect())
    }

    /// Inserts every pair of `items` (in one round trip).
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let d = m.dict::<u8, u8>().unwrap();
    /// d.update([(1, 1), (2, 4)]).unwrap();
    /// assert_eq!(d.len().unwrap(), 2);
    /// ```
    /// Python counterpart: `d.update(items)`.
    pub fn update(&self, items: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        let items = items.into_iter().map(|(k, v)| Ok((encode(&k)?, encode(&v)?))).collect::<Result<Vec<_>>>()?;
        match call(&self.address, &Request::DictExtend { id: self.id, items })? {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Removes every entry.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] if the server is gone.
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let d = m.dict::<u8, u8>().unwrap();
    /// d.insert(1, 1).unwrap();
    /// d.clear().unwrap();
    /// assert!(d.is_empty().unwrap());
    /// ```
    /// Python counterpart: `d.clear()`.
    pub fn clear(&self) -> Result<()> {
        match call(&self.address, &Request::DictClear { id: self.id })? {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Replaces the value for `key` by `f(old value)`, in the server, under the dict's lock: no
    /// other update of the dict can come in between. Returns the new value. `f` is a plain
    /// function (or a closure that captures nothing) of this program.
    ///
    /// # Errors
    /// As [`get`](Self::get); [`ErrorKind::InvalidInput`] if `f` panicked (the entry is left as
    /// it was) or the server is another build.
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let d = m.dict::<String, u32>().unwrap();
    /// fn double_or_one(v: Option<u32>) -> u32 { v.map_or(1, |v| v * 2) }
    /// let key = "n".to_string();
    /// d.apply(&key, double_or_one).unwrap();
    /// assert_eq!(d.apply(&key, double_or_one).unwrap(), 2);
    /// ```
    /// Python counterpart: none (`with lock: d[k] = f(d.get(k))`).
    pub fn apply<F>(&self, key: &K, _f: F) -> Result<V>
    where
        F: Fn(Option<V>) -> V + Copy + Send + Sync + 'static,
    {
        let entry = apply_entry_offset::<F, V>();
        match self.value(Request::DictApply { id: self.id, key: encode(key)?, entry })? {
            Some(v) => Ok(v),
            None => Err(Error::new(ErrorKind::Decode, "the manager returned no value")),
        }
    }
}

impl<K: Serialize + DeserializeOwned, V: Number> DictProxy<K, V> {
    /// Adds `delta` to the number at `key` (absent counts as zero), in the server, under the
    /// dict's lock; returns the new value. Many processes can add to one key at once and no
    /// update is lost — no Lock needed.
    ///
    /// # Errors
    /// As [`get`](Self::get); [`ErrorKind::InvalidInput`] if the sum overflows.
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let d = m.dict::<String, i64>().unwrap();
    /// d.add(&"hits".to_string(), 5).unwrap();
    /// assert_eq!(d.add(&"hits".to_string(), -2).unwrap(), 3);
    /// ```
    /// Python counterpart: none (`with lock: d[k] += n`).
    pub fn add(&self, key: &K, delta: V) -> Result<V> {
        match self.value(Request::DictAdd {
            id: self.id,
            key: encode(key)?,
            delta: to_wire(sealed::Sealed::kind_and_bits(delta)),
        })? {
            Some(v) => Ok(v),
            None => Err(Error::new(ErrorKind::Decode, "the manager returned no value")),
        }
    }
}

impl Manager {
    /// A new, empty shared list.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] if the server is gone.
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// let l = manager.list::<String>().unwrap();
    /// l.push("first".into()).unwrap();
    /// assert_eq!(l.len().unwrap(), 1);
    /// ```
    /// Python counterpart: `manager.list()`.
    pub fn list<T>(&self) -> Result<ListProxy<T>> {
        match call(&self.address, &Request::NewList)? {
            Reply::Id(id) => Ok(ListProxy { address: self.address.clone(), id, _types: PhantomData }),
            other => Err(unexpected(other)),
        }
    }
}

/// A shared list living in a [`Manager`]. Every method is one round trip; reads give copies.
///
/// ```
/// use multiproc::{Manager, Process, manager::ListProxy};
/// fn sign(guests: ListProxy<u32>, me: u32) { guests.push(me).unwrap() }
/// let manager = Manager::start().unwrap();
/// let guests = manager.list().unwrap();
/// let mut ps: Vec<_> = (0..4).map(|i| Process::spawn(sign, (guests.clone(), i)).unwrap()).collect();
/// ps.iter_mut().for_each(|p| p.join().unwrap());
/// let mut signed = guests.to_vec().unwrap();
/// signed.sort();
/// assert_eq!(signed, [0, 1, 2, 3]);
/// ```
/// Python counterpart: the `ListProxy` of `manager.list()`.
pub struct ListProxy<T> {
    address: Address,
    id: u64,
    _types: PhantomData<fn(T) -> T>,
}

proxy_basics!(ListProxy<T>);

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    fn value(&self, request: Request) -> Result<Option<T>> {
        match call(&self.address, &request)? {
            Reply::Value(v) => v.map(|b| decode(&b)).transpose(),
            other => Err(unexpected(other)),
        }
    }

    fn done(&self, request: Request) -> Result<()> {
        match call(&self.address, &request)? {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Appends `value`.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] if the server is gone; [`ErrorKind::Encode`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list().unwrap();
    /// l.push(1u8).unwrap();
    /// # assert_eq!(l.len().unwrap(), 1);
    /// ```
    /// Python counterpart: `l.append(value)`.
    #[doc(alias = "append")]
    pub fn push(&self, value: T) -> Result<()> {
        self.done(Request::ListPush { id: self.id, value: encode(&value)? })
    }

    /// Removes and returns the last element.
    ///
    /// # Errors
    /// As [`push`](Self::push); [`ErrorKind::Decode`] if it is not a `T`.
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list().unwrap();
    /// l.push(1u8).unwrap();
    /// assert_eq!(l.pop().unwrap(), Some(1));
    /// assert_eq!(l.pop().unwrap(), None);
    /// ```
    /// Python counterpart: `l.pop()`.
    pub fn pop(&self) -> Result<Option<T>> {
        self.value(Request::ListPop { id: self.id })
    }

    /// Element `index`, if there is one.
    ///
    /// # Errors
    /// As [`pop`](Self::pop).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list().unwrap();
    /// l.push('a').unwrap();
    /// assert_eq!(l.get(0).unwrap(), Some('a'));
    /// assert_eq!(l.get(1).unwrap(), None);
    /// ```
    /// Python counterpart: `l[index]`.
    pub fn get(&self, index: usize) -> Result<Option<T>> {
        self.value(Request::ListGet { id: self.id, index: index as u64 })
    }

    /// Replaces element `index`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if `index` is out of range; as [`push`](Self::push).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list().unwrap();
    /// l.push(1).unwrap();
    /// l.set(0, 2).unwrap();
    /// assert!(l.set(5, 3).is_err());
    /// assert_eq!(l.get(0).unwrap(), Some(2));
    /// ```
    /// Python counterpart: `l[index] = value`.
    pub fn set(&self, index: usize, value: T) -> Result<()> {
        self.done(Request::ListSet { id: self.id, index: index as u64, value: encode(&value)? })
    }

    /// The number of elements.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] if the server is gone.
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// assert_eq!(m.list::<u8>().unwrap().len().unwrap(), 0);
    /// ```
    /// Python counterpart: `len(l)`.
    pub fn len(&self) -> Result<usize> {
        match call(&self.address, &Request::ListLen { id: self.id })? {
            Reply::Len(n) => Ok(n as usize),
            other => Err(unexpected(other)),
        }
    }

    /// Whether the list is empty.
    ///
    /// # Errors
    /// As [`len`](Self::len).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// assert!(m.list::<u8>().unwrap().is_empty().unwrap());
    /// ```
    /// Python counterpart: `not l`.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Appends every value (one round trip).
    ///
    /// # Errors
    /// As [`push`](Self::push).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list().unwrap();
    /// l.extend([1, 2, 3]).unwrap();
    /// assert_eq!(l.to_vec().unwrap(), [1, 2, 3]);
    /// ```
    /// Python counterpart: `l.extend(values)`.
    pub fn extend(&self, values: impl IntoIterator<Item = T>) -> Result<()> {
        let values = values.into_iter().map(|v| encode(&v)).collect::<Result<Vec<_>>>()?;
        self.done(Request::ListExtend { id: self.id, values })
    }

    /// Removes the first element equal to `value`; returns whether there was one.
    ///
    /// # Errors
    /// As [`push`](Self::push).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list().unwrap();
    /// l.extend([1, 2, 1]).unwrap();
    /// assert!(l.remove(&1).unwrap());
    /// assert_eq!(l.to_vec().unwrap(), [2, 1]);
    /// ```
    /// Python counterpart: `l.remove(value)` (which raises `ValueError` instead of returning false).
    pub fn remove(&self, value: &T) -> Result<bool> {
        match call(&self.address, &Request::ListRemove { id: self.id, value: encode(value)? })? {
            Reply::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    /// A snapshot of every element, in order.
    ///
    /// # Errors
    /// As [`pop`](Self::pop).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list().unwrap();
    /// l.push("x".to_string()).unwrap();
    /// assert_eq!(l.to_vec().unwrap(), ["x"]);
    /// ```
    /// Python counterpart: `list(l)` / `l[:]`.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        match call(&self.address, &Request::ListItems { id: self.id })? {
            Reply::Elements(values) => values.iter().map(|v| decode(v)).collect(),
            other => Err(unexpected(other)),
        }
    }

    /// Replaces element `index` by `f(element)`, in the server, under the list's lock; returns
    /// the new value.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if `index` is out of range or `f` panicked; as
    /// [`pop`](Self::pop).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list().unwrap();
    /// l.push(10u32).unwrap();
    /// fn halve(v: Option<u32>) -> u32 { v.unwrap_or(0) / 2 }
    /// assert_eq!(l.apply(0, halve).unwrap(), 5);
    /// ```
    /// Python counterpart: none (`with lock: l[i] = f(l[i])`).
    pub fn apply<F>(&self, index: usize, _f: F) -> Result<T>
    where
        F: Fn(Option<T>) -> T + Copy + Send + Sync + 'static,
    {
        let entry = apply_entry_offset::<F, T>();
        match self.value(Request::ListApply { id: self.id, index: index as u64, entry })? {
            Some(v) => Ok(v),
            None => Err(Error::new(ErrorKind::Decode, "the manager returned no value")),
        }
    }
}

impl Manager {
    /// A new, empty namespace: named attributes of any serde type.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] if the server is gone.
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// let ns = manager.namespace().unwrap();
    /// ns.set("x", &5u32).unwrap();
    /// ns.set("label", &"five".to_string()).unwrap();
    /// assert_eq!(ns.get::<u32>("x").unwrap(), Some(5));
    /// ```
    /// Python counterpart: `manager.Namespace()`.
    pub fn namespace(&self) -> Result<NamespaceProxy> {
        Ok(NamespaceProxy { dict: self.dict()? })
    }

    /// A shared value, starting at `value`.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] if the server is gone; [`ErrorKind::Encode`].
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// let v = manager.value(1.5f64).unwrap();
    /// v.set(2.5).unwrap();
    /// assert_eq!(v.get().unwrap(), 2.5);
    /// ```
    /// Python counterpart: `manager.Value(typecode, value)`.
    pub fn value<T: Serialize + DeserializeOwned>(&self, value: T) -> Result<ValueProxy<T>> {
        let dict = self.dict::<(), T>()?;
        dict.insert((), value)?;
        Ok(ValueProxy { dict })
    }
}

/// Named attributes of any serde type, in a [`Manager`].
///
/// ```
/// use multiproc::{Manager, Process, manager::NamespaceProxy};
/// fn report(ns: NamespaceProxy) { ns.set("done_by", &std::process::id()).unwrap() }
/// let manager = Manager::start().unwrap();
/// let ns = manager.namespace().unwrap();
/// let mut p = Process::spawn(report, (ns.clone(),)).unwrap();
/// p.join().unwrap();
/// assert_eq!(ns.get::<u32>("done_by").unwrap(), Some(p.pid()));
/// ```
/// Python counterpart: the proxy of `manager.Namespace()` (`ns.x = 5`, `ns.x`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NamespaceProxy {
    dict: DictProxy<String, ByteBuf>,
}

impl NamespaceProxy {
    /// Attribute `name`, decoded as a `T`, if it is set.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] if the server is gone; [`ErrorKind::Decode`] if it is not a `T`.
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let ns = m.namespace().unwrap();
    /// assert_eq!(ns.get::<u8>("missing").unwrap(), None);
    /// ```
    /// Python counterpart: `ns.name` (which raises `AttributeError` when unset).
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        self.dict.get(&name.to_owned())?.map(|bytes| decode(&bytes)).transpose()
    }

    /// Sets attribute `name`.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`]; [`ErrorKind::Encode`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let ns = m.namespace().unwrap();
    /// ns.set("flag", &true).unwrap();
    /// # assert_eq!(ns.get::<bool>("flag").unwrap(), Some(true));
    /// ```
    /// Python counterpart: `ns.name = value`.
    pub fn set<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        self.dict.insert(name.to_owned(), encode(value)?).map(drop)
    }

    /// Removes attribute `name`; returns whether it was set.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let ns = m.namespace().unwrap();
    /// ns.set("x", &1).unwrap();
    /// assert!(ns.remove("x").unwrap());
    /// ```
    /// Python counterpart: `del ns.name`.
    pub fn remove(&self, name: &str) -> Result<bool> {
        Ok(self.dict.remove(&name.to_owned())?.is_some())
    }

    /// The names of the attributes that are set.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let ns = m.namespace().unwrap();
    /// ns.set("a", &1).unwrap();
    /// assert_eq!(ns.names().unwrap(), ["a"]);
    /// ```
    /// Python counterpart: `vars(ns)`.
    pub fn names(&self) -> Result<Vec<String>> {
        self.dict.keys()
    }
}

/// One shared value of any serde type, in a [`Manager`].
///
/// ```
/// use multiproc::{Manager, Process, manager::ValueProxy};
/// fn grow(v: ValueProxy<Vec<u8>>) { v.apply(|old: Option<Vec<u8>>| { let mut v = old.unwrap_or_default(); v.push(1); v }).unwrap(); }
/// let manager = Manager::start().unwrap();
/// let v = manager.value(Vec::<u8>::new()).unwrap();
/// let mut ps: Vec<_> = (0..3).map(|_| Process::spawn(grow, (v.clone(),)).unwrap()).collect();
/// ps.iter_mut().for_each(|p| p.join().unwrap());
/// assert_eq!(v.get().unwrap(), [1, 1, 1]);
/// ```
/// Python counterpart: the proxy of `manager.Value(typecode, value)`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct ValueProxy<T> {
    dict: DictProxy<(), T>,
}

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    /// The value.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`]; [`ErrorKind::Decode`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// assert_eq!(m.value(3i8).unwrap().get().unwrap(), 3);
    /// ```
    /// Python counterpart: `v.value`.
    pub fn get(&self) -> Result<T> {
        self.dict.get(&())?.ok_or_else(|| Error::new(ErrorKind::Decode, "the shared value is missing"))
    }

    /// Replaces the value.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`]; [`ErrorKind::Encode`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let v = m.value(0u8).unwrap();
    /// v.set(4).unwrap();
    /// # assert_eq!(v.get().unwrap(), 4);
    /// ```
    /// Python counterpart: `v.value = x`.
    pub fn set(&self, value: T) -> Result<()> {
        self.dict.insert((), value).map(drop)
    }

    /// Replaces the value by `f(value)` in the server, atomically; returns the new value.
    ///
    /// # Errors
    /// As [`DictProxy::apply`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let v = m.value(2u32).unwrap();
    /// assert_eq!(v.apply(|x: Option<u32>| x.unwrap_or(0) * 10).unwrap(), 20);
    /// ```
    /// Python counterpart: none (`with lock: v.value = f(v.value)`).
    pub fn apply<F>(&self, f: F) -> Result<T>
    where
        F: Fn(Option<T>) -> T + Copy + Send + Sync + 'static,
    {
        self.dict.apply(&(), f)
    }
}

/// A timeout for the wire: whole milliseconds, rounded up so a wait is never shorter.
fn timeout_ms(timeout: Option<std::time::Duration>) -> Option<u64> {
    timeout.map(|t| u64::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX))
}

impl Manager {
    fn new_object(&self, request: Request) -> Result<u64> {
        match call(&self.address, &request)? {
            Reply::Id(id) => Ok(id),
            other => Err(unexpected(other)),
        }
    }

    /// A queue hosted by the manager: usable by any process that has the proxy, including one
    /// that inherited nothing.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] if the server is gone.
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// let q = manager.queue::<String>().unwrap();
    /// q.put("hello".into()).unwrap();
    /// assert_eq!(q.get().unwrap(), "hello");
    /// ```
    /// Python counterpart: `manager.Queue()`.
    pub fn queue<T>(&self) -> Result<QueueProxy<T>> {
        Ok(QueueProxy { address: self.address.clone(), id: self.new_object(Request::NewQueue)?, _types: PhantomData })
    }

    /// A lock hosted by the manager. It belongs to the connection that took it: if that process
    /// ends or is killed without releasing it, the manager releases it.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] if the server is gone.
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// let lock = manager.lock().unwrap();
    /// assert!(lock.acquire_timeout(std::time::Duration::from_secs(1)).unwrap());
    /// lock.release().unwrap();
    /// ```
    /// Python counterpart: `manager.Lock()`.
    pub fn lock(&self) -> Result<LockProxy> {
        Ok(LockProxy { address: self.address.clone(), id: self.new_object(Request::NewLock)?, _types: PhantomData })
    }

    /// An event hosted by the manager.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] if the server is gone.
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// let e = manager.event().unwrap();
    /// e.set().unwrap();
    /// assert!(e.wait_timeout(std::time::Duration::from_secs(1)).unwrap());
    /// ```
    /// Python counterpart: `manager.Event()`.
    pub fn event(&self) -> Result<EventProxy> {
        Ok(EventProxy { address: self.address.clone(), id: self.new_object(Request::NewEvent)?, _types: PhantomData })
    }
}

/// A queue hosted by a [`Manager`].
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
pub struct QueueProxy<T> {
    address: Address,
    id: u64,
    _types: PhantomData<fn(T) -> T>,
}

proxy_basics!(QueueProxy<T>);

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    /// Puts an item.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`]; [`ErrorKind::Encode`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// m.queue().unwrap().put(1u8).unwrap();
    /// ```
    /// Python counterpart: `q.put(item)`.
    pub fn put(&self, item: T) -> Result<()> {
        match call(&self.address, &Request::QueuePut { id: self.id, value: encode(&item)? })? {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Takes the oldest item, waiting for one.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] (also when the manager goes away while waiting);
    /// [`ErrorKind::Decode`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let q = m.queue().unwrap();
    /// q.put(7u8).unwrap();
    /// assert_eq!(q.get().unwrap(), 7);
    /// ```
    /// Python counterpart: `q.get()`.
    pub fn get(&self) -> Result<T> {
        self.get_timeout(None)?.ok_or_else(|| Error::new(ErrorKind::Decode, "the manager returned no item"))
    }

    /// Takes the oldest item, waiting up to `timeout` (`None`: for as long as it takes);
    /// `Ok(None)` if none came.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    ///
    /// ```
    /// use std::time::Duration;
    /// let m = multiproc::Manager::start().unwrap();
    /// let q = m.queue::<u8>().unwrap();
    /// assert_eq!(q.get_timeout(Some(Duration::from_millis(10))).unwrap(), None);
    /// ```
    /// Python counterpart: `q.get(timeout=t)` (raising `queue.Empty`).
    pub fn get_timeout(&self, timeout: Option<std::time::Duration>) -> Result<Option<T>> {
        match call(&self.address, &Request::QueueGet { id: self.id, timeout_ms: timeout_ms(timeout) })? {
            Reply::Value(v) => v.map(|b| decode(&b)).transpose(),
            other => Err(unexpected(other)),
        }
    }

    /// The number of items queued (a snapshot).
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let q = m.queue().unwrap();
    /// q.put(()).unwrap();
    /// assert_eq!(q.len().unwrap(), 1);
    /// ```
    /// Python counterpart: `q.qsize()`.
    pub fn len(&self) -> Result<usize> {
        match call(&self.address, &Request::QueueLen { id: self.id })? {
            Reply::Len(n) => Ok(n as usize),
            other => Err(unexpected(other)),
        }
    }

    /// Whether the queue is empty (a snapshot).
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// assert!(m.queue::<u8>().unwrap().is_empty().unwrap());
    /// ```
    /// Python counterpart: `q.empty()`.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// A lock hosted by a [`Manager`], held by the connection (thread of a process) that took it.
///
/// ```
/// use multiproc::{Manager, Process, manager::LockProxy};
/// fn take_and_die(lock: LockProxy) { lock.acquire().unwrap(); std::process::abort() }
/// let manager = Manager::start().unwrap();
/// let lock = manager.lock().unwrap();
/// let _ = Process::spawn(take_and_die, (lock.clone(),)).unwrap().join();
/// // The holder died: the manager released its lock.
/// assert!(lock.acquire_timeout(std::time::Duration::from_secs(20)).unwrap());
/// ```
/// Python counterpart: the proxy of `manager.Lock()`.
pub struct LockProxy {
    address: Address,
    id: u64,
    _types: PhantomData<()>,
}

proxy_basics!(LockProxy);

impl LockProxy {
    /// Takes the lock, waiting as long as it takes.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let lock = m.lock().unwrap();
    /// lock.acquire().unwrap();
    /// lock.release().unwrap();
    /// ```
    /// Python counterpart: `lock.acquire()`.
    pub fn acquire(&self) -> Result<()> {
        self.acquire_inner(None).map(drop)
    }

    /// Takes the lock, waiting up to `timeout`; whether it was taken.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// use std::time::Duration;
    /// let m = multiproc::Manager::start().unwrap();
    /// let lock = m.lock().unwrap();
    /// assert!(lock.acquire_timeout(Duration::from_secs(1)).unwrap());
    /// ```
    /// Python counterpart: `lock.acquire(timeout=t)`.
    pub fn acquire_timeout(&self, timeout: std::time::Duration) -> Result<bool> {
        self.acquire_inner(Some(timeout))
    }

    fn acquire_inner(&self, timeout: Option<std::time::Duration>) -> Result<bool> {
        match call(&self.address, &Request::LockAcquire { id: self.id, timeout_ms: timeout_ms(timeout) })? {
            Reply::Bool(taken) => Ok(taken),
            other => Err(unexpected(other)),
        }
    }

    /// Releases the lock.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if this thread of this process does not hold it;
    /// [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// assert!(m.lock().unwrap().release().is_err());
    /// ```
    /// Python counterpart: `lock.release()`.
    pub fn release(&self) -> Result<()> {
        match call(&self.address, &Request::LockRelease { id: self.id })? {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

/// An event hosted by a [`Manager`].
///
/// ```
/// use multiproc::{Manager, Process, manager::EventProxy};
/// fn go(e: EventProxy) { e.set().unwrap() }
/// let manager = Manager::start().unwrap();
/// let e = manager.event().unwrap();
/// let mut p = Process::spawn(go, (e.clone(),)).unwrap();
/// e.wait().unwrap();
/// p.join().unwrap();
/// ```
/// Python counterpart: the proxy of `manager.Event()`.
pub struct EventProxy {
    address: Address,
    id: u64,
    _types: PhantomData<()>,
}

proxy_basics!(EventProxy);

impl EventProxy {
    fn ask(&self, request: Request) -> Result<Reply> {
        call(&self.address, &request)
    }

    /// Sets the flag, waking every waiter.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let e = m.event().unwrap();
    /// e.set().unwrap();
    /// assert!(e.is_set().unwrap());
    /// ```
    /// Python counterpart: `event.set()`.
    pub fn set(&self) -> Result<()> {
        self.ask(Request::EventSet { id: self.id }).map(drop)
    }

    /// Clears the flag.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let e = m.event().unwrap();
    /// e.set().unwrap();
    /// e.clear().unwrap();
    /// assert!(!e.is_set().unwrap());
    /// ```
    /// Python counterpart: `event.clear()`.
    pub fn clear(&self) -> Result<()> {
        self.ask(Request::EventClear { id: self.id }).map(drop)
    }

    /// Whether the flag is set.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// assert!(!m.event().unwrap().is_set().unwrap());
    /// ```
    /// Python counterpart: `event.is_set()`.
    pub fn is_set(&self) -> Result<bool> {
        match self.ask(Request::EventIsSet { id: self.id })? {
            Reply::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    /// Waits until the flag is set.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let e = m.event().unwrap();
    /// e.set().unwrap();
    /// e.wait().unwrap();
    /// ```
    /// Python counterpart: `event.wait()`.
    pub fn wait(&self) -> Result<()> {
        self.wait_inner(None).map(drop)
    }

    /// Waits up to `timeout`; whether the flag is set.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// use std::time::Duration;
    /// let m = multiproc::Manager::start().unwrap();
    /// assert!(!m.event().unwrap().wait_timeout(Duration::from_millis(10)).unwrap());
    /// ```
    /// Python counterpart: `event.wait(timeout)`.
    pub fn wait_timeout(&self, timeout: std::time::Duration) -> Result<bool> {
        self.wait_inner(Some(timeout))
    }

    fn wait_inner(&self, timeout: Option<std::time::Duration>) -> Result<bool> {
        match self.ask(Request::EventWait { id: self.id, timeout_ms: timeout_ms(timeout) })? {
            Reply::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }
}

impl Manager {
    /// A semaphore hosted by the manager, holding `value` units; with `bound`, releases beyond
    /// it are refused (a bounded semaphore).
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] if the server is gone.
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// let room = manager.semaphore(4, Some(4)).unwrap();
    /// assert!(room.acquire_timeout(std::time::Duration::from_secs(1)).unwrap());
    /// assert_eq!(room.value().unwrap(), 3);
    /// ```
    /// Python counterpart: `manager.Semaphore(value)`, `manager.BoundedSemaphore(value)`.
    pub fn semaphore(&self, value: u32, bound: Option<u32>) -> Result<SemaphoreProxy> {
        let id = self.new_object(Request::NewSemaphore { value, bound })?;
        Ok(SemaphoreProxy { address: self.address.clone(), id, _types: PhantomData })
    }

    /// A joinable queue hosted by the manager: a [`QueueProxy`] (through `Deref`) plus
    /// `task_done` and `join`.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] if the server is gone.
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// let q = manager.joinable_queue::<u8>().unwrap();
    /// q.put(1).unwrap();
    /// q.get().unwrap();
    /// q.task_done().unwrap();
    /// q.join().unwrap();
    /// ```
    /// Python counterpart: `manager.JoinableQueue()`.
    pub fn joinable_queue<T>(&self) -> Result<JoinableQueueProxy<T>> {
        let id = self.new_object(Request::NewJoinableQueue)?;
        Ok(JoinableQueueProxy { queue: QueueProxy { address: self.address.clone(), id, _types: PhantomData } })
    }
}

/// A semaphore hosted by a [`Manager`]. Units are not owned: a process that dies holding one
/// loses it, as with [`Semaphore`](crate::Semaphore).
///
/// ```
/// use multiproc::{Manager, Process, manager::SemaphoreProxy};
/// fn visit(room: SemaphoreProxy) { room.acquire().unwrap(); room.release().unwrap(); }
/// let manager = Manager::start().unwrap();
/// let room = manager.semaphore(2, None).unwrap();
/// let mut ps: Vec<_> = (0..4).map(|_| Process::spawn(visit, (room.clone(),)).unwrap()).collect();
/// ps.iter_mut().for_each(|p| p.join().unwrap());
/// assert_eq!(room.value().unwrap(), 2);
/// ```
/// Python counterpart: the proxy of `manager.Semaphore()`.
pub struct SemaphoreProxy {
    address: Address,
    id: u64,
    _types: PhantomData<()>,
}

proxy_basics!(SemaphoreProxy);

impl SemaphoreProxy {
    /// Takes a unit, waiting as long as it takes.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// m.semaphore(1, None).unwrap().acquire().unwrap();
    /// ```
    /// Python counterpart: `sem.acquire()`.
    pub fn acquire(&self) -> Result<()> {
        self.acquire_inner(None).map(drop)
    }

    /// Takes a unit, waiting up to `timeout`; whether one was taken.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let s = m.semaphore(0, None).unwrap();
    /// assert!(!s.acquire_timeout(std::time::Duration::from_millis(10)).unwrap());
    /// ```
    /// Python counterpart: `sem.acquire(timeout=t)`.
    pub fn acquire_timeout(&self, timeout: std::time::Duration) -> Result<bool> {
        self.acquire_inner(Some(timeout))
    }

    fn acquire_inner(&self, timeout: Option<std::time::Duration>) -> Result<bool> {
        match call(&self.address, &Request::SemaphoreAcquire { id: self.id, timeout_ms: timeout_ms(timeout) })? {
            Reply::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    /// Returns a unit.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] above a bounded semaphore's bound; [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let s = m.semaphore(1, Some(1)).unwrap();
    /// assert!(s.release().is_err());
    /// ```
    /// Python counterpart: `sem.release()`.
    pub fn release(&self) -> Result<()> {
        match call(&self.address, &Request::SemaphoreRelease { id: self.id })? {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// The units available now (a snapshot).
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// assert_eq!(m.semaphore(3, None).unwrap().value().unwrap(), 3);
    /// ```
    /// Python counterpart: `sem.get_value()`.
    pub fn value(&self) -> Result<u32> {
        match call(&self.address, &Request::SemaphoreValue { id: self.id })? {
            Reply::Len(n) => Ok(n as u32),
            other => Err(unexpected(other)),
        }
    }
}

/// A joinable queue hosted by a [`Manager`]: everything a [`QueueProxy`] does (through `Deref`),
/// plus [`task_done`](Self::task_done) and [`join`](Self::join).
///
/// ```
/// use multiproc::{Manager, Process, manager::JoinableQueueProxy};
/// fn work(q: JoinableQueueProxy<u32>) {
///     loop {
///         let _job = q.get().unwrap();
///         q.task_done().unwrap();
///     }
/// }
/// let manager = Manager::start().unwrap();
/// let q = manager.joinable_queue().unwrap();
/// let _worker = Process::builder().daemon(true).spawn(work, (q.clone(),)).unwrap();
/// (0..5).for_each(|i| q.put(i).unwrap());
/// q.join().unwrap();
/// ```
/// Python counterpart: the proxy of `manager.JoinableQueue()`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct JoinableQueueProxy<T> {
    queue: QueueProxy<T>,
}

impl<T> std::ops::Deref for JoinableQueueProxy<T> {
    type Target = QueueProxy<T>;
    fn deref(&self) -> &QueueProxy<T> {
        &self.queue
    }
}

impl<T> JoinableQueueProxy<T> {
    /// Marks one item taken with `get` as done.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if called more times than items were put;
    /// [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let q = m.joinable_queue::<u8>().unwrap();
    /// assert!(q.task_done().is_err());
    /// ```
    /// Python counterpart: `q.task_done()`.
    pub fn task_done(&self) -> Result<()> {
        match call(&self.queue.address, &Request::QueueTaskDone { id: self.queue.id })? {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Waits until every item put has been marked done.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// m.joinable_queue::<u8>().unwrap().join().unwrap();
    /// ```
    /// Python counterpart: `q.join()`.
    pub fn join(&self) -> Result<()> {
        self.join_timeout_inner(None).map(drop)
    }

    /// Waits up to `timeout` until every item put has been marked done; whether they were.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let q = m.joinable_queue::<u8>().unwrap();
    /// q.put(1).unwrap();
    /// assert!(!q.join_timeout(std::time::Duration::from_millis(10)).unwrap());
    /// ```
    /// Python counterpart: none (Python's `join` has no timeout).
    pub fn join_timeout(&self, timeout: std::time::Duration) -> Result<bool> {
        self.join_timeout_inner(Some(timeout))
    }

    fn join_timeout_inner(&self, timeout: Option<std::time::Duration>) -> Result<bool> {
        match call(&self.queue.address, &Request::QueueJoin { id: self.queue.id, timeout_ms: timeout_ms(timeout) })? {
            Reply::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }
}

/// A user type that a [`Manager`] can host: it lives in the server, and every process with an
/// [`ObjectProxy`] sends it typed requests, handled one at a time under the object's lock.
///
/// ```
/// use multiproc::manager::SharedObject;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Default)]
/// struct Tally { counts: std::collections::HashMap<String, u64> }
///
/// #[derive(Serialize, Deserialize)]
/// enum TallyRequest { Vote(String), Count(String) }
///
/// impl SharedObject for Tally {
///     type Request = TallyRequest;
///     type Response = u64;
///     fn handle(&mut self, request: TallyRequest) -> u64 {
///         match request {
///             TallyRequest::Vote(who) => { *self.counts.entry(who.clone()).or_default() += 1; self.counts[&who] }
///             TallyRequest::Count(who) => self.counts.get(&who).copied().unwrap_or(0),
///         }
///     }
/// }
///
/// let manager = multiproc::Manager::start().unwrap();
/// let tally = manager.object::<Tally>().unwrap();
/// tally.call(TallyRequest::Vote("rust".into())).unwrap();
/// assert_eq!(tally.call(TallyRequest::Count("rust".into())).unwrap(), 1);
/// ```
/// Python counterpart: `BaseManager.register(typeid, callable)` with a class whose methods the
/// proxy exposes.
pub trait SharedObject: Default + Send + 'static {
    /// What clients send.
    type Request: Serialize + DeserializeOwned;
    /// What the object answers.
    type Response: Serialize + DeserializeOwned;
    /// Handles one request (in the server, under the object's lock).
    fn handle(&mut self, request: Self::Request) -> Self::Response;
}

impl Manager {
    /// Hosts a new `T` (made with `T::default()`) in the server.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if the server is another build (it cannot run this build's
    /// code); [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// # use multiproc::manager::SharedObject;
    /// #[derive(Default)]
    /// struct Echo;
    /// impl SharedObject for Echo {
    ///     type Request = String;
    ///     type Response = String;
    ///     fn handle(&mut self, r: String) -> String { r }
    /// }
    /// let m = multiproc::Manager::start().unwrap();
    /// assert_eq!(m.object::<Echo>().unwrap().call("hi".into()).unwrap(), "hi");
    /// ```
    /// Python counterpart: calling a type registered with `BaseManager.register`.
    pub fn object<T: SharedObject>(&self) -> Result<ObjectProxy<T>> {
        let id = self.new_object(Request::NewCustom { entry: crate::process::task::new_object_offset::<T>() })?;
        Ok(ObjectProxy { address: self.address.clone(), id, _types: PhantomData })
    }
}

/// A proxy for a user type hosted by a [`Manager`] (see [`SharedObject`]).
///
/// ```
/// # use multiproc::{Manager, Process, manager::{ObjectProxy, SharedObject}};
/// #[derive(Default)]
/// struct Sum(u64);
/// impl SharedObject for Sum {
///     type Request = u64;
///     type Response = u64;
///     fn handle(&mut self, n: u64) -> u64 { self.0 += n; self.0 }
/// }
/// fn add_ten(sum: ObjectProxy<Sum>) { sum.call(10).unwrap(); }
/// let m = Manager::start().unwrap();
/// let sum = m.object::<Sum>().unwrap();
/// let mut ps: Vec<_> = (0..3).map(|_| Process::spawn(add_ten, (sum.clone(),)).unwrap()).collect();
/// ps.iter_mut().for_each(|p| p.join().unwrap());
/// assert_eq!(sum.call(0).unwrap(), 30);
/// ```
/// Python counterpart: the proxy `BaseManager.register` makes.
pub struct ObjectProxy<T> {
    address: Address,
    id: u64,
    _types: PhantomData<fn() -> T>,
}

proxy_basics!(ObjectProxy<T>);

impl<T: SharedObject> ObjectProxy<T> {
    /// Sends `request` to the hosted object; returns its response.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if the object panicked handling it (the object stays as the
    /// panic left it); [`ErrorKind::Encode`]/[`ErrorKind::Decode`]; [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// # use multiproc::manager::SharedObject;
    /// #[derive(Default)]
    /// struct Last(Option<String>);
    /// impl SharedObject for Last {
    ///     type Request = String;
    ///     type Response = Option<String>;
    ///     fn handle(&mut self, r: String) -> Option<String> { self.0.replace(r) }
    /// }
    /// let m = multiproc::Manager::start().unwrap();
    /// let last = m.object::<Last>().unwrap();
    /// assert_eq!(last.call("a".into()).unwrap(), None);
    /// assert_eq!(last.call("b".into()).unwrap().as_deref(), Some("a"));
    /// ```
    /// Python counterpart: `proxy.method(args)`.
    pub fn call(&self, request: T::Request) -> Result<T::Response> {
        match call(&self.address, &Request::CustomCall { id: self.id, request: encode(&request)? })? {
            Reply::Value(Some(bytes)) => decode(&bytes),
            other => Err(unexpected(other)),
        }
    }
}

impl Manager {
    /// A recursive lock hosted by the manager: the connection (thread of a process) that holds
    /// it may take it again; it is released by as many releases, or when that connection closes.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] if the server is gone.
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// let rlock = manager.rlock().unwrap();
    /// rlock.acquire().unwrap();
    /// rlock.acquire().unwrap();
    /// rlock.release().unwrap();
    /// rlock.release().unwrap();
    /// assert!(rlock.release().is_err());
    /// ```
    /// Python counterpart: `manager.RLock()`.
    pub fn rlock(&self) -> Result<RLockProxy> {
        Ok(RLockProxy { address: self.address.clone(), id: self.new_object(Request::NewRLock)?, _types: PhantomData })
    }

    /// A barrier for `parties` processes hosted by the manager.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for zero parties; [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// let barrier = manager.barrier(1).unwrap();
    /// assert_eq!(barrier.wait().unwrap(), Ok(0));
    /// assert!(manager.barrier(0).is_err());
    /// ```
    /// Python counterpart: `manager.Barrier(parties)`.
    pub fn barrier(&self, parties: u32) -> Result<BarrierProxy> {
        Ok(BarrierProxy {
            address: self.address.clone(),
            id: self.new_object(Request::NewBarrier { parties })?,
            _types: PhantomData,
        })
    }
}

/// A recursive lock hosted by a [`Manager`].
///
/// ```
/// use multiproc::{Manager, Process, manager::RLockProxy};
/// fn nested(lock: RLockProxy) { lock.acquire().unwrap(); lock.acquire().unwrap(); lock.release().unwrap(); lock.release().unwrap(); }
/// let manager = Manager::start().unwrap();
/// let lock = manager.rlock().unwrap();
/// Process::spawn(nested, (lock.clone(),)).unwrap().join().unwrap();
/// assert!(lock.acquire_timeout(std::time::Duration::from_secs(5)).unwrap());
/// ```
/// Python counterpart: the proxy of `manager.RLock()`.
pub struct RLockProxy {
    address: Address,
    id: u64,
    _types: PhantomData<()>,
}

proxy_basics!(RLockProxy);

impl RLockProxy {
    /// Takes the lock (again, if this thread of this process holds it).
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// m.rlock().unwrap().acquire().unwrap();
    /// ```
    /// Python counterpart: `rlock.acquire()`.
    pub fn acquire(&self) -> Result<()> {
        self.acquire_inner(None).map(drop)
    }

    /// Takes the lock, waiting up to `timeout`; whether it was taken.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// assert!(m.rlock().unwrap().acquire_timeout(std::time::Duration::from_secs(1)).unwrap());
    /// ```
    /// Python counterpart: `rlock.acquire(timeout=t)`.
    pub fn acquire_timeout(&self, timeout: std::time::Duration) -> Result<bool> {
        self.acquire_inner(Some(timeout))
    }

    fn acquire_inner(&self, timeout: Option<std::time::Duration>) -> Result<bool> {
        match call(&self.address, &Request::RLockAcquire { id: self.id, timeout_ms: timeout_ms(timeout) })? {
            Reply::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    /// Releases one level.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if this thread of this process does not hold it;
    /// [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// assert!(m.rlock().unwrap().release().is_err());
    /// ```
    /// Python counterpart: `rlock.release()`.
    pub fn release(&self) -> Result<()> {
        match call(&self.address, &Request::RLockRelease { id: self.id })? {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

/// A barrier hosted by a [`Manager`]: [`wait`](Self::wait) returns `Ok(Ok(index))` when the
/// barrier passes, `Ok(Err(BrokenBarrier))` when it is broken.
///
/// ```
/// use multiproc::{Manager, Process, manager::BarrierProxy};
/// fn meet(b: BarrierProxy) -> u32 { b.wait().unwrap().unwrap() }
/// let manager = Manager::start().unwrap();
/// let barrier = manager.barrier(3).unwrap();
/// let mut ps: Vec<_> = (0..3).map(|_| Process::spawn(meet, (barrier.clone(),)).unwrap()).collect();
/// let mut indexes: Vec<u32> = ps.iter_mut().map(|p| p.join().unwrap()).collect();
/// indexes.sort();
/// assert_eq!(indexes, [0, 1, 2]);
/// ```
/// Python counterpart: the proxy of `manager.Barrier(parties)`.
pub struct BarrierProxy {
    address: Address,
    id: u64,
    _types: PhantomData<()>,
}

proxy_basics!(BarrierProxy);

impl BarrierProxy {
    /// Waits until every party has arrived.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] (the inner `Err` is a broken barrier).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let b = m.barrier(2).unwrap();
    /// b.abort().unwrap();
    /// assert_eq!(b.wait().unwrap(), Err(multiproc::sync::BrokenBarrier));
    /// ```
    /// Python counterpart: `barrier.wait()`.
    pub fn wait(&self) -> Result<std::result::Result<u32, crate::sync::BrokenBarrier>> {
        self.wait_inner(None)
    }

    /// Waits up to `timeout`; a timeout breaks the barrier for everyone (as in Python).
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let b = m.barrier(2).unwrap();
    /// assert!(b.wait_timeout(std::time::Duration::from_millis(10)).unwrap().is_err());
    /// ```
    /// Python counterpart: `barrier.wait(timeout)`.
    pub fn wait_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> Result<std::result::Result<u32, crate::sync::BrokenBarrier>> {
        self.wait_inner(Some(timeout))
    }

    fn wait_inner(
        &self,
        timeout: Option<std::time::Duration>,
    ) -> Result<std::result::Result<u32, crate::sync::BrokenBarrier>> {
        match call(&self.address, &Request::BarrierWait { id: self.id, timeout_ms: timeout_ms(timeout) })? {
            Reply::Len(index) => Ok(Ok(index as u32)),
            Reply::Bool(false) => Ok(Err(crate::sync::BrokenBarrier)),
            other => Err(unexpected(other)),
        }
    }

    /// Breaks the barrier: current and later waits fail until [`reset`](Self::reset).
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// m.barrier(2).unwrap().abort().unwrap();
    /// ```
    /// Python counterpart: `barrier.abort()`.
    pub fn abort(&self) -> Result<()> {
        match call(&self.address, &Request::BarrierAbort { id: self.id })? {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Starts over: current waiters fail, later waits work again.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let b = m.barrier(1).unwrap();
    /// b.abort().unwrap();
    /// b.reset().unwrap();
    /// assert_eq!(b.wait().unwrap(), Ok(0));
    /// ```
    /// Python counterpart: `barrier.reset()`.
    pub fn reset(&self) -> Result<()> {
        match call(&self.address, &Request::BarrierReset { id: self.id })? {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

impl Manager {
    /// A condition variable hosted by the manager, over a new hosted lock.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] if the server is gone.
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// let cond = manager.condition().unwrap();
    /// cond.acquire().unwrap();
    /// assert!(!cond.wait_timeout(std::time::Duration::from_millis(10)).unwrap());
    /// cond.release().unwrap();
    /// ```
    /// Python counterpart: `manager.Condition()`.
    pub fn condition(&self) -> Result<ConditionProxy> {
        let lock = self.lock()?;
        let id = self.new_object(Request::NewCondition { lock: lock.id })?;
        Ok(ConditionProxy { lock, id })
    }
}

/// A condition variable hosted by a [`Manager`]. A waiter that dies takes no notification away
/// from the live ones (the manager forgets it when its connection closes).
///
/// ```
/// use multiproc::{Manager, Process, manager::{ConditionProxy, DictProxy}};
/// fn ready(cond: ConditionProxy, state: DictProxy<String, bool>) {
///     cond.acquire().unwrap();
///     state.insert("ready".into(), true).unwrap();
///     cond.notify_all().unwrap();
///     cond.release().unwrap();
/// }
/// let manager = Manager::start().unwrap();
/// let (cond, state) = (manager.condition().unwrap(), manager.dict::<String, bool>().unwrap());
/// cond.acquire().unwrap();
/// let mut p = Process::spawn(ready, (cond.clone(), state.clone())).unwrap();
/// while state.get(&"ready".to_string()).unwrap() != Some(true) {
///     cond.wait().unwrap();
/// }
/// cond.release().unwrap();
/// p.join().unwrap();
/// ```
/// Python counterpart: the proxy of `manager.Condition()`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConditionProxy {
    lock: LockProxy,
    id: u64,
}

impl ConditionProxy {
    /// Takes the condition's lock.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let c = m.condition().unwrap();
    /// c.acquire().unwrap();
    /// c.release().unwrap();
    /// ```
    /// Python counterpart: `cond.acquire()`.
    pub fn acquire(&self) -> Result<()> {
        self.lock.acquire()
    }

    /// Releases the condition's lock.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if not held; [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// assert!(m.condition().unwrap().release().is_err());
    /// ```
    /// Python counterpart: `cond.release()`.
    pub fn release(&self) -> Result<()> {
        self.lock.release()
    }

    /// Releases the lock, waits for a notification, takes the lock back.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] without the lock; [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// assert!(m.condition().unwrap().wait().is_err()); // not holding the lock
    /// ```
    /// Python counterpart: `cond.wait()`.
    pub fn wait(&self) -> Result<()> {
        self.wait_inner(None).map(drop)
    }

    /// As [`wait`](Self::wait), for up to `timeout`; whether it was notified.
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let c = m.condition().unwrap();
    /// c.acquire().unwrap();
    /// assert!(!c.wait_timeout(std::time::Duration::from_millis(10)).unwrap());
    /// ```
    /// Python counterpart: `cond.wait(timeout)`.
    pub fn wait_timeout(&self, timeout: std::time::Duration) -> Result<bool> {
        self.wait_inner(Some(timeout))
    }

    fn wait_inner(&self, timeout: Option<std::time::Duration>) -> Result<bool> {
        match call(&self.lock.address, &Request::ConditionWait { id: self.id, timeout_ms: timeout_ms(timeout) })? {
            Reply::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    /// Wakes up to `n` waiters.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] without the lock; [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let c = m.condition().unwrap();
    /// c.acquire().unwrap();
    /// c.notify(1).unwrap();
    /// ```
    /// Python counterpart: `cond.notify(n)`.
    pub fn notify(&self, n: u32) -> Result<()> {
        match call(&self.lock.address, &Request::ConditionNotify { id: self.id, n })? {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Wakes every waiter.
    ///
    /// # Errors
    /// As [`notify`](Self::notify).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let c = m.condition().unwrap();
    /// c.acquire().unwrap();
    /// c.notify_all().unwrap();
    /// ```
    /// Python counterpart: `cond.notify_all()`.
    pub fn notify_all(&self) -> Result<()> {
        self.notify(u32::MAX)
    }
}
