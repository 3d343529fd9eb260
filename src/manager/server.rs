//! The manager server: a process that holds the shared objects and answers clients, one thread
//! per connection, so that a slow or blocked client never stalls the others.
//!
//! Values are stored as their encoded bytes: the server never decodes a client's data (it cannot
//! be made to run code by what it receives), except numbers for `DictOp::Add`, requests for a
//! hosted user type (decoded by that type's own serde code), and — only from clients of its own
//! process tree ([`TreeClient`]) — the update functions and constructors that clients name by
//! their offset in the program. A served manager also accepts the key it shares with other
//! programs; their clients get the built-in operations and the user types the tree allowed.
//!
//! Every object is a [`Slot`]: its kind (fixed at birth), its state under a mutex, and a condvar
//! that waiters sleep on. A waiting request looks, on every wake-up and at least every [`CHECK`],
//! whether its client is still there: a client killed while it waits frees its thread and takes
//! nothing it would never use, and what a reply hands over (an item, a unit, a lock) is given
//! back if the reply cannot be sent. When a connection closes — or its thread panics — the locks
//! it held are released (and marked abandoned for the next holder), and the condition it waited
//! on forgets it, passing on a notification it had been picked for.

use std::cell::RefCell;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

use indexmap::IndexMap;
use std::net::TcpListener;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::entry::TreeClient;
use crate::handle::Fd;
use crate::manager::hosted::{self, ApplyEntry, CustomObject, NewObject};
use crate::manager::protocol::{
    BarrierOp, ConditionOp, DictOp, EventOp, Kind, ListOp, LockOp, New, Number, QueueOp, Reply, Request, SemaphoreOp,
    Wait,
};
use crate::process::task;
use crate::sys;
use crate::wire::gate::{self, Gate, Pass, Peer};
use crate::wire::{self, AuthKey, Socket};

/// What the server starts with (its process's arguments).
#[derive(Serialize, Deserialize)]
pub(crate) struct Setup {
    pub(crate) listener: Fd,
    /// Whether `listener` is a TCP socket (else a Unix one).
    pub(crate) tcp: bool,
    /// The key shared with other programs (a served manager); the tree's own key is always
    /// accepted, and is the only one a private manager accepts.
    pub(crate) shared_key: Option<AuthKey>,
    /// The address the owner's processes dial, as text: what a proof with the tree's key must
    /// name (see `wire`).
    pub(crate) endpoint: String,
    /// This server's id, told to every client (so that proxies stored here find their way).
    pub(crate) server_id: u64,
}

/// How often a waiting request looks whether its client is still there.
const CHECK: Duration = Duration::from_millis(100);

/// The reply to a request whose client went away while it waited (nobody reads it).
const GONE: &str = "the client is gone";

/// One shared object.
struct Slot {
    kind: Kind,
    state: Mutex<State>,
    changed: Condvar,
}

/// What an object holds. A `Namespace` or a `Value` is a `Dict`; a `Condition` refers to the
/// slot of its lock.
enum State {
    /// In insertion order, as Python's dicts are (so `items` and `popitem` follow it).
    Dict(IndexMap<Vec<u8>, Vec<u8>>),
    List(Vec<Vec<u8>>),
    Queue(QueueState),
    Lock(LockState),
    Semaphore {
        value: u32,
        bound: Option<u32>,
    },
    Event(bool),
    Condition(ConditionState),
    Barrier(BarrierState),
    Object(Box<dyn CustomObject>),
}

struct QueueState {
    items: VecDeque<Vec<u8>>,
    maxsize: Option<u64>,
    /// For a joinable queue: items put and not yet marked done.
    unfinished: Option<u64>,
}

impl QueueState {
    fn is_full(&self) -> bool {
        self.maxsize.is_some_and(|max| self.items.len() as u64 >= max)
    }
}

struct LockState {
    /// The connection holding it and how many times (once, unless reentrant).
    holder: Option<(u64, u32)>,
    reentrant: bool,
    /// Whether the last holder's connection closed while holding it; told to the next holder.
    abandoned: bool,
}

struct ConditionState {
    lock: Arc<Slot>,
    /// Connections waiting, in order of arrival, and those picked by a notify.
    waiting: Vec<u64>,
    notified: Vec<u64>,
}

struct BarrierState {
    parties: u32,
    count: u32,
    generation: u64,
    broken: bool,
    /// Generations that ended broken, with how many of their waiters have yet to learn it: a
    /// waiter that wakes to a later generation passed unless its own is here.
    broken_generations: HashMap<u64, u32>,
}

impl BarrierState {
    /// Ends the current generation broken: its waiters — but `leaving` of them, who learn it
    /// from the caller — will fail. After `broken` (an abort, a timeout, a party gone) later
    /// waits fail too until a reset; after `!broken` (a reset) they start afresh.
    fn break_generation(&mut self, broken: bool, leaving: u32) {
        let waiters = self.count.saturating_sub(leaving);
        if waiters > 0 {
            self.broken_generations.insert(self.generation, waiters);
        }
        self.count = 0;
        self.generation += 1;
        self.broken = broken;
    }

