//! The manager server: a process that holds the shared objects and answers clients, one thread
//! per connection, so that a slow client never stalls the others.
//!
//! Values are stored as their encoded bytes: the server never decodes a client's data (it cannot
//! be made to run code by what it receives), except for [`Request::DictAdd`] on numbers and the
//! update functions of [`Request::DictApply`], which are this build's own code.

use std::collections::HashMap;
use std::io;
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::handle::Fd;
use crate::manager::wire::{self, AuthKey, Kind, Number, Reply, Request, Stream};
use crate::process::task;
use crate::sys;

/// What the server starts with.
#[derive(Serialize, Deserialize)]
pub(crate) struct Setup {
    pub(crate) listener: Fd,
    /// Whether `listener` is a TCP socket (else a Unix one).
    pub(crate) tcp: bool,
    pub(crate) authkey: AuthKey,
}

/// A dict's entries: encoded key → encoded value.
type Entries = HashMap<Vec<u8>, Vec<u8>>;

/// One shared object.
enum Object {
    Dict(Entries),
    List(Vec<Vec<u8>>),
    /// Items, and (for a joinable queue) how many put are not yet marked done.
    Queue(std::collections::VecDeque<Vec<u8>>, Option<u64>),
    Semaphore {
        value: u32,
        bound: Option<u32>,
    },
    /// The connection holding it, if any.
    Lock(Option<u64>),
    Event(bool),
    /// A user type (`manager::SharedObject`).
    Custom(Box<dyn task::CustomObject>),
    /// The connection holding it and how many times.
    RLock(Option<(u64, u32)>),
    /// Over hosted lock `lock`: connections waiting, in order, and those notified.
    Condition {
        lock: u64,
        waiting: Vec<u64>,
        notified: Vec<u64>,
    },
    /// `ended_broken`: the last generation that ended broken (its waiters fail).
    Barrier {
        parties: u32,
        count: u32,
        generation: u64,
        broken: bool,
        ended_broken: Option<u64>,
    },
}

/// An object and the condition its waiters sleep on (queues, locks, events).
struct Slot {
    object: Mutex<Object>,
    changed: Condvar,
}

#[derive(Default)]
struct Objects {
    next: AtomicU64,
    all: Mutex<HashMap<u64, Arc<Slot>>>,
    connections: AtomicU64,
    /// Objects registered under a name, for clients that know only the name.
    names: Mutex<HashMap<String, (Kind, u64)>>,
    /// A copy of each open connection's socket, to tell whether its client is still there.
    peers: Mutex<HashMap<u64, std::os::fd::OwnedFd>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking request thread leaves the object as it was when it panicked; others go on.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Objects {
    fn add(&self, object: Object) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        lock(&self.all).insert(id, Arc::new(Slot { object: Mutex::new(object), changed: Condvar::new() }));
        id
    }

    fn get(&self, id: u64) -> Option<Arc<Slot>> {
        lock(&self.all).get(&id).cloned()
    }

    /// Whether connection `conn`'s client has gone (closed its end: it ended or died). A client
    /// that waits for an answer sends nothing, so a readable socket with nothing to read is the
    /// end of the stream.
    fn gone(&self, conn: u64) -> bool {
        let peers = lock(&self.peers);
        let Some(fd) = peers.get(&conn) else { return true };
        let mut byte = [0u8; 1];
        matches!(
            rustix::net::recv(fd, &mut byte, rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT),
            Ok((0, _)) | Err(rustix::io::Errno::CONNRESET)
        )
    }

    /// Releases every lock held by connection `conn` (it closed: its process ended or died).
    fn release_all(&self, conn: u64) {
        let slots: Vec<Arc<Slot>> = lock(&self.all).values().cloned().collect();
        for slot in slots {
            let mut object = lock(&slot.object);
            match &mut *object {
                Object::Lock(holder) if *holder == Some(conn) => *holder = None,
                Object::RLock(holder) if holder.is_some_and(|(c, _)| c == conn) => *holder = None,
                // A dead waiter must not take a notification away from the live ones.
                Object::Condition { waiting, notified, .. } => {
                    waiting.retain(|&c| c != conn);
                    notified.retain(|&c| c != conn);
                }
                _ => continue,
            }
            slot.changed.notify_all();
        }
    }
}

