//! Managers served over TCP on loopback and on Unix socket paths: a process that inherited
//! nothing reaches one with the address and the key; a wrong key is refused; garbage on the port
//! costs only its connection; a served manager runs no code its clients name, only the user
//! types registered when it started. And Python's `Listener`/`Client` pair on the same machinery.

mod common;

const SHORT: Duration = Duration::from_millis(100);

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::watchdog;
use multiproc::connection::{Listener, RecvError, RecvTimeoutError, client};
use multiproc::manager::{DictProxy, ListProxy, ObjectProxy, SemaphoreProxy, SharedObject};
use multiproc::{Context, ErrorKind, Manager, StartMethod};

fn remote_worker(address: String, key: Vec<u8>) -> u64 {
    let manager = Manager::connect(&address, &key).unwrap();
    let jobs = manager.queue_named::<Option<u64>>("jobs").unwrap();
    let total = manager.dict_named::<String, u64>("totals").unwrap();
    let mut done = 0;
    while let Some(n) = jobs.get().unwrap() {
        total.add(&"sum".to_string(), n).unwrap();
        done += 1;
    }
    done
}

#[test]
fn a_process_that_inherited_nothing_works_through_a_tcp_manager() {
    let _w = watchdog(60);
    let server = Manager::serve("127.0.0.1:0", b"remote-key").unwrap();
    let jobs = server.queue_named::<Option<u64>>("jobs").unwrap();
    for n in 1..=100 {
        jobs.put(Some(n)).unwrap();
    }
    jobs.put(None).unwrap();
    jobs.put(None).unwrap();
    // Spawned: a fresh program that gets only two strings' worth of arguments.
    let ctx = Context::new(StartMethod::Spawn);
    let mut workers: Vec<_> =
        (0..2).map(|_| ctx.spawn(remote_worker, (server.address(), b"remote-key".to_vec())).unwrap()).collect();
    let done: u64 = workers.iter_mut().map(|w| w.join().unwrap()).sum();
    assert_eq!(done, 100);
    assert_eq!(server.dict_named::<String, u64>("totals").unwrap().get(&"sum".to_string()).unwrap(), Some(5050));
}

