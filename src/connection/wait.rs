//! Waiting for the first of several objects to be ready.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::process::Process;
use crate::sys;

/// Something [`wait`] can wait for: it is ready when its descriptor is readable.
///
/// A [`Connection`] is ready when a message (or the end of the stream) can be read; a
/// [`Process`] when it has ended.
pub trait Waitable {
    /// The descriptor that becomes readable when the object is ready.
    fn ready_fd(&self) -> BorrowedFd<'_>;
}

impl<T> Waitable for Connection<T> {
    fn ready_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
}

impl<R> Waitable for Process<R> {
    fn ready_fd(&self) -> BorrowedFd<'_> {
        self.sentinel()
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
    let deadline = timeout.map(|t| Instant::now() + t);
    let fds: Vec<BorrowedFd<'_>> = objects.iter().map(|o| o.ready_fd()).collect();
    let ready = sys::poll::wait_readable(&fds, deadline).map_err(|e| Error::os("waiting", e))?;
    Ok(ready.iter().enumerate().filter(|&(_, &r)| r).map(|(i, _)| i).collect())
}
