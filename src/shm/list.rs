//! [`ShareableList`]: a fixed-length list of serde values in one shared segment, each item in a
//! slot sized when the list is made.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use serde::de::DeserializeOwned;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ErrorKind, Result};
use crate::handle;
use crate::shm::{Shared, SharedState, type_hash};
use crate::sync::raw::{Acquired, RawMutex};

/// What a list is, in errors.
const HOLDER: &str = "a shareable list";

/// `used` of a slot whose writer died in the middle of writing it.
const TORN: u32 = u32::MAX;
/// Bytes of one slot's entry in the table at the start of the tail.
const ENTRY: usize = 16;

/// The list's header; the tail holds a table of `len` entries (offset `u64`, capacity `u32`,
/// bytes used `u32`) and then the slots.
#[repr(C)]
pub(crate) struct ListHeader {
    lock: RawMutex,
    /// Identifies the item type, checked when a handle is received.
    type_hash: AtomicU64,
    len: AtomicU64,
    /// The slot being written, plus one (0: none): a writer killed mid-write leaves it, and the
    /// next holder of the lock marks that slot torn instead of handing out half an item.
    writing: AtomicU64,
}

// SAFETY: repr(C), a robust mutex and atomics; no destructor.
unsafe impl SharedState for ListHeader {
    const KIND: u32 = 10;
    const NAME: &'static str = "ShareableList";
}

/// A list of a fixed length whose items live in shared memory, each in its own slot: any
/// process holding it reads and replaces items in place, with no server in between.
///
/// Items are any serde values without handles. Each slot is as large as its first item's
/// encoding (at least 8 bytes, as Python rounds them), or larger with
/// [`with_room`](Self::with_room); a later item that does not fit its slot is refused, as
/// Python refuses a longer `str`. Reads and writes take the list's robust lock, so an item is
/// never seen half-written; a process killed in the middle of writing one leaves that item
/// reporting the death until it is set again, and every other item as it was.
///
/// Unlike Python's, the list has no name in `/dev/shm`: it travels as a handle in a process's
/// arguments (or over a pipe), and its memory goes with the last process that holds it.
///
/// ```
/// use multiproc::{Process, shm::ShareableList};
///
/// fn grade(marks: ShareableList<(String, u32)>) {
///     let (name, mark) = marks.get(1).unwrap();
///     marks.set(1, (name, mark + 10)).unwrap();
/// }
///
/// let marks = ShareableList::new([("ann".to_string(), 71), ("bob".to_string(), 64)]).unwrap();
/// let mut teacher = Process::spawn(grade, (marks.clone(),)).unwrap();
/// teacher.join().unwrap();
/// assert_eq!(marks.get(1).unwrap(), ("bob".to_string(), 74));
/// ```
/// Python counterpart: `multiprocessing.shared_memory.ShareableList`.
pub struct ShareableList<T> {
    shared: Shared<ListHeader>,
    _type: PhantomData<fn(T) -> T>,
}

impl<T> Clone for ShareableList<T> {
    /// Another handle to the same list.
    fn clone(&self) -> ShareableList<T> {
        ShareableList { shared: self.shared.clone(), _type: PhantomData }
    }
}

impl<T> fmt::Debug for ShareableList<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShareableList").field("len", &self.len()).finish()
    }
}

impl<T> Serialize for ShareableList<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.shared.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for ShareableList<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<ShareableList<T>, D::Error> {
        let list = ShareableList { shared: Shared::<ListHeader>::deserialize(deserializer)?, _type: PhantomData };
        list.check().map_err(D::Error::custom)?;
        Ok(list)
    }
}

impl<T> ShareableList<T> {
    /// The number of items (fixed when the list was made).
    ///
    /// ```
    /// let list = multiproc::shm::ShareableList::new([1, 2, 3]).unwrap();
    /// assert_eq!(list.len(), 3);
    /// ```
    /// Python counterpart: `len(sl)`.
    pub fn len(&self) -> usize {
        self.shared.len.load(Ordering::Relaxed) as usize
    }

