//! The authenticated wire under both a manager and a [`Listener`](crate::connection::Listener):
//! where a server listens, the sockets, the handshake, keys, and length-prefixed postcard frames.
//! It knows nothing of what the frames carry (a manager's requests and replies live in
//! `manager::protocol`), and sits below `connection/` and `manager/`, which both use it.
//!
//! # Handshake (both ways, as Python's `multiprocessing.connection`)
//! 1. server → client: 32 random bytes `Cs`;
//! 2. client → server: the address it dialled (a `u16` length and the text),
//!    `HMAC-SHA256(key, Cs ‖ address)` and 32 random bytes `Cc`;
//! 3. server: a wrong MAC closes the connection (the client sees an authentication error). The
//!    process tree's key is checked against the server's *own* address, so a proof made for
//!    another address — a stranger relaying a tree process's handshake to the real server from a
//!    proxy that names the stranger's address — is worthless; a shared key against the address
//!    the client names. Otherwise → client: `HMAC-SHA256(key, Cc)`, which the client checks;
//! 4. client → server, sealed: a [`Hello`] with the protocol version and the client's build fingerprint
//!    (the server lets only clients of its own tree and build name functions by offset);
//! 5. server → client, sealed: a [`Verdict`] — welcome, with the server's id (how proxies stored in it
//!    find their way back), or why not: a client of another protocol version is told so, clearly,
//!    and the connection ends.
//!
//! From step 4 on, every frame is sealed (see [`session`]): a `u32` length, then postcard
//! encrypted and authenticated under keys this connection alone has, numbered so that a frame
//! cannot be replayed, dropped or reordered. For a manager, a request from the client and a reply
//! from the server, strictly in turn. A frame longer than [`MAX_FRAME`], one that does not open,
//! or one that does not decode, ends that connection — decoding runs no code, and the server
//! keeps serving everyone else.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use sha2::Sha256;

pub(crate) mod gate;
pub(crate) mod session;

pub(crate) use session::{Opener, Sealer, Session};

/// The version of what the frames carry (a manager's requests and replies); both sides must
/// speak the same, and the handshake checks it.
pub(crate) const PROTOCOL: u32 = 4;

/// The longest address a client may name in the handshake.
const MAX_ADDRESS: usize = 1024;

/// How long either side looks for the other's next frame before it blocks: an answer usually
/// comes within microseconds, and a blocked wake-up costs tens of them on these machines.
pub(crate) const SPIN: Duration = Duration::from_micros(60);

/// How long a server waits for a new connection to finish its handshake: a client that connects
/// and says nothing costs a thread for this long, no more.
pub(crate) const HANDSHAKE: Duration = Duration::from_secs(20);

/// The largest frame either side accepts.
pub(crate) const MAX_FRAME: usize = 256 << 20;

/// A shared secret: both ends must know it.
pub(crate) type AuthKey = [u8; 32];

/// The key both sides use, from the user's authkey of any length.
pub(crate) fn derive_key(authkey: &[u8]) -> AuthKey {
    use sha2::Digest;
    Sha256::digest(authkey).into()
}

/// Where a server listens, as users write it: `host:port` for TCP, `unix:/path` (or just an
/// absolute `/path`, as Python takes it) for a Unix socket in the filesystem, `unix:@name` for
/// one in Linux's abstract namespace (no file).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Endpoint {
    Tcp(String),
    Unix(String),
    Abstract(String),
}

impl Endpoint {
    pub(crate) fn parse(address: &str) -> Endpoint {
        match address.strip_prefix("unix:") {
            Some(path) => match path.strip_prefix('@') {
                Some(name) => Endpoint::Abstract(name.to_owned()),
                None => Endpoint::Unix(path.to_owned()),
            },
            None if address.starts_with('/') => Endpoint::Unix(address.to_owned()),
            None => Endpoint::Tcp(address.to_owned()),
        }
    }

    /// What `connect` failing with `error` means: an address that names nothing is the caller's
    /// mistake, not a server that went away.
    pub(crate) fn connect_error(&self, error: io::Error) -> crate::Error {
        use crate::{Error, ErrorKind};
        if error.kind() == io::ErrorKind::InvalidInput {
            return Error::with_source(
                ErrorKind::InvalidInput,
                format!("{self:?} is not an address: write host:port, unix:/path (or /path) or unix:@name"),
                error,
            );
        }
        Error::with_source(ErrorKind::Disconnected, format!("nobody answers at {self}"), error)
    }

