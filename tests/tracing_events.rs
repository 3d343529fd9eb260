//! With the `tracing` feature, what happens to children, workers and strangers is told to the
//! program's `tracing` subscriber (target `multiproc`).
#![cfg(feature = "tracing")]

mod common;

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use common::watchdog;
use multiproc::connection::Listener;
use multiproc::{Pool, Process};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// A subscriber that keeps every `multiproc` event as `field=value` text.
struct Collect;

struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={value:?} ", field.name());
    }
}

impl Subscriber for Collect {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == "multiproc"
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut text = Text(String::new());
        event.record(&mut text);
        SEEN.lock().unwrap().push(text.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn seen(what: &str) -> bool {
    SEEN.lock().unwrap().iter().any(|e| e.contains(what))
}

fn wait_seen(what: &str) {
    // The watchdog fails a wait that never ends.
    while !seen(what) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
fn children_workers_and_strangers_are_told() {
    let _w = watchdog(120);
    tracing::subscriber::set_global_default(Collect).unwrap();

    let mut child = Process::builder().name("traced").spawn(nap, (1,)).unwrap();
    child.join().unwrap();
    assert!(seen("child started") && seen("name=traced"), "{:?}", SEEN.lock().unwrap());
    assert!(seen("a child's exit was seen"));

    let pool = Pool::new(1).unwrap();
    let long = pool.apply_async(nap, (60_000,)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let pid = pool.stats()[0].pid.unwrap();
    common::kill_pid(pid);
    assert!(long.get().is_err());
    wait_seen("a pool worker ended and is replaced");

    let listener = Listener::bind("127.0.0.1:0", b"k").unwrap();
    let address = listener.address().unwrap();
    let knock = std::thread::spawn(move || {
        // A stranger who hangs up at once, then a client, so that accept returns.
        drop(std::net::TcpStream::connect(&address).unwrap());
        std::thread::sleep(Duration::from_millis(100));
        multiproc::connection::client::<u8>(&address, b"k").unwrap().send(&1).unwrap();
    });
    assert_eq!(listener.accept::<u8>().unwrap().recv().unwrap(), 1);
    knock.join().unwrap();
    wait_seen("a listener connection failed its handshake");
}
