//! Starting processes under each start method: values, failures, waiting, signals, handles.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::watchdog;
use multiproc::{Context, ErrorKind, ExitStatus, Fd, JoinError, Process, Run, Signal, StartMethod};
use serde::{Deserialize, Serialize};

per_method!(
    returns_values_of_several_types,
    unpacks_arguments,
    class_style_process,
    panic_comes_back_with_its_message,
    exit_code_is_reported,
    abort_is_reported_as_a_signal,
    join_timeout_returns_at_the_deadline,
    terminate_and_kill_are_reported,
    interrupt_sends_sigint,
    fd_argument_works_in_the_child,
    fd_comes_back_in_the_result,
    no_zombie_after_join,
    names_and_identity,
    parent_process_is_visible_and_watchable,
    child_started_from_a_short_lived_thread_survives_it,
    second_join_is_an_error,
    result_that_cannot_be_encoded_is_an_error,
    ten_processes_joined_in_a_loop,
    a_large_result_never_keeps_a_child_from_exiting,
    huge_timeouts_mean_no_deadline,
);

fn big_result(len: usize) -> Vec<u8> {
    vec![7; len]
}

/// 16 MiB is far more than a socket buffer: the child can only exit once its result is read, so
/// every way of waiting for it must read.
fn a_large_result_never_keeps_a_child_from_exiting(method: StartMethod) {
    let _w = watchdog(60);
    let len = 16 << 20;
    let mut p = Context::new(method).spawn(big_result, (len,)).unwrap();
    let child = multiproc::active_children().into_iter().find(|c| c.pid() == p.pid()).expect("listed");
    let status = child.join_timeout(None).unwrap().expect("ended");
    assert!(status.success());
    assert_eq!(p.join().unwrap().len(), len, "the result read while waiting is kept for join");
    let mut q = Context::new(method).spawn(big_result, (len,)).unwrap();
    assert_eq!(q.join_timeout(Duration::from_secs(30)).unwrap().len(), len);
}

