//! The manager: a server process that holds shared objects, reached through typed proxies.
//!
//! [`Manager::start`] starts the server; [`Manager::dict`] makes a shared dict there and returns a
//! [`DictProxy`]. A proxy is a plain value — the server's address and the object's id — so it
//! can go in a process's arguments, in a queue, in a pool task, inside another managed object, or
//! to another program: each thread of each process connects on first use, proving it knows the
//! manager's key (HMAC-SHA256 challenge–response both ways); every frame after that is
//! encrypted and authenticated (AES-256-GCM under keys of that connection alone, numbered
//! against replay), so a server reached over TCP can be trusted across a network as far as its
//! key is secret. Every method is one round trip;
//! values travel encoded, and the server stores the bytes without decoding them.
//!
//! ```
//! use multiproc::{Manager, Process, manager::DictProxy};
//!
//! fn sell(tickets: DictProxy<String, i64>) {
//!     tickets.add(&"left".to_string(), -1).unwrap(); // atomic, in the server
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
//! # What a manager holds
//! - Containers: [`dict`](Manager::dict), [`list`](Manager::list),
//!   [`namespace`](Manager::namespace), [`value`](Manager::value). Reads give copies; like
//!   Python's, a container has no lock of its own, so a read followed by a write can lose another
//!   process's update. Beyond Python, [`DictProxy::add`], [`DictProxy::apply`],
//!   [`ListProxy::apply`] and [`ValueProxy::apply`] change an entry *in the server, under the
//!   object's own lock*: concurrent read-modify-write from many processes needs no Lock at all.
//! - Synchronization for processes that share nothing else: [`lock`](Manager::lock),
//!   [`rlock`](Manager::rlock), [`semaphore`](Manager::semaphore),
//!   [`bounded_semaphore`](Manager::bounded_semaphore), [`event`](Manager::event),
//!   [`condition`](Manager::condition), [`barrier`](Manager::barrier). A hosted lock belongs to
//!   the connection — the thread of a process — that took it: when that thread or process ends
//!   or is killed, the manager releases it, and tells the next holder
//!   ([`LockProxyGuard::owner_died`]).
//! - Queues: [`queue`](Manager::queue), [`queue_bounded`](Manager::queue_bounded),
//!   [`joinable_queue`](Manager::joinable_queue), with the same verbs and errors as
//!   [`Queue`](crate::Queue).
//! - Your own types ([`SharedObject`], [`Manager::object`]): typed requests in, typed responses
//!   out, handled one at a time under the object's lock (Python's `BaseManager.register`).
//!
//! A proxy stored inside a managed container stays a live reference: fetch it, change the object
//! it names, and everyone sees the change (Python's lost update on nested containers does not
//! exist here).
//!
//! # Other programs, other machines
//! [`Manager::serve`] listens on TCP (and [`Manager::serve_unix`] on a Unix socket path) with a
//! key you choose; another program reaches it with [`Manager::connect`] and nothing but the
//! address and the key. Programs that share nothing else meet through names:
//! [`register`](Manager::register) and [`lookup`](Manager::lookup) for any proxy, and
//! [`dict_named`](Manager::dict_named), [`list_named`](Manager::list_named),
//! [`queue_named`](Manager::queue_named), [`lock_named`](Manager::lock_named) and
//! [`event_named`](Manager::event_named) to get one, made if it is not there yet.
//!
//! # Keys, and who may run what
//! As in Python, the processes of one program share a secret
//! ([`CurrentProcess::authkey`](crate::CurrentProcess::authkey)): made at random in the main
//! process and inherited by every child. It is the key of every private manager
//! ([`Manager::start`]), and a served one accepts it from its owner's processes beside the key
//! it shares with other programs — but only with a proof that names the server's own address,
//! so that a stranger cannot pass it on from a process it lured to its own address. A proxy
//! carries a key only on its way to another process of the program (arguments, results, pool
//! tasks, pipe messages, queue items); stored in a manager or written anywhere else it carries
//! none — a key found in such data is ignored — and whoever reads it uses the key they know for
//! that manager, at the address *they* reach it by (proxies carry the manager's id).
//!
//! Decoding never runs code. The update functions of `apply` and the user types of
//! [`Manager::object`] are this program's code, named by their place in it: a manager accepts
//! them only from its owner's own processes (which prove the program's key and run its build).
//! Other programs get the built-in operations, [`DictProxy::add`], the objects they make or find
//! by name (object ids are unguessable), and new objects of the user types their owner
//! registered ([`ManagerBuilder::register`]).
//!
//! A wrong key is an [`ErrorKind::Authentication`] error for the client and costs the server
//! nothing; a malformed, truncated, oversized, changed or replayed frame ends that one
//! connection while the server
//! goes on serving everyone else, and a reply too large to send is an error for that call only.
//! Each connection has its own server thread, so a slow or blocked client never stalls the
//! others; a connection must finish its handshake within 20 s, and at most 256 may be at it at
//! once.
//!
//! # When things go away
//! Dropping the [`Manager`] that started a server stops it; every later call through its proxies,
//! and every call waiting in it, fails with [`ErrorKind::Disconnected`] (no hang). A client that
//! dies while it waits frees its server thread and takes nothing (what a reply would have handed
//! it — an item, a semaphore unit, a lock — stays or is given back); its locks are released, it
//! takes no notification from a condition's live waiters, and a barrier it waited at breaks for
//! the others instead of letting them through one short. TCP connections use keepalive probes,
//! so a peer whose machine vanished is noticed in about half a minute; connecting to one that
//! does not answer gives up after 20 s.
//!
//! # Differences from Python
//! - Objects live as long as the manager: a proxy is a plain value with no reference count, so
//!   nothing tells the server that the last one is gone. Make long-lived objects, not one per
//!   task.
//! - A hosted lock can only be released by the thread that holds it (Python's manager `Lock`
//!   may be released by anyone), which is what lets the manager release it when its holder dies.
//! - A barrier has no action and no default timeout.
//!
//! Python counterpart: `multiprocessing.managers` (`SyncManager`, `BaseManager`).

