//! Waiting for the first of several objects to be ready.
//!
//! Connections and processes are ready when a descriptor becomes readable, so waiting for them is
//! one `poll`. A queue lives in shared memory and has no descriptor: for each queue, [`wait`]
//! starts a short-lived watcher thread that sleeps on the queue's futex like a consumer would and
//! signals an eventfd in the same `poll` when an item arrives. The watchers end before `wait`
//! returns.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::process::Process;
use crate::queue::ring::Ring;
use crate::sync::deadline_after;
use crate::sys;

/// Something [`wait`] can wait for.
///
/// Implemented for [`Connection`] (ready when a message, or the end of the stream, can be read),
/// [`Process`] (ready when it has ended) and the queues (ready when an item can be taken). Your
/// own types can take part through a descriptor that becomes readable: return
/// [`WaitSource::fd`].
///
/// ```
/// use multiproc::connection::{Waitable, wait};
/// let q = multiproc::Queue::new().unwrap();
/// let (conn, _peer) = multiproc::pipe::<u8>().unwrap();
/// q.put(1).unwrap();
/// assert_eq!(wait(&[&conn as &dyn Waitable, &q], None).unwrap(), [1]);
/// ```
/// Python counterpart: the objects `multiprocessing.connection.wait` accepts (connections,
/// sockets, `Process.sentinel`, anything with `fileno()`).
pub trait Waitable {
    /// What [`wait`] watches for this object.
    fn wait_source(&self) -> WaitSource<'_>;
}

/// What [`wait`] watches for one [`Waitable`]: a descriptor, or a queue's shared state.
///
/// Make one with [`WaitSource::fd`]:
///
/// ```
/// use std::os::fd::AsFd;
/// use multiproc::connection::WaitSource;
/// let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
/// let _source = WaitSource::fd(a.as_fd());
/// ```
///
/// Python counterpart: what `fileno()` returns to `multiprocessing.connection.wait`.
pub struct WaitSource<'a>(Source<'a>);

enum Source<'a> {
    Fd(BorrowedFd<'a>),
    Ring(&'a Ring),
}

impl<'a> WaitSource<'a> {
    /// Ready when `fd` is readable (or hung up).
    ///
    /// Python counterpart: an object whose `fileno()` returns `fd`.
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// use multiproc::connection::{WaitSource, Waitable, wait};
    ///
    /// struct Listener(std::os::unix::net::UnixListener);
    /// impl Waitable for Listener {
    ///     fn wait_source(&self) -> WaitSource<'_> {
    ///         WaitSource::fd(self.0.as_fd())
    ///     }
    /// }
    /// let dir = std::env::temp_dir().join(format!("waitsource-{}", std::process::id()));
    /// let listener = Listener(std::os::unix::net::UnixListener::bind(&dir).unwrap());
    /// let _client = std::os::unix::net::UnixStream::connect(&dir).unwrap();
    /// assert_eq!(wait(&[&listener], None).unwrap(), [0]);
    /// std::fs::remove_file(dir).unwrap();
    /// ```
    pub fn fd(fd: BorrowedFd<'a>) -> WaitSource<'a> {
        WaitSource(Source::Fd(fd))
    }

    pub(crate) fn ring(ring: &'a Ring) -> WaitSource<'a> {
        WaitSource(Source::Ring(ring))
    }
}

impl<T> Waitable for Connection<T> {
    fn wait_source(&self) -> WaitSource<'_> {
        WaitSource::fd(self.as_fd())
    }
}

impl<R> Waitable for Process<R> {
    fn wait_source(&self) -> WaitSource<'_> {
        WaitSource::fd(self.sentinel())
    }
}

/// Waits until at least one of `objects` is ready, or `timeout` passes (`None`: no limit);
/// returns the indexes of the ready ones (empty on timeout).
///
/// # Errors
/// [`ErrorKind::Os`](crate::ErrorKind::Os) if waiting fails.
///
/// # Example
/// ```
/// use std::time::Duration;
/// use multiproc::{Process, connection::{pipe, wait, Waitable}};
///
/// let (a, _a_peer) = pipe::<u32>().unwrap();
/// let (b, b_peer) = pipe::<u32>().unwrap();
/// b_peer.send(&7).unwrap();
/// let ready = wait(&[&a as &dyn Waitable, &b], Some(Duration::from_secs(5))).unwrap();
/// assert_eq!(ready, [1]);
/// assert_eq!(b.recv().unwrap(), 7);
/// ```
/// Python counterpart: `multiprocessing.connection.wait(object_list, timeout)`.
pub fn wait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let deadline = timeout.and_then(deadline_after);
    let sources: Vec<WaitSource<'_>> = objects.iter().map(|o| o.wait_source()).collect();
    let rings: Vec<&Ring> = sources
        .iter()
        .filter_map(|s| match s.0 {
            Source::Ring(ring) => Some(ring),
            Source::Fd(_) => None,
        })
        .collect();
    let fds: Vec<BorrowedFd<'_>> = sources
        .iter()
        .filter_map(|s| match s.0 {
            Source::Fd(fd) => Some(fd),
            Source::Ring(_) => None,
        })
        .collect();
    let poll =
        |fds: &[BorrowedFd<'_>], deadline| sys::poll::wait_readable(fds, deadline).map_err(|e| Error::os("waiting", e));
    if !rings.is_empty() && !rings.iter().any(|r| r.len() > 0) && deadline.is_none_or(|d| Instant::now() < d) {
        // Nothing ready yet: one watcher per queue, signalling an eventfd polled with the rest.
        let signal = sys::poll::eventfd().map_err(|e| Error::os("eventfd", e))?;
        let stop = AtomicBool::new(false);
        let polled = std::thread::scope(|scope| {
            for &ring in &rings {
                let (signal, stop) = (&signal, &stop);
                scope.spawn(move || {
                    if ring.watch(stop, deadline) {
                        // Cannot fail but on counter overflow, which 1s never reach.
                        let _ = rustix::io::write(signal, &1u64.to_ne_bytes());
                    }
                });
            }
            let mut all = fds.clone();
            all.push(signal.as_fd());
            let polled = poll(&all, deadline);
            stop.store(true, Ordering::SeqCst);
            for ring in &rings {
                ring.wake_watchers();
            }
            polled
        });
        polled?;
    }
    // The answer is a fresh snapshot of everything, whatever woke us.
    let fd_ready = if rings.is_empty() {
        poll(&fds, deadline)?
    } else if fds.is_empty() {
        Vec::new()
    } else {
        poll(&fds, Some(Instant::now()))?
    };
    let (mut fd_ready, mut rings) = (fd_ready.into_iter(), rings.into_iter());
    let ready = sources.iter().map(|s| match s.0 {
        Source::Fd(_) => fd_ready.next().unwrap_or(false),
        Source::Ring(_) => rings.next().is_some_and(|r| r.len() > 0),
    });
    Ok(ready.enumerate().filter(|&(_, r)| r).map(|(i, _)| i).collect())
}
