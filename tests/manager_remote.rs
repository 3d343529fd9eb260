//! A manager served over TCP on loopback: a process that inherited nothing reaches it with the
//! address and the key; a wrong key is refused; garbage on the port costs only its connection.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::watchdog;
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
    let conn = multiproc::connection::client::<u64>(&address, b"listener-key").unwrap();
    conn.send(&20).unwrap();
    conn.recv().unwrap()
}

#[test]
fn listener_and_client_talk_typed_after_authenticating() {
    let _w = watchdog(60);
    let listener = multiproc::connection::Listener::bind("127.0.0.1:0", b"listener-key").unwrap();
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
    let wrong = std::thread::spawn(move || {
        multiproc::connection::client::<u64>(&address, b"nope").map(drop).unwrap_err().kind()
    });
    let accepted = std::thread::spawn(move || listener.accept::<u64>().is_ok());
    assert_eq!(wrong.join().unwrap(), ErrorKind::Authentication);
    drop(accepted); // the listener goes on waiting for a real client; the test does not need one
}
