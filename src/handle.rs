//! Handles in arguments: how an OS resource travels inside a serialized value.
//!
//! A task's arguments are serialized with serde. A handle — this module's [`Fd`], and later the
//! crate's locks, queues, pipe ends and shared-memory segments — cannot be turned into bytes, so
//! while a value is being serialized for a transfer each handle puts its descriptor into a side
//! table and writes only the table index. The table travels beside the bytes: inherited under
//! `fork`, passed with `SCM_RIGHTS` under `spawn` and `forkserver`. On the receiving side the
//! deserializer maps each index back to a descriptor that the process now owns.
//!
//! Outside such a transfer (say, `serde_json::to_string(&fd)`) serializing a handle fails with
//! [`ErrorKind::HandleOutsideTransfer`] rather than
//! writing a number that would mean nothing elsewhere.
//!
//! [`ErrorKind::HandleOutsideTransfer`]: crate::ErrorKind::HandleOutsideTransfer

use std::cell::RefCell;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ErrorKind};

/// The side table of one transfer, as the serializing or deserializing side sees it.
enum Table {
    /// Raw descriptors, borrowed from the values being serialized (which outlive the transfer).
    Sending(Vec<RawFd>),
    /// Descriptors received with the bytes, owned by the table until the values claim copies.
    Receiving(Vec<OwnedFd>),
}