    /// Opens a connection (not yet authenticated), giving up on a TCP peer that does not answer
    /// within [`HANDSHAKE`].
    pub(crate) fn connect(&self) -> io::Result<Socket> {
        let socket = match self {
            Endpoint::Tcp(address) => {
                let mut failed = io::Error::new(io::ErrorKind::InvalidInput, format!("{address} names no address"));
                let mut connected = None;
                for addr in std::net::ToSocketAddrs::to_socket_addrs(address.as_str())? {
                    match TcpStream::connect_timeout(&addr, HANDSHAKE) {
                        Ok(stream) => {
                            connected = Some(stream);
                            break;
                        }
                        Err(e) => failed = e,
                    }
                }
                Socket::Tcp(connected.ok_or(failed)?)
            }
            Endpoint::Unix(path) => Socket::Unix(UnixStream::connect(path)?),
            Endpoint::Abstract(name) => {
                Socket::Unix(UnixStream::connect_addr(&crate::sys::socket::abstract_address(name.as_bytes())?)?)
            }
        };
        socket.tune();
        Ok(socket)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(address) => f.write_str(address),
            Endpoint::Unix(path) => write!(f, "unix:{path}"),
            Endpoint::Abstract(name) => write!(f, "unix:@{name}"),
        }
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// One connection: TCP (remote) or a Unix socket (local).
#[derive(Debug)]
pub(crate) enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Socket {
    /// Sets the options a request–reply connection wants (see `sys::socket::tune_tcp`).
    pub(crate) fn tune(&self) {
        if let Socket::Tcp(stream) = self {
            // Best effort: a connection without them still works, only slower to notice death.
            let _ = crate::sys::socket::tune_tcp(stream.as_fd());
        }
    }

    pub(crate) fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.set_read_timeout(timeout),
            Socket::Unix(s) => s.set_read_timeout(timeout),
        }
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Socket::Tcp(s) => s.as_fd(),
            Socket::Unix(s) => s.as_fd(),
        }
    }
}

impl Read for &Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => (&*s).read(buf),
            Socket::Unix(s) => (&*s).read(buf),
        }
    }
}

impl Write for &Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => (&*s).write(buf),
            Socket::Unix(s) => (&*s).write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Spins (yielding the CPU between looks) until `socket` has bytes to read or [`SPIN`] passes.
pub(crate) fn spin_until_readable(socket: &Socket) {
    let began = std::time::Instant::now();
    while began.elapsed() < SPIN {
        if crate::sys::poll::is_readable(socket.as_fd()).unwrap_or(true) {
            return;
        }
        std::thread::yield_now();
    }
}

fn frame_len(len: usize) -> io::Result<u32> {
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("a message of {len} bytes is over the limit")));
    }
    Ok(len as u32)
}

/// Reads frames off a manager connection through a buffer: one system call usually brings a
/// whole frame, and while the reader spins for the next one, the call that looks is the call that
/// reads. Only for connections nobody polls from outside (bytes may wait in the buffer).
pub(crate) struct FrameReader {
    buf: Vec<u8>,
    /// Unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
}

/// What a reader keeps between frames; a larger frame grows it for as long as it is read.
const READ_BUFFER: usize = 16 << 10;

impl FrameReader {
    pub(crate) fn new() -> FrameReader {
        FrameReader { buf: vec![0; READ_BUFFER], start: 0, end: 0 }
    }

    /// The next frame's payload, opened by `opener`. Waits for its first bytes spinning (for up
    /// to [`SPIN`]), then blocked. An oversized frame, or one that does not open, is an
    /// `InvalidData` error, and the connection is unusable.
    pub(crate) fn next(&mut self, socket: &Socket, opener: &mut Opener) -> io::Result<&[u8]> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > READ_BUFFER {
                self.buf = vec![0; READ_BUFFER]; // give back what a large frame took
            }
        }
        let spin_until = std::time::Instant::now() + SPIN;
        loop {
            let have = self.end - self.start;
            let mut need = 4;
            if have >= 4 {
                let head: [u8; 4] = self.buf[self.start..self.start + 4].try_into().expect("4 bytes");
                let len = u32::from_le_bytes(head) as usize;
                if len > MAX_FRAME {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("a frame of {len} bytes is over the limit"),
                    ));
                }
                need = 4 + len;
                if have >= need {
                    let frame = self.start + 4..self.start + need;
                    self.start += need;
                    return opener.open(head, &mut self.buf[frame]);
                }
            }
            // Room for the whole frame after what is there: move it to the front, and grow the
            // buffer as its bytes come (a length alone commits no memory).
            if self.start > 0 && self.start + need > self.buf.len() {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                let grown = need.min(self.end + (1 << 20));
                self.buf.resize(grown, 0);
            }
            let room = &mut self.buf[self.end..];
            let read = if std::time::Instant::now() < spin_until {
                match crate::sys::socket::recv_now(socket.as_fd(), room)? {
                    Some(n) => n,
                    None => {
                        std::thread::yield_now();
                        continue;
                    }
                }
            } else {
                match (&mut &*socket).read(room) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            if read == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.end += read;
        }
    }

    /// The next frame, decoded. An undecodable frame is an `InvalidData` error.
    pub(crate) fn receive<T: DeserializeOwned>(&mut self, socket: &Socket, opener: &mut Opener) -> io::Result<T> {
        postcard::from_bytes(self.next(socket, opener)?).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

fn mac(key: &AuthKey, challenge: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(challenge);
    mac.finalize().into_bytes().into()
}

fn verify(key: &AuthKey, challenge: &[u8], answer: &[u8]) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(challenge);
    mac.verify_slice(answer).is_ok() // constant time
}