    /// How generation `mine` ended, for one of its waiters: whether it broke.
    fn ended_broken(&mut self, mine: u64) -> bool {
        let Some(left) = self.broken_generations.get_mut(&mine) else { return false };
        *left -= 1;
        if *left == 0 {
            self.broken_generations.remove(&mine);
        }
        true
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking request thread leaves the object as it was when it panicked; others go on.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// The kind of a slot's state never changes, and every request checks the slot's kind before it
// looks inside, so these never fail.
fn as_queue(state: &mut State) -> &mut QueueState {
    match state {
        State::Queue(q) => q,
        _ => unreachable!("checked by kind"),
    }
}

fn as_lock(state: &mut State) -> &mut LockState {
    match state {
        State::Lock(l) => l,
        _ => unreachable!("checked by kind"),
    }
}

fn as_condition(state: &mut State) -> &mut ConditionState {
    match state {
        State::Condition(c) => c,
        _ => unreachable!("checked by kind"),
    }
}

fn as_barrier(state: &mut State) -> &mut BarrierState {
    match state {
        State::Barrier(b) => b,
        _ => unreachable!("checked by kind"),
    }
}

/// Everything the server holds.
struct Server {
    /// The key of the process tree that started the server.
    tree_key: AuthKey,
    shared_key: Option<AuthKey>,
    endpoint: String,
    server_id: u64,
    /// Makes object ids from a counter: unguessable, so that another program reaches only the
    /// objects it made or found by name.
    ids: std::collections::hash_map::RandomState,
    /// User types clients of this build may make, though not of the tree (by constructor offset).
    allowed: Mutex<HashMap<i64, NewObject>>,
    next_id: AtomicU64,
    objects: Mutex<HashMap<u64, Arc<Slot>>>,
    /// Objects registered under a name, for clients that know only the name.
    names: Mutex<HashMap<String, u64>>,
    next_connection: AtomicU64,
    /// Connections in their handshake (see `gate`: a flood of silent ones costs a bounded number
    /// of threads and locks nobody out).
    gate: Arc<Gate>,
    /// A copy of each open connection's socket, to tell whether its client is still there.
    peers: Mutex<HashMap<u64, Arc<OwnedFd>>>,
}

impl Server {
    fn slot(&self, id: u64) -> Result<Arc<Slot>, String> {
        lock(&self.objects).get(&id).cloned().ok_or_else(|| format!("no shared object {id}"))
    }

    fn add(&self, kind: Kind, state: State) -> u64 {
        use std::hash::BuildHasher;
        let slot = Arc::new(Slot { kind, state: Mutex::new(state), changed: Condvar::new() });
        let mut objects = lock(&self.objects);
        loop {
            let id = self.ids.hash_one(self.next_id.fetch_add(1, Ordering::Relaxed));
            if let Entry::Vacant(v) = objects.entry(id) {
                v.insert(slot);
                return id;
            }
        }
    }

    /// Whether connection `conn`'s client has gone (closed its end, or its machine vanished).
    fn gone(&self, conn: u64) -> bool {
        // Looked at outside the lock: the probe is a system call.
        let fd = lock(&self.peers).get(&conn).cloned();
        fd.is_none_or(|fd| sys::socket::peer_closed(fd.as_fd()))
    }
}

/// The server process's task.
pub(crate) fn serve(setup: Setup) {
    let server = Arc::new(Server {
        // This process's tree key is its creator's: it is a child of the manager's owner.
        tree_key: crate::process::identity::hold().authkey().unwrap_or_else(|_| sys::process::exit_now(1)),
        shared_key: setup.shared_key,
        endpoint: setup.endpoint,
        server_id: setup.server_id,
        ids: std::collections::hash_map::RandomState::new(),
        allowed: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(0),
        objects: Mutex::new(HashMap::new()),
        names: Mutex::new(HashMap::new()),
        next_connection: AtomicU64::new(0),
        gate: Gate::new(),
        peers: Mutex::new(HashMap::new()),
    });
    // A private manager (reached only by its owner's processes, on a Unix socket) serves only its
    // owner's user: an abstract socket's name is visible to every user of the machine.
    let private = !setup.tcp && server.shared_key.is_none();
    let owner = rustix::process::geteuid().as_raw();
    let start = |socket: Socket, peer: Peer| {
        if private && peer != Peer::User(owner) {
            return; // dropped: not the owner's
        }
        let Some(pass) = server.gate.enter(peer, socket.as_fd()) else { return };
        socket.tune();
        let for_thread = server.clone();
        // No thread: the connection is dropped (the client sees it closed), its place freed.
        let _ = std::thread::Builder::new()
            .name("manager-client".into())
            .spawn(move || connection(socket, pass, &for_thread));
    };
    let pause_after_error = || std::thread::sleep(Duration::from_millis(10)); // out of descriptors, say
    if setup.tcp {
        let listener = TcpListener::from(setup.listener.into_owned());
        loop {
            match listener.accept() {
                Ok((stream, from)) => start(Socket::Tcp(stream), Peer::Ip(from.ip())),
                Err(_) => pause_after_error(),
            }
        }
    } else {
        let listener = UnixListener::from(setup.listener.into_owned());
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    let peer = Peer::of_unix(stream.as_fd());
                    start(Socket::Unix(stream), peer)
                }
                Err(_) => pause_after_error(),
            }
        }
    }
}

