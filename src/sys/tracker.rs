//! The cleaner of named shared-memory segments: a detached process that unlinks a name once the
//! process that created it is gone without unlinking it — by a normal exit, a panic or SIGKILL,
//! under every start method.
//!
//! Protocol: lines on a pipe, `+pid name` to register a name created by process `pid`, and
//! `-name` to forget it. The cleaner holds the read end; the process that started it holds the
//! write end (close-on-exec), and so do the children it forks, which use the same cleaner. For
//! each creator the cleaner holds a pidfd: when it becomes readable, that creator's names are
//! unlinked. When every writer is gone (end of file), whatever is left is unlinked too.
//!
//! The cleaner ignores the signals a terminal or a careless `kill` sends (SIGINT, SIGTERM,
//! SIGHUP, SIGQUIT and job control), as Python's resource tracker ignores SIGINT and SIGTERM.
//! Only SIGKILL can end it early; then every process that registered names notices — a thread
//! waits for the pipe to break — and starts a new cleaner with its names.
//!
//! The cleaner is made by a double fork straight from this process (not through `Process`: it
//! must be neither joined nor terminated at our exit, and must outlive a killed parent). The
//! forked code may run in a copy of a multi-threaded process, so it uses only system calls and
//! memory allocated before the fork — no allocator, no locks. It starts a session of its own, so
//! a Ctrl-C in the terminal does not reach it, and closes every descriptor but its two.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

/// Room for registrations (`pid name` lines) in the cleaner; more are not tracked.
const NAMES_CAPACITY: usize = 512 << 10;
const LINE_CAPACITY: usize = 320;
/// Creators watched one by one; the names of more are unlinked only at the end.
const MAX_CREATORS: usize = 1024;
/// Creators found gone on arrival, remembered until the pipe is drained.
const MAX_GONE: usize = 64;

/// This process's side: the pipe to its cleaner, and the names it registered (to register again
/// with a new cleaner if the old one is killed).
struct Client {
    /// Whose state this is: a forked child starts over (its parent's names are not its own).
    pid: u32,
    pipe: Option<Arc<OwnedFd>>,
    names: Vec<String>,
    /// Whether a thread in this process waits for the cleaner's death.
    watched: bool,
}

static CLIENT: Mutex<Client> = Mutex::new(Client { pid: 0, pipe: None, names: Vec::new(), watched: false });

/// Registers `name`, just created by this process. Best effort: without a cleaner, a segment
/// whose creator crashes before unlinking it stays in `/dev/shm`, as it would in Python.
pub(crate) fn register(name: &str) {
    let mut client = lock();
    client.names.push(name.to_owned());
    let line = format!("+{} {name}\n", client.pid);
    client.tell(&line);
}

/// Forgets `name` (unlinked by this process).
pub(crate) fn unregister(name: &str) {
    let mut client = lock();
    if let Some(i) = client.names.iter().position(|n| n == name) {
        client.names.swap_remove(i);
    }
    client.tell(&format!("-{name}\n"));
}

fn lock() -> std::sync::MutexGuard<'static, Client> {
    let mut client = CLIENT.lock().unwrap_or_else(|p| p.into_inner());
    let me = std::process::id();
    if client.pid != me {
        // A forked child: the pipe is shared with the parent's cleaner, the names and the
        // watching thread are the parent's.
        client.pid = me;
        client.names.clear();
        client.watched = false;
    }
    client
}

impl Client {
    /// Writes `line` to the cleaner, starting a new one (with every name of ours) if it is gone.
    fn tell(&mut self, line: &str) {
        if let Some(pipe) = self.pipe.clone() {
            if !is_broken(&pipe) && rustix::io::write(&*pipe, line.as_bytes()).is_ok() {
                self.watch();
                return;
            }
        }
        // No cleaner yet, or it was killed: a new one gets every name of ours, this one included.
        self.restart();
    }

    fn restart(&mut self) {
        self.pipe = start().ok().map(Arc::new);
        crate::trace::event!(
            info,
            names = self.names.len(),
            started = self.pipe.is_some(),
            "the /dev/shm cleaner was started"
        );
        let Some(pipe) = self.pipe.clone() else { return };
        for name in &self.names {
            // One short write to a pipe is atomic, so lines from several threads never mix.
            let _ = rustix::io::write(&*pipe, format!("+{} {name}\n", self.pid).as_bytes());
        }
        self.watch();
    }