#[test]
fn tcp_clients_with_the_wrong_key_or_garbage_are_turned_away() {
    let _w = watchdog(60);
    let server = Manager::serve("127.0.0.1:0", b"right").unwrap();
    let good = server.dict_named::<u8, u8>("d").unwrap();
    good.insert(1, 1).unwrap();
    let wrong = Manager::connect(&server.address(), b"wrong").unwrap();
    assert_eq!(wrong.dict_named::<u8, u8>("d").unwrap_err().kind(), ErrorKind::Authentication);
    for junk in [&b"GET / HTTP/1.0\r\n\r\n"[..], &[0xff; 100][..], &u32::MAX.to_le_bytes()[..]] {
        let mut s = std::net::TcpStream::connect(server.address()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let _ = s.write_all(junk);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    }
    assert_eq!(good.get(&1).unwrap(), Some(1), "a well-behaved client is still served");
    assert_eq!(
        Manager::connect("127.0.0.1:1", b"x").unwrap().dict::<u8, u8>().unwrap_err().kind(),
        ErrorKind::Disconnected
    );
}

fn ask_twice(address: String) -> u64 {
    let conn = client::<u64>(&address, b"listener-key").unwrap();
    conn.send(&20).unwrap();
    conn.recv().unwrap()
}

#[test]
fn listener_and_client_talk_typed_after_authenticating() {
    let _w = watchdog(60);
    let listener = Listener::bind("127.0.0.1:0", b"listener-key").unwrap();
    let address = listener.address().unwrap();
    // A stranger with garbage first: the listener turns it away and keeps accepting.
    let mut junk = std::net::TcpStream::connect(&address).unwrap();
    junk.write_all(&[0u8; 64]).unwrap();
    junk.shutdown(std::net::Shutdown::Write).unwrap();
    let mut child = Context::new(StartMethod::Spawn).spawn(ask_twice, (address.clone(),)).unwrap();
    let conn = listener.accept::<u64>().unwrap();
    let n = conn.recv().unwrap();
    conn.send(&(n * 2)).unwrap();
    assert_eq!(child.join().unwrap(), 40);
    drop(conn);
    let accepted = std::thread::spawn(move || listener.accept::<u64>().map(|c| c.recv().unwrap()));
    let wrong = client::<u64>(&address, b"nope").map(drop).unwrap_err().kind();
    assert_eq!(wrong, ErrorKind::Authentication);
    // The listener turned the wrong key away and went on waiting; a real client ends the wait.
    client::<u64>(&address, b"listener-key").unwrap().send(&7).unwrap();
    assert_eq!(accepted.join().unwrap().unwrap(), 7);
}

/// A user type for the served managers below.
#[derive(Default)]
struct Ledger(Vec<String>);

impl SharedObject for Ledger {
    type Request = Option<String>;
    type Response = usize;
    fn handle(&mut self, entry: Option<String>) -> usize {
        self.0.extend(entry);
        self.0.len()
    }
}

#[derive(Default)]
struct Unregistered;

impl SharedObject for Unregistered {
    type Request = ();
    type Response = ();
    fn handle(&mut self, (): ()) {}
}

fn double(n: Option<u64>) -> u64 {
    n.unwrap_or(1) * 2
}

fn sign_ledger(address: String) -> (usize, bool) {
    let manager = Manager::connect(&address, b"ledger-key").unwrap();
    // A proxy the owner stored in the manager comes without a key; this program uses the one it
    // connected with, and gets what that key allows: data, not code.
    let handed = manager.lookup::<ListProxy<DictProxy<u8, u64>>>("handed").unwrap().expect("registered");
    let theirs = handed.get(0).unwrap().expect("stored by the owner");
    assert_eq!(theirs.get(&0).unwrap(), Some(2));
    let refused = theirs.apply(&0, double).unwrap_err().kind() == ErrorKind::InvalidInput;
    let ledger = manager.object::<Ledger>().unwrap(); // a new one: registered types may be made
    ledger.call(Some("private".into())).unwrap();
    let shared = manager.lookup::<ObjectProxy<Ledger>>("ledger").unwrap().expect("registered by the owner");
    let slots = manager.lookup::<SemaphoreProxy>("slots").unwrap().expect("registered by the owner");
    slots.acquire().unwrap();
    (shared.call(Some(format!("signed by {}", std::process::id()))).unwrap(), refused)
}

#[test]
fn a_served_manager_runs_code_named_only_by_its_own_program() {
    let _w = watchdog(60);
    let server = Manager::builder().register::<Ledger>().serve("127.0.0.1:0", b"ledger-key").unwrap();
    let ledger = server.object::<Ledger>().unwrap();
    server.register("ledger", &ledger).unwrap();
    server.register("slots", &server.semaphore(2).unwrap()).unwrap();
    // The owner's own program (the tree's key) may name update functions and any user type.
    let d = server.dict::<u8, u64>().unwrap();
    assert_eq!(d.apply(&0, double).unwrap(), 2);
    assert!(server.object::<Unregistered>().is_ok());
    let handed = server.list::<DictProxy<u8, u64>>().unwrap();
    handed.push(d.clone()).unwrap();
    server.register("handed", &handed).unwrap();
    let ctx = Context::new(StartMethod::Spawn);
    let mut signers: Vec<_> = (0..2).map(|_| ctx.spawn(sign_ledger, (server.address(),)).unwrap()).collect();
    let results: Vec<(usize, bool)> = signers.iter_mut().map(|s| s.join().unwrap()).collect();
    assert!(results.iter().all(|&(_, refused)| refused), "apply refused to the other programs");
    let mut counts: Vec<usize> = results.iter().map(|&(n, _)| n).collect();
    counts.sort();
    assert_eq!(counts, [1, 2]);
    assert_eq!(ledger.call(None).unwrap(), 2);
    let slots: SemaphoreProxy = server.lookup("slots").unwrap().unwrap();
    assert_eq!(slots.value().unwrap(), 0);

    // Another program (the shared key) may not; numbers are still added in the server.
    let other = Manager::connect(&server.address(), b"ledger-key").unwrap();
    let err = other.object::<Unregistered>().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("registered"), "{err}");
    let theirs = other.dict_named::<u8, u64>("d").unwrap();
    let err = theirs.apply(&0, double).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("runs no code"), "{err}");
    assert_eq!(theirs.add(&0, 2).unwrap(), 2);
}

/// SHA-256 of the user's key, as both sides use it.
fn derived(key: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(key).into()
}

