//! Unix-domain socket pairs, sending bytes with file descriptors attached (`SCM_RIGHTS`), and the
//! few options and probes the manager's connections need.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage,
    SendFlags, SocketFlags, SocketType,
};

/// The most descriptors one message may carry (the kernel's `SCM_MAX_FD`).
pub(crate) const MAX_FDS: usize = 253;

/// Control-message space for receiving `MAX_FDS` descriptors (header plus 4 bytes each, aligned).
const RECV_SPACE: usize = rustix::cmsg_space!(ScmRights(MAX_FDS));

/// A connected pair of stream sockets, both close-on-exec.
pub(crate) fn stream_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None)?)
}

/// A connected pair of sequenced-packet sockets (message boundaries kept), both close-on-exec.
pub(crate) fn packet_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?)
}

// NOSIGNAL: a peer that died must show up as EPIPE here, never as a SIGPIPE that kills us.
const SEND: SendFlags = SendFlags::NOSIGNAL;

/// Sends all of `bytes`, with `fds` attached to the first byte.
pub(crate) fn send_with_fds(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many descriptors in one message"));
    }
    let mut sent = 0;
    if !fds.is_empty() {
        let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        control.push(SendAncillaryMessage::ScmRights(fds));
        loop {
            match rustix::net::sendmsg(sock, &[IoSlice::new(bytes)], &mut control, SEND) {
                Ok(n) => {
                    sent = n;
                    break;
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
    send_all(sock, &bytes[sent..])
}

/// Sends all of `bytes`, blocking as needed.
pub(crate) fn send_all(sock: BorrowedFd<'_>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match rustix::net::send(sock, bytes, SEND) {
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Sends one whole packet (on a packet socket) with `fds` attached.
pub(crate) fn send_packet(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len().max(1)))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        control.push(SendAncillaryMessage::ScmRights(fds));
    }
    loop {
        match rustix::net::sendmsg(sock, &[IoSlice::new(bytes)], &mut control, SEND) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives into `buf` (blocking unless `nonblocking`), collecting any descriptors that arrive.
///
/// Returns the byte count (0 at end of stream). `Ok(None)` means nothing was there yet
/// (non-blocking only). Received descriptors are close-on-exec.
pub(crate) fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    nonblocking: bool,
) -> io::Result<Option<usize>> {
    // On the stack: this runs for every read of every message.
    let mut space = [MaybeUninit::<u8>::uninit(); RECV_SPACE];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut flags = RecvFlags::CMSG_CLOEXEC;
    if nonblocking {
        flags |= RecvFlags::DONTWAIT;
    }
    loop {
        match rustix::net::recvmsg(sock, &mut [IoSliceMut::new(buf)], &mut control, flags) {
            Ok(msg) => {
                for message in control.drain() {
                    if let RecvAncillaryMessage::ScmRights(received) = message {
                        fds.extend(received);
                    }
                }
                return Ok(Some(msg.bytes));
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) if nonblocking => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Fills `buf` completely, collecting descriptors; an early end of stream is `UnexpectedEof`.
pub(crate) fn recv_exact(sock: BorrowedFd<'_>, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match recv_with_fds(sock, &mut buf[got..], fds, false)? {
            Some(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Some(n) => got += n,
            None => unreachable!("blocking receive reported would-block"),
        }
    }
    Ok(())
}

/// Borrows a list of owned descriptors.
pub(crate) fn borrow_all(fds: &[OwnedFd]) -> Vec<BorrowedFd<'_>> {
    fds.iter().map(|fd| fd.as_fd()).collect()
}

/// Shuts the sending direction of a socket (the peer then reads end-of-file).
pub(crate) fn shutdown_write(sock: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::net::shutdown(sock, rustix::net::Shutdown::Write)?)
}

/// Shuts the receiving direction of a socket.
pub(crate) fn shutdown_read(sock: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::net::shutdown(sock, rustix::net::Shutdown::Read)?)
}

/// Tunes a TCP connection for request–reply traffic between processes that may vanish: no Nagle
/// delay for small frames, and keepalive probes so that a peer whose machine went away is noticed
/// within about half a minute (10 s idle, then 3 probes 5 s apart) instead of never.
pub(crate) fn tune_tcp(sock: BorrowedFd<'_>) -> io::Result<()> {
    use rustix::net::sockopt;
    sockopt::set_tcp_nodelay(sock, true)?;
    sockopt::set_socket_keepalive(sock, true)?;
    sockopt::set_tcp_keepidle(sock, std::time::Duration::from_secs(10))?;
    sockopt::set_tcp_keepintvl(sock, std::time::Duration::from_secs(5))?;
    sockopt::set_tcp_keepcnt(sock, 3)?;
    Ok(())
}

/// Whether the peer of a connected stream socket is gone, looked at without consuming anything:
/// a peer that is waiting for an answer sends nothing, so a socket that reads as end-of-file,
/// or fails (reset, or keepalive probes unanswered: timed out, host unreachable), means the
/// peer closed its end or vanished. Only "nothing to read yet" or a byte waiting says it is there.
pub(crate) fn peer_closed(sock: BorrowedFd<'_>) -> bool {
    let mut byte = [0u8; 1];
    !matches!(
        rustix::net::recv(sock, &mut byte, RecvFlags::PEEK | RecvFlags::DONTWAIT),
        Ok((1.., _)) | Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR)
    )
}

/// Receives what has arrived on a socket, without waiting: `Ok(None)` if nothing has (or a
/// signal came first). `Ok(Some(0))` is the end of the stream.
pub(crate) fn recv_now(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<usize>> {
    match rustix::net::recv(sock, buf, RecvFlags::DONTWAIT) {
        Ok((n, _)) => Ok(Some(n)),
        Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The address of an abstract Unix socket named `name` (Linux's namespace of socket names that
/// no file backs, gone with the last socket bound to it).
pub(crate) fn abstract_address(name: &[u8]) -> io::Result<std::os::unix::net::SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    std::os::unix::net::SocketAddr::from_abstract_name(name)
}

/// The user id of a Unix socket's peer, as the kernel recorded it at connect.
pub(crate) fn peer_uid(sock: BorrowedFd<'_>) -> io::Result<u32> {
    Ok(rustix::net::sockopt::socket_peercred(sock)?.uid.as_raw())
}