#![forbid(unsafe_code)]

use std::fmt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};
use crate::handle::Fd;
use crate::process::{Process, Signal, StartMethod};

mod dict;
pub(crate) mod hosted;
mod list;
mod namespace;
mod object;
pub(crate) mod protocol;
pub(crate) mod proxy;
mod queue;
mod server;
mod sync;

#[cfg(feature = "cluster")]
pub(crate) use dict::add_encoded;
pub use dict::{DictProxy, Number};
pub use list::ListProxy;
pub use namespace::{NamespaceProxy, ValueProxy};
pub use object::{ObjectProxy, SharedObject};
pub use proxy::Proxy;
pub use queue::{JoinableQueueProxy, QueueProxy};
pub use sync::{BarrierProxy, ConditionProxy, EventProxy, LockProxy, LockProxyGuard, RLockProxy, SemaphoreProxy};

use crate::wire::{self, Endpoint};
use protocol::{New, Reply, Request};
use proxy::{Address, call, unexpected};

/// A manager server, started here or reached from here; a server started through this handle
/// stops when it is dropped (clients then get [`ErrorKind::Disconnected`]).
///
/// ```
/// let manager = multiproc::Manager::start().unwrap();
/// let d = manager.dict::<u32, String>().unwrap();
/// d.insert(1, "one".into()).unwrap();
/// assert_eq!(d.len().unwrap(), 1);
/// drop(manager);
/// assert_eq!(d.len().unwrap_err().kind(), multiproc::ErrorKind::Disconnected);
/// ```
/// Python counterpart: `multiprocessing.Manager()` / `SyncManager`, `BaseManager`.
pub struct Manager {
    address: Address,
    /// The server process, if this handle started it (not for [`Manager::connect`]).
    server: Option<Process<()>>,
    /// The socket file of [`Manager::serve_unix`], removed with the server.
    socket_file: Option<PathBuf>,
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
    /// Starts a private manager server (with the default start method), under the key this
    /// process tree shares ([`CurrentProcess::authkey`](crate::CurrentProcess::authkey)) and no
    /// other program knows. Its socket (in the abstract namespace, which every user can see)
    /// serves only connections from this user, by the kernel's word (`SO_PEERCRED`).
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
        Manager::builder().start()
    }

    /// Starts a manager server listening on TCP address `address` (`"127.0.0.1:0"` picks a
    /// free port; see [`address`](Self::address)), for programs on this or other machines that
    /// know `authkey` (and this program's own processes). It stops when this handle is dropped.
    /// To let other programs make user types, register them first with [`Manager::builder`].
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
        Manager::builder().serve(address, authkey)
    }

    /// As [`serve`](Self::serve), on a Unix socket at `path` (for the processes of this machine
    /// that can reach the path); [`connect`](Self::connect) to it as `"unix:<path>"`. The socket
    /// file is removed when this handle is dropped.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if the path cannot be bound (it exists, the directory is missing);
    /// [`ErrorKind::InvalidInput`] for a relative or non-UTF-8 path.
    ///
    /// ```
    /// use multiproc::Manager;
    /// let path = std::env::temp_dir().join(format!("mp-manager-doc-{}", std::process::id()));
    /// let server = Manager::serve_unix(&path, b"secret").unwrap();
    /// assert_eq!(server.address(), format!("unix:{}", path.display()));
    /// let client = Manager::connect(&server.address(), b"secret").unwrap();
    /// client.dict_named::<u8, u8>("d").unwrap().insert(1, 2).unwrap();
    /// assert_eq!(server.dict_named::<u8, u8>("d").unwrap().get(&1).unwrap(), Some(2));
    /// ```
    /// Python counterpart: `BaseManager(address="/path/to/socket", authkey=...)`.
    pub fn serve_unix(path: impl AsRef<Path>, authkey: &[u8]) -> Result<Manager> {
        Manager::builder().serve_unix(path, authkey)
    }

    /// A manager another program serves at `address` (`host:port`, or `unix:/path` — or just an
    /// absolute `/path` — for a Unix socket). Nothing is checked until the first call, which
    /// fails with [`ErrorKind::Authentication`] for a wrong key. Dropping this handle leaves the
    /// server running.
    ///
    /// # Errors
    /// None yet; calls fail with [`ErrorKind::Disconnected`] if nobody answers at `address`, and
    /// with [`ErrorKind::InvalidInput`] if it is not an address.
    ///
    /// ```
    /// use multiproc::{ErrorKind, Manager};
    /// let server = Manager::serve("127.0.0.1:0", b"secret").unwrap();
    /// let wrong = Manager::connect(&server.address(), b"guess").unwrap();
    /// assert_eq!(wrong.dict::<u8, u8>().unwrap_err().kind(), ErrorKind::Authentication);
    /// ```
    /// Python counterpart: `BaseManager(address, authkey).connect()`.
    pub fn connect(address: &str, authkey: &[u8]) -> Result<Manager> {
        let address = Address { endpoint: Endpoint::parse(address), server: 0, authkey: wire::derive_key(authkey) };
        proxy::remember(0, &address.endpoint, address.authkey);
        Ok(Manager { address, server: None, socket_file: None })
    }

    /// A builder, to choose the start method of the server or register user types before it
    /// starts.
    ///
    /// ```
    /// let manager = multiproc::Manager::builder().start_method(multiproc::StartMethod::Spawn).start().unwrap();
    /// assert!(manager.dict::<u8, u8>().unwrap().is_empty().unwrap());
    /// ```
    /// Python counterpart: `get_context(method).Manager()`, and a `BaseManager` subclass with
    /// `register` calls.
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder { start_method: None, types: Vec::new() }
    }

    /// Where the server listens, in the form [`connect`](Self::connect) takes: `host:port` with
    /// the port the system chose, `unix:/path`, or (for [`start`](Self::start)) `unix:@name` in
    /// the abstract namespace.
    ///
    /// ```
    /// let server = multiproc::Manager::serve("127.0.0.1:0", b"k").unwrap();
    /// assert!(server.address().starts_with("127.0.0.1:"));
    /// ```
    /// Python counterpart: `manager.address`.
    pub fn address(&self) -> String {
        self.address.endpoint.to_string()
    }

    /// The server process's pid, if this handle started it (`None` for [`connect`](Self::connect)).
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// assert!(manager.pid().is_some_and(|pid| pid != std::process::id()));
    /// ```
    /// Python counterpart: `manager._process.pid`.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(Process::pid)
    }

    /// Registers `proxy`'s object under `name`, unless the name is taken; returns the proxy
    /// registered under `name` — `proxy` itself, or the one registered first. Any process that
    /// can reach the manager can then [`lookup`](Self::lookup) the object by its name.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if `name` is taken by another kind of object, or `proxy` is
    /// not an object of this manager; [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let first = m.semaphore(2).unwrap();
    /// let second = m.semaphore(5).unwrap();
    /// assert_eq!(m.register("slots", &first).unwrap().value().unwrap(), 2);
    /// assert_eq!(m.register("slots", &second).unwrap().value().unwrap(), 2, "the name was taken");
    /// ```
    /// Python counterpart: `BaseManager.register("get_slots", callable=lambda: slots)`.
    pub fn register<P: Proxy>(&self, name: &str, proxy: &P) -> Result<P> {
        let (address, id) = proxy.parts();
        if *address != self.address {
            return Err(Error::new(ErrorKind::InvalidInput, "the proxy is for an object of another manager"));
        }
        match call(&self.address, &Request::Register { name: name.to_owned(), id })? {
            Reply::Id(id) => Ok(P::from_parts(self.proxy_address(), id)),
            other => Err(unexpected(other)),
        }
    }

    /// The object registered under `name`, if any, through a proxy of type `P`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if the object under `name` is of another kind than `P` names;
    /// [`ErrorKind::Disconnected`]; [`ErrorKind::Authentication`].
    ///
    /// ```
    /// use multiproc::{Manager, manager::EventProxy};
    /// let m = Manager::start().unwrap();
    /// assert!(m.lookup::<EventProxy>("go").unwrap().is_none());
    /// m.register("go", &m.event().unwrap()).unwrap();
    /// m.lookup::<EventProxy>("go").unwrap().unwrap().set().unwrap();
    /// ```
    /// Python counterpart: `manager.get_slots()` after `BaseManager.register("get_slots")`.
    pub fn lookup<P: Proxy>(&self, name: &str) -> Result<Option<P>> {
        match call(&self.address, &Request::Lookup { name: name.to_owned(), kind: P::kind() })? {
            Reply::Id(id) => Ok(Some(P::from_parts(self.proxy_address(), id))),
            Reply::Missing => Ok(None),
            other => Err(unexpected(other)),
        }
    }

    /// Stops the server now, if this handle started it (dropping the handle does the same); a
    /// handle from [`connect`](Self::connect) only lets go, and the server runs on.
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// let d = manager.dict::<u8, u8>().unwrap();
    /// manager.shutdown();
    /// assert_eq!(d.len().unwrap_err().kind(), multiproc::ErrorKind::Disconnected);
    /// ```
    /// Python counterpart: `manager.shutdown()`.
    pub fn shutdown(self) {}

    /// Blocks while the server runs, for a program whose only job is to serve (other programs
    /// reach it through [`connect`](Self::connect)); returns once the server process has ended
    /// (killed, say), with how it ended. A handle from `connect` has no server to wait for and
    /// returns at once.
    ///
    /// ```no_run
    /// let server = multiproc::Manager::serve("0.0.0.0:50000", b"secret").unwrap();
    /// server.serve_forever();
    /// ```
    /// Python counterpart: `manager.get_server().serve_forever()`.
    pub fn serve_forever(mut self) -> Option<crate::ExitStatus> {
        let mut server = self.server.take()?;
        let _ = server.join();
        proxy::forget_manager(&self.address.endpoint);
        server.exit_code()
    }

    /// What proxies made through this handle hold: its address, with the server's id once a
    /// call has learned it (a handle from `connect` does not know it before).
    fn proxy_address(&self) -> Address {
        let mut address = self.address.clone();
        if address.server == 0 {
            address.server = proxy::server_of(&address.endpoint, &address.authkey);
        }
        address
    }

    /// A new object in the server.
    fn new_object<P: Proxy>(&self, new: New) -> Result<P> {
        match call(&self.address, &Request::New { new, kind: P::kind() })? {
            Reply::Id(id) => Ok(P::from_parts(self.proxy_address(), id)),
            other => Err(unexpected(other)),
        }
    }

    /// The object registered under `name`, made as `new` if there is none yet.
    fn named<P: Proxy>(&self, name: &str, new: New) -> Result<P> {
        match call(&self.address, &Request::Named { name: name.to_owned(), new, kind: P::kind() })? {
            Reply::Id(id) => Ok(P::from_parts(self.proxy_address(), id)),
            other => Err(unexpected(other)),
        }
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if let Some(server) = &mut self.server {
            // Everything the server holds lives in its memory: there is nothing to save first.
            let _ = server.signal(Signal::KILL);
            let _ = server.join();
            // Each thread that used it holds a connection to it: close them.
            proxy::forget_manager(&self.address.endpoint);
        }
        if let Some(path) = &self.socket_file {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Options for a manager server: its start method and the user types it hosts.
///
/// ```
/// use multiproc::{Manager, StartMethod};
/// let manager = Manager::builder().start_method(StartMethod::Fork).start().unwrap();
/// # drop(manager);
/// ```
/// Python counterpart: `get_context(method).Manager()`; a `BaseManager` subclass.
pub struct ManagerBuilder {
    start_method: Option<StartMethod>,
    types: Vec<i64>,
}

impl fmt::Debug for ManagerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagerBuilder")
            .field("start_method", &self.start_method)
            .field("types", &self.types.len())
            .finish()
    }
}

