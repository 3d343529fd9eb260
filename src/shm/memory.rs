//! [`SharedMemory`]: a block of bytes that processes share, named in `/dev/shm` (so that any
//! process can attach to it by name) or anonymous (passed as a handle).

use std::fmt;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ErrorKind, Result};
use crate::handle;
use crate::sys;
use crate::sys::shm::Mapping;

const MAGIC: u64 = u64::from_le_bytes(*b"MPROCMEM");
const LAYOUT_VERSION: u32 = 1;
/// The user's bytes start here; the header before them says what the segment is.
const DATA_OFFSET: usize = 64;

#[repr(C)]
struct Header {
    magic: u64,
    version: u32,
    _reserved: u32,
    /// The size asked for at creation (the segment may be a little longer).
    size: u64,
}

struct Segment {
    map: Mapping,
    name: Option<String>,
    size: usize,
}

/// A block of bytes in shared memory.
///
/// A named segment lives in `/dev/shm` under its name until [`unlink`](Self::unlink)ed; any
/// process can [`attach`](Self::attach) to it by name, including one not started by multiproc (the
/// bytes follow a 64-byte header). If the process that created it ends without unlinking it —
/// even by SIGKILL — a small cleaner process unlinks it once that process is gone (whatever its
/// start method, and while its parent and siblings live on), so nothing is left behind. The
/// cleaner ignores SIGINT, SIGTERM and SIGHUP, and if it is killed the creator starts another. An [anonymous](Self::anonymous) segment has no
/// name and vanishes with the last process that holds it. Either kind can be passed in a
/// process's arguments.
///
/// Access goes through copies ([`read_at`](Self::read_at), [`write_at`](Self::write_at)) or
/// through [`bytes`](Self::bytes), a slice of atomic bytes: other processes may change the bytes
/// at any time, so no plain `&[u8]` is handed out except through the `unsafe`
/// [`as_slice`](Self::as_slice).
///
/// ```
/// use multiproc::{Process, shm::SharedMemory};
///
/// fn shout(name: String) {
///     let shm = SharedMemory::attach(&name).unwrap();
///     let mut buf = [0u8; 5];
///     shm.read_at(0, &mut buf).unwrap();
///     shm.write_at(0, &buf.to_ascii_uppercase()).unwrap();
/// }
///
/// let shm = SharedMemory::create(None, 4096).unwrap();
/// shm.write_at(0, b"hello").unwrap();
/// let mut child = Process::spawn(shout, (shm.name().unwrap().to_string(),)).unwrap();
/// child.join().unwrap();
/// let mut buf = [0u8; 5];
/// shm.read_at(0, &mut buf).unwrap();
/// assert_eq!(&buf, b"HELLO");
/// shm.unlink().unwrap();
/// ```
/// Python counterpart: `multiprocessing.shared_memory.SharedMemory`.
#[derive(Clone)]
pub struct SharedMemory {
    segment: Arc<Segment>,
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory").field("name", &self.segment.name).field("size", &self.segment.size).finish()
    }
}

/// A name nobody else is likely to pick: the pid, a counter, and bits of a randomly keyed hash.
fn random_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("mp-{}-{:016x}", std::process::id(), hasher.finish())
}

impl SharedMemory {
    fn from_map(map: Mapping, name: Option<String>, size: usize) -> SharedMemory {
        SharedMemory { segment: Arc::new(Segment { map, name, size }) }
    }

    fn init(map: &Mapping, size: usize) {
        let header = Header { magic: MAGIC, version: LAYOUT_VERSION, _reserved: 0, size: size as u64 };
        // SAFETY: the mapping is fresh, page-aligned and longer than the header; nobody else can
        // have attached before the name or descriptor is handed out... except by name, so the
        // magic is written last (see `check`).
        unsafe {
            let at = map.ptr().as_ptr().cast::<Header>();
            std::ptr::addr_of_mut!((*at).version).write(header.version);
            std::ptr::addr_of_mut!((*at).size).write(header.size);
            (*at.cast::<AtomicU64>()).store(MAGIC, Ordering::Release);
        }
    }

