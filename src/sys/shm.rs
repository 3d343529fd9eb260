//! Shared memory segments backed by a memfd, mapped `MAP_SHARED`.
//!
//! A segment is anonymous (it has no name in `/dev/shm`), so nothing is left behind when the last
//! process holding its descriptor or a mapping of it exits, however it exits.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;

use rustix::fs::MemfdFlags;
use rustix::mm::{MapFlags, ProtFlags};

/// A mapping of a whole memfd, unmapped on drop.
pub(crate) struct Mapping {
    fd: OwnedFd,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; what is stored in it is made of atomics (see
// `shm::SharedState`), so sharing and sending the pointer between threads is sound.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Creates a zero-filled segment of `len` bytes and maps it.
    pub(crate) fn create(name: &str, len: usize) -> io::Result<Mapping> {
        let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC)?;
        rustix::fs::ftruncate(&fd, len as u64)?;
        Mapping::map(fd)
    }

    /// Maps the whole of an existing segment.
    pub(crate) fn map(fd: OwnedFd) -> io::Result<Mapping> {
        let len = usize::try_from(rustix::fs::fstat(&fd)?.st_size).map_err(|_| io::ErrorKind::InvalidData)?;
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "empty shared memory segment"));
        }
        // SAFETY: a fresh mapping chosen by the kernel (null hint) of a descriptor we own, sized
        // to the file; it aliases no Rust object.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd.as_fd(),
                0,
            )?
        };
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(io::ErrorKind::InvalidData)?;
        Ok(Mapping { fd, ptr, len })
    }

    /// The segment's descriptor, for passing it to another process.
    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// The mapped bytes' start.
    pub(crate) fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// The mapped length.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping made in `map`, and no reference into it
        // outlives `self` (views borrow the `Mapping`).
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The longest name a named segment may have (a file name in `/dev/shm`).
pub(crate) const MAX_NAME: usize = 200;

/// Checks a segment name: a plain file name, no slashes, not `.` or `..`.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0')
        && !name.contains('\n')
}

/// Creates the named segment `name` (in `/dev/shm`) of `len` bytes; fails if it exists.
pub(crate) fn create_named(name: &str, len: usize) -> io::Result<OwnedFd> {
    use rustix::shm::OFlags;
    let fd = rustix::shm::open(
        name,
        OFlags::CREATE | OFlags::EXCL | OFlags::RDWR,
        rustix::fs::Mode::from_bits_truncate(0o600),
    )?;
    if let Err(err) = rustix::fs::ftruncate(&fd, len as u64) {
        let _ = rustix::shm::unlink(name);
        return Err(err.into());
    }
    Ok(fd)
}

/// Opens the existing named segment `name` for reading and writing.
pub(crate) fn open_named(name: &str) -> io::Result<OwnedFd> {
    Ok(rustix::shm::open(name, rustix::shm::OFlags::RDWR, rustix::fs::Mode::empty())?)
}

/// Removes the name `name` from `/dev/shm`; mappings already made stay valid.
pub(crate) fn unlink_named(name: &str) -> io::Result<()> {
    Ok(rustix::shm::unlink(name)?)
}

/// The machine's physical memory in bytes (0 if it cannot be told).
pub(crate) fn physical_memory() -> u64 {
    // SAFETY: sysconf(3) only reads system parameters.
    let (pages, page) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    u64::try_from(pages).unwrap_or(0).saturating_mul(u64::try_from(page).unwrap_or(0))
}