thread_local! {
    static TABLE: RefCell<Option<Table>> = const { RefCell::new(None) };
    /// How many transfers between processes of this program are being encoded, and decoded, on
    /// this thread (see [`to_our_processes`], [`from_our_processes`]).
    static SENDING: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    static RECEIVING: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Whether what is being serialized on this thread goes to another process of this program's
/// tree — task arguments and results, pool tasks, pipe messages, queue items — and so may carry
/// what must not leave the tree (a manager proxy's key).
pub(crate) fn to_our_processes() -> bool {
    SENDING.with(|t| t.get() > 0)
}

/// Whether what is being deserialized on this thread came from another process of this
/// program's tree (the other end of [`to_our_processes`]): only then is a key inside it believed.
pub(crate) fn from_our_processes() -> bool {
    RECEIVING.with(|t| t.get() > 0)
}

/// Counts a transfer in progress on this thread while it lives.
struct Counted(&'static std::thread::LocalKey<std::cell::Cell<u32>>);

impl Counted {
    fn begin(counter: &'static std::thread::LocalKey<std::cell::Cell<u32>>) -> Counted {
        counter.with(|t| t.set(t.get() + 1));
        Counted(counter)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.with(|t| t.set(t.get() - 1));
    }
}

/// Runs `encode` as the encoding of a transfer to our own processes.
pub(crate) fn sending<T>(encode: impl FnOnce() -> T) -> T {
    let _counted = Counted::begin(&SENDING);
    encode()
}

/// Runs `look` as an encoding of a transfer whose descriptors are thrown away: for a pass over
/// a value that writes nothing ([`codec::fits_the_wire`](crate::codec::fits_the_wire)).
pub(crate) fn dry_run<T>(look: impl FnOnce() -> T) -> T {
    let outer = TABLE.with(|t| t.replace(Some(Table::Sending(Vec::new()))));
    let _restore = Restore(Some(outer));
    sending(look)
}

/// Runs `decode` as the decoding of a transfer from our own processes.
pub(crate) fn receiving<T>(decode: impl FnOnce() -> T) -> T {
    let _counted = Counted::begin(&RECEIVING);
    decode()
}

/// Encodes `value` for a transfer, returning its bytes and the descriptors of every handle inside.
///
/// The descriptors are borrowed from `value`, so they stay open for as long as the bytes may be
/// sent along with them.
/// Decodes the whole of `bytes` as a `T`. postcard is not self-describing, so bytes of another
/// type may still decode; but an encoding longer than a `T` is another type, not a `T` with
/// leftovers, and is refused.
pub(crate) fn decode_exact<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> postcard::Result<T> {
    match postcard::take_from_bytes(bytes)? {
        (value, []) => Ok(value),
        _ => Err(postcard::Error::DeserializeBadEncoding),
    }
}

/// Encodes `value` for a transfer; its descriptors come back borrowed from it. The value is
/// checked for shapes postcard cannot carry ([`codec::fits_the_wire`]); such a value fails as a
/// custom error, which [`codec::encode_failure`] explains.
///
/// [`codec::fits_the_wire`]: crate::codec::fits_the_wire
/// [`codec::encode_failure`]: crate::codec::encode_failure
pub(crate) fn encode<'a, T: Serialize + ?Sized>(value: &'a T) -> postcard::Result<(Vec<u8>, Vec<BorrowedFd<'a>>)> {
    if !crate::codec::fits_the_wire(value) {
        return Err(postcard::Error::SerdeSerCustom);
    }
    let outer = TABLE.with(|t| t.replace(Some(Table::Sending(Vec::new()))));
    let bytes = sending(|| postcard::to_stdvec(value));
    let table = TABLE.with(|t| t.replace(outer));
    let raws = match table {
        Some(Table::Sending(fds)) => fds,
        _ => Vec::new(),
    };
    // SAFETY: every raw descriptor in the table was written by `serialize_fd` from a `BorrowedFd`
    // that a handle inside `value` lent it, so each stays open while `value` is borrowed ('a).
    let fds = raws.into_iter().map(|raw| unsafe { BorrowedFd::borrow_raw(raw) }).collect();
    Ok((bytes?, fds))
}

/// A postcard output that appends to a borrowed buffer (which keeps what it held on error).
struct AppendTo<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for AppendTo<'_> {
    type Output = ();

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Many values appended one after another to one buffer (a pool's chunk of arguments or
/// results), each encoded as a transfer, under one side table installed for the scope's life.
///
/// Installing the table and counting the transfer once per chunk instead of once per value is
/// what makes a chunk of small items cheap. The price is a rule for callers: no user code may
/// run between two `append`s (a pool task, an input iterator), or a handle that it serializes on
/// its own would feed this transfer. So callers gather a chunk's values first, then encode them.
pub(crate) struct EncodeScope {
    // Fields drop in order: the outer table goes back, then the transfer stops being counted.
    _outer: Restore,
    _counted: Counted,
}

impl EncodeScope {
    pub(crate) fn begin() -> EncodeScope {
        let outer = Restore(Some(TABLE.with(|t| t.replace(Some(Table::Sending(Vec::new()))))));
        EncodeScope { _outer: outer, _counted: Counted::begin(&SENDING) }
    }

    /// Appends `value`'s encoding to `out` and returns the descriptors of the handles inside it
    /// (borrowed from `value`, as for [`encode`]). On error `out` may hold a partial encoding
    /// past its old length; callers truncate.
    pub(crate) fn append<'a, T: Serialize + ?Sized>(
        &mut self,
        value: &'a T,
        out: &mut Vec<u8>,
    ) -> postcard::Result<Vec<BorrowedFd<'a>>> {
        let result = postcard::serialize_with_flavor(value, AppendTo(out));
        // Taken out of the table either way, so that each value's handles are its own.
        let raws = TABLE.with(|t| match &mut *t.borrow_mut() {
            Some(Table::Sending(fds)) if !fds.is_empty() => std::mem::take(fds),
            _ => Vec::new(),
        });
        result?;
        // SAFETY: as in `encode`: each raw descriptor was lent by a handle inside `value`, which
        // stays borrowed for 'a.
        Ok(raws.into_iter().map(|raw| unsafe { BorrowedFd::borrow_raw(raw) }).collect())
    }

    /// Appends `value`'s [flat](crate::codec::flat) encoding to `out` if it has one and holds
    /// no handle; otherwise says so (`false`) and leaves `out` as it was.
    pub(crate) fn append_flat<T: Serialize + ?Sized>(&mut self, value: &T, out: &mut Vec<u8>) -> bool {
        let before = out.len();
        let flat = crate::codec::flat::append(value, out).is_ok();
        let handles = self.saw_handles();
        if !flat || handles {
            out.truncate(before);
        }
        flat && !handles
    }

    /// Whether any value appended since the last look held handles (their descriptors are
    /// forgotten: the caller encodes those values again, one by one).
    pub(crate) fn saw_handles(&mut self) -> bool {
        TABLE.with(|t| match &mut *t.borrow_mut() {
            Some(Table::Sending(fds)) if !fds.is_empty() => {
                fds.clear();
                true
            }
            _ => false,
        })
    }

    /// Forgets the handles of a value whose `Serialize` panicked part-way, so that they are not
    /// taken for the next value's.
    pub(crate) fn reset(&mut self) {
        TABLE.with(|t| {
            if let Some(Table::Sending(fds)) = &mut *t.borrow_mut() {
                fds.clear();
            }
        });
    }
}