fn huge_timeouts_mean_no_deadline(method: StartMethod) {
    let _w = watchdog(60);
    let mut p = Context::new(method).spawn(square, (3,)).unwrap();
    assert_eq!(p.join_timeout(Duration::MAX).unwrap(), 9);
    let (a, b) = multiproc::pipe::<u8>().unwrap();
    b.send(&1).unwrap();
    assert_eq!(a.recv_timeout(Duration::MAX).unwrap(), 1);
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Ticket {
    id: u64,
    holder: String,
    seats: Vec<u8>,
    price: Option<f64>,
}

fn ticket_roundtrip(t: Ticket) -> Ticket {
    Ticket { id: t.id + 1, ..t }
}

fn totals(words: Vec<String>) -> BTreeMap<String, usize> {
    words.into_iter().map(|w| (w.clone(), w.len())).collect()
}

fn nothing() {}

fn returns_values_of_several_types(method: StartMethod) {
    let _w = watchdog(60);
    let ctx = Context::new(method);
    let t = Ticket { id: 41, holder: "egon".into(), seats: vec![1, 2, 3], price: Some(9.5) };
    assert_eq!(ctx.spawn(ticket_roundtrip, (t.clone(),)).unwrap().join().unwrap(), Ticket { id: 42, ..t });
    let words = vec!["ab".to_string(), "cde".to_string()];
    let map = ctx.spawn(totals, (words,)).unwrap().join().unwrap();
    assert_eq!(map.get("cde"), Some(&3));
    ctx.spawn(nothing, ()).unwrap().join().unwrap();
    let big = ctx.spawn(|n: usize| vec![7u8; n], (3 << 20,)).unwrap().join().unwrap();
    assert_eq!(big.len(), 3 << 20);
    assert!(big.iter().all(|&b| b == 7));
}

#[allow(clippy::too_many_arguments)] // the point: all eight parameters unpack from one tuple
fn describe(a: i8, b: u64, c: String, d: (bool, char), e: Vec<i32>, f: Option<String>, g: f32, h: [u16; 3]) -> String {
    format!("{a} {b} {c} {d:?} {e:?} {f:?} {g} {h:?}")
}

fn unpacks_arguments(method: StartMethod) {
    let _w = watchdog(60);
    let ctx = Context::new(method);
    let args = (-3i8, u64::MAX, "x".to_string(), (true, 'z'), vec![1, -1], None, 1.5f32, [1u16, 2, 3]);
    let text = ctx.spawn(describe, args).unwrap().join().unwrap();
    assert_eq!(text, format!("-3 {} x (true, 'z') [1, -1] None 1.5 [1, 2, 3]", u64::MAX));
    let sum = ctx.spawn(|a: u32, b: u32| a + b, (20, 22)).unwrap().join().unwrap();
    assert_eq!(sum, 42);
}

#[derive(Serialize, Deserialize)]
struct Counter {
    start: u32,
    steps: u32,
}

impl Run for Counter {
    type Output = (u32, u32);
    fn run(self) -> (u32, u32) {
        (self.start + self.steps, std::process::id())
    }
}

fn class_style_process(method: StartMethod) {
    let _w = watchdog(60);
    let mut p = Context::new(method).start(Counter { start: 10, steps: 5 }).unwrap();
    let (value, pid) = p.join().unwrap();
    assert_eq!(value, 15);
    assert_eq!(pid, p.pid());
    assert_ne!(pid, std::process::id());
}

fn panic_comes_back_with_its_message(method: StartMethod) {
    let _w = watchdog(60);
    let mut p = Context::new(method).spawn(|n: u32| -> u32 { panic!("sold out after {n} tickets") }, (7,)).unwrap();
    match p.join() {
        Err(JoinError::Panicked { message, .. }) => assert_eq!(message, "sold out after 7 tickets"),
        other => panic!("expected a panic, got {other:?}"),
    }
    assert_eq!(p.exit_code(), Some(ExitStatus::Code(1)));
}

fn exit_code_is_reported(method: StartMethod) {
    let _w = watchdog(60);
    let mut p = Context::new(method).spawn(|| -> u8 { std::process::exit(3) }, ()).unwrap();
    match p.join() {
        Err(JoinError::Exited(status)) => assert_eq!(status, ExitStatus::Code(3)),
        other => panic!("expected exit code 3, got {other:?}"),
    }
    assert_eq!(p.exit_code().unwrap().python_exitcode(), 3);
}

fn abort_is_reported_as_a_signal(method: StartMethod) {
    let _w = watchdog(60);
    let mut p = Context::new(method).spawn(|| -> u8 { std::process::abort() }, ()).unwrap();
    match p.join() {
        Err(JoinError::Exited(status)) => assert_eq!(status, ExitStatus::Signal(Signal::ABRT)),
        other => panic!("expected SIGABRT, got {other:?}"),
    }
    let shown = p.exit_code().unwrap().to_string();
    assert_eq!(shown, "killed by SIGABRT");
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn wait_then_answer(go: multiproc::Event) -> u64 {
    go.wait();
    1500
}

fn join_timeout_returns_at_the_deadline(method: StartMethod) {
    let _w = watchdog(60);
    let go = multiproc::Event::new().unwrap();
    let mut p = Context::new(method).spawn(wait_then_answer, (go.clone(),)).unwrap();
    let timeout = Duration::from_millis(200);
    let started = Instant::now();
    assert!(matches!(p.join_timeout(timeout), Err(JoinError::Timeout)));
    assert!(started.elapsed() >= timeout, "returned after {:?}", started.elapsed());
    assert!(p.is_alive(), "the child waits for the go signal");
    go.set();
    // A timed-out join loses nothing: the value still arrives.
    assert_eq!(p.join().unwrap(), 1500);
}

fn terminate_and_kill_are_reported(method: StartMethod) {
    let _w = watchdog(60);
    let ctx = Context::new(method);
    let mut p = ctx.spawn(sleep_ms, (60_000,)).unwrap();
    assert!(p.is_alive());
    p.terminate().unwrap();
    assert!(matches!(p.join(), Err(JoinError::Exited(ExitStatus::Signal(Signal::TERM)))));
    assert!(!p.is_alive());
    assert_eq!(p.exit_code().unwrap().python_exitcode(), -15);
    // Signalling a finished process is a no-op, as in Python.
    p.terminate().unwrap();
    p.kill().unwrap();

    let mut q = ctx.spawn(sleep_ms, (60_000,)).unwrap();
    q.kill().unwrap();
    assert!(matches!(q.join(), Err(JoinError::Exited(ExitStatus::Signal(Signal::KILL)))));
}

fn interrupt_sends_sigint(method: StartMethod) {
    let _w = watchdog(60);
    let mut p = Context::new(method).spawn(sleep_ms, (60_000,)).unwrap();
    p.interrupt().unwrap();
    assert!(matches!(p.join(), Err(JoinError::Exited(ExitStatus::Signal(Signal::INT)))));
}

fn write_through(fd: Fd, text: String) -> usize {
    let mut stream = UnixStream::from(fd.into_owned());
    stream.write_all(text.as_bytes()).unwrap();
    text.len()
}

fn fd_argument_works_in_the_child(method: StartMethod) {
    let _w = watchdog(60);
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    let mut p =
        Context::new(method).spawn(write_through, (Fd::from(theirs), "through the handle".to_string())).unwrap();
    assert_eq!(p.join().unwrap(), 18);
    let mut text = String::new();
    // The child's copy closed when it exited, and ours was dropped by spawn: read to the end.
    ours.read_to_string(&mut text).unwrap();
    assert_eq!(text, "through the handle");
}

fn make_socket() -> (Fd, u32) {
    let (a, b) = UnixStream::pair().unwrap();
    (&a).write_all(b"made in the child").unwrap();
    drop(a);
    (Fd::from(b), std::process::id())
}

fn fd_comes_back_in_the_result(method: StartMethod) {
    let _w = watchdog(60);
    let (fd, pid) = Context::new(method).spawn(make_socket, ()).unwrap().join().unwrap();
    assert_ne!(pid, std::process::id());
    let mut text = String::new();
    UnixStream::from(fd.into_owned()).read_to_string(&mut text).unwrap();
    assert_eq!(text, "made in the child");
}

fn no_zombie_after_join(method: StartMethod) {
    let _w = watchdog(60);
    let mut p = Context::new(method).spawn(nothing, ()).unwrap();
    let pid = p.pid();
    p.join().unwrap();
    assert!(!common::exists(pid), "pid {pid} still has a /proc entry after join");
    let mut q = Context::new(method).spawn(sleep_ms, (60_000,)).unwrap();
    q.kill().unwrap();
    let _ = q.join();
    assert!(!common::exists(q.pid()));
}

fn who_am_i() -> (String, bool, u32, Option<u32>, Option<String>) {
    let me = multiproc::current_process();
    let parent = multiproc::parent_process();
    (
        me.name().to_owned(),
        me.is_daemon(),
        me.pid(),
        parent.as_ref().map(|p| p.pid()),
        parent.map(|p| p.name().to_owned()),
    )
}

fn names_and_identity(method: StartMethod) {
    let _w = watchdog(60);
    let ctx = Context::new(method);
    let mut named = ctx.process().name("ticket-seller").daemon(true).spawn(who_am_i, ()).unwrap();
    let (name, daemon, pid, parent, parent_name) = named.join().unwrap();
    assert_eq!((name.as_str(), daemon, pid), ("ticket-seller", true, named.pid()));
    assert_eq!(parent, Some(std::process::id()));
    assert_eq!(parent_name.as_deref(), Some("MainProcess"));
    let mut unnamed = ctx.spawn(who_am_i, ()).unwrap();
    assert!(unnamed.name().starts_with("Process-"), "{}", unnamed.name());
    let (name, daemon, ..) = unnamed.join().unwrap();
    assert_eq!(name, unnamed.name());
    assert!(!daemon);
}

fn parent_alive_and_waits() -> (bool, bool) {
    let parent = multiproc::parent_process().unwrap();
    let alive = parent.is_alive();
    let exited = parent.join_timeout(Some(Duration::from_millis(100))).unwrap();
    (alive, exited)
}

fn parent_process_is_visible_and_watchable(method: StartMethod) {
    let _w = watchdog(60);
    assert!(multiproc::parent_process().is_none());
    let (alive, exited) = Context::new(method).spawn(parent_alive_and_waits, ()).unwrap().join().unwrap();
    assert!(alive);
    assert!(!exited);
}

fn child_started_from_a_short_lived_thread_survives_it(method: StartMethod) {
    let _w = watchdog(60);
    // PR_SET_PDEATHSIG fires when the forking *thread* exits; the child must not die with it.
    let mut p = std::thread::spawn(move || Context::new(method).spawn(sleep_ms, (400,)).unwrap()).join().unwrap();
    assert_eq!(p.join().unwrap(), 400);
}

fn second_join_is_an_error(method: StartMethod) {
    let _w = watchdog(60);
    let mut p = Context::new(method).spawn(|| 5u8, ()).unwrap();
    assert_eq!(p.join().unwrap(), 5);
    match p.join() {
        Err(JoinError::Failed(err)) => assert_eq!(err.kind(), ErrorKind::AlreadyJoined),
        other => panic!("expected AlreadyJoined, got {other:?}"),
    }
}

/// A value whose serialization always fails.
struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("this value refuses to be encoded"))
    }
}

