//! What a child takes from its parent and from the way it was started: its default start
//! method and Ctrl-C handling.

mod common;

use common::watchdog;
use multiproc::{Context, JoinError, Signal, StartMethod, get_start_method};

per_method!(a_child_defaults_to_the_method_it_was_started_with, ignore_interrupts_keeps_a_child_alive_through_sigint);

fn my_start_method() -> String {
    get_start_method().to_string()
}

fn a_child_defaults_to_the_method_it_was_started_with(method: StartMethod) {
    let _w = watchdog(60);
    let mut p = Context::new(method).spawn(my_start_method, ()).unwrap();
    assert_eq!(p.join().unwrap(), method.to_string());
}

fn interrupt_myself() -> u32 {
    // SAFETY: raise(2) has no preconditions.
    unsafe { libc::raise(libc::SIGINT) };
    7
}

fn ignore_interrupts_keeps_a_child_alive_through_sigint(method: StartMethod) {
    let _w = watchdog(60);
    let ctx = Context::new(method);
    let mut p = ctx.process().ignore_interrupts(true).spawn(interrupt_myself, ()).unwrap();
    assert_eq!(p.join().unwrap(), 7);
    // Without it, SIGINT ends the child (its default action), as a terminal's Ctrl-C would.
    let mut p = ctx.process().spawn(interrupt_myself, ()).unwrap();
    match p.join() {
        Err(JoinError::Exited(status)) => assert_eq!(status.signal(), Some(Signal::INT)),
        other => panic!("expected death by SIGINT, got {other:?}"),
    }
}
