//! Daemons, orphans and zombies: what happens to children when their parent ends or is killed.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use common::watchdog;
use multiproc::{Context, ErrorKind, Fd, JoinError, StartMethod};

per_method!(
    middle_process_killed_leaves_no_grandchild,
    grandchild_started_from_a_thread_dies_with_the_middle_too,
    child_kept_on_parent_death_survives,
    daemon_cannot_start_children
);

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn send_pid(report: &Fd, pid: u32) {
    let mut stream = UnixStream::from(report.as_fd_clone());
    stream.write_all(&pid.to_le_bytes()).unwrap();
}

trait FdClone {
    fn as_fd_clone(&self) -> std::os::fd::OwnedFd;
}

impl FdClone for Fd {
    fn as_fd_clone(&self) -> std::os::fd::OwnedFd {
        use std::os::fd::AsFd;
        self.as_fd().try_clone_to_owned().unwrap()
    }
}

fn read_pid(stream: &mut UnixStream) -> u32 {
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).unwrap();
    u32::from_le_bytes(buf)
}

/// Starts a grandchild that sleeps, reports its pid, then sleeps itself until killed.
fn middle(report: Fd, method: String, keep: bool) {
    let method: StartMethod = method.parse().unwrap();
    let grandchild = Context::new(method).process().die_with_parent(!keep).spawn(sleep_ms, (60_000,)).unwrap();
    send_pid(&report, grandchild.pid());
    std::thread::sleep(Duration::from_secs(60));
}

/// As `middle`, but the grandchild is started from a thread that has ended by the time the
/// middle process is killed (the kernel's parent-death signal alone would fire too early).
fn middle_via_thread(report: Fd, method: String) {
    let method: StartMethod = method.parse().unwrap();
    let grandchild =
        std::thread::spawn(move || Context::new(method).spawn(sleep_ms, (60_000,)).unwrap()).join().unwrap();
    send_pid(&report, grandchild.pid());
    std::thread::sleep(Duration::from_secs(60));
}

fn grandchild_started_from_a_thread_dies_with_the_middle_too(method: StartMethod) {
    let _w = watchdog(60);
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    let mut p = Context::new(method).spawn(middle_via_thread, (Fd::from(theirs), method.to_string())).unwrap();
    let grandchild = read_pid(&mut ours);
    std::thread::sleep(Duration::from_millis(100));
    assert!(common::running(grandchild), "the grandchild died with the thread that started it");
    p.kill().unwrap();
    let _ = p.join();
    assert!(common::ends_within(grandchild, Duration::from_secs(20)), "grandchild {grandchild} outlived its parent");
}

fn middle_process_killed_leaves_no_grandchild(method: StartMethod) {
    let _w = watchdog(60);
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    let mut p = Context::new(method).spawn(middle, (Fd::from(theirs), method.to_string(), false)).unwrap();
    let grandchild = read_pid(&mut ours);
    assert!(common::running(grandchild));
    p.kill().unwrap();
    assert!(matches!(p.join(), Err(JoinError::Exited(_))));
    assert!(common::ends_within(grandchild, Duration::from_secs(20)), "grandchild {grandchild} outlived its parent");
}

fn child_kept_on_parent_death_survives(method: StartMethod) {
    let _w = watchdog(60);
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    let mut p = Context::new(method).spawn(middle, (Fd::from(theirs), method.to_string(), true)).unwrap();
    let grandchild = read_pid(&mut ours);
    p.kill().unwrap();
    let _ = p.join();
    std::thread::sleep(Duration::from_millis(300));
    let survived = common::running(grandchild);
    common::kill_pid(grandchild);
    assert!(survived, "a child started with die_with_parent(false) died with its parent");
}

fn try_to_start_a_child() -> String {
    match Context::new(StartMethod::Fork).spawn(sleep_ms, (1,)) {
        Ok(_) => "started".to_owned(),
        Err(err) => format!("{:?}: {err}", err.kind()),
    }
}

fn daemon_cannot_start_children(method: StartMethod) {
    let _w = watchdog(60);
    let mut p = Context::new(method).process().daemon(true).spawn(try_to_start_a_child, ()).unwrap();
    let answer = p.join().unwrap();
    assert!(answer.starts_with(&format!("{:?}", ErrorKind::DaemonChild)), "{answer}");
    assert!(answer.contains("daemonic processes are not allowed to have children"), "{answer}");
}