/// The size of `value`'s encoding and whether it holds any handle, without encoding it.
pub(crate) fn measure<T: Serialize + ?Sized>(value: &T) -> postcard::Result<(usize, bool)> {
    let outer = TABLE.with(|t| t.replace(Some(Table::Sending(Vec::new()))));
    let size = sending(|| postcard::experimental::serialized_size(value));
    let table = TABLE.with(|t| t.replace(outer));
    let has_handles = matches!(table, Some(Table::Sending(fds)) if !fds.is_empty());
    Ok((size?, has_handles))
}

/// Whether no transfer's side table is open on this thread: a handle serialized now fails
/// (and deserializing one fails too), so a value that encodes or decodes cleanly holds none.
#[inline]
pub(crate) fn outside_transfers() -> bool {
    TABLE.with(|t| t.borrow().is_none())
}

/// `value`'s encoded size if it holds no handles, in one pass and without a side table: with
/// none open, a handle's serialization fails, so a size measured cleanly is a size of bytes
/// only. `None` if it holds handles, cannot be encoded, or a table is already open (an outer
/// transfer would take the handles in): [`measure`] then says which. The fast path of a queue's
/// put; call it inside [`sending`].
#[inline]
pub(crate) fn bytes_only_size<T: Serialize + ?Sized>(value: &T) -> Option<usize> {
    if !outside_transfers() {
        return None;
    }
    postcard::experimental::serialized_size(value).ok()
}

/// `value`'s bytes for `holder` (named in the error), which keeps bytes only — a shared-memory
/// slot, a cluster's server — so a value with handles is refused
/// ([`ErrorKind::HandleOutsideTransfer`]).
pub(crate) fn encode_bytes_only<T: Serialize + ?Sized>(value: &T, holder: &str) -> crate::Result<Vec<u8>> {
    let failure = |e: postcard::Error| Error::new(ErrorKind::Encode, crate::codec::encode_failure(value, &e));
    let (_, has_handles) = measure(value).map_err(failure)?;
    if has_handles {
        return Err(Error::new(
            ErrorKind::HandleOutsideTransfer,
            format!("{holder} holds bytes only; send handles over a Connection"),
        ));
    }
    sending(|| postcard::to_stdvec(value)).map_err(failure)
}

/// Deserializes with `decode`, letting handles claim descriptors from `fds` by index.
pub(crate) fn provide<T>(fds: Vec<OwnedFd>, decode: impl FnOnce() -> T) -> T {
    let _outer = Restore(Some(TABLE.with(|t| t.replace(Some(Table::Receiving(fds))))));
    receiving(decode)
}

/// Puts the table that was in place back, also when a `Serialize` or `Deserialize` panics (a
/// pool worker catches the panic and goes on with its next item).
struct Restore(Option<Option<Table>>);

impl Drop for Restore {
    fn drop(&mut self) {
        if let Some(outer) = self.0.take() {
            TABLE.with(|t| t.replace(outer));
        }
    }
}

