//! What every proxy shares: the manager's address and key, this thread's connection to it, and
//! the request–reply round trip.
//!
//! A proxy is a plain value — an [`Address`] and an object id — so it can be cloned, put in a
//! process's arguments, in a queue, in a pool task, inside another managed object, or sent to
//! another machine. It connects on first use: one connection per thread and manager, opened
//! lazily and kept in a thread-local, so that a blocking call (a queue's `get`) holds up only
//! its own thread, and a hosted lock — which belongs to the connection that took it — belongs to
//! one thread. A thread's connections close when the thread ends, and the manager then releases
//! the locks that thread held.
//!
//! A proxy carries its manager's key only on its way to another process of this program's tree
//! (task arguments and results, pool tasks, pipe messages, queue items), as Python's proxies do.
//! Serialized anywhere else — into a managed container, a file — it carries none (and a key found
//! in such data is not believed), and the process that reads it uses what it knows of that
//! manager: by the manager's id, which every proxy carries, the address and key it reaches it
//! with; else the key it knows for the proxy's address; else its tree's key
//! ([`CurrentProcess::authkey`](crate::CurrentProcess::authkey)), which is every private
//! manager's. A spawned child starts knowing what its parent knew. So a proxy that is stored or
//! shown somewhere never gives its key away, and one stored by a program on another machine
//! (which knows the manager as `0.0.0.0:5000`, say) still works where it is read.

use std::cell::RefCell;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::error::{Error, ErrorKind, Result};
use crate::manager::protocol::{self, Reply, Request};
use crate::process::hooks;
use crate::sys;
use crate::wire::{self, AuthKey, Endpoint, Refused, Socket};

/// Where a manager listens and the key it expects: what a proxy holds. (`pub` only so that the
/// sealed trait may name it; this module is private.)
#[derive(Clone)]
pub struct Address {
    /// Where this process dials the manager.
    pub(crate) endpoint: Endpoint,
    /// The manager's id (0 while unknown), which a proxy stored in it carries back out, so that
    /// another program finds the manager at the address *it* dials.
    pub(crate) server: u64,
    pub(crate) authkey: AuthKey,
}

/// Two addresses are the same when they dial the same place with the same key: one connection.
impl PartialEq for Address {
    fn eq(&self, other: &Address) -> bool {
        self.endpoint == other.endpoint && self.authkey == other.authkey
    }
}

impl Eq for Address {}

impl Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let key = crate::handle::to_our_processes().then_some(&self.authkey);
        (&self.endpoint, self.server, key).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Address, D::Error> {
        let (endpoint, server, key) = <(Endpoint, u64, Option<AuthKey>)>::deserialize(deserializer)?;
        match key {
            // A key is believed only from another process of this tree: one that came with data
            // from elsewhere is ignored, and cannot displace the key this process knows.
            Some(key) if crate::handle::from_our_processes() => {
                remember(server, &endpoint, key);
                Ok(Address { endpoint, server, authkey: key })
            }
            _ => Ok(resolve(endpoint, server)),
        }
    }
}

/// A manager this process knows how to reach.
#[derive(Clone, Serialize, Deserialize)]
struct Known {
    /// 0 until this process has spoken with it.
    server: u64,
    endpoint: Endpoint,
    key: AuthKey,
}

/// Remembers that the manager at `endpoint` takes `key` (and is `server`, if that is known).
pub(crate) fn remember(server: u64, endpoint: &Endpoint, key: AuthKey) {
    let mut state = client_state();
    if server == 0 && state.keys.iter().any(|k| k.endpoint == *endpoint && k.key == key) {
        return; // known already, perhaps with its id
    }
    state.keys.retain(|k| !(k.endpoint == *endpoint && k.key == key) && (server == 0 || k.server != server));
    state.keys.push(Known { server, endpoint: endpoint.clone(), key });
}

/// The manager's id, if this process has spoken with the one at `endpoint` under `key`.
pub(crate) fn server_of(endpoint: &Endpoint, key: &AuthKey) -> u64 {
    client_state().keys.iter().find(|k| k.endpoint == *endpoint && k.key == *key).map_or(0, |k| k.server)
}

/// Where and how this process reaches the manager a proxy without a key names: the way it
/// reaches that server (by id) if it has spoken with it, else the key it knows for the
/// endpoint, else its tree's key (a private manager's).
fn resolve(endpoint: Endpoint, server: u64) -> Address {
    let state = client_state();
    if let Some(k) = state.keys.iter().find(|k| server != 0 && k.server == server) {
        return Address { endpoint: k.endpoint.clone(), server, authkey: k.key };
    }
    if let Some(k) = state.keys.iter().find(|k| k.endpoint == endpoint) {
        return Address { endpoint, server, authkey: k.key };
    }
    drop(state);
    // Without random bytes there is no tree key, and no private manager: any key fails alike.
    let authkey = crate::process::identity::hold().authkey().unwrap_or_default();
    Address { endpoint, server, authkey }
}

