//! Strangers at the door: silent connections (a thousand of them) lock no client out of a
//! manager or a `Listener`, a silent stranger delays nobody, and a private manager serves only
//! its owner's user.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};

use common::watchdog;
use multiproc::Manager;
use multiproc::connection::{Listener, client};

const HELD: usize = 1000;

/// Opens `n` connections to `address` that never say a word.
fn silent(address: &str, n: usize) -> Vec<Box<dyn Send>> {
    (0..n)
        .map(|_| -> Box<dyn Send> {
            match address.strip_prefix("unix:@") {
                Some(name) => {
                    let at = SocketAddr::from_abstract_name(name).unwrap();
                    Box::new(UnixStream::connect_addr(&at).unwrap())
                }
                None => Box::new(TcpStream::connect(address).unwrap()),
            }
        })
        .collect()
}

fn a_client_gets_through(manager: &Manager) {
    // A new thread opens a new connection (each thread has its own).
    std::thread::scope(|s| {
        s.spawn(|| {
            let d = manager.dict::<String, u32>().unwrap();
            d.insert("x".into(), 1).unwrap();
            assert_eq!(d.get("x").unwrap(), Some(1));
        })
        .join()
        .unwrap();
    });
}

#[test]
fn a_thousand_silent_connections_lock_no_client_out_of_a_private_manager() {
    let _w = watchdog(120);
    let manager = Manager::start().unwrap();
    let held = silent(&manager.address(), HELD);
    a_client_gets_through(&manager);
    // And again, with the strangers still there.
    let more = silent(&manager.address(), HELD);
    a_client_gets_through(&manager);
    drop((held, more));
}

#[test]
fn a_thousand_silent_connections_lock_no_client_out_of_a_served_manager() {
    let _w = watchdog(120);
    let server = Manager::serve("127.0.0.1:0", b"door-key").unwrap();
    let held = silent(&server.address(), HELD);
    let remote = Manager::connect(&server.address(), b"door-key").unwrap();
    a_client_gets_through(&remote);
    drop(held);
}

#[test]
fn a_listener_serves_clients_while_strangers_hold_connections() {
    let _w = watchdog(120);
    let listener = Listener::bind("127.0.0.1:0", b"k").unwrap();
    let address = listener.address().unwrap();
    // The strangers connect while the listener accepts (a listener nobody accepts on has a
    // backlog of 128, and more connects would wait in the kernel); then a client.
    let others = std::thread::spawn(move || {
        let held = silent(&address, HELD);
        client::<u32>(&address, b"k").unwrap().send(&7).unwrap();
        held
    });
    let conn = listener.accept::<u32>().unwrap();
    assert_eq!(conn.recv().unwrap(), 7);
    drop(others.join().unwrap());
}

#[test]
fn a_silent_stranger_does_not_hold_up_the_next_client() {
    let _w = watchdog(60);
    let listener = Listener::bind("127.0.0.1:0", b"k").unwrap();
    let address = listener.address().unwrap();
    let stranger = TcpStream::connect(&address).unwrap();
    stranger.set_nonblocking(true).unwrap();
    let client_address = address.clone();
    let other = std::thread::spawn(move || client::<u32>(&client_address, b"k").unwrap().send(&9).unwrap());
    let conn = listener.accept::<u32>().unwrap();
    assert_eq!(conn.recv().unwrap(), 9);
    other.join().unwrap();
    // Had the stranger's handshake come first, accept would have returned only after its deadline
    // closed it; it is still open: its challenge is there and nothing after it.
    let mut buf = [0u8; 64];
    let n = (&stranger).read(&mut buf).unwrap();
    assert_eq!(n, 32, "the stranger's connection should hold just the challenge");
    let after = (&stranger).read(&mut buf);
    assert!(matches!(&after, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock), "{after:?}");
}

#[test]
fn a_private_manager_turns_away_other_users() {
    let _w = watchdog(60);
    let manager = Manager::start().unwrap();
    let address = manager.address();
    let name = address.strip_prefix("unix:@").expect("a private manager listens in the abstract namespace");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // Without root this process cannot become another user; the owner at least is served.
        a_client_gets_through(&manager);
        return;
    }
    // A forked child that becomes `nobody` and knocks.
    // SAFETY: the child only makes system calls and exits with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: as above.
        unsafe {
            if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                libc::_exit(2);
            }
        }
        let code = match UnixStream::connect_addr(&SocketAddr::from_abstract_name(name).unwrap()) {
            Ok(mut stream) => {
                let mut buf = [0u8; 32];
                // The owner's clients get a challenge at once; a stranger gets the door shut.
                match stream.read(&mut buf) {
                    Ok(0) => 0,
                    Err(_) => 0,
                    Ok(_) => 1,
                }
            }
            Err(_) => 3,
        };
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for the child we forked.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status));
    assert_eq!(libc::WEXITSTATUS(status), 0, "another user was let into a private manager (or could not knock)");
    a_client_gets_through(&manager);
}
