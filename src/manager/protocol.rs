//! A manager's requests and replies: what travels in the frames of the [wire](crate::wire) once
//! a client is in.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// How long a blocking operation may wait, in milliseconds: `None` for as long as it takes,
/// `Some(0)` for one look.
pub(crate) type Wait = Option<u64>;

/// A number for [`DictOp::Add`], in the exact type the dict stores: the server decodes the
/// stored value as that type and refuses a sum that does not fit it. (`pub`, like [`Kind`], only
/// so that a sealed trait may name it; this module is private.)
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub enum Number {
    I8(i8),
    I16(i16),
    I32(i32),
    I64(i64),
    U8(u8),
    U16(u16),
    U32(u32),
    U64(u64),
    F32(f32),
    F64(f64),
}

/// What kind of object a proxy refers to, with the types of what it holds (their full names):
/// what named look-ups check, so that two programs cannot read one object as different types.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Kind {
    /// Key and value types.
    Dict(String, String),
    List(String),
    Namespace,
    Value(String),
    Queue(String),
    JoinableQueue(String),
    Lock,
    RLock,
    Semaphore,
    Event,
    Condition,
    Barrier,
    /// A user type (`SharedObject`), by its type name.
    Object(String),
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::error::short_type_name as short;
        match self {
            Kind::Dict(k, v) => write!(f, "dict of {} → {}", short(k), short(v)),
            Kind::List(t) => write!(f, "list of {}", short(t)),
            Kind::Namespace => f.write_str("namespace"),
            Kind::Value(t) => write!(f, "value of {}", short(t)),
            Kind::Queue(t) => write!(f, "queue of {}", short(t)),
            Kind::JoinableQueue(t) => write!(f, "joinable queue of {}", short(t)),
            Kind::Lock => f.write_str("lock"),
            Kind::RLock => f.write_str("rlock"),
            Kind::Semaphore => f.write_str("semaphore"),
            Kind::Event => f.write_str("event"),
            Kind::Condition => f.write_str("condition"),
            Kind::Barrier => f.write_str("barrier"),
            Kind::Object(t) => f.write_str(&short(t)),
        }
    }
}

/// A new object to make.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum New {
    Dict,
    List,
    Namespace,
    /// A value, starting as these encoded bytes.
    Value(ByteBuf),
    Queue {
        maxsize: Option<u64>,
        joinable: bool,
    },
    Lock {
        reentrant: bool,
    },
    Semaphore {
        value: u32,
        bound: Option<u32>,
    },
    Event,
    /// Over hosted lock (or rlock) `lock`.
    Condition {
        lock: u64,
    },
    Barrier {
        parties: u32,
    },
    /// A user type, made by the constructor at offset `entry` in the client's build (which
    /// the server checks makes the type the kind names).
    Object {
        entry: i64,
    },
}

impl New {
    /// Whether `kind` describes what this makes (the types it names are the client's to say).
    pub(crate) fn fits(&self, kind: &Kind) -> bool {
        matches!(
            (self, kind),
            (New::Dict, Kind::Dict(..))
                | (New::List, Kind::List(_))
                | (New::Namespace, Kind::Namespace)
                | (New::Value(_), Kind::Value(_))
                | (New::Queue { joinable: false, .. }, Kind::Queue(_))
                | (New::Queue { joinable: true, .. }, Kind::JoinableQueue(_))
                | (New::Lock { reentrant: false }, Kind::Lock)
                | (New::Lock { reentrant: true }, Kind::RLock)
                | (New::Semaphore { .. }, Kind::Semaphore)
                | (New::Event, Kind::Event)
                | (New::Condition { .. }, Kind::Condition)
                | (New::Barrier { .. }, Kind::Barrier)
                | (New::Object { .. }, Kind::Object(_))
        )
    }
}

/// What a client asks. Object ids come from `Reply::Id`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// A new object, of `kind` (which the proxy's type names).
    New {
        new: New,
        kind: Kind,
    },
    /// The object registered under `name`, made (and registered) if there is none yet; it must
    /// be of `kind`.
    Named {
        name: String,
        new: New,
        kind: Kind,
    },
    /// Registers object `id` under `name`, unless the name is taken; the answer is the id now
    /// registered under `name`.
    Register {
        name: String,
        id: u64,
    },
    /// The object registered under `name` (`Reply::Missing` if none); it must be of `kind`.
    Lookup {
        name: String,
        kind: Kind,
    },
    Dict {
        id: u64,
        op: DictOp,
    },
    List {
        id: u64,
        op: ListOp,
    },
    Queue {
        id: u64,
        op: QueueOp,
    },
    /// On a lock, an rlock, or a condition's lock.
    Lock {
        id: u64,
        op: LockOp,
    },
    Semaphore {
        id: u64,
        op: SemaphoreOp,
    },
    Event {
        id: u64,
        op: EventOp,
    },
    Condition {
        id: u64,
        op: ConditionOp,
    },
    Barrier {
        id: u64,
        op: BarrierOp,
    },
    /// An encoded request for a hosted user object; its encoded response comes back.
    Object {
        id: u64,
        request: ByteBuf,
    },
    /// Lets every client of this build make the user type whose constructor is at `entry` (only
    /// from a client of the manager's own process tree).
    AllowType {
        entry: i64,
    },
}