impl<'de> Deserialize<'de> for Unencodable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|()| Unencodable)
    }
}

fn result_that_cannot_be_encoded_is_an_error(method: StartMethod) {
    let _w = watchdog(60);
    let ctx = Context::new(method);
    match ctx.spawn(|| Unencodable, ()).unwrap().join() {
        Err(JoinError::Failed(err)) => {
            assert_eq!(err.kind(), ErrorKind::Encode, "{err}");
            assert!(err.to_string().contains("Unencodable"), "{err}");
        }
        other => panic!("expected an encode error, got {:?}", other.map(|_| ())),
    }
    // Arguments that cannot be encoded fail in the caller, and nothing is started.
    let before = multiproc::active_children().len();
    let err = ctx.spawn(|_: Unencodable| (), (Unencodable,)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Encode);
    assert!(err.to_string().contains("Unencodable"), "{err}");
    assert!(multiproc::active_children().len() <= before);
}

fn square(x: u64) -> u64 {
    x * x
}

fn ten_processes_joined_in_a_loop(method: StartMethod) {
    let _w = watchdog(60);
    let ctx = Context::new(method);
    let mut children: Vec<Process<u64>> = (0..10).map(|i| ctx.spawn(square, (i,)).unwrap()).collect();
    let results: Vec<u64> = children.iter_mut().map(|p| p.join().unwrap()).collect();
    assert_eq!(results, (0..10).map(|i| i * i).collect::<Vec<_>>());
}