/// 32 bytes from the kernel's random source.
pub(crate) fn random_bytes() -> io::Result<[u8; 32]> {
    crate::sys::random::bytes32()
}

/// Why a handshake failed.
pub(crate) enum Refused {
    /// The other side does not know the key.
    Authentication,
    /// The other side speaks another protocol version (the text says which).
    Protocol(String),
    /// The connection failed.
    Io(io::Error),
}

impl From<io::Error> for Refused {
    fn from(err: io::Error) -> Refused {
        Refused::Io(err)
    }
}

/// What a client says once both sides are authenticated.
#[derive(Serialize, Deserialize)]
struct Hello {
    protocol: u32,
    build: ByteBuf,
}

/// The server's answer to a [`Hello`].
#[derive(Serialize, Deserialize)]
enum Verdict {
    /// With the server's id.
    Welcome(u64),
    Refused(String),
}

fn bound_mac(key: &AuthKey, challenge: &[u8], address: &str) -> [u8; 32] {
    mac(key, &[challenge, address.as_bytes()].concat())
}

/// A key a server accepts, and the address a proof with it must name: the server's own for a
/// key it must not accept through a relay, any for a shared one.
pub(crate) struct Accepted<'a> {
    pub(crate) key: &'a AuthKey,
    pub(crate) bound_to: Option<&'a str>,
}

/// A socket whose reads give up at `deadline` — one deadline for a whole exchange, so that a
/// peer that sends a byte now and then cannot stretch it.
struct Timed<'a> {
    socket: &'a Socket,
    deadline: std::time::Instant,
}

impl Read for Timed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.socket.set_read_timeout(Some(left))?;
        (&mut &*self.socket).read(buf)
    }
}

impl Write for Timed<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&mut &*self.socket).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Timed<'_> {
    fn drop(&mut self) {
        let _ = self.socket.set_read_timeout(None);
    }
}

/// The server's side of the handshake, for a client that knows one of `keys`, finished by
/// `deadline`; returns which key it proved, the client's build fingerprint, and the session
/// every later frame goes through.
pub(crate) fn accept(
    socket: &Socket,
    keys: &[Accepted<'_>],
    server_id: u64,
    deadline: std::time::Instant,
) -> Result<(usize, Vec<u8>, Session), Refused> {
    let mut stream = Timed { socket, deadline };
    let challenge = random_bytes()?;
    stream.write_all(&challenge)?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    let len = usize::from(u16::from_le_bytes(len));
    if len > MAX_ADDRESS {
        return Err(Refused::Authentication);
    }
    let mut named = vec![0u8; len];
    stream.read_exact(&mut named)?;
    let named = String::from_utf8(named).map_err(|_| Refused::Authentication)?;
    let mut answer = [0u8; 64];
    stream.read_exact(&mut answer)?;
    let proves = |accepted: &Accepted<'_>| {
        let address = accepted.bound_to.unwrap_or(&named);
        verify(accepted.key, &[&challenge[..], address.as_bytes()].concat(), &answer[..32])
    };
    let Some(which) = keys.iter().position(proves) else {
        return Err(Refused::Authentication);
    };
    stream.write_all(&mac(keys[which].key, &answer[32..]))?;
    let mut session = Session::server(keys[which].key, &challenge, &answer[32..]);
    let hello: Hello = session.opener.receive(&mut stream)?;
    if hello.protocol != PROTOCOL {
        let why = format!("the server speaks manager protocol {PROTOCOL}, the client {}", hello.protocol);
        session.sealer.send(&mut stream, &Verdict::Refused(why.clone()))?;
        return Err(Refused::Protocol(why));
    }
    session.sealer.send(&mut stream, &Verdict::Welcome(server_id))?;
    Ok((which, hello.build.into_vec(), session))
}

