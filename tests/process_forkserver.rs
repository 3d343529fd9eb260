//! Killing the fork server (it runs apart from the program, and can be killed apart from it)
//! neither ends its children nor loses their results or exit statuses, whether or not they are
//! to die with their parent. Its own test binary: nothing else here uses the server it kills.

mod common;

use std::time::Duration;

use common::{kill_pid, watchdog};
use multiproc::{Context, Event, JoinError, Process, Queue, Signal, StartMethod};

/// Reports its parent (the fork server), then returns 42 once told to.
fn report_server_then_wait(server: Queue<u32>, go: Event) -> u32 {
    server.put(std::os::unix::process::parent_id()).unwrap();
    assert!(go.wait_timeout(Duration::from_secs(60)));
    42
}

fn killing_the_fork_server_keeps_its_children(die_with_parent: bool) {
    let ctx = Context::new(StartMethod::ForkServer);
    let server = Queue::new().unwrap();
    let go = Event::new().unwrap();
    let mut waiting = ctx
        .process()
        .die_with_parent(die_with_parent)
        .spawn(report_server_then_wait, (server.clone(), go.clone()))
        .unwrap();
    let mut doomed = ctx
        .process()
        .die_with_parent(die_with_parent)
        .spawn(report_server_then_wait, (server.clone(), go.clone()))
        .unwrap();
    let server_pid = server.get_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(server.get_timeout(Duration::from_secs(30)).unwrap(), server_pid);
    assert_ne!(server_pid, std::process::id());
    // The fork server is a process this test started (through the library): end it by pid.
    kill_pid(server_pid);
    std::thread::sleep(Duration::from_millis(200));
    assert!(waiting.is_alive(), "the child died with the fork server, or is misreported as dead");
    assert!(doomed.is_alive());
    assert!(matches!(waiting.join_timeout(Duration::from_millis(100)), Err(JoinError::Timeout)));
    // It can still be signalled and joined, with its true status...
    doomed.kill().unwrap();
    match doomed.join() {
        Err(JoinError::Exited(status)) => assert_eq!(status.signal(), Some(Signal::KILL)),
        other => panic!("expected death by SIGKILL, got {other:?}"),
    }
    // ...and its result.
    go.set();
    assert_eq!(waiting.join().unwrap(), 42);
    assert_eq!(waiting.exit_code().unwrap().code(), Some(0));
    // The next start launches a new server.
    let mut next = ctx.spawn(std::os::unix::process::parent_id, ()).unwrap();
    assert_ne!(next.join().unwrap(), server_pid);
}

/// One test, so that no two kills of the one fork server overlap.
#[test]
fn killing_the_fork_server_neither_ends_nor_misreports_its_children() {
    let _w = watchdog(240);
    killing_the_fork_server_keeps_its_children(true);
    killing_the_fork_server_keeps_its_children(false);
    an_exit_code_after_the_server_died_is_the_true_one();
}

fn an_exit_code_after_the_server_died_is_the_true_one() {
    fn exit_after(server: Queue<u32>, go: Event) {
        server.put(std::os::unix::process::parent_id()).unwrap();
        assert!(go.wait_timeout(Duration::from_secs(60)));
        std::process::exit(5);
    }
    let server = Queue::new().unwrap();
    let go = Event::new().unwrap();
    let mut p: Process<()> =
        Context::new(StartMethod::ForkServer).spawn(exit_after, (server.clone(), go.clone())).unwrap();
    kill_pid(server.get_timeout(Duration::from_secs(30)).unwrap());
    go.set();
    match p.join() {
        Err(JoinError::Exited(status)) => assert_eq!(status.code(), Some(5)),
        other => panic!("expected exit code 5, got {other:?}"),
    }
}