/// Dict operations (namespaces and values are dicts too). Keys and values are encoded bytes.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum DictOp {
    Get(ByteBuf),
    Insert(ByteBuf, ByteBuf),
    Remove(ByteBuf),
    Contains(ByteBuf),
    Len,
    Items,
    Clear,
    Update(Vec<(ByteBuf, ByteBuf)>),
    /// Replace the value with what the update function at offset `entry` (in the server's own
    /// build; refused otherwise) makes of it, under the dict's lock.
    Apply {
        key: ByteBuf,
        entry: i64,
    },
    /// Add to a number (absent counts as zero), under the dict's lock.
    Add {
        key: ByteBuf,
        delta: Number,
    },
    /// The value at the key, inserting this one first if the key is absent.
    SetDefault(ByteBuf, ByteBuf),
    /// Remove and return the entry inserted last (`Reply::Items` of none or one).
    PopItem,
}

impl DictOp {
    /// The update function this operation names, if it is an `Apply`.
    pub(crate) fn update_entry(&self) -> Option<i64> {
        match self {
            DictOp::Apply { entry, .. } => Some(*entry),
            _ => None,
        }
    }
}

/// List operations. Elements are encoded bytes.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ListOp {
    Push(ByteBuf),
    Pop,
    Get(u64),
    Set(u64, ByteBuf),
    Len,
    Extend(Vec<ByteBuf>),
    /// Remove the first element equal (as bytes) to this one.
    Remove(ByteBuf),
    Items,
    /// As `DictOp::Apply`, on one element.
    Apply {
        index: u64,
        entry: i64,
    },
    /// Insert before `index` (at the end past it).
    Insert(u64, ByteBuf),
    /// Remove and return element `index`.
    PopAt(u64),
    /// The index of the first element equal (as bytes) to this one.
    Index(ByteBuf),
    /// How many elements are equal (as bytes) to this one.
    Count(ByteBuf),
    Reverse,
    Clear,
    /// Sort with the comparison of the trampoline at offset `entry` (in the server's own build;
    /// refused otherwise), under the list's lock.
    Sort {
        entry: i64,
    },
}

impl ListOp {
    /// The update function this operation names, if it is an `Apply`.
    pub(crate) fn update_entry(&self) -> Option<i64> {
        match self {
            ListOp::Apply { entry, .. } => Some(*entry),
            _ => None,
        }
    }
}

/// Queue operations; a put into a full bounded queue and a get from an empty one wait.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum QueueOp {
    Put { item: ByteBuf, wait: Wait },
    Get { wait: Wait },
    Len,
    TaskDone,
    Join { wait: Wait },
}

/// Lock operations. A lock is held by the connection that took it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum LockOp {
    Acquire { wait: Wait },
    Release,
    Locked,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum SemaphoreOp {
    Acquire { wait: Wait },
    Release,
    Value,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum EventOp {
    Set,
    Clear,
    IsSet,
    Wait { wait: Wait },
}

/// Condition operations; both need the condition's lock held by this connection.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ConditionOp {
    /// Release the lock, wait for a notification (or the time), take the lock back.
    Wait { wait: Wait },
    /// Wake up to this many waiters.
    Notify(u32),
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum BarrierOp {
    Wait { wait: Wait },
    Abort,
    Reset,
    State,
}

/// What the server answers.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    Id(u64),
    /// No object is registered under that name.
    Missing,
    Value(Option<ByteBuf>),
    Bool(bool),
    Len(u64),
    Items(Vec<(ByteBuf, ByteBuf)>),
    Elements(Vec<ByteBuf>),
    Done,
    /// A wait ran out of time (or a one-look attempt found nothing).
    TimedOut,
    /// A lock was taken; `abandoned` if its previous holder went away without releasing it.
    Acquired {
        abandoned: bool,
    },
    Queue {
        len: u64,
        maxsize: Option<u64>,
    },
    /// A barrier let this party through; its arrival index.
    Passed(u32),
    /// The barrier is (or became) broken.
    Broken,
    Barrier {
        parties: u32,
        waiting: u32,
        broken: bool,
    },
    /// The request was understood but cannot be done (no such object, a type mismatch, …).
    Refused(String),
}