/// What a spawned child should know of the managers this process reaches (a forked one has it
/// already): the keys and ids, encoded.
fn export_known() -> Vec<u8> {
    postcard::to_stdvec(&client_state().keys).unwrap_or_default()
}

/// In a new child: what its parent knew (see [`export_known`]).
fn import_known(bytes: &[u8]) {
    if let Ok(keys) = postcard::from_bytes::<Vec<Known>>(bytes) {
        // Called while `client_state` sets up, before its lock is taken.
        CLIENT.lock().unwrap_or_else(|p| p.into_inner()).keys = keys;
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        write!(f, "{}", self.endpoint)
    }
}

/// A handle on an object that lives in a [`Manager`](crate::Manager): every proxy type of this
/// module is one. Proxies are plain values (clone them, send them anywhere); the traits a
/// proxy needs for [`Manager::register`](crate::Manager::register) and
/// [`Manager::lookup`](crate::Manager::lookup) are sealed.
///
/// ```
/// fn register_any<P: multiproc::manager::Proxy>(m: &multiproc::Manager, name: &str, p: &P) {
///     m.register(name, p).unwrap();
/// }
/// let m = multiproc::Manager::start().unwrap();
/// register_any(&m, "log", &m.list::<String>().unwrap());
/// ```
/// Python counterpart: `multiprocessing.managers.BaseProxy`.
pub trait Proxy: Clone + fmt::Debug + Serialize + DeserializeOwned + sealed::Sealed {}

pub(crate) mod sealed {
    use super::Address;
    use crate::manager::protocol::Kind;

    /// What the manager needs of a proxy type, and what keeps [`Proxy`](super::Proxy) closed.
    pub trait Sealed {
        /// The kind of object this proxy type refers to.
        fn kind() -> Kind;
        /// The manager and the object id.
        fn parts(&self) -> (&Address, u64);
        /// A proxy for object `id` of the manager at `address`.
        fn from_parts(address: Address, id: u64) -> Self;
    }
}

/// Defines a proxy type: a struct of the manager's address, the object's id and its type
/// parameters, with the plain-value plumbing (clone, debug, serde as address and id) and the
/// sealed [`Proxy`] trait.
macro_rules! proxy_type {
    ($(#[$meta:meta])* $name:ident<$($t:ident),*> = $kind:expr, $phantom:ty) => {
        $(#[$meta])*
        pub struct $name<$($t),*> {
            address: $crate::manager::proxy::Address,
            id: u64,
            _types: std::marker::PhantomData<$phantom>,
        }

        impl<$($t),*> $name<$($t),*> {
            #[allow(dead_code)]
            fn new(address: &$crate::manager::proxy::Address, id: u64) -> Self {
                $name { address: address.clone(), id, _types: std::marker::PhantomData }
            }
        }

        impl<$($t),*> Clone for $name<$($t),*> {
            fn clone(&self) -> Self {
                $name { address: self.address.clone(), id: self.id, _types: std::marker::PhantomData }
            }
        }

        impl<$($t),*> std::fmt::Debug for $name<$($t),*> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name)).field("manager", &self.address).field("id", &self.id).finish()
            }
        }

        impl<$($t),*> serde::Serialize for $name<$($t),*> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
                (&self.address, self.id).serialize(serializer)
            }
        }

        impl<'de, $($t),*> serde::Deserialize<'de> for $name<$($t),*> {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
                let (address, id) = <($crate::manager::proxy::Address, u64)>::deserialize(deserializer)?;
                Ok($name { address, id, _types: std::marker::PhantomData })
            }
        }

        impl<$($t),*> $crate::manager::proxy::sealed::Sealed for $name<$($t),*> {
            fn kind() -> $crate::manager::protocol::Kind {
                $kind
            }
            fn parts(&self) -> (&$crate::manager::proxy::Address, u64) {
                (&self.address, self.id)
            }
            fn from_parts(address: $crate::manager::proxy::Address, id: u64) -> Self {
                $name { address, id, _types: std::marker::PhantomData }
            }
        }

        impl<$($t),*> $crate::manager::proxy::Proxy for $name<$($t),*> {}
    };
}
pub(crate) use proxy_type;

/// One authenticated connection of this thread to a manager.
struct Connection {
    /// The process that opened it: a forked child inherits a copy of its parent's thread-local
    /// connections, which it must never use (nor close: see [`Drop`]).
    pid: u32,
    address: Address,
    socket: Option<Socket>,
    frames: wire::FrameReader,
    /// Sealing and opening the frames after the handshake.
    session: wire::Session,
}