fn mac(key: &[u8; 32], challenge: &[u8]) -> Vec<u8> {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(challenge);
    mac.finalize().into_bytes().to_vec()
}

fn frame(payload: &[u8]) -> Vec<u8> {
    [&(payload.len() as u32).to_le_bytes()[..], payload].concat()
}

/// One direction of a connection, sealed by hand as the wire documents it: AES-256-GCM under
/// `HMAC-SHA256(key, label ‖ Cs ‖ Cc)`, the frame's number as nonce, its length as associated
/// data.
struct Direction {
    key: ring::aead::LessSafeKey,
    next: u64,
}

impl Direction {
    fn new(key: &[u8; 32], label: &str, server: &[u8], client: &[u8]) -> Direction {
        let derived = mac(key, &[label.as_bytes(), server, client].concat());
        let key = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &derived).unwrap();
        Direction { key: ring::aead::LessSafeKey::new(key), next: 0 }
    }

    fn nonce(&mut self) -> ring::aead::Nonce {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&self.next.to_le_bytes());
        self.next += 1;
        ring::aead::Nonce::assume_unique_for_key(nonce)
    }

    fn seal(&mut self, payload: &[u8]) -> Vec<u8> {
        let len = ((payload.len() + 16) as u32).to_le_bytes();
        let mut body = payload.to_vec();
        let nonce = self.nonce();
        let tag = self.key.seal_in_place_separate_tag(nonce, ring::aead::Aad::from(len), &mut body).unwrap();
        [&len[..], &body, tag.as_ref()].concat()
    }

    fn open(&mut self, s: &mut impl Read) -> Vec<u8> {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
        s.read_exact(&mut body).unwrap();
        let nonce = self.nonce();
        let payload = self
            .key
            .open_in_place(nonce, ring::aead::Aad::from(len), &mut body)
            .expect("the server's frame opens with the documented keys");
        payload.to_vec()
    }
}

/// Does the client's half of the handshake by hand, saying `protocol`; returns the stream, the
/// server's verdict, and the client's sealing direction for what follows.
fn handshake_by_hand(address: &str, key: &[u8], protocol: u8) -> (std::net::TcpStream, Vec<u8>, Direction) {
    let key = derived(key);
    let mut s = std::net::TcpStream::connect(address).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut challenge = [0u8; 32];
    s.read_exact(&mut challenge).unwrap();
    let ours = [9u8; 32];
    // The address dialled (a u16 length and the text), the proof over challenge and address.
    let named = address.as_bytes();
    let proof_of_key = mac(&key, &[&challenge[..], named].concat());
    let len = (named.len() as u16).to_le_bytes();
    s.write_all(&[&len[..], named, &proof_of_key, &ours].concat()).unwrap();
    let mut proof = [0u8; 32];
    s.read_exact(&mut proof).unwrap();
    assert_eq!(proof.to_vec(), mac(&key, &ours), "the server knows the key too");
    let mut up = Direction::new(&key, "multiproc wire v1: client to server", &challenge, &ours);
    let mut down = Direction::new(&key, "multiproc wire v1: server to client", &challenge, &ours);
    // Hello { protocol, build }, sealed: a varint and a byte string (an unknown build).
    s.write_all(&up.seal(&[protocol, 3, 1, 2, 3])).unwrap();
    let verdict = down.open(&mut s);
    (s, verdict, up)
}

/// The server hung up without answering.
fn hung_up(mut s: std::net::TcpStream) {
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "no answer: {rest:?}");
}

#[test]
fn after_the_handshake_garbage_oversized_frames_and_another_protocol_end_only_that_connection() {
    let _w = watchdog(60);
    let server = Manager::serve("127.0.0.1:0", b"frames").unwrap();
    let d = server.dict_named::<u8, u8>("d").unwrap();
    d.insert(1, 1).unwrap();
    let address = server.address();
    // Another protocol version is told so, in words.
    let (_, verdict, _) = handshake_by_hand(&address, b"frames", 99);
    assert_eq!(verdict[0], 1, "refused");
    assert!(String::from_utf8_lossy(&verdict).contains("protocol"), "{verdict:?}");
    // Authenticated, then: an unsealed frame, a sealed one that does not decode, a length over
    // the limit, a truncated frame.
    for bad in 0..4 {
        let (mut s, verdict, mut up) = handshake_by_hand(&address, b"frames", 4); // this protocol (4 since list insert/pop_at/…)
        assert_eq!(verdict[0], 0, "welcome (with the server's id)");
        let bytes = match bad {
            0 => frame(&[0xff; 40]),
            1 => up.seal(&[0xff; 40]),
            2 => u32::MAX.to_le_bytes().to_vec(),
            _ => vec![200, 0, 0, 0, 1, 2, 3],
        };
        s.write_all(&bytes).unwrap();
        hung_up(s); // the server hangs up, answering nothing
    }
    assert_eq!(d.get(&1).unwrap(), Some(1), "a well-behaved client is still served");
}