impl ManagerBuilder {
    /// Starts the server process with `method` (the process-wide default otherwise).
    ///
    /// ```
    /// let m = multiproc::Manager::builder().start_method(multiproc::StartMethod::Spawn).start().unwrap();
    /// # drop(m);
    /// ```
    /// Python counterpart: `get_context(method).Manager()`.
    pub fn start_method(mut self, method: StartMethod) -> ManagerBuilder {
        self.start_method = Some(method);
        self
    }

    /// Lets other programs of this build make user type `T` ([`Manager::object`]) in a served
    /// manager. (This program's own processes may make any user type without it.)
    ///
    /// ```
    /// use multiproc::manager::SharedObject;
    /// #[derive(Default)]
    /// struct Counter(u64);
    /// impl SharedObject for Counter {
    ///     type Request = u64;
    ///     type Response = u64;
    ///     fn handle(&mut self, n: u64) -> u64 { self.0 += n; self.0 }
    /// }
    /// let server = multiproc::Manager::builder().register::<Counter>().serve("127.0.0.1:0", b"k").unwrap();
    /// let client = multiproc::Manager::connect(&server.address(), b"k").unwrap();
    /// assert_eq!(client.object::<Counter>().unwrap().call(5).unwrap(), 5);
    /// ```
    /// Python counterpart: `BaseManager.register(typeid, callable)`.
    pub fn register<T: SharedObject>(mut self) -> ManagerBuilder {
        self.types.push(hosted::new_object_offset::<T>());
        self
    }

