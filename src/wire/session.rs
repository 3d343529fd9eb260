//! Every frame after the handshake, sealed: encrypted and authenticated with AES-256-GCM (`ring`'s,
//! in assembly, a few hundred nanoseconds per small frame) under keys that only this connection
//! has.
//!
//! The handshake proves that both ends know the key and leaves each side with both challenges
//! (`Cs` from the server, `Cc` from the client), fresh and random for each connection. From those
//! each direction gets its own key, `HMAC-SHA256(key, label ‖ Cs ‖ Cc)`, and numbers its frames
//! from zero; a frame's number is its nonce, never sent and never reused under one key. The
//! four-byte length before a frame is authenticated with it.
//!
//! So a frame that was changed on the way, dropped, sent again, or moved to another connection
//! or the other direction does not open: the receiver takes it as the end of that connection
//! (an `InvalidData` error), and nothing of it reaches the decoder. Each connection fails alone.

use std::io::{self, Read, Write};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{AuthKey, frame_len, mac};

/// What sealing adds to each frame: GCM's tag.
pub(crate) const TAG: usize = 16;

/// One direction of a connection: its cipher and the number of the next frame.
struct Direction {
    cipher: LessSafeKey,
    next: u64,
}

impl Direction {
    fn new(key: &AuthKey, label: &[u8], server_challenge: &[u8], client_challenge: &[u8]) -> Direction {
        let derived = mac(key, &[label, server_challenge, client_challenge].concat());
        let key = UnboundKey::new(&AES_256_GCM, &derived).expect("a 32-byte key is an AES-256 key");
        Direction { cipher: LessSafeKey::new(key), next: 0 }
    }

    /// The nonce of the next frame, and the count moved on. A connection would need 2^64
    /// frames to wrap it; it ends (an error) before that.
    fn nonce(&mut self) -> io::Result<Nonce> {
        let number = self.next;
        self.next = number
            .checked_add(1)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a connection ran out of frame numbers"))?;
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&number.to_le_bytes());
        // Unique: a fresh key per connection and direction, and each number used once under it.
        Ok(Nonce::assume_unique_for_key(nonce))
    }
}

const CLIENT_TO_SERVER: &[u8] = b"multiproc wire v1: client to server";
const SERVER_TO_CLIENT: &[u8] = b"multiproc wire v1: server to client";

/// The sending half of a connection's session.
pub(crate) struct Sealer(Direction);

/// The receiving half of a connection's session.
pub(crate) struct Opener(Direction);

/// Both halves, as the handshake leaves them.
pub(crate) struct Session {
    pub(crate) sealer: Sealer,
    pub(crate) opener: Opener,
}

impl Session {
    /// The client's session after a handshake with server challenge `cs` and client challenge `cc`.
    pub(crate) fn client(key: &AuthKey, cs: &[u8], cc: &[u8]) -> Session {
        Session {
            sealer: Sealer(Direction::new(key, CLIENT_TO_SERVER, cs, cc)),
            opener: Opener(Direction::new(key, SERVER_TO_CLIENT, cs, cc)),
        }
    }

    /// The server's session: the client's, mirrored.
    pub(crate) fn server(key: &AuthKey, cs: &[u8], cc: &[u8]) -> Session {
        Session {
            sealer: Sealer(Direction::new(key, SERVER_TO_CLIENT, cs, cc)),
            opener: Opener(Direction::new(key, CLIENT_TO_SERVER, cs, cc)),
        }
    }
}

