//! Shared state: [`Value`] and [`Array`] (plain data behind a robust lock), their lock-free
//! forms [`RawValue`] and [`RawArray`], [`SharedMemory`] (bytes, named or anonymous),
//! [`ShareableList`] (serde items in fixed slots) and [`SharedMemoryManager`] (named blocks that
//! live until it shuts down).
//!
//! ```
//! use multiproc::{Process, shm::{Array, Value}};
//!
//! fn count(total: Value<u64>, seen: Array<u8>, me: usize) {
//!     *total.lock().unwrap() += 1;
//!     seen.set(me, 1);
//! }
//!
//! let (total, seen) = (Value::new(0u64).unwrap(), Array::new(3).unwrap());
//! let mut ps: Vec<_> = (0..3).map(|i| Process::spawn(count, (total.clone(), seen.clone(), i)).unwrap()).collect();
//! ps.iter_mut().for_each(|p| p.join().unwrap());
//! assert_eq!((total.get(), seen.to_vec()), (3, vec![1, 1, 1]));
//! ```
//!
//! # The layer underneath
//! Every cross-process primitive of this crate is a `Shared<T>`: a `T` living in its own
//! anonymous shared-memory segment (a memfd), after a versioned header: a `T` living in its own anonymous shared-memory segment (a memfd), after a
//! versioned header:
//!
//! ```text
//! offset 0   magic "MPROCSHM"  u64
//!        8   layout version    u32
//!       12   kind              u32   which T (see SharedState::KIND)
//!       16   size of T         u64
//!       24   size of the tail  u64   bytes after T, for types with a variable part (a ring)
//!       64   T                       (64-byte aligned)
//!  64+|T|↑64 tail                    (64-byte aligned)
//! ```
//!
//! The handle is `Clone` (clones share one mapping) and serde-serializable: it travels as its
//! segment's descriptor (see [`crate::handle`]), and the receiving side maps the segment
//! and checks the header before it hands out a `&T`. A descriptor that is not a segment of the
//! expected kind and layout is an error, never a misread.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::os::fd::AsFd;
use std::sync::Arc;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ErrorKind, Result};
use crate::handle;
use crate::sys::shm::Mapping;

mod list;
mod manager;
mod memory;
mod value;

pub use list::ShareableList;
pub use manager::{BlockKeeper, SharedMemoryManager};
pub use memory::SharedMemory;
pub use value::{Array, ArrayGuard, RawArray, RawValue, ShmSafe, Value, ValueGuard};

/// Types that may live in a shared segment and be used from several processes at once.
///
/// # Safety
/// The type must be `#[repr(C)]`, made only of atomics and plain integers (no pointers, no
/// descriptors, no heap data), valid for any bit pattern another process of the same build can
/// write, and need no destructor. `KIND` must differ between implementing types.
pub(crate) unsafe trait SharedState: Sync + Send + Sized + 'static {
    /// Identifies the type in the segment header.
    const KIND: u32;
    /// A name for error messages.
    const NAME: &'static str;
}

