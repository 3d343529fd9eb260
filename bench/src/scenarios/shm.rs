//! Shared state: a counter under a Value's lock from two processes, and 256 MiB through a fresh
//! SharedMemory segment (written by a child, read by the parent) against the raw bound.

use std::time::Instant;

use multiproc::shm::{SharedMemory, Value};
use multiproc::{Context, Event, StartMethod};

use super::{BoxError, Scenario, Target};

const RAW_256M: &str = "baseline: fresh 256 MiB memfd, child memcpy in, parent memcpy out";
const MIB: usize = 1 << 20;
const SEGMENT: usize = 256 * MIB;

/// The shared-state rows.
pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario::new("value += 1 under its lock, 2 processes", 2_000_000, value_increments)
            .python("value_increments", 200_000)
            .target(Target::FasterThanCpython(1.0)),
        Scenario::new(RAW_256M, 5, raw_256m),
        Scenario::new("SharedMemory 256 MiB: child writes, parent reads", 5, shared_memory_256m)
            .python("shared_memory_256m", 5)
            .target(Target::FasterThanCpython(1.0))
            .target(Target::AtMostTimes(1.2, RAW_256M.into())),
    ]
}

fn fork() -> Context {
    Context::new(StartMethod::Fork)
}

fn add(v: Value<u64>, go: Event, n: u64) {
    go.wait();
    for _ in 0..n {
        *v.lock().unwrap() += 1;
    }
}

fn value_increments(n: u64) -> Result<f64, BoxError> {
    let (v, go) = (Value::new(0u64)?, Event::new()?);
    let half = n / 2;
    let mut workers =
        vec![fork().spawn(add, (v.clone(), go.clone(), half))?, fork().spawn(add, (v.clone(), go.clone(), half))?];
    let began = Instant::now();
    go.set();
    for w in &mut workers {
        w.join()?;
    }
    let elapsed = began.elapsed();
    if v.get() != 2 * half {
        return Err("lost increments".into());
    }
    Ok(elapsed.as_secs_f64() / (2 * half) as f64)
}

fn write_segment(name: String) {
    let shm = SharedMemory::attach(&name).expect("attach");
    let chunk = vec![7u8; MIB];
    for i in 0..SEGMENT / MIB {
        shm.write_at(i * MIB, &chunk).expect("write");
    }
}

/// One op: create a fresh 256 MiB segment, a child attaches by name and writes it all, the
/// parent reads it all back.
fn shared_memory_256m(n: u64) -> Result<f64, BoxError> {
    let mut total = 0.0;
    let mut chunk = vec![0u8; MIB];
    for _ in 0..n {
        let began = Instant::now();
        let shm = SharedMemory::create(None, SEGMENT)?;
        fork().spawn(write_segment, (shm.name().expect("named").to_string(),))?.join()?;
        let mut sum = 0u64;
        for i in 0..SEGMENT / MIB {
            shm.read_at(i * MIB, &mut chunk)?;
            sum += u64::from(chunk[MIB - 1]);
        }
        shm.unlink()?;
        drop(shm);
        total += began.elapsed().as_secs_f64();
        if sum != 7 * (SEGMENT / MIB) as u64 {
            return Err("wrong bytes read back".into());
        }
    }
    Ok(total / n as f64)
}

/// The raw bound: the same traffic with a bare memfd, `fork`, and `memcpy`.
fn raw_256m(n: u64) -> Result<f64, BoxError> {
    use std::os::fd::AsRawFd;
    let mut total = 0.0;
    let mut chunk = vec![0u8; MIB];
    for _ in 0..n {
        let began = Instant::now();
        // SAFETY: memfd_create with a NUL-terminated name; checked below.
        let fd = unsafe { libc::memfd_create(c"bench-raw".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        // SAFETY: `fd` is ours; from here on it is owned by `owned`.
        let owned: std::os::fd::OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
        // SAFETY: sizes the memfd we own.
        if unsafe { libc::ftruncate(owned.as_raw_fd(), SEGMENT as i64) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        // SAFETY: a fresh shared mapping of the whole memfd.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SEGMENT,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                owned.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error().into());
        }
        let base = base.cast::<u8>();
        // SAFETY: the child copies into the mapping (in bounds) and `_exit`s.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let source = vec![7u8; MIB];
            for i in 0..SEGMENT / MIB {
                // SAFETY: chunk `i` is within the mapping.
                unsafe { std::ptr::copy_nonoverlapping(source.as_ptr(), base.add(i * MIB), MIB) };
            }
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: reaps the child we forked.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let mut sum = 0u64;
        for i in 0..SEGMENT / MIB {
            // SAFETY: chunk `i` is within the mapping, and the child that wrote it has exited.
            unsafe { std::ptr::copy_nonoverlapping(base.add(i * MIB), chunk.as_mut_ptr(), MIB) };
            sum += u64::from(chunk[MIB - 1]);
        }
        // SAFETY: unmaps the mapping made above.
        unsafe { libc::munmap(base.cast(), SEGMENT) };
        // The last reference goes, and the kernel frees the 65,536 pages — inside the clock, as
        // both other rows pay it (their unlink and drop; Python's close and unlink).
        drop(owned);
        total += began.elapsed().as_secs_f64();
        if sum != 7 * (SEGMENT / MIB) as u64 {
            return Err("wrong bytes read back".into());
        }
    }
    Ok(total / n as f64)
}