#[test]
fn fd_outside_a_transfer_is_a_clear_error() {
    let (a, _b) = UnixStream::pair().unwrap();
    let err = serde_json::to_string(&Fd::from(a)).unwrap_err();
    assert!(err.to_string().contains("handle can only be serialized by multiproc"), "{err}");
}

#[test]
fn exit_status_and_signal_display() {
    assert_eq!(ExitStatus::Signal(Signal::KILL).to_string(), "killed by SIGKILL");
    assert_eq!(Signal::from_raw(99).to_string(), "signal 99");
    assert_eq!(ExitStatus::Code(2).code(), Some(2));
    assert_eq!(ExitStatus::Signal(Signal::TERM).signal(), Some(Signal::TERM));
    assert_eq!("bogus".parse::<StartMethod>().unwrap_err().to_string(), "cannot find context for \"bogus\"");
}

#[test]
fn spawn_macro_sends_the_values_a_closure_names() {
    let _w = common::watchdog(60);
    let (prefix, numbers) = (String::from("sum"), vec![1u64, 2, 3]);
    let mut child =
        multiproc::spawn!((prefix, numbers) || format!("{prefix}={}", numbers.iter().sum::<u64>())).unwrap();
    assert_eq!(child.join().unwrap(), "sum=6");
    let mut nothing = multiproc::spawn!(() || std::process::id()).unwrap();
    let pid = nothing.pid();
    assert_eq!(nothing.join().unwrap(), pid);
}