    /// Whether the list has no items.
    ///
    /// ```
    /// let list = multiproc::shm::ShareableList::<u8>::new([]).unwrap();
    /// assert!(list.is_empty());
    /// ```
    /// Python counterpart: `len(sl) == 0`.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks a received list: the item type and the table's bounds.
    fn check(&self) -> std::result::Result<(), String> {
        if self.shared.type_hash.load(Ordering::Relaxed) != type_hash::<T>() {
            return Err(format!("the shared list does not hold {}", std::any::type_name::<T>()));
        }
        let tail = self.shared.tail().1;
        let table = self.len().checked_mul(ENTRY).filter(|&t| t <= tail).ok_or("the list's table overruns it")?;
        for i in 0..self.len() {
            let (offset, capacity) = self.slot(i);
            let end = (offset as usize).checked_add(capacity as usize);
            if (offset as usize) < table || end.is_none_or(|end| end > tail) {
                return Err(format!("slot {i} lies outside the list"));
            }
        }
        Ok(())
    }

    /// Slot `i`'s entry: its offset in the tail and its capacity.
    fn slot(&self, i: usize) -> (u64, u32) {
        (self.entry_u64(i, 0).load(Ordering::Relaxed), self.entry_u32(i, 8).load(Ordering::Relaxed))
    }

    /// Slot `i`'s count of bytes used (or [`TORN`]).
    fn used(&self, i: usize) -> &AtomicU32 {
        self.entry_u32(i, 12)
    }

    fn entry_u64(&self, i: usize, at: usize) -> &AtomicU64 {
        debug_assert!(i < self.len());
        // SAFETY: entries are 16 bytes from the tail's start (64-aligned), `i < len` and the
        // table fits the tail (checked on receipt, true by construction); an 8-aligned atomic
        // word there is valid for any bytes.
        unsafe { &*self.shared.tail().0.as_ptr().add(i * ENTRY + at).cast::<AtomicU64>() }
    }

    fn entry_u32(&self, i: usize, at: usize) -> &AtomicU32 {
        debug_assert!(i < self.len());
        // SAFETY: as in `entry_u64`, for a 4-aligned word.
        unsafe { &*self.shared.tail().0.as_ptr().add(i * ENTRY + at).cast::<AtomicU32>() }
    }

    /// Runs `f` with the list's lock held; a dead holder's half-written slot is marked torn
    /// first.
    fn locked<R>(&self, f: impl FnOnce() -> R) -> R {
        let header = &*self.shared;
        if let Ok(Acquired::OwnerDied(_)) = header.lock.lock(None) {
            let writing = header.writing.swap(0, Ordering::Relaxed);
            if writing != 0 && (writing as usize) <= self.len() {
                self.used(writing as usize - 1).store(TORN, Ordering::Relaxed);
            }
        }
        let out = f();
        header.lock.unlock();
        out
    }

    fn out_of_range(&self, index: usize) -> Error {
        Error::new(ErrorKind::InvalidInput, format!("index {index} is out of range for a list of {}", self.len()))
    }
}

impl<T: Serialize + DeserializeOwned> ShareableList<T> {
    /// A list of `items`, each slot as large as its item's encoding (at least 8 bytes).
    ///
    /// # Errors
    /// [`ErrorKind::Encode`] if an item cannot be encoded;
    /// [`ErrorKind::HandleOutsideTransfer`] if one holds a handle; [`ErrorKind::Os`] if no
    /// shared memory can be had.
    ///
    /// ```
    /// let list = multiproc::shm::ShareableList::new(["howdy", "hi"].map(String::from)).unwrap();
    /// assert_eq!(list.to_vec().unwrap(), ["howdy", "hi"]);
    /// ```
    /// Python counterpart: `ShareableList(sequence)`.
    pub fn new(items: impl IntoIterator<Item = T>) -> Result<ShareableList<T>> {
        ShareableList::with_room(items, 8)
    }