/// Serves one connection until it closes or misbehaves.
fn connection(socket: Socket, pass: Pass, server: &Server) {
    // The tree's key only with a proof naming this very server; a shared key naming any address.
    let mut keys = vec![wire::Accepted { key: &server.tree_key, bound_to: Some(&server.endpoint) }];
    keys.extend(server.shared_key.as_ref().map(|key| wire::Accepted { key, bound_to: None }));
    let handshake = wire::accept(&socket, &keys, server.server_id, Instant::now() + gate::HANDSHAKE);
    drop(pass);
    let Ok((which, build, session)) = handshake else {
        crate::trace::event!(debug, "a manager connection failed its handshake");
        return;
    };
    // Without a copy of the socket nobody could tell whether this client is still there.
    let Ok(own) = socket.as_fd().try_clone_to_owned() else { return };
    let own = Arc::new(own);
    let conn = server.next_connection.fetch_add(1, Ordering::Relaxed) + 1;
    lock(&server.peers).insert(conn, own.clone());
    let client = Client {
        server,
        conn,
        own,
        same_build: build == sys::build_id::fingerprint(),
        tree: TreeClient::check(keys[which].key, &build, &server.tree_key),
        held: RefCell::new(Vec::new()),
        waiting_on: RefCell::new(None),
        undo: RefCell::new(None),
    };
    let mut frames = wire::FrameReader::new();
    let wire::Session { mut sealer, mut opener } = session;
    // Closed, truncated, oversized, failing its seal or undecodable: the loop ends and drops
    // this connection only.
    while let Ok(request) = frames.receive::<Request>(&socket, &mut opener) {
        // A panic (in a user type's code, say) fails this request, not the connection.
        let mut reply = catch_unwind(AssertUnwindSafe(|| client.handle(request))).unwrap_or_else(|p| {
            client.undo.take();
            refused(format!("the manager failed this request: {}", task::panic_message(p.as_ref())))
        });
        // A client that died while its request waited must not be handed what it cannot take
        // (a write to a closed TCP peer often "succeeds").
        if client.undo.borrow().is_some() && !client.alive() {
            client.give_back(&mut reply);
            break;
        }
        let sent = match sealer.send(&socket, &reply) {
            // Too big for a frame: say so instead, and go on.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                client.give_back(&mut reply);
                sealer.send(&socket, &refused(format!("the reply is too large: {e}")))
            }
            sent => sent,
        };
        if sent.is_err() {
            client.give_back(&mut reply);
            break;
        }
        client.undo.take();
    }
}

/// One connection's view of the server. It lives on the connection's thread.
struct Client<'a> {
    server: &'a Server,
    conn: u64,
    /// A copy of this connection's socket, to look whether the client is still there.
    own: Arc<OwnedFd>,
    /// Whether the client runs this very build (so its offsets could name our functions).
    same_build: bool,
    /// Present for a client of the tree that started the server: it may name functions.
    tree: Option<TreeClient>,
    /// The locks this connection holds, and the condition it waits on: what `forget` undoes.
    held: RefCell<Vec<Arc<Slot>>>,
    waiting_on: RefCell<Option<Arc<Slot>>>,
    /// What the reply being sent hands over, to give back if it cannot be sent.
    undo: RefCell<Option<Undo>>,
}

/// What a reply hands over to the client.
enum Undo {
    /// The item in the reply, taken from this queue.
    Requeue(Arc<Slot>),
    /// A unit of this semaphore.
    Release(Arc<Slot>),
    /// A hold of this lock, and whether it came with news of a dead holder (to tell again).
    Unlock(Arc<Slot>, bool),
}

impl Drop for Client<'_> {
    /// The connection is over (closed, broken, or its thread panicked): nothing of it may stay
    /// held.
    fn drop(&mut self) {
        lock(&self.server.peers).remove(&self.conn);
        self.forget();
    }
}

fn refused(why: impl Into<String>) -> Reply {
    Reply::Refused(why.into())
}

fn value(bytes: Option<Vec<u8>>) -> Reply {
    Reply::Value(bytes.map(ByteBuf::from))
}

/// Why the object under `name` is not what was asked for: short type names, or full ones when
/// the short ones read the same (`a::Job` and `b::Job`).
fn mismatch(name: &str, have: &Kind, want: &Kind) -> String {
    let (shown_have, shown_want) = (have.to_string(), want.to_string());
    if shown_have == shown_want {
        format!("{name:?} is a {have:?}, not a {want:?}")
    } else {
        format!("{name:?} is a {shown_have}, not a {shown_want}")
    }
}

fn not_a(slot: &Slot, what: &str) -> Reply {
    refused(format!("the shared object is a {}, not a {what}", slot.kind))
}