#[test]
fn a_net_message_over_the_limit_is_refused_before_anything_is_sent() {
    let _w = watchdog(60);
    let listener = Listener::bind("127.0.0.1:0", b"k").unwrap();
    let address = listener.address().unwrap();
    let accepted = std::thread::spawn(move || {
        let conn = listener.accept::<u8>().unwrap();
        conn.recv()
    });
    let conn = client::<u8>(&address, b"k").unwrap();
    let huge = vec![0u8; (256 << 20) + 1];
    match conn.send_bytes(&huge) {
        Err(multiproc::connection::SendError::Failed(e)) => assert_eq!(e.kind(), ErrorKind::InvalidInput),
        other => panic!("expected a refusal, got {other:?}"),
    }
    conn.send(&5).unwrap();
    assert_eq!(accepted.join().unwrap().unwrap(), 5, "the connection still works");
}

#[test]
fn a_manager_served_on_a_unix_path_is_reached_by_that_path_and_removed_with_it() {
    let _w = watchdog(60);
    let path = std::env::temp_dir().join(format!("mp-manager-test-{}", std::process::id()));
    let server = Manager::serve_unix(&path, b"unix-key").unwrap();
    assert!(path.exists());
    assert_eq!(server.address(), format!("unix:{}", path.display()));
    let ctx = Context::new(StartMethod::Spawn);
    let mut worker = ctx.spawn(remote_worker, (server.address(), b"unix-key".to_vec())).unwrap();
    let jobs = server.queue_named::<Option<u64>>("jobs").unwrap();
    (1..=10).for_each(|n| jobs.put(Some(n)).unwrap());
    jobs.put(None).unwrap();
    assert_eq!(worker.join().unwrap(), 10);
    assert_eq!(server.dict_named::<String, u64>("totals").unwrap().get(&"sum".to_string()).unwrap(), Some(55));
    let wrong = Manager::connect(&server.address(), b"guess").unwrap();
    assert_eq!(wrong.queue_named::<u8>("jobs").unwrap_err().kind(), ErrorKind::Authentication);
    // A bare absolute path is a Unix socket too, as in Python; what is no address says so.
    let bare = Manager::connect(path.to_str().unwrap(), b"unix-key").unwrap();
    assert_eq!(bare.dict_named::<String, u64>("totals").unwrap().len().unwrap(), 1);
    let err = Manager::connect("no address at all", b"k").unwrap().dict::<u8, u8>().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("unix:/path"), "{err}");
    assert_eq!(
        Manager::serve_unix("relative/path", b"k").unwrap_err().kind(),
        ErrorKind::InvalidInput,
        "a relative path is refused"
    );
    drop(server);
    assert!(!path.exists(), "the socket file goes with the server");
}

fn echo_until_closed(address: String) -> u32 {
    let conn = client::<u32>(&address, b"unix-listener").unwrap();
    let mut echoed = 0;
    loop {
        match conn.recv_bytes() {
            Ok(bytes) => conn.send_bytes(&bytes).unwrap(),
            Err(RecvError::Disconnected) => return echoed,
            Err(e) => panic!("{e}"),
        }
        echoed += 1;
    }
}