/// The client's side of the handshake with the server it dialled at `address`, finished by
/// `deadline`; returns the server's id and the session every later frame goes through.
pub(crate) fn connect(
    socket: &Socket,
    key: &AuthKey,
    address: &str,
    build: &[u8],
    deadline: std::time::Instant,
) -> Result<(u64, Session), Refused> {
    let mut stream = Timed { socket, deadline };
    let mut challenge = [0u8; 32];
    stream.read_exact(&mut challenge)?;
    let ours = random_bytes()?;
    let len = u16::try_from(address.len())
        .ok()
        .filter(|&n| usize::from(n) <= MAX_ADDRESS)
        .ok_or_else(|| Refused::Io(io::Error::new(io::ErrorKind::InvalidInput, "an address over 1024 bytes")))?;
    let mut answer = Vec::with_capacity(2 + address.len() + 64);
    answer.extend_from_slice(&len.to_le_bytes());
    answer.extend_from_slice(address.as_bytes());
    answer.extend_from_slice(&bound_mac(key, &challenge, address));
    answer.extend_from_slice(&ours);
    stream.write_all(&answer)?;
    let mut proof = [0u8; 32];
    // A server that rejects us hangs up instead of answering.
    stream.read_exact(&mut proof).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => Refused::Authentication,
        _ => Refused::Io(e),
    })?;
    if !verify(key, &ours, &proof) {
        return Err(Refused::Authentication);
    }
    let mut session = Session::client(key, &challenge, &ours);
    session.sealer.send(&mut stream, &Hello { protocol: PROTOCOL, build: ByteBuf::from(build.to_vec()) })?;
    match session.opener.receive(&mut stream)? {
        Verdict::Welcome(server_id) => Ok((server_id, session)),
        Verdict::Refused(why) => Err(Refused::Protocol(why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    /// A session pair, and frames sealed by its client side, one at a time.
    fn sessions() -> (Session, Session) {
        let (key, cs, cc) = ([3u8; 32], [4u8; 32], [5u8; 32]);
        (Session::client(&key, &cs, &cc), Session::server(&key, &cs, &cc))
    }

    fn frame(client: &mut Session, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        client.sealer.send_bytes(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn the_reader_splits_what_it_reads_into_frames_and_gives_back_what_big_ones_took() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let (mut writer, socket) = (theirs, Socket::Unix(ours));
        let (mut client, mut server) = sessions();
        let opener = &mut server.opener;
        let mut frames = FrameReader::new();
        // Several frames in one write come out one by one.
        writer
            .write_all(&[frame(&mut client, b"one"), frame(&mut client, b""), frame(&mut client, b"three")].concat())
            .unwrap();
        assert_eq!(frames.next(&socket, opener).unwrap(), b"one");
        assert_eq!(frames.next(&socket, opener).unwrap(), b"");
        assert_eq!(frames.next(&socket, opener).unwrap(), b"three");
        // A frame split across writes (even inside its length) comes out whole.
        let split = frame(&mut client, b"split in three");
        let writing = std::thread::spawn(move || {
            for piece in [&split[..2], &split[2..9], &split[9..]] {
                writer.write_all(piece).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            writer
        });
        assert_eq!(frames.next(&socket, opener).unwrap(), b"split in three");
        let mut writer = writing.join().unwrap();
        // A frame bigger than the buffer grows it for as long as it is read...
        let big: Vec<u8> = (0..3 << 20).map(|i| i as u8).collect();
        let (sent, after) = (frame(&mut client, &big), frame(&mut client, b"after"));
        let writing = std::thread::spawn(move || {
            writer.write_all(&sent).unwrap();
            writer.write_all(&after).unwrap();
            writer
        });
        assert_eq!(frames.next(&socket, opener).unwrap(), &big[..]);
        // ...and the next frame gives the memory back.
        assert_eq!(frames.next(&socket, opener).unwrap(), b"after");
        assert_eq!(frames.buf.len(), READ_BUFFER);
        drop(writing.join().unwrap());
        assert_eq!(frames.next(&socket, opener).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn the_reader_refuses_an_oversized_length_without_reading_or_allocating_it() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let socket = Socket::Unix(ours);
        let (_, mut server) = sessions();
        let opener = &mut server.opener;
        theirs.write_all(&u32::MAX.to_le_bytes()).unwrap();
        let mut frames = FrameReader::new();
        assert_eq!(frames.next(&socket, opener).unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert_eq!(frames.buf.len(), READ_BUFFER);
        // A legal but large length commits memory only as its bytes arrive.
        theirs.write_all(&((200u32 << 20).to_le_bytes())).unwrap();
        drop(theirs);
        let mut frames = FrameReader::new();
        assert_eq!(frames.next(&socket, opener).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        assert!(frames.buf.len() <= READ_BUFFER + (1 << 20), "grew to {}", frames.buf.len());
    }
}
