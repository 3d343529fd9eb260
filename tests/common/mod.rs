//! Helpers shared by the integration tests: a watchdog, process probes, and per-method test sets.
#![allow(dead_code)]

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
