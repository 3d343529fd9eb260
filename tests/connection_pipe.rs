//! Pipes between processes: typed messages, raw bytes, boundaries, EOF, timeouts, big messages,
//! handles inside messages, and `wait`.

mod common;

use std::time::{Duration, Instant};

use common::watchdog;
use multiproc::connection::{
    Connection, RecvError, RecvIntoError, RecvTimeoutError, SendError, Waitable, pipe, pipe_one_way, wait,
};
use multiproc::{Context, ErrorKind, Lock, Process, StartMethod};

per_method!(echo_through_a_child);

/// Echoes until told to stop. (Not until end-of-file: under fork the child also inherits our end
/// of the pipe, so end-of-file would never come; see the `connection` module docs.)
fn echo(conn: Connection<(u32, String)>) -> u32 {
    let mut served = 0;
    while let Ok((n, text)) = conn.recv() {
        if text == "stop" {
            break;
        }
        conn.send(&(n + 1, text.to_uppercase())).unwrap();
        served += 1;
    }
    served
}

fn echo_through_a_child(method: StartMethod) {
    let _w = watchdog(60);
    let (ours, theirs) = pipe().unwrap();
    let mut child = Context::new(method).spawn(echo, (theirs,)).unwrap();
    for i in 0..100 {
        ours.send(&(i, format!("message {i}"))).unwrap();
        assert_eq!(ours.recv().unwrap(), (i + 1, format!("MESSAGE {i}")));
    }
    ours.send(&(0, "stop".to_string())).unwrap();
    assert_eq!(child.join().unwrap(), 100);
}

fn send_three_and_leave(conn: Connection<u8>) {
    for i in 0..3 {
        conn.send(&i).unwrap();
    }
}

#[test]
fn disconnection_comes_after_the_data_already_sent() {
    let _w = watchdog(60);
    let (ours, theirs) = pipe::<u8>().unwrap();
    let mut child = Process::spawn(send_three_and_leave, (theirs,)).unwrap();
    child.join().unwrap();
    assert_eq!((ours.recv().unwrap(), ours.recv().unwrap(), ours.recv().unwrap()), (0, 1, 2));
    assert!(matches!(ours.recv(), Err(RecvError::Disconnected)));
    assert!(matches!(ours.try_recv(), Err(RecvTimeoutError::Recv(RecvError::Disconnected))));
    assert!(ours.poll(Some(Duration::ZERO)).unwrap(), "the end of the stream counts as ready");
    assert!(matches!(ours.send(&9), Err(SendError::Disconnected)));
}

#[test]
fn poll_and_timeouts_wait_at_least_their_time() {
    let _w = watchdog(60);
    let (a, b) = pipe::<String>().unwrap();
    let timeout = Duration::from_millis(150);
    let started = Instant::now();
    assert!(!a.poll(Some(timeout)).unwrap());
    assert!(started.elapsed() >= timeout);
    let started = Instant::now();
    assert!(matches!(a.recv_timeout(timeout), Err(RecvTimeoutError::Timeout)));
    assert!(started.elapsed() >= timeout);
    assert!(matches!(a.try_recv(), Err(RecvTimeoutError::Timeout)));
    b.send(&"now".to_string()).unwrap();
    assert!(a.poll(Some(Duration::from_secs(10))).unwrap());
    assert_eq!(a.try_recv().unwrap(), "now");
}

#[test]
fn message_boundaries_hold_for_empty_and_many_small_messages() {
    let _w = watchdog(60);
    let (a, b) = pipe::<Vec<u8>>().unwrap();
    let sender = std::thread::spawn(move || {
        for i in 0..20_000u32 {
            b.send_bytes(&i.to_le_bytes()[..(i % 5) as usize]).unwrap();
        }
        b.send_bytes(&[]).unwrap();
    });
    for i in 0..20_000u32 {
        let got = a.recv_bytes().unwrap();
        assert_eq!(got, &i.to_le_bytes()[..(i % 5) as usize], "message {i}");
    }
    assert_eq!(a.recv_bytes().unwrap(), Vec::<u8>::new());
    sender.join().unwrap();
}

#[test]
fn a_too_small_buffer_hands_the_whole_message_back() {
    let (a, b) = pipe::<()>().unwrap();
    b.send_bytes(b"twelve bytes").unwrap();
    b.send_bytes(b"four").unwrap();
    let mut buf = [0u8; 8];
    match a.recv_bytes_into(&mut buf) {
        Err(RecvIntoError::TooSmall(message)) => assert_eq!(message, b"twelve bytes"),
        other => panic!("expected TooSmall, got {other:?}"),
    }
    assert_eq!(a.recv_bytes_into(&mut buf).unwrap(), 4);
    assert_eq!(&buf[..4], b"four");
}

#[test]
fn a_message_that_does_not_decode_is_an_error_and_the_next_one_arrives() {
    let (a, b) = pipe::<(u64, String)>().unwrap();
    b.send_bytes(&[0xff; 3]).unwrap();
    b.send(&(5, "five".to_string())).unwrap();
    match a.recv() {
        Err(RecvError::Failed(err)) => assert_eq!(err.kind(), ErrorKind::Decode),
        other => panic!("expected a decode error, got {other:?}"),
    }
    assert_eq!(a.recv().unwrap(), (5, "five".to_string()));
}