    /// Starts this process's thread that notices the cleaner's death, once there are names.
    fn watch(&mut self) {
        if self.watched || self.names.is_empty() {
            return;
        }
        self.watched = std::thread::Builder::new().name("multiproc-shm-cleaner".into()).spawn(watch).is_ok();
    }
}

/// The watching thread: waits until the cleaner's end of the pipe is closed, then starts a new
/// cleaner with this process's names.
fn watch() {
    loop {
        let Some(pipe) = lock().pipe.clone() else { return };
        wait_broken(&pipe);
        let mut client = lock();
        if client.pipe.as_ref().is_some_and(|p| Arc::ptr_eq(p, &pipe)) {
            client.restart();
        }
        if client.pipe.is_none() {
            client.watched = false;
            return;
        }
    }
}

/// Whether nobody reads the pipe any more (a pipe's write end polls as an error then).
fn is_broken(pipe: &OwnedFd) -> bool {
    poll_error(pipe, 0)
}

fn wait_broken(pipe: &OwnedFd) {
    while !poll_error(pipe, -1) {}
}

fn poll_error(pipe: &OwnedFd, timeout_ms: i32) -> bool {
    let mut pfd = libc::pollfd { fd: pipe.as_fd().as_raw_fd(), events: 0, revents: 0 };
    // SAFETY: polls one descriptor we own, through a pollfd on our stack.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    n > 0 && pfd.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

/// Starts a cleaner; returns the write end of its pipe.
fn start() -> io::Result<OwnedFd> {
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let dir = rustix::fs::open(
        "/dev/shm",
        rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    // Everything the cleaner needs, allocated before the fork.
    let mut state = Cleaner {
        names: Vec::with_capacity(NAMES_CAPACITY),
        line: Vec::with_capacity(LINE_CAPACITY),
        creators: [(0, -1); MAX_CREATORS],
        watched: 0,
        gone: [0; MAX_GONE],
        gone_count: 0,
    };
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
            for signal in [
                libc::SIGINT,
                libc::SIGTERM,
                libc::SIGHUP,
                libc::SIGQUIT,
                libc::SIGTSTP,
                libc::SIGTTIN,
                libc::SIGTTOU,
                libc::SIGPIPE,
            ] {
                libc::signal(signal, libc::SIG_IGN);
            }
            libc::dup2(read.as_raw_fd(), 3);
            libc::dup2(dir.as_raw_fd(), 4);
            for fd in 0..3 {
                libc::close(fd);
            }
            libc::syscall(libc::SYS_close_range, 5u32, u32::MAX, 0u32);
        }
        state.run(&mut buf);
        // SAFETY: ends the cleaner without running the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: reaps the intermediate child, which exits at once.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    Ok(write)
}

/// The cleaner's state (in the grandchild, in memory allocated before the fork).
struct Cleaner {
    /// Registrations, one `pid name\n` line each.
    names: Vec<u8>,
    /// The line being read.
    line: Vec<u8>,
    /// Creators watched: (pid, pidfd).
    creators: [(i32, i32); MAX_CREATORS],
    watched: usize,
    /// Creators found already gone when their first name was read: their names go once the
    /// pipe is drained, like those of creators seen to end (their later lines may hand a name on).
    gone: [i32; MAX_GONE],
    gone_count: usize,
}

impl Cleaner {
    /// The loop: descriptor 3 is the pipe, 4 is `/dev/shm`.
    fn run(&mut self, buf: &mut [u8]) {
        let mut fds = [libc::pollfd { fd: -1, events: libc::POLLIN, revents: 0 }; MAX_CREATORS + 1];
        loop {
            fds[0].fd = 3;
            for (i, &(_, pidfd)) in self.creators[..self.watched].iter().enumerate() {
                fds[i + 1] = libc::pollfd { fd: pidfd, events: libc::POLLIN, revents: 0 };
            }
            let n = 1 + self.watched;
            // With creators already gone to act on, only look whether the pipe holds more.
            let timeout = if self.gone_count > 0 { 0 } else { -1 };
            // SAFETY: polls descriptors we own, through an array on our stack of at least `n`.
            if unsafe { libc::poll(fds.as_mut_ptr(), n as libc::nfds_t, timeout) } < 0 {
                continue; // EINTR
            }
            if fds[0].revents == 0 {
                // Creators gone, from the last (removal moves the last into the freed place).
                // Only with the pipe drained: a process that handed a name on (`-name`, as a
                // SharedMemoryManager's client does) wrote that before it ended, and the line
                // must be read before its end is acted on.
                for i in (0..self.watched).rev() {
                    if fds[i + 1].revents != 0 {
                        let (pid, _) = self.creators[i];
                        self.creator_gone(pid);
                    }
                }
                self.settle_gone();
                continue;
            }
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
            self.take_bytes(&buf[..n as usize]);
        }
        // Every writer is gone: nobody is left to unlink what remains.
        let mut start = 0;
        while let Some((end, _, name)) = entry_at(&self.names, start) {
            unlink(name);
            start = end + 1;
        }
    }

    /// Takes what was read from the pipe, line by line.
    fn take_bytes(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if byte == b'\n' {
                self.line_done();
            } else if self.line.len() < self.line.capacity() {
                self.line.push(byte);
            }
        }
    }

    /// Unlinks the names of the creators found gone on arrival (with the pipe drained).
    fn settle_gone(&mut self) {
        for i in 0..std::mem::take(&mut self.gone_count) {
            self.drop_names_of(self.gone[i]);
        }
    }

    fn line_done(&mut self) {
        let line = std::mem::take(&mut self.line);
        match line.split_first() {
            Some((b'+', rest)) => {
                if let Some(space) = rest.iter().position(|&b| b == b' ') {
                    let (pid, name) = (parse_pid(&rest[..space]), &rest[space + 1..]);
                    if !name.is_empty() && self.names.len() + rest.len() < self.names.capacity() {
                        self.names.extend_from_slice(rest);
                        self.names.push(b'\n');
                        if let Some(pid) = pid {
                            self.watch(pid);
                        }
                    }
                }
            }
            Some((b'-', name)) => {
                if let Some(pid) = self.forget(name) {
                    if !self.has_names_of(pid) {
                        self.unwatch(pid);
                    }
                }
            }
            _ => {}
        }
        self.line = line;
        self.line.clear();
    }

    /// Watches creator `pid` (once); if it is gone already, its names go now.
    fn watch(&mut self, pid: i32) {
        if self.creators[..self.watched].iter().any(|&(p, _)| p == pid) || self.watched == MAX_CREATORS {
            return;
        }
        // SAFETY: pidfd_open makes a new descriptor or fails; no memory is passed.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
        if pidfd < 0 {
            // Gone already (and reaped): its names go once the pipe is drained, after any line
            // of its that hands one on. With no room to remember it, at once.
            if self.gone_count < MAX_GONE {
                if !self.gone[..self.gone_count].contains(&pid) {
                    self.gone[self.gone_count] = pid;
                    self.gone_count += 1;
                }
            } else {
                self.drop_names_of(pid);
            }
            return;
        }
        self.creators[self.watched] = (pid, pidfd);
        self.watched += 1;
    }

    fn unwatch(&mut self, pid: i32) {
        if let Some(i) = self.creators[..self.watched].iter().position(|&(p, _)| p == pid) {
            // SAFETY: closes the pidfd this cleaner opened for the creator.
            unsafe { libc::close(self.creators[i].1) };
            self.watched -= 1;
            self.creators[i] = self.creators[self.watched];
        }
    }

    fn creator_gone(&mut self, pid: i32) {
        self.drop_names_of(pid);
        self.unwatch(pid);
    }

    /// Unlinks and forgets every name `pid` registered.
    fn drop_names_of(&mut self, pid: i32) {
        let mut start = 0;
        while let Some((end, owner, name)) = entry_at(&self.names, start) {
            if owner == Some(pid) {
                unlink(name);
                self.names.drain(start..(end + 1).min(self.names.len()));
            } else {
                start = end + 1;
            }
        }
    }

    fn has_names_of(&self, pid: i32) -> bool {
        let mut start = 0;
        while let Some((end, owner, _)) = entry_at(&self.names, start) {
            if owner == Some(pid) {
                return true;
            }
            start = end + 1;
        }
        false
    }

    /// Forgets one registration of `name` (without allocating: the rest moves down in place);
    /// returns its creator.
    fn forget(&mut self, name: &[u8]) -> Option<i32> {
        let mut start = 0;
        while let Some((end, owner, entry)) = entry_at(&self.names, start) {
            if entry == name {
                self.names.drain(start..(end + 1).min(self.names.len()));
                return owner;
            }
            start = end + 1;
        }
        None
    }
}

