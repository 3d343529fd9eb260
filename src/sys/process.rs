//! Process primitives: fork, exit, pidfds, reaping, signals, parent-death signals, atexit.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use rustix::process::{Pid, PidfdFlags, WaitOptions};

/// How a process ended, as the kernel says it (plain data: `process::ExitStatus` is made from it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal number.
    Signal(i32),
}

/// Our own process id.
pub(crate) fn getpid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// Whether the calling thread is the process's main thread.
///
/// Matters for `PR_SET_PDEATHSIG`, which fires when the *thread* that forked a child exits.
pub(crate) fn is_main_thread() -> bool {
    rustix::thread::gettid() == rustix::process::getpid()
}

fn pid(raw: u32) -> io::Result<Pid> {
    i32::try_from(raw).ok().and_then(Pid::from_raw).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Opens a pidfd for `pid`: pollable (readable once the process has exited) and usable to send
/// signals without racing against pid reuse. Close-on-exec.
pub(crate) fn pidfd_open(raw: u32) -> io::Result<OwnedFd> {
    Ok(rustix::process::pidfd_open(pid(raw)?, PidfdFlags::empty())?)
}

/// Sends signal number `sig` through a pidfd. A process that has already exited is not an error.
pub(crate) fn pidfd_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    // SAFETY: `pidfd_send_signal(2)` takes a pidfd we borrow for the call, a signal number, a null
    // siginfo (the kernel then fills one as kill(2) would) and no flags; no memory is shared.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), sig, 0usize, 0u32) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    // ESRCH: the process has exited (perhaps not yet reaped); signalling it is then a no-op, as
    // Python's terminate() on a finished process is.
    if err.raw_os_error() == Some(libc::ESRCH) { Ok(()) } else { Err(err) }
}

/// Sends `sig` to a process by pid (for processes we have no pidfd for).
pub(crate) fn kill(raw: u32, sig: i32) -> io::Result<()> {
    // SAFETY: kill(2) has no memory-safety preconditions.
    let rc = unsafe { libc::kill(raw as libc::pid_t, sig) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

fn to_status(status: rustix::process::WaitStatus) -> Option<Ended> {
    if let Some(code) = status.exit_status() {
        Some(Ended::Code(code))
    } else {
        status.terminating_signal().map(Ended::Signal)
    }
}

/// The exit status of a process that is *not* our child (a fork-server child whose server died),
/// through its pidfd: `None` while it runs.
///
/// Once it has exited it is either a zombie waiting for its new parent to reap it (its wait
/// status is then field 52 of `/proc/<pid>/stat`, where the pidfd keeps the pid from being
/// reused) or reaped, when the kernel (6.15 and later) keeps the status for the pidfd.
pub(crate) fn exit_status_of(pidfd: BorrowedFd<'_>, raw: u32) -> io::Result<Option<Ended>> {
    if !crate::sys::poll::wait_readable(&[pidfd], Some(std::time::Instant::now()))?[0] {
        return Ok(None);
    }
    let from_wait_status = |status: i32| {
        if libc::WIFEXITED(status) {
            Some(Ended::Code(libc::WEXITSTATUS(status)))
        } else if libc::WIFSIGNALED(status) {
            Some(Ended::Signal(libc::WTERMSIG(status)))
        } else {
            None
        }
    };
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{raw}/stat")) {
        let fields: Vec<&str> = stat.rsplit_once(')').map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
        // Field 3 is the state, field 52 the exit code; after ')' they are the 1st and 50th.
        if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
            if let Some(status) = fields.get(49).and_then(|f| f.parse::<i32>().ok()) {
                return Ok(from_wait_status(status));
            }
        }
    }
    Ok(pidfd_exit_info(pidfd).and_then(from_wait_status))
}

