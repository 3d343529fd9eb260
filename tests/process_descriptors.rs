//! Spawned and fork-server children hold only the descriptors they were given: not a parent
//! descriptor that is not close-on-exec. (Its own test binary: it puts such a descriptor at a
//! fixed number for the whole process.)

mod common;

use common::watchdog;
use multiproc::{Context, StartMethod};

const STRAY: i32 = 300;

fn is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

#[test]
fn spawned_and_fork_server_children_close_what_they_were_not_given() {
    let _w = watchdog(60);
    let mut pair = [0; 2];
    // SAFETY: socketpair writes two descriptors into `pair`.
    assert_eq!(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, pair.as_mut_ptr()) }, 0);
    // SAFETY: dup2 onto a number nothing else in this test binary uses; the copy is not
    // close-on-exec, which is the point.
    assert_eq!(unsafe { libc::dup2(pair[0], STRAY) }, STRAY);
    assert!(is_open(STRAY));
    // A fork-server launched after the stray descriptor exists (a server of its own, through
    // `executable`), and a spawned child.
    let exe = std::env::current_exe().unwrap();
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let mut p = Context::new(method).process().executable(&exe).spawn(is_open, (STRAY,)).unwrap();
        assert!(!p.join().unwrap(), "a {method} child inherited descriptor {STRAY}");
    }
    // Under fork the child is a copy of the parent, descriptors and all, as in Python.
    let mut p = Context::new(StartMethod::Fork).spawn(is_open, (STRAY,)).unwrap();
    assert!(p.join().unwrap());
    // SAFETY: closing the descriptors this test made.
    unsafe {
        libc::close(STRAY);
        libc::close(pair[0]);
        libc::close(pair[1]);
    }
}
