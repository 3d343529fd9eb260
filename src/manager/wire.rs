//! What travels between a manager and its clients: length-prefixed postcard frames, the
//! authkey handshake, and the requests and replies.
//!
//! # Handshake (both ways, as Python's `multiprocessing.connection`)
//! 1. server → client: 32 random bytes `Cs`;
//! 2. client → server: `HMAC-SHA256(key, Cs)` and 32 random bytes `Cc`;
//! 3. server: a wrong MAC closes the connection (the client sees an authentication error);
//!    otherwise → client: `HMAC-SHA256(key, Cc)`, which the client checks in turn;
//! 4. client → server: its build fingerprint, so that the server lets only clients of its own
//!    build name functions by offset (see `Request::DictApply`).
//!
//! Frames are a `u32` length and that many bytes; anything longer than [`MAX_FRAME`], or that does
//! not decode as a request, drops that connection — nothing decoded can run code, and the server
//! keeps serving everyone else.

use std::io::{self, Read, Write};

use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use sha2::Sha256;

/// How long either side looks for the other's next frame before it blocks: an answer usually
/// comes within microseconds, and a blocked wake-up costs tens of them on these machines.
pub(crate) const SPIN: std::time::Duration = std::time::Duration::from_micros(60);

/// A connection: a Unix socket (local) or TCP (remote).
pub(crate) trait Stream: Read + Write + std::os::fd::AsFd + Send {
    fn set_read_timeout(&self, timeout: Option<std::time::Duration>) -> io::Result<()>;
}

impl Stream for std::os::unix::net::UnixStream {
    fn set_read_timeout(&self, timeout: Option<std::time::Duration>) -> io::Result<()> {
        std::os::unix::net::UnixStream::set_read_timeout(self, timeout)
    }
}

impl Stream for std::net::TcpStream {
    fn set_read_timeout(&self, timeout: Option<std::time::Duration>) -> io::Result<()> {
        std::net::TcpStream::set_read_timeout(self, timeout)
    }
}

/// The key both sides use, from the user's authkey of any length.
pub(crate) fn derive_key(authkey: &[u8]) -> AuthKey {
    use sha2::Digest;
    Sha256::digest(authkey).into()
}

/// Spins (yielding the CPU between looks) until `stream` has bytes to read or `SPIN` passes.
pub(crate) fn spin_until_readable(stream: &(impl std::os::fd::AsFd + ?Sized)) {
    let began = std::time::Instant::now();
    while began.elapsed() < SPIN {
        if crate::sys::poll::is_readable(stream.as_fd()).unwrap_or(true) {
            return;
        }
        std::thread::yield_now();
    }
}

/// The largest frame either side accepts.
pub(crate) const MAX_FRAME: usize = 256 << 20;

/// A shared secret: both ends must know it.
pub(crate) type AuthKey = [u8; 32];

/// Writes one frame.
pub(crate) fn send<T: Serialize>(stream: &mut impl Write, value: &T) -> io::Result<()> {
    let bytes = postcard::to_stdvec(value).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    if bytes.len() > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "message larger than a manager frame"));
    }
    let mut frame = Vec::with_capacity(4 + bytes.len());
    frame.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    frame.extend_from_slice(&bytes);
    stream.write_all(&frame)
}

/// Reads one frame and decodes it.
pub(crate) fn receive<T: DeserializeOwned>(stream: &mut impl Read) -> io::Result<T> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("frame of {len} bytes is over the limit")));
    }
    let mut bytes = vec![0u8; len];
    stream.read_exact(&mut bytes)?;
    postcard::from_bytes(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn mac(key: &AuthKey, challenge: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(challenge);
    mac.finalize().into_bytes().into()
}

fn verify(key: &AuthKey, challenge: &[u8], answer: &[u8]) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(challenge);
    mac.verify_slice(answer).is_ok() // constant time
}

/// 32 bytes from the kernel's random source.
pub(crate) fn random_bytes() -> io::Result<[u8; 32]> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// Why a handshake failed.
pub(crate) enum Refused {
    /// The other side does not know the key.
    Authentication,
    /// The connection failed.
    Io(io::Error),
}

impl From<io::Error> for Refused {
    fn from(err: io::Error) -> Refused {
        Refused::Io(err)
    }
}

/// The server's side of the handshake; returns the client's build fingerprint.
pub(crate) fn accept(stream: &mut (impl Read + Write), key: &AuthKey) -> Result<Vec<u8>, Refused> {
    let challenge = random_bytes()?;
    stream.write_all(&challenge)?;
    let mut answer = [0u8; 64];
    stream.read_exact(&mut answer)?;
    if !verify(key, &challenge, &answer[..32]) {
        return Err(Refused::Authentication);
    }
    stream.write_all(&mac(key, &answer[32..]))?;
    let build: ByteBuf = receive(stream)?;
    Ok(build.into_vec())
}

/// The client's side of the handshake.
pub(crate) fn connect(stream: &mut (impl Read + Write), key: &AuthKey, build: &[u8]) -> Result<(), Refused> {
    let mut challenge = [0u8; 32];
    stream.read_exact(&mut challenge)?;
    let ours = random_bytes()?;
    let mut answer = [0u8; 64];
    answer[..32].copy_from_slice(&mac(key, &challenge));
    answer[32..].copy_from_slice(&ours);
    stream.write_all(&answer)?;
    let mut proof = [0u8; 32];
    // A server that rejects us hangs up instead of answering.
    stream.read_exact(&mut proof).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => Refused::Authentication,
        _ => Refused::Io(e),
    })?;
    if !verify(key, &ours, &proof) {
        return Err(Refused::Authentication);
    }
    send(stream, &ByteBuf::from(build.to_vec()))?;
    Ok(())
}

