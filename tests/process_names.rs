//! Children carry their names where `ps` and `top` look (`/proc/<pid>/comm`), under every start
//! method; and an `Error` says its cause once.

mod common;

use common::watchdog;
use multiproc::{Process, StartMethod};

fn my_comm() -> String {
    std::fs::read_to_string("/proc/self/comm").unwrap().trim_end().to_owned()
}

fn named_child(method: StartMethod) {
    let _w = watchdog(60);
    let mut p = Process::builder().name("hasher-1").start_method(method).spawn(my_comm, ()).unwrap();
    assert_eq!(p.join().unwrap(), "hasher-1");
    // Longer names are cut to the kernel's 15 bytes, at a character boundary.
    let mut p = Process::builder().name("a-rather-long-näme").start_method(method).spawn(my_comm, ()).unwrap();
    assert_eq!(p.join().unwrap(), "a-rather-long-n");
}

per_method!(named_child);

#[test]
fn an_error_says_its_cause_once() {
    let err = multiproc::shm::SharedMemory::attach("no-such-segment-here").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("No such file or directory"), "{text}");
    assert!(std::error::Error::source(&err).is_none(), "the cause would be printed twice in a report");
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
}