impl Connection {
    fn open(address: &Address) -> Result<Connection> {
        let socket = address.endpoint.connect().map_err(|e| address.endpoint.connect_error(e))?;
        // Listed at once: a fork from another thread from here on closes its copy.
        client_state().open.push(socket.as_fd().as_raw_fd());
        let session = match Connection::handshake(&socket, address) {
            Ok(session) => session,
            Err(err) => {
                close_listed(socket);
                return Err(err);
            }
        };
        Ok(Connection {
            pid: sys::process::cached_pid(),
            address: address.clone(),
            socket: Some(socket),
            frames: wire::FrameReader::new(),
            session,
        })
    }

    fn handshake(socket: &Socket, address: &Address) -> Result<wire::Session> {
        let deadline = std::time::Instant::now() + wire::HANDSHAKE;
        let named = address.endpoint.to_string();
        match wire::connect(socket, &address.authkey, &named, sys::build_id::fingerprint(), deadline) {
            Ok((server, session)) => {
                remember(server, &address.endpoint, address.authkey);
                Ok(session)
            }
            Err(Refused::Authentication) => Err(Error::new(
                ErrorKind::Authentication,
                format!("the manager at {} did not accept our authkey", address.endpoint),
            )),
            Err(Refused::Protocol(why)) => Err(Error::new(ErrorKind::Protocol, why)),
            Err(Refused::Io(e)) => Err(disconnected(&address.endpoint, e)),
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let socket = self.socket.take().expect("a connection has its socket until dropped");
        if self.pid != sys::process::cached_pid() {
            // A copy inherited over fork: the fork closed its descriptor in this process (see
            // `close_after_fork`), and the number may belong to another file by now.
            std::mem::forget(socket);
            return;
        }
        close_listed(socket);
    }
}

/// Closes a socket of this process's list of open manager connections, and takes it off.
fn close_listed(socket: Socket) {
    // Closed while the list is held, so that a fork sees it either listed or closed.
    let mut state = client_state();
    let fd = socket.as_fd().as_raw_fd();
    state.open.retain(|&open| open != fd);
    drop(socket);
}

thread_local! {
    /// This thread's connections, one per manager.
    static CONNECTIONS: RefCell<Vec<Connection>> = const { RefCell::new(Vec::new()) };
}

/// Bumped whenever a manager this process started is dropped (see [`forget_manager`]).
static DROPS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The value of [`DROPS`] this thread's connections were last checked against.
    static DROPS_SEEN: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many dropped managers are remembered for threads that have not looked yet.
const DROPPED_KEPT: usize = 4096;

/// A manager this process started is going away: closes this thread's connection to it now, and
/// has every other thread close its own on its next call to any manager.
pub(crate) fn forget_manager(endpoint: &Endpoint) {
    let closed: Vec<Connection> = CONNECTIONS.with_borrow_mut(|all| {
        let (gone, kept) = std::mem::take(all).into_iter().partition(|c| c.address.endpoint == *endpoint);
        *all = kept;
        gone
    });
    drop(closed);
    let mut state = client_state();
    if state.dropped.len() == DROPPED_KEPT {
        state.dropped.pop_front();
    }
    state.dropped.push_back(endpoint.clone());
    DROPS.fetch_add(1, Ordering::SeqCst);
}

/// Closes this thread's connections to managers dropped since it last looked (cheap when none
/// was: one load).
fn close_dropped() {
    let drops = DROPS.load(Ordering::SeqCst);
    if DROPS_SEEN.get() == drops {
        return;
    }
    DROPS_SEEN.set(drops);
    let dropped = client_state().dropped.clone();
    let closed: Vec<Connection> = CONNECTIONS.with_borrow_mut(|all| {
        let (gone, kept) = std::mem::take(all).into_iter().partition(|c| dropped.contains(&c.address.endpoint));
        *all = kept;
        gone
    });
    // Dropped outside the borrow: a Connection's drop takes the client state lock.
    drop(closed);
}

/// What this process knows as a manager client, across its threads.
pub(crate) struct ClientState {
    /// Managers this process started and has dropped since (most recent last).
    dropped: std::collections::VecDeque<Endpoint>,
    /// The descriptors of every manager connection open in this process, so that a child forked
    /// from it can close its copies: a copy left open would keep the manager from noticing that
    /// this process died (and releasing its locks) for as long as the child lives.
    open: Vec<RawFd>,
    /// The managers this process was given keys for, or has spoken with (see the module docs).
    keys: Vec<Known>,
}

static CLIENT: Mutex<ClientState> =
    Mutex::new(ClientState { dropped: std::collections::VecDeque::new(), open: Vec::new(), keys: Vec::new() });

fn client_state() -> MutexGuard<'static, ClientState> {
    // The first time this process acts as a manager client: tell `process` what to do for the
    // children it starts from now on, and take what the parent knew.
    static HOOKS: std::sync::Once = std::sync::Once::new();
    HOOKS.call_once(|| {
        hooks::at_fork("manager connections", hold_connections, close_after_fork);
        hooks::export("manager keys", export_known);
        if let Some(bytes) = hooks::take_import("manager keys") {
            import_known(&bytes);
        }
    });
    CLIENT.lock().unwrap_or_else(|p| p.into_inner())
}

