//! Helpers shared by the integration tests: a watchdog, process probes, and per-method test sets.
#![allow(dead_code)]

#[cfg(feature = "cluster")]
pub mod redis_server;

use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Aborts the whole test binary if the guarded test runs longer than `secs`: a hung test must
/// fail loudly, never block CI. Children started with the default `die_with_parent` die with us.
pub struct Watchdog {
    _stop: mpsc::Sender<()>,
}

pub fn watchdog(secs: u64) -> Watchdog {
    let (stop, stopped) = mpsc::channel::<()>();
    let name = std::thread::current().name().unwrap_or("?").to_owned();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(Duration::from_secs(secs)) {
            eprintln!("watchdog: test {name} still running after {secs} s; aborting");
            std::process::abort();
        }
    });
    Watchdog { _stop: stop }
}

/// Whether `pid` names a process that is running (a zombie counts as ended).
pub fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state follows the parenthesised command name, which may itself contain spaces.
            let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some('Z') | Some('X') | None)
        }
        Err(_) => false,
    }
}

/// Whether `/proc/<pid>` exists at all (a zombie still has one).
pub fn exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Waits until `pid` is no longer running, up to `limit`; true if it ended.
pub fn ends_within(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if !running(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    !running(pid)
}

/// SIGKILLs a process we started (by pid), ignoring one that is already gone.
pub fn kill_pid(pid: u32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
}

/// Runs the named test functions once per start method, as `fork::name`, `spawn::name`, ….
#[macro_export]
macro_rules! per_method {
    ($($test:ident),* $(,)?) => {
        mod fork {
            $(#[test] fn $test() { super::$test(multiproc::StartMethod::Fork) })*
        }
        mod spawn {
            $(#[test] fn $test() { super::$test(multiproc::StartMethod::Spawn) })*
        }
        mod forkserver {
            $(#[test] fn $test() { super::$test(multiproc::StartMethod::ForkServer) })*
        }
    };
}

/// A plain (non-atomic) integer in shared memory for the tests: a memfd the children map too.
/// Increments through it are read-modify-write races unless a lock protects them.
pub struct Counter {
    fd: multiproc::Fd,
    ptr: *mut u64,
}

impl Counter {
    pub fn new() -> Counter {
        // SAFETY: memfd_create with a NUL-terminated name; checked below.
        let raw = unsafe { libc::memfd_create(c"test-counter".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(raw >= 0);
        // SAFETY: `raw` is a fresh descriptor that we own from here on.
        let owned = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
        // SAFETY: ftruncate on our descriptor.
        assert_eq!(unsafe { libc::ftruncate(raw, 8) }, 0);
        Counter::map(multiproc::Fd::from(owned))
    }

    /// Maps a counter received from the parent.
    pub fn map(fd: multiproc::Fd) -> Counter {
        use std::os::fd::AsRawFd;
        // SAFETY: an 8-byte shared mapping of a memfd at least 8 bytes long.
        let ptr = unsafe {
            libc::mmap(std::ptr::null_mut(), 8, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd.as_raw_fd(), 0)
        };
        assert_ne!(ptr, libc::MAP_FAILED);
        Counter { fd, ptr: ptr.cast() }
    }

    /// A deliberately non-atomic increment: read, pause, write.
    pub fn bump(&self) {
        // SAFETY: the mapping is valid and 8-byte aligned for the life of self.
        unsafe {
            let v = std::ptr::read_volatile(self.ptr);
            std::hint::spin_loop();
            std::ptr::write_volatile(self.ptr, v + 1);
        }
    }

    pub fn get(&self) -> u64 {
        // SAFETY: as above.
        unsafe { std::ptr::read_volatile(self.ptr) }
    }

    /// The descriptor to pass to a child (a duplicate).
    pub fn share(&self) -> multiproc::Fd {
        use std::os::fd::AsFd;
        multiproc::Fd::from(self.fd.as_fd().try_clone_to_owned().unwrap())
    }
}

/// A copy of this test program that differs from it only in its build fingerprint.
pub fn other_build(dir: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let mut bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let fingerprint = multiproc::process::build_fingerprint();
    match bytes.windows(fingerprint.len()).position(|w| w == fingerprint) {
        // The fingerprint is the build-id note: change one byte of it.
        Some(at) => bytes[at] ^= 0xff,
        // The fingerprint is a hash of the file: any change makes another build.
        None => bytes.push(0),
    }
    let path = dir.join("other-build");
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}