    /// Starts a private manager (see [`Manager::start`]), under this process tree's key
    /// ([`CurrentProcess::authkey`](crate::CurrentProcess::authkey)).
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if the socket or the process cannot be made.
    ///
    /// ```
    /// let m = multiproc::Manager::builder().start().unwrap();
    /// # drop(m);
    /// ```
    /// Python counterpart: `manager.start()`.
    pub fn start(self) -> Result<Manager> {
        let suffix = u64::from_le_bytes(
            wire::random_bytes().map_err(|e| Error::os("reading random bytes", e))?[..8].try_into().expect("8 bytes"),
        );
        let name = format!("multiproc-manager-{}-{suffix:016x}", std::process::id());
        let addr =
            crate::sys::socket::abstract_address(name.as_bytes()).map_err(|e| Error::os("manager address", e))?;
        let listener = UnixListener::bind_addr(&addr).map_err(|e| Error::os("binding the manager's socket", e))?;
        self.launch(Fd::from(listener), false, Endpoint::Abstract(name), None, None)
    }

    /// Starts a manager served on TCP (see [`Manager::serve`]).
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if the address cannot be bound.
    ///
    /// ```
    /// let m = multiproc::Manager::builder().serve("127.0.0.1:0", b"k").unwrap();
    /// # drop(m);
    /// ```
    /// Python counterpart: `BaseManager(address, authkey).start()`.
    pub fn serve(self, address: impl std::net::ToSocketAddrs, authkey: &[u8]) -> Result<Manager> {
        let listener =
            std::net::TcpListener::bind(address).map_err(|e| Error::os("binding the manager's address", e))?;
        let bound = listener.local_addr().map_err(|e| Error::os("the manager's address", e))?.to_string();
        self.launch(Fd::from(listener), true, Endpoint::Tcp(bound), Some(wire::derive_key(authkey)), None)
    }