/// The server process's task.
pub(crate) fn serve(setup: Setup) {
    let objects = Arc::new(Objects::default());
    let authkey = setup.authkey;
    let start = |stream: Box<dyn Stream>| {
        let objects = objects.clone();
        let _ =
            std::thread::Builder::new().name("manager-client".into()).spawn(move || client(stream, &authkey, &objects));
    };
    if setup.tcp {
        let listener = TcpListener::from(setup.listener.into_owned());
        for stream in listener.incoming().flatten() {
            let _ = stream.set_nodelay(true); // small frames, answered at once
            start(Box::new(stream));
        }
    } else {
        let listener = UnixListener::from(setup.listener.into_owned());
        for stream in listener.incoming().flatten() {
            start(Box::new(stream));
        }
    }
}

/// Serves one connection until it closes or misbehaves.
fn client(mut stream: Box<dyn Stream>, authkey: &AuthKey, objects: &Objects) {
    // Reads of the handshake are bounded, so a client that connects and says nothing does not
    // hold a thread forever.
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(20)));
    let Ok(build) = wire::accept(&mut stream, authkey) else { return };
    let _ = stream.set_read_timeout(None);
    let same_build = build == sys::build_id::fingerprint();
    let conn = objects.connections.fetch_add(1, Ordering::Relaxed) + 1;
    if let Ok(fd) = std::os::fd::AsFd::as_fd(&*stream).try_clone_to_owned() {
        lock(&objects.peers).insert(conn, fd);
    }
    serve_requests(&mut stream, objects, conn, same_build);
    lock(&objects.peers).remove(&conn);
    // Locks die with the connection that held them, so a client killed while holding one
    // never blocks the others.
    objects.release_all(conn);
}

fn serve_requests(stream: &mut Box<dyn Stream>, objects: &Objects, conn: u64, same_build: bool) {
    loop {
        wire::spin_until_readable(&**stream);
        let request: Request = match wire::receive(stream) {
            Ok(request) => request,
            // Closed, truncated, oversized or undecodable: drop this connection only.
            Err(_) => return,
        };
        let reply = handle(objects, request, conn, same_build);
        if wire::send(stream, &reply).is_err() {
            return;
        }
    }
}

/// Waits on `slot` until `ready` holds of its object or the timeout passes; runs `take` then.
/// Reply of a wait whose client went away meanwhile (nobody reads it).
const GONE: &str = "the client is gone";

/// Waits on `slot` until `ready` holds of its object or the timeout passes; runs `take` then.
/// Every [`CHECK`] it looks whether the waiting client is still there, so that a client killed
/// while it waits frees its server thread and takes nothing it would never use.
fn wait_on(
    slot: &Slot,
    timeout_ms: Option<u64>,
    alive: &dyn Fn() -> bool,
    ready: impl Fn(&mut Object) -> bool,
    take: impl FnOnce(&mut Object) -> Reply,
    timed_out: Reply,
) -> Reply {
    const CHECK: Duration = Duration::from_millis(100);
    let deadline = timeout_ms.and_then(|ms| Instant::now().checked_add(Duration::from_millis(ms)));
    let mut object = lock(&slot.object);
    loop {
        if ready(&mut object) {
            let reply = take(&mut object);
            slot.changed.notify_all();
            return reply;
        }
        let slice = match deadline {
            None => CHECK,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return timed_out;
                }
                left.min(CHECK)
            }
        };
        let (guard, waited) = slot.changed.wait_timeout(object, slice).unwrap_or_else(|p| p.into_inner());
        object = guard;
        if waited.timed_out() && !alive() {
            return Reply::Refused(GONE.into());
        }
    }
}