    /// A list of `items` whose slots hold at least `room` bytes each, so that items may grow
    /// up to that (a `String` of `room - 1` bytes, say).
    ///
    /// # Errors
    /// As [`new`](Self::new).
    ///
    /// ```
    /// let list = multiproc::shm::ShareableList::with_room([String::new()], 64).unwrap();
    /// list.set(0, "a longer string than the first".into()).unwrap();
    /// ```
    /// Python counterpart: none (Python sizes each slot by its first item only).
    pub fn with_room(items: impl IntoIterator<Item = T>, room: usize) -> Result<ShareableList<T>> {
        let encoded: Vec<Vec<u8>> =
            items.into_iter().map(|item| handle::encode_bytes_only(&item, HOLDER)).collect::<Result<_>>()?;
        let table = encoded.len() * ENTRY;
        let too_large = || Error::new(ErrorKind::InvalidInput, "a shareable list this large cannot be made");
        let mut slots = Vec::with_capacity(encoded.len());
        let mut end = table;
        for bytes in &encoded {
            let capacity = bytes.len().max(room).max(8).next_multiple_of(8);
            let capacity = u32::try_from(capacity).ok().filter(|&c| c < TORN).ok_or_else(too_large)?;
            slots.push((end as u64, capacity));
            end = end.checked_add(capacity as usize).ok_or_else(too_large)?;
        }
        let header = ListHeader {
            lock: RawMutex::new(),
            type_hash: AtomicU64::new(type_hash::<T>()),
            len: AtomicU64::new(encoded.len() as u64),
            writing: AtomicU64::new(0),
        };
        let list = ShareableList { shared: Shared::with_tail(header, end.max(1))?, _type: PhantomData };
        for (i, (bytes, (offset, capacity))) in encoded.iter().zip(slots).enumerate() {
            list.entry_u64(i, 0).store(offset, Ordering::Relaxed);
            list.entry_u32(i, 8).store(capacity, Ordering::Relaxed);
            list.write_slot(i, bytes);
        }
        Ok(list)
    }