/// Held across a fork by the forking thread, so that no other thread is changing the state when
/// the child's copy is made.
fn hold_connections() -> hooks::Held {
    Box::new(client_state())
}

/// In a forked child: closes the copies of the parent's manager connections (they would keep
/// the manager from seeing the parent die, and releasing its locks, while this child lives).
fn close_after_fork(held: hooks::Held) {
    if let Ok(mut state) = held.downcast::<MutexGuard<'static, ClientState>>() {
        for fd in state.open.drain(..) {
            sys::process::close_inherited(fd);
        }
    }
}

pub(crate) fn disconnected(endpoint: &Endpoint, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::with_source(ErrorKind::Disconnected, format!("the manager at {endpoint} is gone"), e)
}

/// Sends `request` to the manager at `address` over this thread's connection (opened on first
/// use) and returns its reply. A refusal is [`ErrorKind::InvalidInput`] with the server's reason.
pub(crate) fn call(address: &Address, request: &Request) -> Result<Reply> {
    close_dropped();
    let me = sys::process::cached_pid();
    let connection = CONNECTIONS.with_borrow_mut(|all| {
        // Out of the list while in use: nothing else on this thread can use it meanwhile.
        let at = all.iter().position(|c| c.pid == me && c.address == *address)?;
        Some(all.swap_remove(at))
    });
    let mut connection = match connection {
        Some(c) => c,
        None => Connection::open(address)?,
    };
    let socket = connection.socket.as_ref().expect("a connection has its socket until dropped");
    let wire::Session { sealer, opener } = &mut connection.session;
    let reply = sealer.send(socket, request).and_then(|()| connection.frames.receive::<Reply>(socket, opener));
    match reply {
        Ok(reply) => {
            CONNECTIONS.with_borrow_mut(|all| all.push(connection));
            match reply {
                Reply::Refused(why) => Err(Error::new(ErrorKind::InvalidInput, why)),
                reply => Ok(reply),
            }
        }
        // Too big to send: nothing was sent, the connection is fine.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            CONNECTIONS.with_borrow_mut(|all| all.push(connection));
            Err(Error::with_source(ErrorKind::InvalidInput, "a request too large for the manager", e))
        }
        // A reply that does not decode: the server speaks another language; the connection goes.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            Err(Error::with_source(ErrorKind::Decode, "a reply from the manager that does not decode", e))
        }
        // The connection is dropped: a later call opens a new one, or reports the same clearly.
        Err(e) => Err(disconnected(&address.endpoint, e)),
    }
}

pub(crate) fn unexpected(reply: Reply) -> Error {
    Error::new(ErrorKind::Decode, format!("unexpected reply from the manager: {reply:?}"))
}

/// Calls and expects [`Reply::Done`].
pub(crate) fn call_done(address: &Address, request: &Request) -> Result<()> {
    match call(address, request)? {
        Reply::Done => Ok(()),
        other => Err(unexpected(other)),
    }
}

/// Calls and expects [`Reply::Bool`].
pub(crate) fn call_bool(address: &Address, request: &Request) -> Result<bool> {
    match call(address, request)? {
        Reply::Bool(b) => Ok(b),
        other => Err(unexpected(other)),
    }
}

/// Calls and expects [`Reply::Done`] (`true`) or [`Reply::TimedOut`] (`false`).
pub(crate) fn call_waited(address: &Address, request: &Request) -> Result<bool> {
    match call(address, request)? {
        Reply::Done => Ok(true),
        Reply::TimedOut => Ok(false),
        other => Err(unexpected(other)),
    }
}

pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<ByteBuf> {
    postcard::to_stdvec(value)
        .map(ByteBuf::from)
        .map_err(|e| Error::new(ErrorKind::Encode, crate::codec::encode_failure(value, &e)))
}

/// Decodes a value the server kept, which must be a whole `T`.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    crate::handle::decode_exact(bytes).map_err(|e| {
        Error::new(
            ErrorKind::Decode,
            format!("a stored value is not a {}", crate::codec::decode_failure::<T>(bytes, &e)),
        )
    })
}

/// A timeout for the wire: whole milliseconds, rounded up so that a wait is never shorter.
pub(crate) fn wait_ms(timeout: std::time::Duration) -> protocol::Wait {
    Some(u64::try_from(timeout.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX))
}