/// The registration starting at `start`: (where its line ends, its creator, its name).
fn entry_at(names: &[u8], start: usize) -> Option<(usize, Option<i32>, &[u8])> {
    if start >= names.len() {
        return None;
    }
    let end = names[start..].iter().position(|&b| b == b'\n').map_or(names.len(), |i| start + i);
    let line = &names[start..end];
    let space = line.iter().position(|&b| b == b' ').unwrap_or(0);
    Some((end, parse_pid(&line[..space]), &line[(space + 1).min(line.len())..]))
}

fn parse_pid(digits: &[u8]) -> Option<i32> {
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0i32, |n, d| n * 10 + i32::from(d - b'0')))
}

fn unlink(name: &[u8]) {
    let mut path = [0u8; LINE_CAPACITY + 1];
    let len = name.len().min(LINE_CAPACITY);
    path[..len].copy_from_slice(&name[..len]);
    if let Ok(path) = CStr::from_bytes_until_nul(&path) {
        // SAFETY: unlinks a file in the directory open as descriptor 4; `path` is a
        // NUL-terminated name on our stack.
        unsafe { libc::unlinkat(4, path.as_ptr(), 0) };
    }
}

#[cfg(test)]
mod tests {
    use super::{Cleaner, LINE_CAPACITY, MAX_CREATORS, MAX_GONE};