/// Serializes a descriptor as an index into the current transfer's table.
pub(crate) fn serialize_fd<S: Serializer>(fd: BorrowedFd<'_>, serializer: S) -> Result<S::Ok, S::Error> {
    let raw = fd.as_raw_fd();
    let index = TABLE.with(|t| match &mut *t.borrow_mut() {
        Some(Table::Sending(fds)) => {
            // The same descriptor twice travels once; both indexes name it.
            Ok(fds.iter().position(|&f| f == raw).unwrap_or_else(|| {
                fds.push(raw);
                fds.len() - 1
            }))
        }
        _ => Err(Error::new(ErrorKind::HandleOutsideTransfer, format!("descriptor {raw}"))),
    });
    match index {
        Ok(index) => serializer.serialize_u32(index as u32),
        Err(err) => Err(S::Error::custom(err)),
    }
}

/// Deserializes a descriptor index and claims a descriptor of our own for it.
pub(crate) fn deserialize_fd<'de, D: Deserializer<'de>>(deserializer: D) -> Result<OwnedFd, D::Error> {
    let index = u32::deserialize(deserializer)? as usize;
    TABLE.with(|t| match &*t.borrow() {
        // Each claim is a duplicate, so a descriptor named twice yields two owners, and the
        // table's originals close when the transfer ends.
        Some(Table::Receiving(fds)) => match fds.get(index) {
            Some(fd) => fd.try_clone().map_err(D::Error::custom),
            None => Err(D::Error::custom(format!("handle index {index} beyond the {} received", fds.len()))),
        },
        _ => Err(D::Error::custom(Error::new(ErrorKind::HandleOutsideTransfer, "no descriptors were received"))),
    })
}

/// An owned file descriptor that can travel inside a task's arguments.
///
/// Wrap any descriptor — a pipe end, a socket, a file, a memfd — and put it in the arguments of
/// [`Process::spawn`](crate::Process::spawn); the child receives a working descriptor of its own,
/// under every start method. The parent keeps its copy until it drops the `Fd`.
///
/// # Example
/// ```
/// use std::io::{Read, Write};
/// use std::os::unix::net::UnixStream;
/// use multiproc::{Fd, Process};
///
/// fn greet(fd: Fd) {
///     let mut stream = UnixStream::from(fd.into_owned());
///     stream.write_all(b"hello from the child").unwrap();
/// }
///
/// let (ours, theirs) = UnixStream::pair().unwrap();
/// let mut child = Process::spawn(greet, (Fd::from(theirs),)).unwrap();
/// child.join().unwrap();
/// let mut text = String::new();
/// (&ours).read_to_string(&mut text).unwrap();
/// assert_eq!(text, "hello from the child");
/// ```
///
/// Python counterpart: `multiprocessing.reduction.DupFd` / `send_handle`, which Python uses for
/// the same job inside its pickling.
pub struct Fd(OwnedFd);

impl Fd {
    /// Takes back the owned descriptor.
    ///
    /// ```
    /// let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    /// let fd = multiproc::Fd::from(a);
    /// let owned: std::os::fd::OwnedFd = fd.into_owned();
    /// # drop(owned);
    /// ```
    /// Python counterpart: `os.dup(fd)` then owning it.
    pub fn into_owned(self) -> OwnedFd {
        self.0
    }
}

impl<T: Into<OwnedFd>> From<T> for Fd {
    fn from(fd: T) -> Fd {
        Fd(fd.into())
    }
}

impl AsFd for Fd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl IntoRawFd for Fd {
    fn into_raw_fd(self) -> RawFd {
        self.0.into_raw_fd()
    }
}

impl fmt::Debug for Fd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Fd").field(&self.0.as_raw_fd()).finish()
    }
}

impl Serialize for Fd {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_fd(self.0.as_fd(), serializer)
    }
}

impl<'de> Deserialize<'de> for Fd {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Fd, D::Error> {
        deserialize_fd(deserializer).map(Fd)
    }
}