/// A number for [`Request::DictAdd`]: the kind says how the stored value is encoded.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) enum Number {
    Signed(i64),
    Unsigned(u64),
    F32(f32),
    F64(f64),
}

/// The kinds of shared objects, for named lookups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Kind {
    Dict,
    List,
    Queue,
    Lock,
    Event,
}

/// What a client asks.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    NewDict,
    DictGet {
        id: u64,
        key: ByteBuf,
    },
    DictInsert {
        id: u64,
        key: ByteBuf,
        value: ByteBuf,
    },
    DictRemove {
        id: u64,
        key: ByteBuf,
    },
    DictContains {
        id: u64,
        key: ByteBuf,
    },
    DictLen {
        id: u64,
    },
    DictItems {
        id: u64,
    },
    DictClear {
        id: u64,
    },
    DictExtend {
        id: u64,
        items: Vec<(ByteBuf, ByteBuf)>,
    },
    /// Apply the update function whose trampoline is at `entry` (an offset in the server's own
    /// build — refused from clients of another build) to one entry, under the dict's lock.
    DictApply {
        id: u64,
        key: ByteBuf,
        entry: i64,
    },
    /// Add `delta` to one numeric entry (absent counts as zero), under the dict's lock.
    DictAdd {
        id: u64,
        key: ByteBuf,
        delta: Number,
    },
    NewList,
    ListPush {
        id: u64,
        value: ByteBuf,
    },
    ListPop {
        id: u64,
    },
    ListGet {
        id: u64,
        index: u64,
    },
    ListSet {
        id: u64,
        index: u64,
        value: ByteBuf,
    },
    ListLen {
        id: u64,
    },
    ListExtend {
        id: u64,
        values: Vec<ByteBuf>,
    },
    /// Remove the first element equal (as bytes) to `value`.
    ListRemove {
        id: u64,
        value: ByteBuf,
    },
    ListItems {
        id: u64,
    },
    /// As `DictApply`, on element `index`.
    ListApply {
        id: u64,
        index: u64,
        entry: i64,
    },
    NewQueue,
    QueuePut {
        id: u64,
        value: ByteBuf,
    },
    /// Waits up to `timeout_ms` (`None`: for as long as it takes); `Value(None)` on timeout.
    QueueGet {
        id: u64,
        timeout_ms: Option<u64>,
    },
    QueueLen {
        id: u64,
    },
    NewLock,
    /// Held by this connection until released or the connection closes.
    LockAcquire {
        id: u64,
        timeout_ms: Option<u64>,
    },
    LockRelease {
        id: u64,
    },
    NewEvent,
    EventSet {
        id: u64,
    },
    EventClear {
        id: u64,
    },
    EventIsSet {
        id: u64,
    },
    EventWait {
        id: u64,
        timeout_ms: Option<u64>,
    },
    NewSemaphore {
        value: u32,
        bound: Option<u32>,
    },
    SemaphoreAcquire {
        id: u64,
        timeout_ms: Option<u64>,
    },
    SemaphoreRelease {
        id: u64,
    },
    SemaphoreValue {
        id: u64,
    },
    /// A queue that counts unfinished items (`task_done`, `join`).
    NewJoinableQueue,
    QueueTaskDone {
        id: u64,
    },
    QueueJoin {
        id: u64,
        timeout_ms: Option<u64>,
    },
    /// Host a new object of a user type, made by the constructor at offset `entry` (same
    /// build only).
    NewCustom {
        entry: i64,
    },
    /// Hand an encoded request to a hosted user object; its encoded response comes back.
    CustomCall {
        id: u64,
        request: ByteBuf,
    },
    NewRLock,
    RLockAcquire {
        id: u64,
        timeout_ms: Option<u64>,
    },
    RLockRelease {
        id: u64,
    },
    NewBarrier {
        parties: u32,
    },
    /// `Len(index)` when the barrier passes, `Bool(false)` when it is (or becomes) broken.
    BarrierWait {
        id: u64,
        timeout_ms: Option<u64>,
    },
    BarrierAbort {
        id: u64,
    },
    BarrierReset {
        id: u64,
    },
    /// A condition variable over the hosted lock `lock`.
    NewCondition {
        lock: u64,
    },
    /// Releases the lock (which this connection must hold), waits for a notification (or the
    /// timeout), takes the lock back; `Bool(notified)`.
    ConditionWait {
        id: u64,
        timeout_ms: Option<u64>,
    },
    /// Wakes up to `n` waiters (this connection must hold the lock).
    ConditionNotify {
        id: u64,
        n: u32,
    },
    /// The object registered under `name` (made, of `kind`, if there is none yet).
    Named {
        kind: Kind,
        name: String,
    },
}

/// What the server answers.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    Id(u64),
    Value(Option<ByteBuf>),
    Bool(bool),
    Len(u64),
    Items(Vec<(ByteBuf, ByteBuf)>),
    Elements(Vec<ByteBuf>),
    Done,
    /// The request was understood but cannot be done (no such object, a type mismatch, …).
    Refused(String),
}