impl Sealer {
    /// Seals `frame`, which holds four bytes of room for the length and then the payload, in
    /// place: the length is written, the payload encrypted, the tag appended.
    fn seal(&mut self, frame: &mut Vec<u8>) -> io::Result<()> {
        let body = frame.len() - 4 + TAG;
        let len = frame_len(body)?.to_le_bytes();
        frame[..4].copy_from_slice(&len);
        let nonce = self.0.nonce()?;
        let tag = self
            .0
            .cipher
            .seal_in_place_separate_tag(nonce, Aad::from(len), &mut frame[4..])
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a frame could not be sealed"))?;
        frame.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Writes `value` as one sealed frame. A value too large for a frame is an `InvalidInput`
    /// error (nothing is sent).
    pub(crate) fn send<T: Serialize>(&mut self, mut socket: impl Write, value: &T) -> io::Result<()> {
        let mut frame =
            postcard::to_extend(value, vec![0u8; 4]).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.seal(&mut frame)?;
        socket.write_all(&frame)
    }

    /// Writes raw bytes as one sealed frame.
    pub(crate) fn send_bytes(&mut self, mut socket: impl Write, payload: &[u8]) -> io::Result<()> {
        let mut frame = Vec::with_capacity(4 + payload.len() + TAG);
        frame.extend_from_slice(&[0; 4]);
        frame.extend_from_slice(payload);
        self.seal(&mut frame)?;
        socket.write_all(&frame)
    }
}

impl Opener {
    /// Opens a frame's body (ciphertext and tag) in place, `len` being the length that came
    /// before it; returns the payload. A frame that does not open is an `InvalidData` error.
    pub(crate) fn open<'a>(&mut self, len: [u8; 4], body: &'a mut [u8]) -> io::Result<&'a [u8]> {
        let refused = || {
            io::Error::new(io::ErrorKind::InvalidData, "a frame failed its check (changed, replayed or out of order)")
        };
        let split = body.len().checked_sub(TAG).ok_or_else(refused)?;
        let (payload, tag) = body.split_at_mut(split);
        let tag = Tag::try_from(&tag[..]).map_err(|_| refused())?;
        let nonce = self.0.nonce()?;
        self.0.cipher.open_in_place_separate_tag(nonce, Aad::from(len), tag, payload, 0..).map_err(|_| refused())?;
        Ok(payload)
    }

    /// Reads one sealed frame and returns its payload. An oversized frame, or one that does not
    /// open, is an `InvalidData` error, and leaves the stream unusable.
    pub(crate) fn receive_bytes(&mut self, mut socket: impl Read) -> io::Result<Vec<u8>> {
        let mut len = [0u8; 4];
        socket.read_exact(&mut len)?;
        let size = u32::from_le_bytes(len) as usize;
        if size > super::MAX_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a frame of {size} bytes is over the limit"),
            ));
        }
        let mut body = vec![0u8; size];
        socket.read_exact(&mut body)?;
        let payload = self.open(len, &mut body)?.len();
        body.truncate(payload);
        Ok(body)
    }

    /// Reads one sealed frame and decodes it.
    pub(crate) fn receive<T: DeserializeOwned>(&mut self, socket: impl Read) -> io::Result<T> {
        let bytes = self.receive_bytes(socket)?;
        postcard::from_bytes(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Session, Session) {
        let key = [7u8; 32];
        let (cs, cc) = ([1u8; 32], [2u8; 32]);
        (Session::client(&key, &cs, &cc), Session::server(&key, &cs, &cc))
    }

    fn frames(session: &mut Session, payloads: &[&[u8]]) -> Vec<Vec<u8>> {
        payloads
            .iter()
            .map(|p| {
                let mut out = Vec::new();
                session.sealer.send_bytes(&mut out, p).unwrap();
                out
            })
            .collect()
    }

    #[test]
    fn frames_open_in_order_on_the_other_side_only() {
        let (mut client, mut server) = pair();
        let sent = frames(&mut client, &[b"one", b"two", b""]);
        assert!(sent[0].windows(3).all(|w| w != b"one"), "the payload travels encrypted");
        for (frame, payload) in sent.iter().zip([&b"one"[..], b"two", b""]) {
            assert_eq!(server.opener.receive_bytes(&frame[..]).unwrap(), payload);
        }
        // The server's own direction has its own key: a client frame does not open there.
        let (mut client, _) = pair();
        let sent = frames(&mut client, &[b"hello"]);
        assert!(client.opener.receive_bytes(&sent[0][..]).is_err());
    }

    #[test]
    fn a_changed_replayed_or_skipped_frame_does_not_open() {
        let (mut client, mut server) = pair();
        let sent = frames(&mut client, &[b"first", b"second", b"third"]);
        let mut changed = sent[0].clone();
        changed[6] ^= 1;
        assert_eq!(server.opener.receive_bytes(&changed[..]).unwrap_err().kind(), io::ErrorKind::InvalidData);

        let (mut client, mut server) = pair();
        let sent = frames(&mut client, &[b"first", b"second", b"third"]);
        server.opener.receive_bytes(&sent[0][..]).unwrap();
        assert!(server.opener.receive_bytes(&sent[0][..]).is_err(), "a replayed frame opened");

        let (mut client, mut server) = pair();
        let sent = frames(&mut client, &[b"first", b"second"]);
        assert!(server.opener.receive_bytes(&sent[1][..]).is_err(), "a frame opened out of order");

        // A length changed to match a shorter body is caught too.
        let (mut client, mut server) = pair();
        let sent = frames(&mut client, &[b"first"]);
        let mut cut = sent[0][..sent[0].len() - 1].to_vec();
        let shorter = (cut.len() - 4) as u32;
        cut[..4].copy_from_slice(&shorter.to_le_bytes());
        assert!(server.opener.receive_bytes(&cut[..]).is_err());
    }
}