    /// Checks the header of a mapped segment; returns the size it holds.
    fn check(map: &Mapping) -> Result<usize> {
        let bad =
            |what: &str| Error::new(ErrorKind::InvalidInput, format!("not a multiproc shared memory segment: {what}"));
        if map.len() < DATA_OFFSET {
            return Err(bad("too small for a header"));
        }
        // SAFETY: the mapping holds at least the 64-byte header, page-aligned; its fields are
        // plain integers, valid for any bytes; the magic is read atomically (it is written last).
        let header = unsafe {
            let at = map.ptr().as_ptr().cast::<Header>();
            ((*at.cast::<AtomicU64>()).load(Ordering::Acquire), (*at).version, (*at).size)
        };
        if header.0 != MAGIC {
            return Err(bad("no header (not created by multiproc, or not finished being created)"));
        }
        if header.1 != LAYOUT_VERSION {
            return Err(bad(&format!("layout version {} (this build reads {LAYOUT_VERSION})", header.1)));
        }
        let size = usize::try_from(header.2).map_err(|_| bad("size out of range"))?;
        if size > map.len() - DATA_OFFSET {
            return Err(bad(&format!("says {size} bytes but the segment holds {}", map.len() - DATA_OFFSET)));
        }
        Ok(size)
    }

    /// Creates a named segment of `size` bytes (zeroed): named `name`, or a fresh random name if
    /// `None`. The creator should [`unlink`](Self::unlink) it when done; if it never does, the
    /// cleaner does once it is gone.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a bad name (empty, with `/`, over 200 bytes), a size of 0 or a size too
    /// large; [`ErrorKind::Os`] if the name exists or `/dev/shm` refuses.
    ///
    /// ```
    /// let shm = multiproc::shm::SharedMemory::create(None, 1024).unwrap();
    /// assert_eq!(shm.len(), 1024);
    /// assert!(shm.name().unwrap().starts_with("mp-"));
    /// shm.unlink().unwrap();
    /// ```
    /// Python counterpart: `SharedMemory(name=None, create=True, size=1024)`.
    pub fn create(name: Option<&str>, size: usize) -> Result<SharedMemory> {
        if size == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "a shared memory segment to create must have a positive size",
            ));
        }
        let name = name.map_or_else(random_name, str::to_owned);
        if !sys::shm::valid_name(&name) {
            return Err(Error::new(ErrorKind::InvalidInput, format!("{name:?} is not a valid shared memory name")));
        }
        let total = size
            .checked_add(DATA_OFFSET)
            .filter(|&t| t <= isize::MAX as usize)
            .ok_or_else(|| Error::new(ErrorKind::InvalidInput, format!("a segment of {size} bytes is too large")))?;
        let fd = sys::shm::create_named(&name, total)
            .map_err(|e| Error::os(&format!("creating shared memory {name:?}"), e))?;
        sys::tracker::register(&name);
        let map = match Mapping::map(fd) {
            Ok(map) => map,
            Err(err) => {
                let _ = sys::shm::unlink_named(&name);
                sys::tracker::unregister(&name);
                return Err(Error::os(&format!("mapping shared memory {name:?}"), err));
            }
        };
        SharedMemory::init(&map, size);
        Ok(SharedMemory::from_map(map, Some(name), size))
    }

    /// Creates an anonymous segment of `size` bytes: no name, gone with the last process that
    /// holds it; pass it in a process's arguments to share it.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a size too large; [`ErrorKind::Os`] if none can be had.
    ///
    /// ```
    /// let shm = multiproc::shm::SharedMemory::anonymous(64).unwrap();
    /// assert_eq!(shm.name(), None);
    /// ```
    /// Python counterpart: none (Python's segments always have a name).
    pub fn anonymous(size: usize) -> Result<SharedMemory> {
        let total = size
            .checked_add(DATA_OFFSET)
            .filter(|&t| t <= isize::MAX as usize)
            .ok_or_else(|| Error::new(ErrorKind::InvalidInput, format!("a segment of {size} bytes is too large")))?;
        let map = Mapping::create("SharedMemory", total).map_err(|e| Error::os("creating shared memory", e))?;
        SharedMemory::init(&map, size);
        Ok(SharedMemory::from_map(map, None, size))
    }

    /// Attaches to the named segment `name`, made by any process.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] (with the OS's "not found") if there is no such segment;
    /// [`ErrorKind::InvalidInput`] if it is not a multiproc segment (no header, another layout
    /// version) or the name is invalid.
    ///
    /// ```
    /// use multiproc::shm::SharedMemory;
    /// let shm = SharedMemory::create(None, 16).unwrap();
    /// let again = SharedMemory::attach(shm.name().unwrap()).unwrap();
    /// again.write_at(0, &[42]).unwrap();
    /// assert_eq!(shm.bytes()[0].load(std::sync::atomic::Ordering::Relaxed), 42);
    /// shm.unlink().unwrap();
    /// assert!(SharedMemory::attach("no-such-segment").is_err());
    /// ```
    /// Python counterpart: `SharedMemory(name)`.
    pub fn attach(name: &str) -> Result<SharedMemory> {
        if !sys::shm::valid_name(name) {
            return Err(Error::new(ErrorKind::InvalidInput, format!("{name:?} is not a valid shared memory name")));
        }
        let fd = sys::shm::open_named(name).map_err(|e| Error::os(&format!("attaching shared memory {name:?}"), e))?;
        let map = Mapping::map(fd).map_err(|e| Error::os(&format!("mapping shared memory {name:?}"), e))?;
        let size = SharedMemory::check(&map)?;
        Ok(SharedMemory::from_map(map, Some(name.to_owned()), size))
    }

    /// The segment's name (`None` for an anonymous one).
    ///
    /// ```
    /// let shm = multiproc::shm::SharedMemory::create(Some("mp-doc-name"), 8).unwrap();
    /// assert_eq!(shm.name(), Some("mp-doc-name"));
    /// shm.unlink().unwrap();
    /// ```
    /// Python counterpart: `shm.name`.
    pub fn name(&self) -> Option<&str> {
        self.segment.name.as_deref()
    }

    /// Its size in bytes, as created.
    ///
    /// ```
    /// assert_eq!(multiproc::shm::SharedMemory::anonymous(100).unwrap().len(), 100);
    /// ```
    /// Python counterpart: `shm.size`.
    pub fn len(&self) -> usize {
        self.segment.size
    }

    /// Whether it holds no bytes.
    ///
    /// ```
    /// assert!(multiproc::shm::SharedMemory::anonymous(0).unwrap().is_empty());
    /// ```
    /// Python counterpart: `shm.size == 0`.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn data(&self) -> *mut u8 {
        // SAFETY: the mapping is at least DATA_OFFSET + size bytes (checked on attach, true by
        // construction on create).
        unsafe { self.segment.map.ptr().as_ptr().add(DATA_OFFSET) }
    }

    /// The bytes, as atomics: safe to read and write while other processes do the same.
    ///
    /// ```
    /// use std::sync::atomic::Ordering;
    /// let shm = multiproc::shm::SharedMemory::anonymous(4).unwrap();
    /// shm.bytes()[3].store(7, Ordering::Relaxed);
    /// assert_eq!(shm.bytes()[3].load(Ordering::Relaxed), 7);
    /// ```
    /// Python counterpart: `shm.buf` (a memoryview).
    pub fn bytes(&self) -> &[AtomicU8] {
        // SAFETY: `len` bytes at `data` belong to the mapping, which lives as long as `self`;
        // AtomicU8 has the size and alignment of u8 and every access through it is atomic, so
        // other processes writing the same bytes is not a data race.
        unsafe { std::slice::from_raw_parts(self.data().cast::<AtomicU8>(), self.len()) }
    }

    fn range(&self, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len() => Ok(()),
            _ => Err(Error::new(
                ErrorKind::InvalidInput,
                format!("bytes {offset}..{} are outside a segment of {} bytes", offset.saturating_add(len), self.len()),
            )),
        }
    }

    /// Copies `buf.len()` bytes from offset `offset` into `buf`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if the range is outside the segment (nothing is copied).
    ///
    /// ```
    /// let shm = multiproc::shm::SharedMemory::anonymous(8).unwrap();
    /// shm.write_at(2, b"ab").unwrap();
    /// let mut two = [0u8; 2];
    /// shm.read_at(2, &mut two).unwrap();
    /// assert_eq!(&two, b"ab");
    /// assert!(shm.read_at(7, &mut two).is_err());
    /// ```
    /// Python counterpart: `bytes(shm.buf[offset:offset + n])`.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.range(offset, buf.len())?;
        copy_shared(self.bytes()[offset..].as_ptr(), buf.as_mut_ptr(), buf.len(), Direction::Out);
        Ok(())
    }

    /// Copies `data` to offset `offset`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if the range is outside the segment (nothing is copied).
    ///
    /// ```
    /// let shm = multiproc::shm::SharedMemory::anonymous(4).unwrap();
    /// shm.write_at(0, &[1, 2, 3, 4]).unwrap();
    /// assert!(shm.write_at(1, &[0; 4]).is_err());
    /// ```
    /// Python counterpart: `shm.buf[offset:offset + n] = data`.
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<()> {
        self.range(offset, data.len())?;
        copy_shared(self.bytes()[offset..].as_ptr(), data.as_ptr().cast_mut(), data.len(), Direction::In);
        Ok(())
    }

    /// The bytes as a plain slice, for code that needs one (parsers, `io::Write`).
    ///
    /// # Safety
    /// No process may write these bytes while the slice is in use (another process writing
    /// them is a data race: the slice could change under the reader).
    ///
    /// ```
    /// let shm = multiproc::shm::SharedMemory::anonymous(3).unwrap();
    /// shm.write_at(0, b"abc").unwrap();
    /// // SAFETY: no other process has this segment.
    /// assert_eq!(unsafe { shm.as_slice() }, b"abc");
    /// ```
    /// Python counterpart: `shm.buf`.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the bytes belong to the mapping; the caller promises no concurrent writes.
        unsafe { std::slice::from_raw_parts(self.data(), self.len()) }
    }

    /// The bytes as a plain mutable slice.
    ///
    /// # Safety
    /// No other process (and no other reference in this one) may read or write these bytes
    /// while the slice is in use.
    ///
    /// ```
    /// let shm = multiproc::shm::SharedMemory::anonymous(3).unwrap();
    /// // SAFETY: no other process or reference uses the segment.
    /// unsafe { shm.as_mut_slice() }.copy_from_slice(b"xyz");
    /// let mut buf = [0u8; 3];
    /// shm.read_at(0, &mut buf).unwrap();
    /// assert_eq!(&buf, b"xyz");
    /// ```
    /// Python counterpart: `shm.buf` (writable).
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [u8] {
        // SAFETY: the bytes belong to the mapping; the caller promises exclusive use.
        unsafe { std::slice::from_raw_parts_mut(self.data(), self.len()) }
    }

    /// Removes the segment's name from `/dev/shm` (the memory stays until every process has let
    /// go of it). A no-op for an anonymous segment.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if the name is already gone.
    ///
    /// ```
    /// use multiproc::shm::SharedMemory;
    /// let shm = SharedMemory::create(None, 8).unwrap();
    /// let name = shm.name().unwrap().to_string();
    /// shm.unlink().unwrap();
    /// assert!(SharedMemory::attach(&name).is_err());
    /// shm.write_at(0, &[1]).unwrap(); // still usable here
    /// ```
    /// Python counterpart: `shm.unlink()`.
    pub fn unlink(&self) -> Result<()> {
        let Some(name) = self.name() else { return Ok(()) };
        sys::shm::unlink_named(name).map_err(|e| Error::os(&format!("unlinking shared memory {name:?}"), e))?;
        sys::tracker::unregister(name);
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// From shared memory to private memory.
    Out,
    /// From private memory to shared memory.
    In,
}