/// A barrier party's wait: the last to arrive releases everyone of its generation; a timeout
/// breaks the barrier for all (as in Python), and so do abort and reset for those waiting.
fn barrier_wait(slot: &Slot, timeout_ms: Option<u64>) -> Reply {
    let deadline = timeout_ms.and_then(|ms| Instant::now().checked_add(Duration::from_millis(ms)));
    let mut object = lock(&slot.object);
    let (index, mine) = match &mut *object {
        Object::Barrier { broken: true, .. } => return Reply::Bool(false),
        Object::Barrier { parties, count, generation, .. } => {
            let index = *count;
            *count += 1;
            if *count == *parties {
                *count = 0;
                *generation += 1;
                slot.changed.notify_all();
                return Reply::Len(u64::from(index));
            }
            (index, *generation)
        }
        _ => return Reply::Refused("not a barrier".into()),
    };
    loop {
        if let Object::Barrier { generation, ended_broken, .. } = &*object {
            if *generation != mine {
                // A generation ended by the last arrival passes; one ended by a timeout, an
                // abort or a reset is broken for its waiters.
                return if *ended_broken == Some(mine) { Reply::Bool(false) } else { Reply::Len(u64::from(index)) };
            }
        }
        match deadline {
            None => object = slot.changed.wait(object).unwrap_or_else(|p| p.into_inner()),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    if let Object::Barrier { count, generation, broken, ended_broken, .. } = &mut *object {
                        *ended_broken = Some(*generation);
                        *count = 0;
                        *generation += 1;
                        *broken = true;
                    }
                    slot.changed.notify_all();
                    return Reply::Bool(false);
                }
                object = slot.changed.wait_timeout(object, left).unwrap_or_else(|p| p.into_inner()).0;
            }
        }
    }
}

/// Whether connection `conn` holds hosted lock `lock_id`.
fn holds(objects: &Objects, lock_id: u64, conn: u64) -> bool {
    objects.get(lock_id).is_some_and(|slot| matches!(&*lock(&slot.object), Object::Lock(Some(c)) if *c == conn))
}

/// A condition wait: give up the lock, wait to be notified, take the lock back.
fn condition_wait(objects: &Objects, cond: &Slot, conn: u64, timeout_ms: Option<u64>) -> Reply {
    let lock_id = match &*lock(&cond.object) {
        Object::Condition { lock, .. } => *lock,
        _ => return Reply::Refused("not a condition".into()),
    };
    let Some(lock_slot) = objects.get(lock_id) else { return Reply::Refused(format!("no shared object {lock_id}")) };
    // Register before letting go of the lock, so that a notify made right after cannot miss us.
    {
        let mut held = lock(&lock_slot.object);
        if !matches!(&*held, Object::Lock(Some(c)) if *c == conn) {
            return Reply::Refused("cannot wait on un-acquired lock".into());
        }
        if let Object::Condition { waiting, .. } = &mut *lock(&cond.object) {
            waiting.push(conn);
        }
        *held = Object::Lock(None);
    }
    lock_slot.changed.notify_all();
    let alive = || !objects.gone(conn);
    let notified = match wait_on(
        cond,
        timeout_ms,
        &alive,
        |o| matches!(o, Object::Condition { notified, .. } if notified.contains(&conn)),
        |o| {
            if let Object::Condition { notified, .. } = o {
                notified.retain(|&c| c != conn);
            }
            Reply::Bool(true)
        },
        Reply::Bool(false),
    ) {
        Reply::Bool(true) => true,
        Reply::Refused(_) => {
            // The client died waiting: forget it; nothing more to do for it.
            if let Object::Condition { waiting, notified, .. } = &mut *lock(&cond.object) {
                waiting.retain(|&c| c != conn);
                notified.retain(|&c| c != conn);
            }
            return Reply::Refused(GONE.into());
        }
        _ => {
            // Timed out: withdraw, unless a notify picked us meanwhile (then it counts).
            let mut c = lock(&cond.object);
            match &mut *c {
                Object::Condition { notified, .. } if notified.contains(&conn) => {
                    notified.retain(|&x| x != conn);
                    true
                }
                Object::Condition { waiting, .. } => {
                    waiting.retain(|&x| x != conn);
                    false
                }
                _ => false,
            }
        }
    };
    // Take the lock back, however long that takes (Python does the same).
    wait_on(
        &lock_slot,
        None,
        &alive,
        |o| matches!(o, Object::Lock(None)),
        |o| {
            *o = Object::Lock(Some(conn));
            Reply::Done
        },
        Reply::Done,
    );
    Reply::Bool(notified)
}

