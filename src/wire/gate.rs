//! The door of a server: connections that have not proved they know the key yet.
//!
//! Anyone who can reach a manager's or a [`Listener`](crate::connection::Listener)'s socket can
//! open connections and say nothing. Each such connection runs its handshake on its own thread,
//! with a short deadline ([`HANDSHAKE`]), so one silent stranger delays nobody; and the gate
//! bounds how many wait at once — in all ([`WAITING`]) and from any one peer ([`PER_PEER`], a
//! peer being an IP address, or a user id on a Unix socket). A newcomer never waits for room: the
//! oldest waiting connection of its peer (or, if all are full, the oldest of all) is shut down
//! instead. A real client finishes its handshake within milliseconds of connecting, so only
//! a flood faster than that from its own address could push it out; a thousand held silent
//! connections cannot.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a server gives a new connection to finish its handshake: three short messages.
pub(crate) const HANDSHAKE: Duration = Duration::from_secs(5);
/// The most connections in their handshake at once.
pub(crate) const WAITING: usize = 256;
/// The most connections in their handshake at once from one peer.
pub(crate) const PER_PEER: usize = 32;

/// Who is at the door: what the caps count by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Peer {
    Ip(IpAddr),
    /// A Unix socket's peer, by user id (the kernel vouches for it).
    User(u32),
    /// A peer the socket cannot name.
    Unknown,
}

impl Peer {
    /// The peer of a Unix socket, by its credentials.
    pub(crate) fn of_unix(socket: BorrowedFd<'_>) -> Peer {
        crate::sys::socket::peer_uid(socket).map_or(Peer::Unknown, Peer::User)
    }
}

/// The connections waiting at the door.
pub(crate) struct Gate {
    waiting: Mutex<Waiting>,
}

struct Waiting {
    next: u64,
    /// Oldest first: (ticket, peer, a copy of the socket to shut down on eviction).
    queue: VecDeque<(u64, Peer, OwnedFd)>,
}

impl Gate {
    pub(crate) fn new() -> Arc<Gate> {
        Arc::new(Gate { waiting: Mutex::new(Waiting { next: 0, queue: VecDeque::new() }) })
    }

    /// Lets a new connection from `peer` wait at the door, making room first if its peer's
    /// share or the whole door is full. The pass holds its place until dropped (when the
    /// handshake ends, either way). `None` if the socket cannot be copied (out of descriptors):
    /// the caller drops the connection.
    pub(crate) fn enter(self: &Arc<Gate>, peer: Peer, socket: BorrowedFd<'_>) -> Option<Pass> {
        let copy = socket.try_clone_to_owned().ok()?;
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let mine = waiting.queue.iter().filter(|(_, p, _)| *p == peer).count();
        if mine >= PER_PEER {
            let oldest = waiting.queue.iter().position(|(_, p, _)| *p == peer).expect("counted above");
            evict(waiting.queue.remove(oldest).expect("present"));
        }
        if waiting.queue.len() >= WAITING {
            evict(waiting.queue.pop_front().expect("full"));
        }
        let ticket = waiting.next;
        waiting.next += 1;
        waiting.queue.push_back((ticket, peer, copy));
        Some(Pass { gate: self.clone(), ticket })
    }

    /// How many connections wait now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).queue.len()
    }
}

/// Ends a waiting connection's handshake: its thread's next read or write fails at once.
fn evict((_, peer, socket): (u64, Peer, OwnedFd)) {
    crate::trace::event!(debug, peer = ?peer, "a connection still in its handshake was pushed out by newer ones");
    let _ = peer;
    let _ = rustix::net::shutdown(socket.as_fd(), rustix::net::Shutdown::Both);
}

/// A connection's place at the door, given up when dropped.
pub(crate) struct Pass {
    gate: Arc<Gate>,
    ticket: u64,
}

impl Drop for Pass {
    fn drop(&mut self) {
        let mut waiting = self.gate.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = waiting.queue.iter().position(|(t, _, _)| *t == self.ticket) {
            waiting.queue.remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn a_full_peer_loses_its_oldest_and_others_keep_theirs() {
        let gate = Gate::new();
        let a = Peer::Ip("10.0.0.1".parse().unwrap());
        let b = Peer::Ip("10.0.0.2".parse().unwrap());
        let mut held = Vec::new();
        for _ in 0..PER_PEER {
            let (ours, theirs) = UnixStream::pair().unwrap();
            let pass = gate.enter(a, ours.as_fd()).unwrap();
            held.push((ours, theirs, pass));
        }
        let (other, _other_end) = UnixStream::pair().unwrap();
        let _b = gate.enter(b, other.as_fd()).unwrap();
        let (new, _new_end) = UnixStream::pair().unwrap();
        let _newest = gate.enter(a, new.as_fd()).unwrap();
        assert_eq!(gate.len(), PER_PEER + 1);
        // The oldest of peer a was shut down: reading it ends at once.
        let mut buf = [0u8; 1];
        assert_eq!((&held[0].0).read(&mut buf).unwrap(), 0);
        drop(held);
        assert_eq!(gate.len(), 2);
    }
}