/// Identifies a Rust type across processes of one build (an FNV-1a hash of its name), for the
/// segments whose header records what they hold.
pub(crate) fn type_hash<T>() -> u64 {
    std::any::type_name::<T>()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

const MAGIC: u64 = u64::from_le_bytes(*b"MPROCSHM");
const LAYOUT_VERSION: u32 = 1;
const DATA_OFFSET: usize = 64;

#[repr(C)]
struct Header {
    magic: u64,
    version: u32,
    kind: u32,
    size: u64,
    tail: u64,
}

/// Where the tail starts: after T, rounded up to 64 bytes.
const fn tail_offset<T>() -> usize {
    (DATA_OFFSET + size_of::<T>()).next_multiple_of(64)
}

/// A `T` in shared memory; see the module docs.
pub(crate) struct Shared<T: SharedState> {
    map: Arc<Mapping>,
    _type: PhantomData<T>,
}

impl<T: SharedState> Shared<T> {
    /// Places `value` in a new segment.
    pub(crate) fn new(value: T) -> Result<Shared<T>> {
        Shared::with_tail(value, 0)
    }

    /// Places `value` in a new segment followed by `tail` zeroed bytes.
    pub(crate) fn with_tail(value: T, tail: usize) -> Result<Shared<T>> {
        const { assert!(align_of::<T>() <= DATA_OFFSET) };
        let total =
            tail_offset::<T>().checked_add(tail).filter(|&total| total <= isize::MAX as usize).ok_or_else(|| {
                Error::new(ErrorKind::InvalidInput, format!("a shared {} of {tail} extra bytes is too large", T::NAME))
            })?;
        let map = Mapping::create(T::NAME, total).map_err(|e| Error::os("creating a shared memory segment", e))?;
        let header = Header {
            magic: MAGIC,
            version: LAYOUT_VERSION,
            kind: T::KIND,
            size: size_of::<T>() as u64,
            tail: tail as u64,
        };
        // SAFETY: the mapping is fresh, page-aligned and at least DATA_OFFSET + size_of::<T>()
        // bytes long, so the header at 0 and the T at DATA_OFFSET (aligned, asserted above) fit,
        // and no other process can see it yet.
        unsafe {
            map.ptr().as_ptr().cast::<Header>().write(header);
            map.ptr().as_ptr().add(DATA_OFFSET).cast::<T>().write(value);
        }
        Ok(Shared { map: Arc::new(map), _type: PhantomData })
    }

    /// Maps a segment received from another process, checking that it holds a `T`.
    fn attach(map: Mapping) -> Result<Shared<T>> {
        let wrong = |what: String| Error::new(ErrorKind::Decode, format!("not a shared {}: {what}", T::NAME));
        if map.len() < tail_offset::<T>() {
            return Err(wrong(format!("segment of {} bytes is too small", map.len())));
        }
        // SAFETY: the mapping is at least DATA_OFFSET bytes long (checked) and page-aligned;
        // Header is plain integers, valid for any bytes.
        let header = unsafe { map.ptr().as_ptr().cast::<Header>().read() };
        if header.magic != MAGIC {
            return Err(wrong("no multiproc header".into()));
        }
        if header.version != LAYOUT_VERSION {
            return Err(wrong(format!("layout version {} (this build uses {LAYOUT_VERSION})", header.version)));
        }
        if header.kind != T::KIND || header.size != size_of::<T>() as u64 {
            return Err(wrong(format!("segment holds kind {} of {} bytes", header.kind, header.size)));
        }
        if header.tail != (map.len() - tail_offset::<T>()) as u64 {
            return Err(wrong(format!("segment of {} bytes cannot hold a tail of {}", map.len(), header.tail)));
        }
        Ok(Shared { map: Arc::new(map), _type: PhantomData })
    }
}

impl<T: SharedState> Shared<T> {
    /// The variable part after `T`: its start and length. Callers synchronise access to it through
    /// the atomics in `T`.
    pub(crate) fn tail(&self) -> (std::ptr::NonNull<u8>, usize) {
        let offset = tail_offset::<T>();
        // SAFETY: `offset` is within the mapping (checked on attach, true by construction in new).
        let start = unsafe { self.map.ptr().add(offset) };
        (start, self.map.len() - offset)
    }
}

impl<T: SharedState> Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `new` or `attach` established that a T lives at DATA_OFFSET; it is only ever
        // accessed through shared references (T is made of atomics), and the mapping lives as
        // long as `self.map`.
        unsafe { &*self.map.ptr().as_ptr().add(DATA_OFFSET).cast::<T>() }
    }
}

impl<T: SharedState> Clone for Shared<T> {
    fn clone(&self) -> Shared<T> {
        Shared { map: self.map.clone(), _type: PhantomData }
    }
}

impl<T: SharedState> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Shared<{}>({:p})", T::NAME, self.map.ptr())
    }
}

impl<T: SharedState> Serialize for Shared<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        handle::serialize_fd(self.map.fd().as_fd(), serializer)
    }
}

impl<'de, T: SharedState> Deserialize<'de> for Shared<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Shared<T>, D::Error> {
        let fd = handle::deserialize_fd(deserializer)?;
        let map = Mapping::map(fd).map_err(D::Error::custom)?;
        Shared::attach(map).map_err(D::Error::custom)
    }
}