impl Client<'_> {
    fn alive(&self) -> bool {
        !sys::socket::peer_closed(self.own.as_fd())
    }

    /// Gives back what `reply` handed over, which the client will never get.
    fn give_back(&self, reply: &mut Reply) {
        let Some(undo) = self.undo.take() else { return };
        let slot = match undo {
            Undo::Requeue(slot) => {
                if let Reply::Value(Some(item)) = reply {
                    as_queue(&mut lock(&slot.state)).items.push_front(std::mem::take(item).into_vec());
                }
                slot
            }
            Undo::Release(slot) => {
                if let State::Semaphore { value, .. } = &mut *lock(&slot.state) {
                    *value += 1;
                }
                slot
            }
            Undo::Unlock(slot, abandoned) => {
                let mut state = lock(&slot.state);
                let l = as_lock(&mut state);
                if let Some((c, n)) = l.holder.filter(|&(c, _)| c == self.conn) {
                    l.holder = (n > 1).then_some((c, n - 1));
                    if n == 1 {
                        self.held.borrow_mut().retain(|h| !Arc::ptr_eq(h, &slot));
                        l.abandoned |= abandoned;
                    }
                }
                drop(state);
                slot
            }
        };
        slot.changed.notify_all();
    }

    /// This connection closed: the locks it held are released and marked abandoned, and the
    /// condition it waited on forgets it — handing on a notification it had been picked for,
    /// so that it takes none away from the live waiters.
    fn forget(&self) {
        for slot in self.held.take() {
            let mut state = lock(&slot.state);
            let l = as_lock(&mut state);
            if l.holder.is_some_and(|(c, _)| c == self.conn) {
                l.holder = None;
                l.abandoned = true;
            }
            drop(state);
            slot.changed.notify_all();
        }
        if let Some(cond) = self.waiting_on.take() {
            let mut state = lock(&cond.state);
            let c = as_condition(&mut state);
            c.waiting.retain(|&w| w != self.conn);
            if let Some(at) = c.notified.iter().position(|&w| w == self.conn) {
                c.notified.remove(at);
                if !c.waiting.is_empty() {
                    let next = c.waiting.remove(0);
                    c.notified.push(next);
                }
            }
            drop(state);
            cond.changed.notify_all();
        }
    }

    fn handle(&self, request: Request) -> Reply {
        match request {
            Request::New { new, kind } => self.create(new, kind).map_or_else(Reply::Refused, Reply::Id),
            Request::Named { name, new, kind } => self.named(name, new, kind),
            Request::Register { name, id } => self.register(name, id),
            Request::Lookup { name, kind } => self.lookup(&name, &kind),
            Request::AllowType { entry } => match &self.tree {
                Some(tree) => {
                    lock(&self.server.allowed).insert(entry, hosted::constructor(tree, entry));
                    Reply::Done
                }
                None => refused("only the manager's own program may allow user types"),
            },
            Request::Dict { id, op } => self.on(id, |slot| self.dict(slot, op)),
            Request::List { id, op } => self.on(id, |slot| self.list(slot, op)),
            Request::Queue { id, op } => self.on(id, |slot| self.queue(slot, op)),
            Request::Lock { id, op } => self.on(id, |slot| self.lock(slot, &op)),
            Request::Semaphore { id, op } => self.on(id, |slot| self.semaphore(slot, &op)),
            Request::Event { id, op } => self.on(id, |slot| self.event(slot, &op)),
            Request::Condition { id, op } => self.on(id, |slot| self.condition(slot, &op)),
            Request::Barrier { id, op } => self.on(id, |slot| self.barrier(slot, &op)),
            Request::Object { id, request } => self.on(id, |slot| match &mut *lock(&slot.state) {
                State::Object(object) => match object.call(&request) {
                    Ok(response) => value(Some(response)),
                    Err(why) => refused(why),
                },
                _ => not_a(slot, "user object"),
            }),
        }
    }

    /// Runs `f` on object `id`, if there is one.
    fn on(&self, id: u64, f: impl FnOnce(&Arc<Slot>) -> Reply) -> Reply {
        match self.server.slot(id) {
            Ok(slot) => f(&slot),
            Err(why) => refused(why),
        }
    }

    /// Waits on `slot` until `attempt` succeeds (returns a reply) or `wait` runs out. One look
    /// for `Some(0)`. After every wake-up it first looks whether the client is still there: a
    /// waiter that is gone takes nothing.
    fn wait_until(&self, slot: &Slot, wait: Wait, mut attempt: impl FnMut(&mut State) -> Option<Reply>) -> Reply {
        let deadline = wait.and_then(|ms| Instant::now().checked_add(Duration::from_millis(ms)));
        let mut state = lock(&slot.state);
        loop {
            if let Some(reply) = attempt(&mut state) {
                slot.changed.notify_all();
                return reply;
            }
            let slice = match deadline {
                None => CHECK,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Reply::TimedOut;
                    }
                    left.min(CHECK)
                }
            };
            state = slot.changed.wait_timeout(state, slice).unwrap_or_else(|p| p.into_inner()).0;
            if !self.alive() {
                return refused(GONE);
            }
        }
    }

    fn create(&self, new: New, kind: Kind) -> Result<u64, String> {
        if !new.fits(&kind) {
            return Err(format!("a request for a {kind} that makes something else"));
        }
        let state = match new {
            New::Dict | New::Namespace => State::Dict(IndexMap::new()),
            New::Value(bytes) => State::Dict(IndexMap::from([(Vec::new(), bytes.into_vec())])),
            New::List => State::List(Vec::new()),
            New::Queue { maxsize, joinable } => {
                State::Queue(QueueState { items: VecDeque::new(), maxsize, unfinished: joinable.then_some(0) })
            }
            New::Lock { reentrant } => State::Lock(LockState { holder: None, reentrant, abandoned: false }),
            New::Semaphore { value, bound } => {
                if bound.is_some_and(|b| value > b) {
                    return Err(format!("a bounded semaphore cannot start above its bound ({value} > {bound:?})"));
                }
                State::Semaphore { value, bound }
            }
            New::Event => State::Event(false),
            New::Condition { lock: id } => {
                let lock = self.server.slot(id)?;
                if !matches!(lock.kind, Kind::Lock | Kind::RLock) {
                    return Err(format!("a condition needs a lock or an rlock, not a {}", lock.kind));
                }
                State::Condition(ConditionState { lock, waiting: Vec::new(), notified: Vec::new() })
            }
            New::Barrier { parties } => {
                if parties == 0 {
                    return Err("a barrier needs at least one party".into());
                }
                State::Barrier(BarrierState {
                    parties,
                    count: 0,
                    generation: 0,
                    broken: false,
                    broken_generations: HashMap::new(),
                })
            }
            New::Object { entry, .. } => {
                let object = hosted::construct(self.constructor(entry)?)?;
                // The kind comes from the object itself, not from what the client says it is.
                let made = Kind::Object(object.type_name().to_owned());
                if made != kind {
                    return Err(format!("that constructor makes a {made}, not a {kind}"));
                }
                State::Object(object)
            }
        };
        Ok(self.server.add(kind, state))
    }

    /// The constructor a client names: any, for a client of the tree; one the tree allowed, for
    /// another client of this build.
    fn constructor(&self, entry: i64) -> Result<NewObject, String> {
        if let Some(tree) = &self.tree {
            return Ok(hosted::constructor(tree, entry));
        }
        if !self.same_build {
            return Err("user types can only be made by clients of the manager's own build".into());
        }
        lock(&self.server.allowed).get(&entry).copied().ok_or_else(|| {
            "this manager makes for other programs only the user types its owner registered \
             (ManagerBuilder::register)"
                .into()
        })
    }

    /// The update function an `Apply` names (none for other operations), if the client may name
    /// one. Looked up before the object's lock is taken.
    fn update_for(&self, entry: Option<i64>) -> Result<Option<ApplyEntry>, Reply> {
        let Some(entry) = entry else { return Ok(None) };
        match &self.tree {
            Some(tree) => Ok(Some(hosted::update_fn(tree, entry))),
            None => Err(refused(
                "the manager runs no code named by a client of another program: \
                 use add, or a user type its owner registered",
            )),
        }
    }

    fn named(&self, name: String, new: New, kind: Kind) -> Reply {
        let existing = |names: &HashMap<String, u64>| {
            let id = *names.get(&name)?;
            Some(match self.server.slot(id) {
                Ok(slot) if slot.kind == kind => Reply::Id(id),
                Ok(slot) => refused(mismatch(&name, &slot.kind, &kind)),
                Err(why) => refused(why),
            })
        };
        if let Some(reply) = existing(&lock(&self.server.names)) {
            return reply;
        }
        // Made without the names held (a user type's constructor may take its time), then
        // registered unless somebody registered the name meanwhile.
        let id = match self.create(new, kind.clone()) {
            Ok(id) => id,
            Err(why) => return refused(why),
        };
        let mut names = lock(&self.server.names);
        if let Some(reply) = existing(&names) {
            lock(&self.server.objects).remove(&id);
            return reply;
        }
        names.insert(name, id);
        Reply::Id(id)
    }

    fn register(&self, name: String, id: u64) -> Reply {
        let slot = match self.server.slot(id) {
            Ok(slot) => slot,
            Err(why) => return refused(why),
        };
        match lock(&self.server.names).entry(name) {
            Entry::Vacant(v) => {
                v.insert(id);
                Reply::Id(id)
            }
            Entry::Occupied(o) => match self.server.slot(*o.get()) {
                Ok(taken) if taken.kind == slot.kind => Reply::Id(*o.get()),
                Ok(taken) => refused(mismatch(o.key(), &taken.kind, &slot.kind)),
                Err(why) => refused(why),
            },
        }
    }

    fn lookup(&self, name: &str, kind: &Kind) -> Reply {
        let Some(id) = lock(&self.server.names).get(name).copied() else { return Reply::Missing };
        match self.server.slot(id) {
            Ok(slot) if slot.kind == *kind => Reply::Id(id),
            Ok(slot) => refused(mismatch(name, &slot.kind, kind)),
            Err(why) => refused(why),
        }
    }

    fn dict(&self, slot: &Slot, op: DictOp) -> Reply {
        let update = match self.update_for(op.update_entry()) {
            Ok(update) => update,
            Err(reply) => return reply,
        };
        let mut state = lock(&slot.state);
        let State::Dict(map) = &mut *state else { return not_a(slot, "dict") };
        match op {
            DictOp::Get(key) => value(map.get(key.as_slice()).cloned()),
            DictOp::Insert(key, v) => value(map.insert(key.into_vec(), v.into_vec())),
            // Shifting keeps the order of the rest, as a Python `del` does.
            DictOp::Remove(key) => value(map.shift_remove(key.as_slice())),
            DictOp::PopItem => {
                Reply::Items(map.pop().map(|(k, v)| (ByteBuf::from(k), ByteBuf::from(v))).into_iter().collect())
            }
            DictOp::Contains(key) => Reply::Bool(map.contains_key(key.as_slice())),
            DictOp::Len => Reply::Len(map.len() as u64),
            DictOp::Items => {
                Reply::Items(map.iter().map(|(k, v)| (ByteBuf::from(k.clone()), ByteBuf::from(v.clone()))).collect())
            }
            DictOp::Clear => {
                map.clear();
                Reply::Done
            }
            DictOp::Update(items) => {
                map.extend(items.into_iter().map(|(k, v)| (k.into_vec(), v.into_vec())));
                Reply::Done
            }
            DictOp::Apply { key, .. } => {
                let update = update.expect("looked up above");
                match update(map.get(key.as_slice()).map(Vec::as_slice)) {
                    Ok(new) => {
                        map.insert(key.into_vec(), new.clone());
                        value(Some(new))
                    }
                    Err(why) => refused(why),
                }
            }
            DictOp::SetDefault(key, v) => {
                value(Some(map.entry(key.into_vec()).or_insert_with(|| v.into_vec()).clone()))
            }
            DictOp::Add { key, delta } => match add(map.get(key.as_slice()).map(Vec::as_slice), delta) {
                Ok(new) => {
                    map.insert(key.into_vec(), new.clone());
                    value(Some(new))
                }
                Err(why) => refused(why),
            },
        }
    }

    fn list(&self, slot: &Slot, op: ListOp) -> Reply {
        let update = match self.update_for(op.update_entry()) {
            Ok(update) => update,
            Err(reply) => return reply,
        };
        let mut state = lock(&slot.state);
        let State::List(items) = &mut *state else { return not_a(slot, "list") };
        let out_of_range =
            |index: u64, len: usize| refused(format!("index {index} is out of range for a list of {len}"));
        match op {
            ListOp::Push(v) => {
                items.push(v.into_vec());
                Reply::Done
            }
            ListOp::Pop => value(items.pop()),
            ListOp::Get(index) => value(usize::try_from(index).ok().and_then(|i| items.get(i)).cloned()),
            ListOp::Set(index, v) => {
                let len = items.len();
                match usize::try_from(index).ok().and_then(|i| items.get_mut(i)) {
                    Some(item) => {
                        *item = v.into_vec();
                        Reply::Done
                    }
                    None => out_of_range(index, len),
                }
            }
            ListOp::Len => Reply::Len(items.len() as u64),
            ListOp::Extend(values) => {
                items.extend(values.into_iter().map(ByteBuf::into_vec));
                Reply::Done
            }
            ListOp::Remove(v) => match items.iter().position(|item| item == v.as_slice()) {
                Some(at) => {
                    items.remove(at);
                    Reply::Bool(true)
                }
                None => Reply::Bool(false),
            },
            ListOp::Items => Reply::Elements(items.iter().cloned().map(ByteBuf::from).collect()),
            ListOp::Insert(index, v) => {
                let at = usize::try_from(index).map_or(items.len(), |i| i.min(items.len()));
                items.insert(at, v.into_vec());
                Reply::Done
            }
            ListOp::PopAt(index) => match usize::try_from(index).ok().filter(|&i| i < items.len()) {
                Some(i) => value(Some(items.remove(i))),
                None => out_of_range(index, items.len()),
            },
            ListOp::Index(v) => {
                Reply::Len(items.iter().position(|item| item == v.as_slice()).map_or(u64::MAX, |i| i as u64))
            }
            ListOp::Count(v) => Reply::Len(items.iter().filter(|item| *item == v.as_slice()).count() as u64),
            ListOp::Sort { entry } => match &self.tree {
                Some(tree) => match hosted::sort_fn(tree, entry)(items) {
                    Ok(()) => Reply::Done,
                    Err(why) => refused(why),
                },
                None => refused(
                    "the manager runs no code named by a client of another program: sort the elements \
                     from to_vec instead",
                ),
            },
            ListOp::Reverse => {
                items.reverse();
                Reply::Done
            }
            ListOp::Clear => {
                items.clear();
                Reply::Done
            }
            ListOp::Apply { index, .. } => {
                let len = items.len();
                let Some(item) = usize::try_from(index).ok().and_then(|i| items.get_mut(i)) else {
                    return out_of_range(index, len);
                };
                match update.expect("looked up above")(Some(item.as_slice())) {
                    Ok(new) => {
                        item.clone_from(&new);
                        value(Some(new))
                    }
                    Err(why) => refused(why),
                }
            }
        }
    }

    fn queue(&self, slot: &Arc<Slot>, op: QueueOp) -> Reply {
        if !matches!(slot.kind, Kind::Queue(_) | Kind::JoinableQueue(_)) {
            return not_a(slot, "queue");
        }
        match op {
            QueueOp::Put { item, wait } => {
                let mut item = Some(item.into_vec());
                self.wait_until(slot, wait, |s| {
                    let q = as_queue(s);
                    if q.is_full() {
                        return None;
                    }
                    q.items.push_back(item.take().expect("put once"));
                    if let Some(n) = &mut q.unfinished {
                        *n += 1;
                    }
                    Some(Reply::Done)
                })
            }
            QueueOp::Get { wait } => {
                let reply = self.wait_until(slot, wait, |s| as_queue(s).items.pop_front().map(|v| value(Some(v))));
                if matches!(reply, Reply::Value(Some(_))) {
                    *self.undo.borrow_mut() = Some(Undo::Requeue(slot.clone()));
                }
                reply
            }
            QueueOp::Len => {
                let mut state = lock(&slot.state);
                let q = as_queue(&mut state);
                Reply::Queue { len: q.items.len() as u64, maxsize: q.maxsize }
            }
            QueueOp::TaskDone => {
                let mut state = lock(&slot.state);
                let reply = match &mut as_queue(&mut state).unfinished {
                    None => return not_a(slot, "joinable queue"),
                    Some(0) => refused("task_done() called too many times"),
                    Some(n) => {
                        *n -= 1;
                        Reply::Done
                    }
                };
                slot.changed.notify_all();
                reply
            }
            QueueOp::Join { wait } => {
                if !matches!(slot.kind, Kind::JoinableQueue(_)) {
                    return not_a(slot, "joinable queue");
                }
                self.wait_until(slot, wait, |s| (as_queue(s).unfinished == Some(0)).then_some(Reply::Done))
            }
        }
    }

    /// The lock a lock operation is on: the object itself, or a condition's lock.
    fn lock_of(slot: &Arc<Slot>) -> Arc<Slot> {
        match &*lock(&slot.state) {
            State::Condition(c) => c.lock.clone(),
            _ => slot.clone(),
        }
    }

    fn lock(&self, slot: &Arc<Slot>, op: &LockOp) -> Reply {
        let slot = &Self::lock_of(slot);
        if !matches!(slot.kind, Kind::Lock | Kind::RLock) {
            return not_a(slot, "lock");
        }
        let conn = self.conn;
        match op {
            LockOp::Acquire { wait } => {
                let mut first = false;
                let reply = self.wait_until(slot, *wait, |s| {
                    let l = as_lock(s);
                    match l.holder {
                        None => {
                            l.holder = Some((conn, 1));
                            first = true;
                            Some(Reply::Acquired { abandoned: std::mem::take(&mut l.abandoned) })
                        }
                        Some((c, n)) if l.reentrant && c == conn => {
                            l.holder = Some((c, n + 1));
                            Some(Reply::Acquired { abandoned: false })
                        }
                        Some(_) => None,
                    }
                });
                if let Reply::Acquired { abandoned } = reply {
                    if first {
                        self.held.borrow_mut().push(slot.clone());
                    }
                    *self.undo.borrow_mut() = Some(Undo::Unlock(slot.clone(), abandoned));
                }
                reply
            }
            LockOp::Release => {
                let mut state = lock(&slot.state);
                let l = as_lock(&mut state);
                let reply = match l.holder {
                    Some((c, n)) if c == conn => {
                        l.holder = (n > 1).then_some((c, n - 1));
                        if n == 1 {
                            self.held.borrow_mut().retain(|h| !Arc::ptr_eq(h, slot));
                        }
                        Reply::Done
                    }
                    Some(_) => refused("cannot release un-acquired lock"),
                    None => refused("release unlocked lock"),
                };
                slot.changed.notify_all();
                reply
            }
            LockOp::Locked => Reply::Bool(as_lock(&mut lock(&slot.state)).holder.is_some()),
        }
    }

    fn semaphore(&self, slot: &Arc<Slot>, op: &SemaphoreOp) -> Reply {
        if slot.kind != Kind::Semaphore {
            return not_a(slot, "semaphore");
        }
        match op {
            SemaphoreOp::Acquire { wait } => {
                let reply = self.wait_until(slot, *wait, |s| match s {
                    State::Semaphore { value, .. } if *value > 0 => {
                        *value -= 1;
                        Some(Reply::Done)
                    }
                    _ => None,
                });
                if matches!(reply, Reply::Done) {
                    *self.undo.borrow_mut() = Some(Undo::Release(slot.clone()));
                }
                reply
            }
            SemaphoreOp::Release => {
                let mut state = lock(&slot.state);
                let State::Semaphore { value, bound } = &mut *state else { return not_a(slot, "semaphore") };
                if bound.is_some_and(|b| *value >= b) || *value == u32::MAX {
                    return refused("semaphore or lock released too many times");
                }
                *value += 1;
                slot.changed.notify_all();
                Reply::Done
            }
            SemaphoreOp::Value => match &*lock(&slot.state) {
                State::Semaphore { value, .. } => Reply::Len(u64::from(*value)),
                _ => not_a(slot, "semaphore"),
            },
        }
    }

    fn event(&self, slot: &Slot, op: &EventOp) -> Reply {
        if slot.kind != Kind::Event {
            return not_a(slot, "event");
        }
        let set_to = |flag: bool| {
            *lock(&slot.state) = State::Event(flag);
            slot.changed.notify_all();
            Reply::Done
        };
        match op {
            EventOp::Set => set_to(true),
            EventOp::Clear => set_to(false),
            EventOp::IsSet => Reply::Bool(matches!(&*lock(&slot.state), State::Event(true))),
            EventOp::Wait { wait } => {
                self.wait_until(slot, *wait, |s| matches!(s, State::Event(true)).then_some(Reply::Done))
            }
        }
    }

    fn condition(&self, cond: &Arc<Slot>, op: &ConditionOp) -> Reply {
        if cond.kind != Kind::Condition {
            return not_a(cond, "condition");
        }
        let lock_slot = Self::lock_of(cond);
        let conn = self.conn;
        match op {
            ConditionOp::Wait { wait } => self.condition_wait(cond, &lock_slot, *wait),
            ConditionOp::Notify(n) => {
                if as_lock(&mut lock(&lock_slot.state)).holder.is_none_or(|(c, _)| c != conn) {
                    return refused("cannot notify on un-acquired lock");
                }
                let mut state = lock(&cond.state);
                let c = as_condition(&mut state);
                // Waiters whose client is gone are dropped, not chosen: a dead waiter never
                // takes a notification away from a live one.
                c.waiting.retain(|&w| !self.server.gone(w));
                let chosen = (*n as usize).min(c.waiting.len());
                let woken: Vec<u64> = c.waiting.drain(..chosen).collect();
                c.notified.extend(woken);
                cond.changed.notify_all();
                Reply::Done
            }
        }
    }

    /// A condition wait: give up the lock (all of an rlock's levels), wait to be notified, take
    /// the lock back as it was held.
    fn condition_wait(&self, cond: &Arc<Slot>, lock_slot: &Arc<Slot>, wait: Wait) -> Reply {
        let conn = self.conn;
        let levels = {
            let mut held = lock(&lock_slot.state);
            let l = as_lock(&mut held);
            let Some((_, levels)) = l.holder.filter(|&(c, _)| c == conn) else {
                return refused("cannot wait on un-acquired lock");
            };
            // Registered before the lock is let go, so that a notify made right after cannot
            // miss this waiter.
            as_condition(&mut lock(&cond.state)).waiting.push(conn);
            *self.waiting_on.borrow_mut() = Some(cond.clone());
            l.holder = None;
            self.held.borrow_mut().retain(|h| !Arc::ptr_eq(h, lock_slot));
            levels
        };
        lock_slot.changed.notify_all();
        let notified = match self.wait_until(cond, wait, |s| {
            let c = as_condition(s);
            let at = c.notified.iter().position(|&w| w == conn)?;
            c.notified.swap_remove(at);
            Some(Reply::Done)
        }) {
            Reply::Done => true,
            Reply::TimedOut => {
                // Withdraw, unless a notify picked this waiter meanwhile (then it counts).
                let mut state = lock(&cond.state);
                let c = as_condition(&mut state);
                if let Some(at) = c.notified.iter().position(|&w| w == conn) {
                    c.notified.swap_remove(at);
                    true
                } else {
                    c.waiting.retain(|&w| w != conn);
                    false
                }
            }
            gone => return gone, // `forget` withdraws this waiter when the connection ends
        };
        *self.waiting_on.borrow_mut() = None;
        let hand_on = || {
            // Notified, but gone before it could take the lock back: its notification goes to
            // the next waiter, as if it had never been picked.
            let mut state = lock(&cond.state);
            let c = as_condition(&mut state);
            if notified && !c.waiting.is_empty() {
                let next = c.waiting.remove(0);
                c.notified.push(next);
            }
            drop(state);
            cond.changed.notify_all();
        };
        // Take the lock back, however long that takes (as Python does). A holder that went away
        // meanwhile has been released; nobody else will be told, so the flag goes.
        match self.wait_until(lock_slot, None, |s| {
            let l = as_lock(s);
            l.holder.is_none().then(|| {
                l.holder = Some((conn, levels));
                l.abandoned = false;
                Reply::Done
            })
        }) {
            Reply::Done => {
                self.held.borrow_mut().push(lock_slot.clone());
                Reply::Bool(notified)
            }
            gone => {
                hand_on();
                gone
            }
        }
    }

    fn barrier(&self, slot: &Slot, op: &BarrierOp) -> Reply {
        if slot.kind != Kind::Barrier {
            return not_a(slot, "barrier");
        }
        if let BarrierOp::Wait { wait } = op {
            return self.barrier_wait(slot, *wait);
        }
        let mut state = lock(&slot.state);
        let b = as_barrier(&mut state);
        match op {
            // Waiters of the current generation wake up to a broken barrier; after an abort
            // later waits fail too, after a reset they start afresh.
            BarrierOp::Abort | BarrierOp::Reset => {
                b.break_generation(matches!(op, BarrierOp::Abort), 0);
                slot.changed.notify_all();
                Reply::Done
            }
            BarrierOp::State => Reply::Barrier { parties: b.parties, waiting: b.count, broken: b.broken },
            BarrierOp::Wait { .. } => unreachable!("handled above"),
        }
    }

    /// A party's wait: the last to arrive lets its whole generation through; a timeout breaks
    /// the barrier for everyone (as in Python), and so does a party whose client goes away while
    /// it waits — it can never arrive, and the others must neither pass without it nor wait for
    /// it forever.
    fn barrier_wait(&self, slot: &Slot, wait: Wait) -> Reply {
        let deadline = wait.and_then(|ms| Instant::now().checked_add(Duration::from_millis(ms)));
        let mut state = lock(&slot.state);
        let b = as_barrier(&mut state);
        if b.broken {
            return Reply::Broken;
        }
        let index = b.count;
        b.count += 1;
        if b.count == b.parties {
            b.count = 0;
            b.generation += 1;
            slot.changed.notify_all();
            return Reply::Passed(index);
        }
        let mine = b.generation;
        loop {
            let b = as_barrier(&mut state);
            if b.generation != mine {
                return if b.ended_broken(mine) { Reply::Broken } else { Reply::Passed(index) };
            }
            let slice = match deadline {
                None => CHECK,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        b.break_generation(true, 1);
                        slot.changed.notify_all();
                        return Reply::Broken;
                    }
                    left.min(CHECK)
                }
            };
            state = slot.changed.wait_timeout(state, slice).unwrap_or_else(|p| p.into_inner()).0;
            let b = as_barrier(&mut state);
            if b.generation == mine && !self.alive() {
                b.break_generation(true, 1);
                slot.changed.notify_all();
                return refused(GONE);
            }
        }
    }
}

