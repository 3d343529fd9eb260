//! The cleaner of named shared-memory segments: a detached process that unlinks the names
//! registered with it once nobody who could unlink them is left.
//!
//! Protocol: lines on a pipe, `+name` to register and `-name` to forget. The tracker holds only
//! the read end; the process that started it holds the write end (close-on-exec), and so do the
//! children it forks. When the last of them has exited — normally, by a panic, or by SIGKILL —
//! the tracker reads end-of-file and unlinks every name still registered.
//!
//! The tracker is made by a double fork straight from this process (not through `Process`: it
//! must be neither joined nor terminated at our exit, and must outlive a killed parent). The
//! forked code may run in a copy of a multi-threaded process, so it uses only system calls and
//! memory allocated before the fork — no allocator, no locks. It starts a session of its own, so
//! a Ctrl-C in the terminal does not reach it, and closes every descriptor but its two.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

/// Room for registered names (newline-separated) in the tracker; more are not tracked.
const NAMES_CAPACITY: usize = 256 << 10;
const LINE_CAPACITY: usize = 256;

/// Starts a tracker; returns the write end of its pipe.
pub(crate) fn start() -> io::Result<OwnedFd> {
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let dir = rustix::fs::open(
        "/dev/shm",
        rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    // Everything the tracker needs, allocated before the fork.
    let mut names: Vec<u8> = Vec::with_capacity(NAMES_CAPACITY);
    let mut line: Vec<u8> = Vec::with_capacity(LINE_CAPACITY);
    let mut buf = [0u8; 4096];
    // SAFETY: the child only makes system calls and uses memory allocated above (see the module
    // docs), so forking a possibly multi-threaded process cannot deadlock it.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: as above; `_exit` ends the intermediate child without running any of our
        // exit handlers, leaving the grandchild to init.
        unsafe {
            if libc::fork() != 0 {
                libc::_exit(0);
            }
            libc::setsid();
            libc::dup2(read.as_raw_fd(), 3);
            libc::dup2(dir.as_raw_fd(), 4);
            for fd in 0..3 {
                libc::close(fd);
            }
            libc::syscall(libc::SYS_close_range, 5u32, u32::MAX, 0u32);
        }
        track(&mut names, &mut line, &mut buf);
        // SAFETY: ends the tracker without running the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: reaps the intermediate child, which exits at once.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    Ok(write)
}

/// The tracker's loop (in the grandchild): descriptor 3 is the pipe, 4 is `/dev/shm`.
fn track(names: &mut Vec<u8>, line: &mut Vec<u8>, buf: &mut [u8]) {
    loop {
        // SAFETY: reads into a buffer we own, from descriptor 3 (the pipe).
        let n = unsafe { libc::read(3, buf.as_mut_ptr().cast(), buf.len()) };
        if n == 0 {
            break;
        }
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        for &byte in &buf[..n as usize] {
            if byte != b'\n' {
                if line.len() < line.capacity() {
                    line.push(byte);
                }
                continue;
            }
            match line.split_first() {
                Some((b'+', name)) if !name.is_empty() && names.len() + name.len() < names.capacity() => {
                    names.extend_from_slice(name);
                    names.push(b'\n');
                }
                Some((b'-', name)) => forget(names, name),
                _ => {}
            }
            line.clear();
        }
    }
    for name in names.split(|&b| b == b'\n').filter(|n| !n.is_empty()) {
        let mut path = [0u8; LINE_CAPACITY + 1];
        path[..name.len()].copy_from_slice(name);
        if let Ok(path) = CStr::from_bytes_until_nul(&path) {
            // SAFETY: unlinks a file in the directory open as descriptor 4; `path` is a
            // NUL-terminated name on our stack.
            unsafe { libc::unlinkat(4, path.as_ptr(), 0) };
        }
    }
}

/// Removes one registration of `name` (without allocating: the rest is moved down in place).
fn forget(names: &mut Vec<u8>, name: &[u8]) {
    let mut start = 0;
    while start < names.len() {
        let end = names[start..].iter().position(|&b| b == b'\n').map_or(names.len(), |i| start + i);
        if &names[start..end] == name {
            names.drain(start..(end + 1).min(names.len()));
            return;
        }
        start = end + 1;
    }
}