/// `PIDFD_GET_INFO` with `PIDFD_INFO_EXIT`: the wait status of a reaped process (Linux 6.15+).
fn pidfd_exit_info(pidfd: BorrowedFd<'_>) -> Option<i32> {
    /// `struct pidfd_info` as of its first version (64 bytes).
    #[repr(C)]
    #[derive(Default)]
    struct PidfdInfo {
        mask: u64,
        cgroupid: u64,
        ids: [u32; 11],
        exit_code: i32,
    }
    const PIDFD_INFO_EXIT: u64 = 1 << 3;
    // _IOWR(PIDFS_IOCTL_MAGIC = 0xFF, 11, struct pidfd_info of 64 bytes).
    const PIDFD_GET_INFO: libc::c_ulong = (3 << 30) | (64 << 16) | (0xFF << 8) | 11;
    let mut info = PidfdInfo { mask: PIDFD_INFO_EXIT, ..PidfdInfo::default() };
    // SAFETY: the ioctl writes at most the 64 bytes its number encodes into `info`, which is a
    // live, properly sized repr(C) value; an older kernel fails with ENOTTY or EINVAL.
    let rc = unsafe { libc::ioctl(pidfd.as_raw_fd(), PIDFD_GET_INFO, &mut info as *mut PidfdInfo) };
    (rc == 0 && info.mask & PIDFD_INFO_EXIT != 0).then_some(info.exit_code)
}