/// Adds `delta` to an encoded number of the same type (absent: zero). Integers never wrap (as
/// Python's never do): a sum that does not fit the type is refused and the entry stays as it was.
pub(crate) fn add(old: Option<&[u8]>, delta: Number) -> Result<Vec<u8>, String> {
    fn stored<T: serde::de::DeserializeOwned + Default>(old: Option<&[u8]>) -> Result<T, String> {
        let not_a =
            |why: &dyn std::fmt::Display| format!("the stored value is not a {}: {why}", std::any::type_name::<T>());
        // The whole entry must be the number: a longer value of another type is refused, not
        // misread from its first bytes.
        old.map_or(Ok(T::default()), |bytes| match postcard::take_from_bytes(bytes) {
            Ok((n, [])) => Ok(n),
            Ok(_) => Err(not_a(&"it is longer")),
            Err(e) => Err(not_a(&e)),
        })
    }
    fn encode<T: Serialize>(n: T) -> Result<Vec<u8>, String> {
        postcard::to_stdvec(&n).map_err(|e| e.to_string())
    }
    macro_rules! checked {
        ($d:expr, $t:ty) => {
            encode(
                stored::<$t>(old)?
                    .checked_add($d)
                    .ok_or_else(|| format!("the sum does not fit in {}", std::any::type_name::<$t>()))?,
            )
        };
    }
    match delta {
        Number::I8(d) => checked!(d, i8),
        Number::I16(d) => checked!(d, i16),
        Number::I32(d) => checked!(d, i32),
        Number::I64(d) => checked!(d, i64),
        Number::U8(d) => checked!(d, u8),
        Number::U16(d) => checked!(d, u16),
        Number::U32(d) => checked!(d, u32),
        Number::U64(d) => checked!(d, u64),
        Number::F32(d) => encode(stored::<f32>(old)? + d),
        Number::F64(d) => encode(stored::<f64>(old)? + d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_keep_the_stored_type_and_refuse_what_does_not_fit() {
        let enc = |n: u8| postcard::to_stdvec(&n).unwrap();
        assert_eq!(add(Some(&enc(200)), Number::U8(55)).unwrap(), enc(255));
        assert!(add(Some(&enc(200)), Number::U8(56)).unwrap_err().contains("u8"));
        let i8s = |n: i8| postcard::to_stdvec(&n).unwrap();
        assert_eq!(add(None, Number::I8(-128)).unwrap(), i8s(-128));
        assert!(add(Some(&i8s(-128)), Number::I8(-1)).is_err());
        let i32s = |n: i32| postcard::to_stdvec(&n).unwrap();
        assert!(add(Some(&i32s(i32::MAX)), Number::I32(1)).is_err());
        assert_eq!(add(Some(&i32s(-5)), Number::I32(7)).unwrap(), i32s(2));
        let f = |n: f64| postcard::to_stdvec(&n).unwrap();
        assert_eq!(add(Some(&f(0.5)), Number::F64(0.25)).unwrap(), f(0.75));
        assert!(add(Some(b"\xff\xff"), Number::U64(1)).unwrap_err().contains("not a u64"));
    }
}