    /// Starts a manager served on a Unix socket at `path` (see [`Manager::serve_unix`]).
    ///
    /// # Errors
    /// As [`Manager::serve_unix`].
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("mp-builder-doc-{}", std::process::id()));
    /// let m = multiproc::Manager::builder().serve_unix(&path, b"k").unwrap();
    /// # drop(m);
    /// ```
    /// Python counterpart: `BaseManager(address="/path", authkey).start()`.
    pub fn serve_unix(self, path: impl AsRef<Path>, authkey: &[u8]) -> Result<Manager> {
        let path = path.as_ref();
        let name = path.to_str().filter(|p| p.starts_with('/')).ok_or_else(|| {
            Error::new(ErrorKind::InvalidInput, format!("{} is not an absolute UTF-8 path", path.display()))
        })?;
        let listener = UnixListener::bind(path).map_err(|e| Error::os("binding the manager's socket", e))?;
        let endpoint = Endpoint::Unix(name.to_owned());
        self.launch(Fd::from(listener), false, endpoint, Some(wire::derive_key(authkey)), Some(path.to_owned()))
    }

    /// Starts the server process on `listener`. This handle, and every proxy it makes, uses the
    /// tree's key (the server trusts its owner's processes); other programs use `shared_key`.
    fn launch(
        self,
        listener: Fd,
        tcp: bool,
        endpoint: Endpoint,
        shared_key: Option<wire::AuthKey>,
        socket_file: Option<PathBuf>,
    ) -> Result<Manager> {
        let remove_file = || {
            if let Some(path) = &socket_file {
                let _ = std::fs::remove_file(path);
            }
        };
        let authkey = match crate::process::identity::hold().authkey() {
            Ok(key) => key,
            Err(e) => {
                remove_file();
                return Err(Error::os("reading random bytes", e));
            }
        };
        let server_id = match wire::random_bytes() {
            Ok(bytes) => u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) | 1,
            Err(e) => {
                remove_file();
                return Err(Error::os("reading random bytes", e));
            }
        };
        let setup = server::Setup { listener, tcp, shared_key, endpoint: endpoint.to_string(), server_id };
        let mut builder = Process::builder().name("manager").daemon(true);
        if let Some(method) = self.start_method {
            builder = builder.start_method(method);
        }
        let server = match builder.spawn(server::serve, (setup,)) {
            Ok(server) => server,
            Err(e) => {
                remove_file();
                return Err(e);
            }
        };
        let address = Address { endpoint, server: server_id, authkey };
        proxy::remember(server_id, &address.endpoint, address.authkey);
        let manager = Manager { address, server: Some(server), socket_file };
        for &entry in &self.types {
            proxy::call_done(&manager.address, &Request::AllowType { entry })?;
        }
        Ok(manager)
    }
}