    /// A pid that has ended and been reaped.
    fn reaped_pid() -> i32 {
        // SAFETY: the child only exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: reaps the child forked above.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        pid
    }

    /// Runs `lines` through a cleaner in a forked child (whose descriptor 4 is `/dev/shm`, as a
    /// real cleaner's is), settling the creators found gone once they are all read.
    fn clean(lines: String) {
        let mut cleaner = Cleaner {
            names: Vec::with_capacity(1 << 16),
            line: Vec::with_capacity(LINE_CAPACITY),
            creators: [(0, -1); MAX_CREATORS],
            watched: 0,
            gone: [0; MAX_GONE],
            gone_count: 0,
        };
        let dir = std::fs::File::open("/dev/shm").unwrap();
        // SAFETY: the child uses only memory allocated above and system calls, then exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: makes descriptor 4 the /dev/shm directory, as in a cleaner.
            unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&dir), 4) };
            cleaner.take_bytes(lines.as_bytes());
            cleaner.settle_gone();
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: reaps the child forked above.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    }

    /// A creator already gone when the cleaner first reads of it (the cleaner started late):
    /// a name it handed on in a later line stays; a name it kept goes.
    #[test]
    fn a_creator_gone_before_its_lines_are_read_keeps_the_names_it_handed_on() {
        let dead = reaped_pid();
        let (handed, kept) = (format!("mp-test-handed-{dead}"), format!("mp-test-kept-{dead}"));
        let path = |name: &str| std::path::Path::new("/dev/shm").join(name);
        std::fs::write(path(&handed), b"x").unwrap();
        std::fs::write(path(&kept), b"x").unwrap();
        clean(format!("+{dead} {handed}\n+{dead} {kept}\n-{handed}\n"));
        let (handed_left, kept_left) = (path(&handed).exists(), path(&kept).exists());
        let _ = std::fs::remove_file(path(&handed));
        let _ = std::fs::remove_file(path(&kept));
        assert!(handed_left, "a name handed on was unlinked with its dead creator's");
        assert!(!kept_left, "a dead creator's own name was left behind");
    }
}