    /// Copies `bytes` into slot `i` (which they fit). Holds the lock, or the list is not yet
    /// shared.
    fn write_slot(&self, i: usize, bytes: &[u8]) {
        let (offset, capacity) = self.slot(i);
        debug_assert!(bytes.len() <= capacity as usize);
        // SAFETY: the slot lies within the tail (checked on receipt, true by construction) and
        // holds `bytes` (checked by the callers); the lock keeps other writers and readers out.
        unsafe {
            let at = self.shared.tail().0.as_ptr().add(offset as usize);
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), at, bytes.len());
        }
        self.used(i).store(bytes.len() as u32, Ordering::Relaxed);
    }

    /// The item at `index`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if `index` is out of range; [`ErrorKind::Decode`] if the
    /// item's writer died in the middle of writing it (until the next `set`).
    ///
    /// ```
    /// let list = multiproc::shm::ShareableList::new([1.5, 2.5]).unwrap();
    /// assert_eq!(list.get(1).unwrap(), 2.5);
    /// assert!(list.get(2).is_err());
    /// ```
    /// Python counterpart: `sl[index]`.
    pub fn get(&self, index: usize) -> Result<T> {
        if index >= self.len() {
            return Err(self.out_of_range(index));
        }
        let bytes = self.locked(|| {
            let used = self.used(index).load(Ordering::Relaxed);
            if used == TORN {
                return None;
            }
            let (offset, _) = self.slot(index);
            // SAFETY: the slot lies within the tail and `used` never exceeds its capacity (only
            // `write_slot` sets it); the lock keeps writers out while it is copied.
            let slot = unsafe {
                std::slice::from_raw_parts(self.shared.tail().0.as_ptr().add(offset as usize), used as usize)
            };
            Some(slot.to_vec())
        });
        let bytes = bytes.ok_or_else(|| {
            Error::new(ErrorKind::Decode, format!("item {index} was being written by a process that died"))
        })?;
        handle::receiving(|| handle::decode_exact::<T>(&bytes)).map_err(|e| {
            Error::new(ErrorKind::Decode, format!("item {index}: {}", crate::codec::decode_failure::<T>(&bytes, &e)))
        })
    }

    /// Replaces the item at `index`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if `index` is out of range or the item's encoding is larger
    /// than its slot (the old item stays); otherwise as [`new`](Self::new).
    ///
    /// ```
    /// let list = multiproc::shm::ShareableList::new(["ab".to_string()]).unwrap();
    /// list.set(0, "xyz".into()).unwrap(); // fits: the slot holds 8 bytes
    /// assert!(list.set(0, "far too long for that slot".into()).is_err());
    /// assert_eq!(list.get(0).unwrap(), "xyz");
    /// ```
    /// Python counterpart: `sl[index] = value`.
    pub fn set(&self, index: usize, item: T) -> Result<()> {
        if index >= self.len() {
            return Err(self.out_of_range(index));
        }
        let bytes = handle::encode_bytes_only(&item, HOLDER)?;
        let capacity = self.slot(index).1 as usize;
        if bytes.len() > capacity {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("item {index} takes {} bytes; its slot holds {capacity}", bytes.len()),
            ));
        }
        self.locked(|| {
            self.shared.writing.store(index as u64 + 1, Ordering::Relaxed);
            self.write_slot(index, &bytes);
            self.shared.writing.store(0, Ordering::Relaxed);
        });
        Ok(())
    }

    /// Every item, in order (each read under the lock; items set meanwhile may show either way).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    ///
    /// ```
    /// let list = multiproc::shm::ShareableList::new([3u8, 1, 2]).unwrap();
    /// assert_eq!(list.to_vec().unwrap(), [3, 1, 2]);
    /// ```
    /// Python counterpart: `list(sl)`.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }

    /// How many items equal `value`.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    ///
    /// ```
    /// let list = multiproc::shm::ShareableList::new([1, 2, 1]).unwrap();
    /// assert_eq!(list.count(&1).unwrap(), 2);
    /// ```
    /// Python counterpart: `sl.count(value)`.
    pub fn count(&self, value: &T) -> Result<usize>
    where
        T: PartialEq,
    {
        Ok(self.to_vec()?.iter().filter(|item| *item == value).count())
    }

    /// The index of the first item equal to `value`, if any (Python raises `ValueError`).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    ///
    /// ```
    /// let list = multiproc::shm::ShareableList::new(['a', 'b']).unwrap();
    /// assert_eq!(list.index(&'b').unwrap(), Some(1));
    /// assert_eq!(list.index(&'z').unwrap(), None);
    /// ```
    /// Python counterpart: `sl.index(value)`.
    pub fn index(&self, value: &T) -> Result<Option<usize>>
    where
        T: PartialEq,
    {
        Ok(self.to_vec()?.iter().position(|item| item == value))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::ShareableList;
    use crate::error::ErrorKind;

    /// A writer killed with the lock held, half-way through an item: the next reader takes the
    /// lock over and reports that item torn — never half of it — and the other items as they were;
    /// a `set` mends it.
    #[test]
    fn a_writer_killed_mid_item_leaves_that_item_reporting_it_and_the_rest_whole() {
        let list = ShareableList::new(["first".to_string(), "second".to_string()]).unwrap();
        // SAFETY: the child only takes the list's lock (atomics and a futex), writes part of a
        // slot the way `set` does, and exits without unwinding or unlocking.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let _ = list.shared.lock.lock(None);
            list.shared.writing.store(2, Ordering::Relaxed);
            list.write_slot(1, &[6, b'h', b'a', b'l']); // a length of 6, three bytes in: killed here
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: reaps the child forked above.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        let torn = list.get(1).unwrap_err();
        assert_eq!(torn.kind(), ErrorKind::Decode);
        assert!(torn.to_string().contains("died"), "{torn}");
        assert_eq!(list.get(0).unwrap(), "first");
        list.set(1, "mended".into()).unwrap();
        assert_eq!(list.to_vec().unwrap(), ["first", "mended"]);
    }
}