/// Copies `len` bytes between shared memory at `shared` and private memory at `private`, with
/// the effect of relaxed atomic byte accesses on the shared side: no data race whatever other
/// processes do to those bytes meanwhile (each byte is read or written once, whole; which of
/// several concurrent writes a byte shows is unspecified, as for any racing atomics).
///
/// Out of shared memory on x86-64 this is one `rep movsb`, which the CPU runs at `memcpy` speed
/// (ERMS/FSRM): inline assembly is opaque to the compiler, so unlike a plain
/// `copy_nonoverlapping` it lets the compiler assume nothing about the shared bytes, and what the
/// instruction does — byte-wise loads and stores, each done exactly once — is exactly a sequence
/// of relaxed atomic byte accesses. Into shared memory on x86-64 with AVX, a loop of 32-byte
/// `vmovdqu` stores in inline assembly, on the same argument (each byte stored once, whole).
/// Elsewhere, word-sized relaxed atomics. Measured on this project's machines: `rep movsb` into
/// freshly mapped pages is slower than plain 8-byte stores (the page faults interrupt it), and
/// 32-byte stores beat both; out of mapped pages `rep movsb` is the fastest.
fn copy_shared(shared: *const AtomicU8, private: *mut u8, len: usize, direction: Direction) {
    #[cfg(target_arch = "x86_64")]
    if direction == Direction::In && len >= 64 && std::is_x86_feature_detected!("avx") {
        let blocks = len / 32;
        // SAFETY: AVX is there (checked just now); the arguments are in bounds as the caller
        // checked (see `copy_in_avx`).
        unsafe { copy_in_avx(private, shared.cast::<u8>().cast_mut(), blocks) };
        let done = blocks * 32;
        // The rest (under 32 bytes) word by word; `done <= len` keeps both offsets in bounds.
        copy_words(shared.wrapping_add(done), private.wrapping_add(done), len - done, direction);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if direction == Direction::Out {
        let (from, to) = (shared.cast::<u8>(), private);
        // SAFETY: `from..from + len` (shared) and `to..to + len` (the caller's buffer) are in
        // bounds (the caller checked the range) and do not overlap (one is private memory). The
        // direction flag is clear on entry, as the ABI requires; `rep movsb` leaves the flags
        // alone and uses no stack. The shared bytes are only read, by the instruction's byte
        // loads (see above), never through a Rust reference.
        unsafe {
            std::arch::asm!(
                "rep movsb",
                inout("rcx") len => _,
                inout("rsi") from => _,
                inout("rdi") to => _,
                options(nostack, preserves_flags),
            );
        }
        return;
    }
    copy_words(shared, private, len, direction);
}

/// Copies `blocks` × 32 bytes from private `from` into shared `to`, with 32-byte stores.
///
/// # Safety
/// The CPU has AVX; `from..from + 32 × blocks` is readable and `to..to + 32 × blocks` is
/// writable shared memory, not overlapping; `blocks > 0`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn copy_in_avx(from: *const u8, to: *mut u8, blocks: usize) {
    // SAFETY: by the contract above. The shared bytes are written only by these stores, each
    // byte once (see `copy_shared`), never through a Rust reference; the loop uses no stack.
    unsafe {
        std::arch::asm!(
            "2:",
            "vmovdqu {t}, ymmword ptr [{from}]",
            "vmovdqu ymmword ptr [{to}], {t}",
            "add {from}, 32",
            "add {to}, 32",
            "dec {n}",
            "jnz 2b",
            from = inout(reg) from => _,
            to = inout(reg) to => _,
            n = inout(reg) blocks => _,
            t = out(ymm_reg) _,
            options(nostack),
        );
    }
}