#[test]
fn a_listener_on_a_unix_path_has_the_verbs_and_errors_of_a_pipe() {
    let _w = watchdog(60);
    let path = std::env::temp_dir().join(format!("mp-listener-test-{}", std::process::id()));
    let listener = Listener::bind_unix(&path, b"unix-listener").unwrap();
    let address = listener.address().unwrap();
    let mut child = Context::new(StartMethod::Spawn).spawn(echo_until_closed, (address,)).unwrap();
    let conn = listener.accept::<u32>().unwrap();
    assert!(matches!(conn.try_recv(), Err(RecvTimeoutError::Timeout)));
    let began = Instant::now();
    assert!(matches!(conn.recv_timeout(SHORT), Err(RecvTimeoutError::Timeout)));
    assert!(began.elapsed() >= SHORT);
    for n in [1, 2, 3] {
        conn.send(&n).unwrap();
        assert_eq!(conn.recv().unwrap(), n);
    }
    // A message of another type is consumed with a decode error; the connection goes on.
    conn.send_bytes(b"\xff\xff\xff\xff\xff\xff").unwrap();
    match conn.recv() {
        Err(RecvError::Failed(e)) => assert_eq!(e.kind(), ErrorKind::Decode),
        other => panic!("expected a decode failure, got {other:?}"),
    }
    conn.send(&4).unwrap();
    assert_eq!(conn.recv_timeout(Duration::from_secs(20)).unwrap(), 4);
    // Closing our end ends the child's loop: a disconnection there.
    drop(conn);
    assert_eq!(child.join().unwrap(), 5, "three, the undecodable one, and the fourth");
    drop(listener);
    assert!(!path.exists(), "the socket file goes with the listener");
}

fn close_at_once(address: String) {
    drop(client::<u8>(&address, b"k").unwrap());
}

#[test]
fn a_net_connection_whose_peer_closed_is_disconnected() {
    let _w = watchdog(60);
    let listener = Listener::bind("127.0.0.1:0", b"k").unwrap();
    let mut child = Context::new(StartMethod::Spawn).spawn(close_at_once, (listener.address().unwrap(),)).unwrap();
    let conn = listener.accept::<u8>().unwrap();
    child.join().unwrap();
    assert!(matches!(conn.recv(), Err(RecvError::Disconnected)));
    assert!(conn.poll(Some(SHORT)).unwrap(), "a closed peer reads as ready (end of stream)");
}

/// Not a test of its own: the body of the separate program that
/// `a_program_we_did_not_start_works_from_a_served_manager` runs. It shares no process tree with
/// the server (another tree key), only the address and the key.
#[test]
fn stranger_helper() {
    let Ok(address) = std::env::var("MP_STRANGER_ADDRESS") else { return };
    let manager = Manager::connect(&address, b"stranger-key").unwrap();
    let jobs = manager.queue_named::<Option<u64>>("jobs").unwrap();
    // Proxies stored in the manager arrive without a key; this program uses the one it has.
    let results = manager.lookup::<ListProxy<DictProxy<u64, u64>>>("results").unwrap().unwrap().get(0).unwrap();
    let results = results.expect("a dict proxy stored by the owner");
    while let Some(n) = jobs.get().unwrap() {
        results.insert(n, n * n).unwrap();
    }
    // A child of this program knows the managers its parent reached: a proxy it reads from text
    // (no key in it) works there too.
    let text = serde_json::to_string(&results).unwrap();
    let mut child = Context::new(StartMethod::Spawn).spawn(count_from_text, (text,)).unwrap();
    assert_eq!(child.join().unwrap(), 5);
}

fn count_from_text(text: String) -> usize {
    let results: DictProxy<u64, u64> = serde_json::from_str(&text).unwrap();
    results.len().unwrap()
}

#[test]
fn a_program_we_did_not_start_works_from_a_served_manager() {
    let _w = watchdog(60);
    let server = Manager::serve("127.0.0.1:0", b"stranger-key").unwrap();
    let jobs = server.queue_named::<Option<u64>>("jobs").unwrap();
    let results = server.dict::<u64, u64>().unwrap();
    let holder = server.list::<DictProxy<u64, u64>>().unwrap();
    holder.push(results.clone()).unwrap();
    server.register("results", &holder).unwrap();
    (1..=5).for_each(|n| jobs.put(Some(n)).unwrap());
    jobs.put(None).unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "stranger_helper", "--nocapture", "--test-threads=1"])
        .env("MP_STRANGER_ADDRESS", server.address())
        .output()
        .unwrap();
    assert!(out.status.success(), "helper failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut got = results.items().unwrap();
    got.sort();
    assert_eq!(got, [(1, 1), (2, 4), (3, 9), (4, 16), (5, 25)]);
}