/// Reaps our child `pid` if it has exited; `None` if it is still running.
pub(crate) fn try_reap(raw: u32) -> io::Result<Option<Ended>> {
    loop {
        match rustix::process::waitpid(Some(pid(raw)?), WaitOptions::NOHANG) {
            Ok(Some((_, status))) => return Ok(to_status(status)),
            Ok(None) => return Ok(None),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Blocks until our child `pid` exits and reaps it.
pub(crate) fn reap(raw: u32) -> io::Result<Ended> {
    loop {
        match rustix::process::waitpid(Some(pid(raw)?), WaitOptions::empty()) {
            Ok(Some((_, status))) => {
                if let Some(s) = to_status(status) {
                    return Ok(s);
                }
            }
            Ok(None) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// What `fork` returned, seen from one side.
pub(crate) enum Forked {
    /// We are the new child.
    Child,
    /// We are the parent; the child's pid.
    Parent(u32),
}

/// `fork(2)`.
///
/// # Safety
/// In a multi-threaded parent the child may only run async-signal-safe code until it execs or
/// exits, unless the caller knows that no other thread holds a lock the child will need. The
/// caller owns that argument (see `process::start::fork`).
pub(crate) unsafe fn fork() -> io::Result<Forked> {
    // SAFETY: forwarded to the caller, per this function's contract.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as u32)),
    }
}

/// Ends this process at once with `code`: no atexit handlers, no destructors, no stdio flush.
///
/// The only correct way for a forked child to end, since the parent's atexit handlers and buffered
/// output are not the child's to run or flush.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit(2) is async-signal-safe and has no preconditions.
    unsafe { libc::_exit(code) }
}

/// Asks the kernel to SIGKILL us when our parent (the thread that forked us) exits.
///
/// Returns false when the parent is already gone (`expected_parent` no longer our parent), in
/// which case the caller should exit: the signal would never come.
pub(crate) fn die_with_parent(expected_parent: u32) -> bool {
    // Async-signal-safe: a bare prctl and getppid, usable between fork and exec.
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes an integer signal number; no pointers.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) };
    // SAFETY: getppid(2) has no preconditions.
    let ppid = unsafe { libc::getppid() } as u32;
    ppid == expected_parent
}

/// Runs `hook` when the program ends through `exit` (which is what returning from `main` does).
pub(crate) fn at_exit(hook: extern "C" fn()) {
    // SAFETY: `hook` is a plain function with the C ABI, valid for the life of the program.
    unsafe { libc::atexit(hook) };
}

/// Reads and removes an environment variable before `main` runs.
///
/// Only called from the child-entry constructor, which runs before `main` and before any thread
/// of ours exists, so nothing can read the environment concurrently.
pub(crate) fn take_env_before_main(name: &str) -> Option<String> {
    let value = std::env::var(name).ok()?;
    // SAFETY: see above: single-threaded, before main.
    unsafe { std::env::remove_var(name) };
    Some(value)
}

/// Takes over standard input as a socket the parent handed us, and puts `/dev/null` in its place.
///
/// Re-executed children and the fork server receive their channel as stdin: that is the one
/// descriptor `std::process::Command` can hand a child without a `pre_exec` hook, which would
/// force a full `fork` of the parent instead of the cheaper `posix_spawn`.
pub(crate) fn take_stdin() -> io::Result<OwnedFd> {
    let stdin = rustix::stdio::stdin();
    let channel = rustix::io::fcntl_dupfd_cloexec(stdin, 3)?;
    let null = rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    // dup2 onto 0 clears close-on-exec on the new stdin, as a stdin should be.
    rustix::stdio::dup2_stdin(&null)?;
    Ok(channel)
}

/// Closes every descriptor above stderr but `keep`: a re-executed child or fork server holds
/// only what it was handed, as Python's spawn does, never a parent descriptor that happened not
/// to be close-on-exec.
///
/// Only called from the child-entry constructor, before `main` and before any value of ours
/// that owns a descriptor exists, except `keep` itself.
pub(crate) fn close_all_but(keep: RawFd) {
    let keep = keep as u32;
    // SAFETY: close_range(2) takes plain numbers; by the contract above nothing in this process
    // owns the descriptors it closes.
    unsafe {
        if keep > 3 {
            libc::syscall(libc::SYS_close_range, 3u32, keep - 1, 0u32);
        }
        libc::syscall(libc::SYS_close_range, keep + 1, u32::MAX, 0u32);
    }
}

/// Blocks SIGINT for this thread (`true`) or unblocks it (`false`).
///
/// The fork server blocks rather than ignores it: a SIGINT sent to one of its children in the
/// instant between the fork and the child's unblocking stays pending and is delivered then,
/// whereas an ignored one would be lost.
pub(crate) fn block_interrupts(block: bool) {
    // SAFETY: sigset_t is plain data that sigemptyset initialises before use; pthread_sigmask
    // reads it and writes no old set (null).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        let how = if block { libc::SIG_BLOCK } else { libc::SIG_UNBLOCK };
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

/// Whether process `pid` is running: false when it has exited, even if not yet reaped (a zombie).
///
/// Used to find locks whose holder died. A pid reused by an unrelated process reads as alive.
pub(crate) fn is_running(pid: u32) -> bool {
    match std::fs::read(format!("/proc/{pid}/stat")) {
        // The state letter follows the command name, which is in parentheses and may contain any
        // byte, so look after the last ')'.
        Ok(stat) => match stat.iter().rposition(|&b| b == b')') {
            Some(end) => !matches!(stat.get(end + 2), Some(b'Z') | Some(b'X') | None),
            None => true,
        },
        // Only "no such process" means gone. Any other failure (say, too many open files) says
        // nothing about the process, and declaring a live lock holder dead would hand its lock
        // to a second owner, so it counts as running; the caller looks again later.
        Err(err) => !matches!(err.raw_os_error(), Some(libc::ENOENT) | Some(libc::ESRCH)),
    }
}

/// The calling thread's kernel id.
pub(crate) fn gettid() -> u32 {
    rustix::thread::gettid().as_raw_nonzero().get() as u32
}

/// Our pid, cached by [`cached_pid`]; 0 until first asked for, and again in a forked child.
static PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Our pid, cached: lock fast paths need it in a few nanoseconds, and `getpid` is a system call.
/// A `pthread_atfork` child handler clears the cache, so a forked child never sees its parent's.
/// Inlined (the fast path is one load), so that the lock fast paths of a caller's crate stay
/// free of calls.
#[inline]
pub(crate) fn cached_pid() -> u32 {
    match PID.load(std::sync::atomic::Ordering::Relaxed) {
        0 => fetch_pid(),
        pid => pid,
    }
}

#[cold]
fn fetch_pid() -> u32 {
    use std::sync::atomic::Ordering;
    static HOOK: std::sync::Once = std::sync::Once::new();
    extern "C" fn forget() {
        PID.store(0, Ordering::Relaxed);
    }
    HOOK.call_once(|| {
        // SAFETY: registers a plain C-ABI function as the child-side fork handler; it only stores
        // to an atomic, which is async-signal-safe.
        unsafe { libc::pthread_atfork(None, None, Some(forget)) };
    });
    let pid = getpid();
    PID.store(pid, Ordering::Relaxed);
    pid
}

thread_local! {
    /// This thread's kernel id and the pid it was read in (a forked child reads its own).
    static TID: std::cell::Cell<(u32, u32)> = const { std::cell::Cell::new((0, 0)) };
}

/// The calling thread's kernel id, cached per thread (and refreshed in a forked child).
#[inline]
pub(crate) fn cached_tid() -> u32 {
    let pid = cached_pid();
    match TID.with(std::cell::Cell::get) {
        (for_pid, tid) if for_pid == pid => tid,
        _ => fetch_tid(pid),
    }
}

#[cold]
fn fetch_tid(pid: u32) -> u32 {
    let tid = gettid();
    TID.with(|cell| cell.set((pid, tid)));
    tid
}

/// Ignores SIGPIPE, as Rust's own `main` does before it runs: a child writing to a closed pipe
/// then gets an `EPIPE` error instead of dying silently. Children of spawn and the fork server
/// are diverted before `main`, so they must do it themselves.
pub(crate) fn ignore_broken_pipes() {
    // SAFETY: installs the SIG_IGN disposition, which runs no code of ours in a handler.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Ignores SIGINT in this process from now on (pool workers: Ctrl-C is the parent's business).
pub(crate) fn ignore_interrupts() {
    // SAFETY: installs the SIG_IGN disposition, which runs no code of ours in a handler.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
}

/// Closes descriptor `fd` in a forked child: a copy of one of the parent's, whose owning value
/// the child also holds a copy of but never drops with a close (see `manager::proxy`).
pub(crate) fn close_inherited(fd: RawFd) {
    // SAFETY: by the caller's contract no live value in this process will use or close `fd`;
    // closing a number nobody uses has no memory-safety consequences.
    unsafe { libc::close(fd) };
}

/// Names the calling thread (for a child: its main thread, which `ps` and `top` show as the
/// process's name) — at most 15 bytes are kept, cut at a character boundary.
pub(crate) fn set_name(name: &str) {
    let mut end = name.len().min(15);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let mut buf = [0u8; 16];
    buf[..end].copy_from_slice(&name.as_bytes()[..end]);
    // SAFETY: prctl(PR_SET_NAME) reads a NUL-terminated string of at most 16 bytes from `buf`,
    // which lives on our stack for the call (its last byte is always 0).
    unsafe { libc::prctl(libc::PR_SET_NAME, buf.as_ptr() as libc::c_ulong, 0, 0, 0) };
}

/// This process's resident memory in bytes (`None` if `/proc` cannot tell): what the kernel
/// counts, not what the allocator holds.
pub(crate) fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages.saturating_mul(rustix::param::page_size() as u64))
}

/// This machine's host name (for naming cluster nodes and drivers).
#[cfg(feature = "cluster")]
pub(crate) fn hostname() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}

/// Sets `flag` when SIGTERM arrives (instead of ending the process), so that a cluster node
/// can drain. Only the flag is touched in the handler, which is async-signal-safe. Children
/// that exec get the default disposition back; the node's workers are spawned, so it is never
/// inherited where SIGTERM must still end a process.
#[cfg(feature = "cluster")]
pub(crate) fn flag_on_terminate(flag: &'static std::sync::atomic::AtomicBool) {
    static FLAG: std::sync::atomic::AtomicPtr<std::sync::atomic::AtomicBool> =
        std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());
    extern "C" fn on_term(_: libc::c_int) {
        let flag = FLAG.load(std::sync::atomic::Ordering::SeqCst);
        if !flag.is_null() {
            // SAFETY: the pointer came from a `&'static AtomicBool`.
            unsafe { (*flag).store(true, std::sync::atomic::Ordering::SeqCst) };
        }
    }
    FLAG.store(std::ptr::from_ref(flag).cast_mut(), std::sync::atomic::Ordering::SeqCst);
    // SAFETY: a zeroed sigaction is a valid starting point; the handler only does an atomic
    // load and store, which are async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_term as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
    }
}