/// [`copy_shared`] with relaxed atomic accesses, 8 bytes at a time where aligned.
fn copy_words(shared: *const AtomicU8, private: *mut u8, len: usize, direction: Direction) {
    let mut i = 0;
    // Bytes up to an 8-aligned shared address, then whole words, then the rest.
    while i < len && (shared as usize + i) % 8 != 0 {
        copy_byte(shared, private, i, direction);
        i += 1;
    }
    while i + 8 <= len {
        // SAFETY: `shared + i` is 8-aligned (established above) and in bounds (`i + 8 <= len`,
        // the caller checked the range); `private + i` is in bounds of the caller's buffer,
        // accessed unaligned.
        unsafe {
            let word = &*shared.add(i).cast::<AtomicU64>();
            let private = private.add(i).cast::<u64>();
            match direction {
                Direction::Out => private.write_unaligned(word.load(Ordering::Relaxed)),
                Direction::In => word.store(private.read_unaligned(), Ordering::Relaxed),
            }
        }
        i += 8;
    }
    while i < len {
        copy_byte(shared, private, i, direction);
        i += 1;
    }
}

fn copy_byte(shared: *const AtomicU8, private: *mut u8, i: usize, direction: Direction) {
    // SAFETY: `i < len`, in bounds of both (checked by the caller).
    unsafe {
        let byte = &*shared.add(i);
        match direction {
            Direction::Out => private.add(i).write(byte.load(Ordering::Relaxed)),
            Direction::In => byte.store(private.add(i).read(), Ordering::Relaxed),
        }
    }
}

impl Serialize for SharedMemory {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = serializer.serialize_tuple(2)?;
        t.serialize_element(&self.segment.name)?;
        t.serialize_element(&FdRef(self))?;
        t.end()
    }
}

/// The segment's descriptor, as a handle in a transfer.
struct FdRef<'a>(&'a SharedMemory);

impl Serialize for FdRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        handle::serialize_fd(self.0.segment.map.fd().as_fd(), serializer)
    }
}

impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<SharedMemory, D::Error> {
        let (name, fd): (Option<String>, handle::Fd) = Deserialize::deserialize(deserializer)?;
        let map = Mapping::map(fd.into_owned()).map_err(D::Error::custom)?;
        let size = SharedMemory::check(&map).map_err(D::Error::custom)?;
        Ok(SharedMemory::from_map(map, name, size))
    }
}