struct Unencodable;

impl serde::Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("no"))
    }
}

impl<'de> serde::Deserialize<'de> for Unencodable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|()| Unencodable)
    }
}

#[test]
fn a_message_that_does_not_encode_fails_in_the_sender_and_sends_nothing() {
    let (a, b) = pipe::<Unencodable>().unwrap();
    match b.send(&Unencodable) {
        Err(SendError::Failed(err)) => assert_eq!(err.kind(), ErrorKind::Encode),
        other => panic!("expected an encode error, got {other:?}"),
    }
    assert!(matches!(a.try_recv(), Err(RecvTimeoutError::Timeout)));
}

#[test]
fn one_way_pipes_refuse_the_wrong_direction() {
    let (reader, writer) = pipe_one_way::<u8>().unwrap();
    assert!(reader.readable() && !reader.writable());
    assert!(matches!(reader.send(&1), Err(SendError::ReadOnly)));
    assert!(matches!(writer.recv(), Err(RecvError::WriteOnly)));
    writer.send(&7).unwrap();
    assert_eq!(reader.recv().unwrap(), 7);
}

fn send_big(conn: Connection<()>, len: usize) {
    let big: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    conn.send_bytes(&big).unwrap();
}

#[test]
fn a_256_mib_message_goes_through() {
    let _w = watchdog(120);
    let (ours, theirs) = pipe::<()>().unwrap();
    let len = 256 << 20;
    let mut child = Process::spawn(send_big, (theirs, len)).unwrap();
    let got = ours.recv_bytes().unwrap();
    child.join().unwrap();
    assert_eq!(got.len(), len);
    assert!(got.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
}

fn use_the_lock_i_was_sent(conn: Connection<Lock>) -> bool {
    let lock = conn.recv().unwrap();
    lock.locked()
}

fn answer_on_the_connection_i_was_sent(conn: Connection<Connection<String>>) {
    let reply = conn.recv().unwrap();
    reply.send(&"over a connection sent over a connection".to_string()).unwrap();
}

#[test]
fn handles_travel_inside_messages() {
    let _w = watchdog(60);
    let (ours, theirs) = pipe::<Lock>().unwrap();
    let mut child = Process::spawn(use_the_lock_i_was_sent, (theirs,)).unwrap();
    let lock = Lock::new().unwrap();
    let _held = lock.acquire().unwrap();
    ours.send(&lock).unwrap();
    assert!(child.join().unwrap(), "the child saw a different lock");

    let (ours, theirs) = pipe::<Connection<String>>().unwrap();
    let mut child = Process::spawn(answer_on_the_connection_i_was_sent, (theirs,)).unwrap();
    let (reply_here, reply_there) = pipe::<String>().unwrap();
    ours.send(&reply_there).unwrap();
    drop(reply_there);
    assert_eq!(reply_here.recv().unwrap(), "over a connection sent over a connection");
    child.join().unwrap();
}

fn nap(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

#[test]
fn wait_over_pipes_and_a_process() {
    let _w = watchdog(60);
    let (a, _a_peer) = pipe::<u8>().unwrap();
    let (b, b_peer) = pipe::<u8>().unwrap();
    let mut sleeper = Process::spawn(nap, (200,)).unwrap();
    let timeout = Duration::from_millis(50);
    let started = Instant::now();
    assert!(wait(&[&a as &dyn Waitable, &b, &sleeper], Some(timeout)).unwrap().is_empty());
    assert!(started.elapsed() >= timeout);
    b_peer.send(&1).unwrap();
    assert_eq!(wait(&[&a as &dyn Waitable, &b, &sleeper], Some(Duration::from_secs(20))).unwrap(), [1]);
    b.recv().unwrap();
    assert_eq!(wait(&[&a as &dyn Waitable, &b, &sleeper], Some(Duration::from_secs(20))).unwrap(), [2]);
    sleeper.join().unwrap();
}

#[test]
fn clones_of_one_end_take_turns_by_whole_messages() {
    let _w = common::watchdog(120);
    let (a, b) = multiproc::pipe::<Vec<u8>>().unwrap();
    let a2 = a.try_clone().unwrap();
    let b2 = b.try_clone().unwrap();
    // Two senders on clones of one end, messages bigger than the socket buffer, so that a
    // message's writes would interleave with the other's if they did not take turns.
    let senders: Vec<_> = [(a, 1u8), (a2, 2u8)]
        .into_iter()
        .map(|(end, mark)| {
            std::thread::spawn(move || {
                for _ in 0..100 {
                    end.send(&vec![mark; 300_000]).unwrap();
                }
            })
        })
        .collect();
    // And two receivers on clones of the other end.
    let receivers: Vec<_> = [b, b2]
        .into_iter()
        .map(|end| {
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while let Ok(message) = end.recv_timeout(std::time::Duration::from_secs(2)) {
                    got.push(message);
                }
                got
            })
        })
        .collect();
    senders.into_iter().for_each(|s| s.join().unwrap());
    let messages: Vec<Vec<u8>> = receivers.into_iter().flat_map(|r| r.join().unwrap()).collect();
    assert_eq!(messages.len(), 200);
    for m in &messages {
        assert_eq!(m.len(), 300_000);
        assert!(m.iter().all(|&x| x == m[0]), "a message mixed two senders' bytes");
    }
}