/// Not a test of its own: the body of the program that `program_end_*` runs. It starts a daemon
/// and a worker (neither would die with the program by themselves) and returns at once.
#[test]
fn exit_helper() {
    let Ok(dir) = std::env::var("MP_EXIT_HELPER_DIR") else { return };
    let method: StartMethod = std::env::var("MP_EXIT_HELPER_METHOD").unwrap().parse().unwrap();
    let ctx = Context::new(method);
    let daemon = ctx.process().daemon(true).die_with_parent(false).spawn(sleep_ms, (60_000,)).unwrap();
    let worker = ctx.process().die_with_parent(false).spawn(write_marker_later, (dir,)).unwrap();
    println!("DAEMON {} WORKER {}", daemon.pid(), worker.pid());
}

fn write_marker_later(dir: String) {
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(PathBuf::from(dir).join("worker-finished"), b"done").unwrap();
}

#[test]
fn program_end_terminates_daemons_and_joins_workers() {
    let _w = watchdog(120);
    for method in StartMethod::ALL {
        let dir = std::env::temp_dir().join(format!("multiproc-exit-{}-{method}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "exit_helper", "--nocapture", "--test-threads=1"])
            .env("MP_EXIT_HELPER_DIR", &dir)
            .env("MP_EXIT_HELPER_METHOD", method.to_string())
            .output()
            .unwrap();
        assert!(out.status.success(), "{method}: helper failed: {}", String::from_utf8_lossy(&out.stderr));
        // The program has ended: its worker must already have finished (it was joined) …
        let finished = dir.join("worker-finished").exists();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().find_map(|l| l.split_once("DAEMON ")).expect("helper printed the pids").1;
        let fields: Vec<u32> = line.split(' ').filter_map(|w| w.trim().parse().ok()).collect();
        let (daemon, worker) = (fields[0], fields[1]);
        // … and its daemon must be gone (terminated, not left behind).
        let daemon_gone = common::ends_within(daemon, Duration::from_secs(5));
        common::kill_pid(daemon);
        common::kill_pid(worker);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(finished, "{method}: the program ended before its non-daemon child finished");
        assert!(daemon_gone, "{method}: daemon {daemon} outlived the program");
    }
}

fn spawn_daemon_and_return(method: String) -> u32 {
    let method: StartMethod = method.parse().unwrap();
    let daemon = Context::new(method).process().daemon(true).die_with_parent(false).spawn(sleep_ms, (60_000,)).unwrap();
    daemon.pid()
}

#[test]
fn a_child_terminates_its_own_daemons_when_its_task_ends() {
    let _w = watchdog(60);
    for method in StartMethod::ALL {
        let mut p = Context::new(method).spawn(spawn_daemon_and_return, (method.to_string(),)).unwrap();
        let daemon = p.join().unwrap();
        let gone = common::ends_within(daemon, Duration::from_secs(5));
        common::kill_pid(daemon);
        assert!(gone, "{method}: a child's daemon outlived the child");
    }
}

#[test]
fn active_children_lists_running_and_reaps_finished() {
    let _w = watchdog(60);
    let ctx = Context::new(StartMethod::Fork);
    let sleeper = ctx.spawn(sleep_ms, (60_000,)).unwrap();
    let quick = ctx.spawn(|| (), ()).unwrap();
    let quick_pid = quick.pid();
    drop(quick); // a dropped handle leaves the child to the registry, which must still reap it
    assert!(multiproc::active_children().iter().any(|c| c.pid() == sleeper.pid()));
    // The watchdog fails the test if the finished child never leaves the list.
    while multiproc::active_children().iter().any(|c| c.pid() == quick_pid) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!common::exists(quick_pid), "finished child {quick_pid} left a zombie");
    let listed = multiproc::active_children().into_iter().find(|c| c.pid() == sleeper.pid()).unwrap();
    assert!(listed.is_alive());
    listed.kill().unwrap();
    assert!(listed.join_timeout(None).unwrap().is_some());
}