fn not_a(id: u64, kind: &str) -> Reply {
    Reply::Refused(format!("shared object {id} is not a {kind}"))
}

fn handle(objects: &Objects, request: Request, conn: u64, same_build: bool) -> Reply {
    let alive = || !objects.gone(conn);
    let object = |id: u64| objects.get(id).ok_or_else(|| Reply::Refused(format!("no shared object {id}")));
    let dict = |id: u64, f: &mut dyn FnMut(&mut Entries) -> Reply| match object(id) {
        Ok(slot) => match &mut *lock(&slot.object) {
            Object::Dict(map) => f(map),
            _ => Reply::Refused(format!("shared object {id} is not a dict")),
        },
        Err(reply) => reply,
    };
    let list = |id: u64, f: &mut dyn FnMut(&mut Vec<Vec<u8>>) -> Reply| match object(id) {
        Ok(slot) => match &mut *lock(&slot.object) {
            Object::List(items) => f(items),
            _ => Reply::Refused(format!("shared object {id} is not a list")),
        },
        Err(reply) => reply,
    };
    let bytes = |v: Option<Vec<u8>>| Reply::Value(v.map(ByteBuf::from));
    let out_of_range =
        |index: u64, len: usize| Reply::Refused(format!("index {index} out of range for a list of {len}"));
    let apply_entry = |entry: i64| {
        if !same_build {
            return Err(Reply::Refused(
                "update functions are only accepted from clients of the manager's own build".into(),
            ));
        }
        // SAFETY: the client proved it runs this very build (its fingerprint, checked at the
        // handshake), and entries are made by `apply_entry_offset` there.
        Ok(unsafe { task::apply_entry_from_offset(entry) })
    };
    match request {
        Request::NewDict => Reply::Id(objects.add(Object::Dict(HashMap::new()))),
        Request::DictGet { id, key } => dict(id, &mut |m| bytes(m.get(key.as_slice()).cloned())),
        Request::DictInsert { id, key, value } => dict(id, &mut |m| bytes(m.insert(key.to_vec(), value.to_vec()))),
        Request::DictRemove { id, key } => dict(id, &mut |m| bytes(m.remove(key.as_slice()))),
        Request::DictContains { id, key } => dict(id, &mut |m| Reply::Bool(m.contains_key(key.as_slice()))),
        Request::DictLen { id } => dict(id, &mut |m| Reply::Len(m.len() as u64)),
        Request::DictItems { id } => dict(id, &mut |m| {
            Reply::Items(m.iter().map(|(k, v)| (ByteBuf::from(k.clone()), ByteBuf::from(v.clone()))).collect())
        }),
        Request::DictClear { id } => dict(id, &mut |m| {
            m.clear();
            Reply::Done
        }),
        Request::DictExtend { id, items } => dict(id, &mut |m| {
            m.extend(items.iter().map(|(k, v)| (k.to_vec(), v.to_vec())));
            Reply::Done
        }),
        Request::DictApply { id, key, entry } => match apply_entry(entry) {
            Err(reply) => reply,
            Ok(apply) => dict(id, &mut |m| match apply(m.get(key.as_slice()).map(Vec::as_slice)) {
                Ok(new) => {
                    m.insert(key.to_vec(), new.clone());
                    bytes(Some(new))
                }
                Err(why) => Reply::Refused(why),
            }),
        },
        Request::DictAdd { id, key, delta } => {
            dict(id, &mut |m| match add(m.get(key.as_slice()).map(Vec::as_slice), delta) {
                Ok(new) => {
                    m.insert(key.to_vec(), new.clone());
                    bytes(Some(new))
                }
                Err(why) => Reply::Refused(why),
            })
        }
        Request::NewList => Reply::Id(objects.add(Object::List(Vec::new()))),
        Request::ListPush { id, value } => list(id, &mut |l| {
            l.push(value.to_vec());
            Reply::Done
        }),
        Request::ListPop { id } => list(id, &mut |l| bytes(l.pop())),
        Request::ListGet { id, index } => list(id, &mut |l| bytes(l.get(index as usize).cloned())),
        Request::ListSet { id, index, value } => list(id, &mut |l| {
            let len = l.len();
            match l.get_mut(index as usize) {
                Some(slot) => {
                    *slot = value.to_vec();
                    Reply::Done
                }
                None => out_of_range(index, len),
            }
        }),
        Request::ListLen { id } => list(id, &mut |l| Reply::Len(l.len() as u64)),
        Request::ListExtend { id, values } => list(id, &mut |l| {
            l.extend(values.iter().map(|v| v.to_vec()));
            Reply::Done
        }),
        Request::ListRemove { id, value } => list(id, &mut |l| match l.iter().position(|v| v == value.as_slice()) {
            Some(at) => {
                l.remove(at);
                Reply::Bool(true)
            }
            None => Reply::Bool(false),
        }),
        Request::ListItems { id } => list(id, &mut |l| Reply::Elements(l.iter().cloned().map(ByteBuf::from).collect())),
        Request::Named { kind, name } => {
            let mut names = lock(&objects.names);
            match names.get(&name) {
                Some((k, id)) if *k == kind => Reply::Id(*id),
                Some((k, _)) => Reply::Refused(format!("{name:?} is a {k:?}, not a {kind:?}")),
                None => {
                    let object = match kind {
                        Kind::Dict => Object::Dict(HashMap::new()),
                        Kind::List => Object::List(Vec::new()),
                        Kind::Queue => Object::Queue(Default::default(), None),
                        Kind::Lock => Object::Lock(None),
                        Kind::Event => Object::Event(false),
                    };
                    let id = objects.add(object);
                    names.insert(name, (kind, id));
                    Reply::Id(id)
                }
            }
        }
        Request::NewQueue => Reply::Id(objects.add(Object::Queue(Default::default(), None))),
        Request::NewLock => Reply::Id(objects.add(Object::Lock(None))),
        Request::NewEvent => Reply::Id(objects.add(Object::Event(false))),
        Request::QueuePut { id, value } => match object(id) {
            Ok(slot) => {
                let reply = match &mut *lock(&slot.object) {
                    Object::Queue(q, unfinished) => {
                        q.push_back(value.into_vec());
                        if let Some(n) = unfinished {
                            *n += 1;
                        }
                        Reply::Done
                    }
                    _ => not_a(id, "queue"),
                };
                slot.changed.notify_all();
                reply
            }
            Err(reply) => reply,
        },
        Request::QueueGet { id, timeout_ms } => match object(id) {
            Ok(slot) if matches!(&*lock(&slot.object), Object::Queue(..)) => wait_on(
                &slot,
                timeout_ms,
                &alive,
                |o| matches!(o, Object::Queue(q, _) if !q.is_empty()),
                |o| match o {
                    Object::Queue(q, _) => bytes(q.pop_front()),
                    _ => Reply::Value(None),
                },
                Reply::Value(None),
            ),
            Ok(_) => not_a(id, "queue"),
            Err(reply) => reply,
        },
        Request::QueueLen { id } => match object(id) {
            Ok(slot) => match &*lock(&slot.object) {
                Object::Queue(q, _) => Reply::Len(q.len() as u64),
                _ => not_a(id, "queue"),
            },
            Err(reply) => reply,
        },
        Request::NewRLock => Reply::Id(objects.add(Object::RLock(None))),
        Request::RLockAcquire { id, timeout_ms } => match object(id) {
            Ok(slot) if matches!(&*lock(&slot.object), Object::RLock(_)) => wait_on(
                &slot,
                timeout_ms,
                &alive,
                |o| matches!(o, Object::RLock(None)) || matches!(o, Object::RLock(Some((c, _))) if *c == conn),
                |o| {
                    if let Object::RLock(holder) = o {
                        *holder = Some((conn, holder.map_or(1, |(_, n)| n + 1)));
                    }
                    Reply::Bool(true)
                },
                Reply::Bool(false),
            ),
            Ok(_) => not_a(id, "rlock"),
            Err(reply) => reply,
        },
        Request::RLockRelease { id } => match object(id) {
            Ok(slot) => {
                let reply = match &mut *lock(&slot.object) {
                    Object::RLock(holder) => match *holder {
                        Some((c, n)) if c == conn => {
                            *holder = (n > 1).then_some((c, n - 1));
                            Reply::Done
                        }
                        _ => Reply::Refused("cannot release un-acquired lock".into()),
                    },
                    _ => not_a(id, "rlock"),
                };
                slot.changed.notify_all();
                reply
            }
            Err(reply) => reply,
        },
        Request::NewBarrier { parties } => {
            if parties == 0 {
                return Reply::Refused("a barrier needs at least one party".into());
            }
            Reply::Id(objects.add(Object::Barrier {
                parties,
                count: 0,
                generation: 0,
                broken: false,
                ended_broken: None,
            }))
        }
        Request::BarrierWait { id, timeout_ms } => match object(id) {
            Ok(slot) => barrier_wait(&slot, timeout_ms),
            Err(reply) => reply,
        },
        Request::BarrierAbort { id } | Request::BarrierReset { id } => {
            let reset = matches!(request, Request::BarrierReset { .. });
            match object(id) {
                Ok(slot) => {
                    let reply = match &mut *lock(&slot.object) {
                        Object::Barrier { count, generation, broken, ended_broken, .. } => {
                            // Waiters of this generation wake up to a broken barrier; after a
                            // reset, later waits start afresh, after an abort they fail too.
                            *ended_broken = Some(*generation);
                            *count = 0;
                            *generation += 1;
                            *broken = !reset;
                            Reply::Done
                        }
                        _ => not_a(id, "barrier"),
                    };
                    slot.changed.notify_all();
                    reply
                }
                Err(reply) => reply,
            }
        }
        Request::NewCondition { lock: lock_id } => match object(lock_id) {
            Ok(slot) if matches!(&*lock(&slot.object), Object::Lock(_)) => {
                Reply::Id(objects.add(Object::Condition { lock: lock_id, waiting: Vec::new(), notified: Vec::new() }))
            }
            Ok(_) => not_a(lock_id, "lock"),
            Err(reply) => reply,
        },
        Request::ConditionWait { id, timeout_ms } => match object(id) {
            Ok(cond) => condition_wait(objects, &cond, conn, timeout_ms),
            Err(reply) => reply,
        },
        Request::ConditionNotify { id, n } => match object(id) {
            Ok(cond) => {
                let lock_id = match &*lock(&cond.object) {
                    Object::Condition { lock, .. } => *lock,
                    _ => return not_a(id, "condition"),
                };
                if !holds(objects, lock_id, conn) {
                    return Reply::Refused("cannot notify on un-acquired lock".into());
                }
                if let Object::Condition { waiting, notified, .. } = &mut *lock(&cond.object) {
                    // Waiters whose client is gone are dropped, not chosen: a dead waiter never
                    // takes a notification away from a live one.
                    waiting.retain(|&c| !objects.gone(c));
                    let chosen = (n as usize).min(waiting.len());
                    notified.extend(waiting.drain(..chosen));
                }
                cond.changed.notify_all();
                Reply::Done
            }
            Err(reply) => reply,
        },
        Request::NewCustom { entry } => {
            if !same_build {
                return Reply::Refused("user types can only be created by clients of the manager's own build".into());
            }
            // SAFETY: the client proved it runs this very build (its fingerprint, checked at the
            // handshake), and constructors are named by `new_object_offset` there.
            let new = unsafe { task::new_object_from_offset(entry) };
            Reply::Id(objects.add(Object::Custom(new())))
        }
        Request::CustomCall { id, request } => match object(id) {
            Ok(slot) => {
                let reply = match &mut *lock(&slot.object) {
                    Object::Custom(hosted) => match hosted.call(&request) {
                        Ok(response) => bytes(Some(response)),
                        Err(why) => Reply::Refused(why),
                    },
                    _ => not_a(id, "user object"),
                };
                slot.changed.notify_all();
                reply
            }
            Err(reply) => reply,
        },
        Request::NewSemaphore { value, bound } => Reply::Id(objects.add(Object::Semaphore { value, bound })),
        Request::NewJoinableQueue => Reply::Id(objects.add(Object::Queue(Default::default(), Some(0)))),
        Request::SemaphoreAcquire { id, timeout_ms } => match object(id) {
            Ok(slot) if matches!(&*lock(&slot.object), Object::Semaphore { .. }) => wait_on(
                &slot,
                timeout_ms,
                &alive,
                |o| matches!(o, Object::Semaphore { value, .. } if *value > 0),
                |o| {
                    if let Object::Semaphore { value, .. } = o {
                        *value -= 1;
                    }
                    Reply::Bool(true)
                },
                Reply::Bool(false),
            ),
            Ok(_) => not_a(id, "semaphore"),
            Err(reply) => reply,
        },
        Request::SemaphoreRelease { id } => match object(id) {
            Ok(slot) => {
                let reply = match &mut *lock(&slot.object) {
                    Object::Semaphore { value, bound } => {
                        if bound.is_some_and(|b| *value >= b) || *value == u32::MAX {
                            Reply::Refused("semaphore or lock released too many times".into())
                        } else {
                            *value += 1;
                            Reply::Done
                        }
                    }
                    _ => not_a(id, "semaphore"),
                };
                slot.changed.notify_all();
                reply
            }
            Err(reply) => reply,
        },
        Request::SemaphoreValue { id } => match object(id) {
            Ok(slot) => match &*lock(&slot.object) {
                Object::Semaphore { value, .. } => Reply::Len(u64::from(*value)),
                _ => not_a(id, "semaphore"),
            },
            Err(reply) => reply,
        },
        Request::QueueTaskDone { id } => match object(id) {
            Ok(slot) => {
                let reply = match &mut *lock(&slot.object) {
                    Object::Queue(_, Some(0)) => Reply::Refused("task_done() called too many times".into()),
                    Object::Queue(_, Some(n)) => {
                        *n -= 1;
                        Reply::Done
                    }
                    _ => not_a(id, "joinable queue"),
                };
                slot.changed.notify_all();
                reply
            }
            Err(reply) => reply,
        },
        Request::QueueJoin { id, timeout_ms } => match object(id) {
            Ok(slot) if matches!(&*lock(&slot.object), Object::Queue(_, Some(_))) => wait_on(
                &slot,
                timeout_ms,
                &alive,
                |o| matches!(o, Object::Queue(_, Some(0))),
                |_| Reply::Bool(true),
                Reply::Bool(false),
            ),
            Ok(_) => not_a(id, "joinable queue"),
            Err(reply) => reply,
        },
        Request::LockAcquire { id, timeout_ms } => match object(id) {
            Ok(slot) if matches!(&*lock(&slot.object), Object::Lock(_)) => wait_on(
                &slot,
                timeout_ms,
                &alive,
                |o| matches!(o, Object::Lock(None)),
                |o| {
                    *o = Object::Lock(Some(conn));
                    Reply::Bool(true)
                },
                Reply::Bool(false),
            ),
            Ok(_) => not_a(id, "lock"),
            Err(reply) => reply,
        },
        Request::LockRelease { id } => match object(id) {
            Ok(slot) => {
                let reply = match &mut *lock(&slot.object) {
                    Object::Lock(holder) if *holder == Some(conn) => {
                        *holder = None;
                        Reply::Done
                    }
                    Object::Lock(_) => Reply::Refused("release of a manager lock this client does not hold".into()),
                    _ => not_a(id, "lock"),
                };
                slot.changed.notify_all();
                reply
            }
            Err(reply) => reply,
        },
        Request::EventSet { id } | Request::EventClear { id } | Request::EventIsSet { id } => {
            let set = match &request {
                Request::EventSet { .. } => Some(true),
                Request::EventClear { .. } => Some(false),
                _ => None,
            };
            match object(id) {
                Ok(slot) => {
                    let reply = match &mut *lock(&slot.object) {
                        Object::Event(flag) => match set {
                            Some(set) => {
                                *flag = set;
                                Reply::Done
                            }
                            None => Reply::Bool(*flag),
                        },
                        _ => not_a(id, "event"),
                    };
                    slot.changed.notify_all();
                    reply
                }
                Err(reply) => reply,
            }
        }
        Request::EventWait { id, timeout_ms } => match object(id) {
            Ok(slot) if matches!(&*lock(&slot.object), Object::Event(_)) => wait_on(
                &slot,
                timeout_ms,
                &alive,
                |o| matches!(o, Object::Event(true)),
                |_| Reply::Bool(true),
                Reply::Bool(false),
            ),
            Ok(_) => not_a(id, "event"),
            Err(reply) => reply,
        },
        Request::ListApply { id, index, entry } => match apply_entry(entry) {
            Err(reply) => reply,
            Ok(apply) => list(id, &mut |l| {
                let len = l.len();
                match l.get_mut(index as usize) {
                    Some(slot) => match apply(Some(slot.as_slice())) {
                        Ok(new) => {
                            *slot = new.clone();
                            bytes(Some(new))
                        }
                        Err(why) => Reply::Refused(why),
                    },
                    None => out_of_range(index, len),
                }
            }),
        },
    }
}