/// Relays bytes from `from` to `to` until either side closes; returns how many went through.
fn pump(mut from: std::net::TcpStream, mut to: std::net::TcpStream) -> usize {
    let mut total = 0;
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = from.read(&mut buf) {
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        total += n;
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    total
}

#[test]
fn a_proof_made_for_another_address_is_worthless_relayed_to_the_server() {
    let _w = watchdog(60);
    let server = Manager::serve("127.0.0.1:0", b"relay-key").unwrap();
    let real = server.address();
    // A stranger's listener that relays whatever comes to it to the real server: it would hold a
    // connection with this program's rights if the server took the relayed proof.
    let stranger = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let decoy = stranger.local_addr().unwrap().to_string();
    let relay = std::thread::spawn(move || {
        let (victim, _) = stranger.accept().unwrap();
        let upstream = std::net::TcpStream::connect(&real).unwrap();
        let (victim2, upstream2) = (victim.try_clone().unwrap(), upstream.try_clone().unwrap());
        let up = std::thread::spawn(move || pump(victim2, upstream2));
        let from_server = pump(upstream, victim);
        up.join().unwrap();
        from_server
    });
    // A proxy naming the stranger's address, as another program could store one in a manager:
    // read here it carries no key, and this process offers its tree's.
    let json = serde_json::json!([[{ "Tcp": decoy }, 0, null], 1]);
    let lure: DictProxy<u8, u8> = serde_json::from_value(json).unwrap();
    let err = lure.len().unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Authentication | ErrorKind::Disconnected), "{err}");
    // The server sent its 32-byte challenge and hung up: no proof back, no welcome.
    assert_eq!(relay.join().unwrap(), 32, "the server took a relayed proof");
    assert_eq!(server.dict_named::<u8, u8>("d").unwrap().len().unwrap(), 0, "and it goes on serving");
}

#[test]
fn serve_forever_returns_when_the_server_ends() {
    let _w = watchdog(60);
    let server = Manager::serve("127.0.0.1:0", b"forever").unwrap();
    let pid = server.pid().unwrap();
    let address = server.address();
    let killer = std::thread::spawn(move || {
        // A client of another program is served meanwhile; then the server is killed.
        let client = Manager::connect(&address, b"forever").unwrap();
        client.dict_named::<u8, u8>("d").unwrap().insert(1, 2).unwrap();
        common::kill_pid(pid);
    });
    let status = server.serve_forever();
    killer.join().unwrap();
    assert_eq!(status, Some(multiproc::ExitStatus::Signal(multiproc::Signal::KILL)));
    assert!(!common::running(pid));
}

#[test]
fn a_changed_or_replayed_frame_ends_that_connection_alone() {
    let _w = watchdog(60);
    let listener = Listener::bind("127.0.0.1:0", b"sealed").unwrap();
    let address = listener.address().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let serving = std::thread::spawn(move || {
        // Three connections: the changed frame's, the replayed frame's, and a good one.
        for _ in 0..3 {
            let conn = listener.accept::<u64>().unwrap();
            let first = conn.recv();
            let second = conn.recv();
            tx.send((first.map_err(|e| e.to_string()), second.map_err(|e| e.to_string()))).unwrap();
        }
    });
    // u64 7 in postcard is one byte; sealed, a frame of 4 + 1 + 16 bytes.
    let (mut s, verdict, mut up) = handshake_by_hand(&address, b"sealed", 4);
    assert_eq!(verdict[0], 0);
    let mut changed = up.seal(&[7]);
    changed[4] ^= 0x20; // one bit of the ciphertext
    s.write_all(&changed).unwrap();
    let (first, second) = rx.recv().unwrap();
    let why = first.unwrap_err();
    assert!(why.contains("seal"), "{why}");
    assert!(second.is_err(), "nothing more is read from a connection whose frame failed: {second:?}");
    hung_up(s);

    let (mut s, _, mut up) = handshake_by_hand(&address, b"sealed", 4);
    let good = up.seal(&[7]);
    s.write_all(&good).unwrap();
    s.write_all(&good).unwrap(); // the same frame again
    let (first, second) = rx.recv().unwrap();
    assert_eq!(first.unwrap(), 7);
    assert!(second.unwrap_err().contains("seal"), "a replayed frame was taken");
    hung_up(s);

    let conn = client::<u64>(&address, b"sealed").unwrap();
    conn.send(&1).unwrap();
    conn.send(&2).unwrap();
    let (first, second) = rx.recv().unwrap();
    assert_eq!((first.unwrap(), second.unwrap()), (1, 2), "other connections are served as before");
    serving.join().unwrap();
}