/// Adds `delta` to an encoded number of the same kind (absent: zero); wraps like Python's ints
/// never do, so overflow is refused instead.
fn add(old: Option<&[u8]>, delta: Number) -> Result<Vec<u8>, String> {
    fn decode<T: serde::de::DeserializeOwned + Default>(old: Option<&[u8]>) -> Result<T, String> {
        old.map_or(Ok(T::default()), |b| {
            postcard::from_bytes(b).map_err(|e| format!("the stored value is not that kind of number: {e}"))
        })
    }
    let encode = |r: postcard::Result<Vec<u8>>| r.map_err(|e| e.to_string());
    match delta {
        Number::Signed(d) => {
            encode(postcard::to_stdvec(&decode::<i64>(old)?.checked_add(d).ok_or("the sum overflows")?))
        }
        Number::Unsigned(d) => {
            encode(postcard::to_stdvec(&decode::<u64>(old)?.checked_add(d).ok_or("the sum overflows")?))
        }
        Number::F32(d) => encode(postcard::to_stdvec(&(decode::<f32>(old)? + d))),
        Number::F64(d) => encode(postcard::to_stdvec(&(decode::<f64>(old)? + d))),
    }
}

/// Reads a reply to `request` from a raw socket: for the client side, here so that both sides
/// of the protocol sit together.
pub(crate) fn roundtrip(stream: &mut Box<dyn Stream>, request: &Request) -> io::Result<Reply> {
    wire::send(stream, request)?;
    wire::spin_until_readable(&**stream);
    wire::receive(stream)
}
