//! The cleaner of named segments: a segment goes once its own creator is gone, under every start
//! method (a fork child's too, while its parent lives on); the cleaner shrugs off SIGINT, SIGTERM
//! and SIGHUP, and when SIGKILL ends it a new one takes over the names.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{running, watchdog};
use multiproc::shm::SharedMemory;
use multiproc::{Process, Queue, StartMethod};

fn create_and_wait(names: Queue<(String, u32)>) {
    let shm = SharedMemory::create(None, 4096).unwrap();
    names.put((shm.name().unwrap().to_string(), std::process::id())).unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

fn create_and_leave(names: Queue<(String, u32)>) {
    let shm = SharedMemory::create(None, 4096).unwrap();
    names.put((shm.name().unwrap().to_string(), std::process::id())).unwrap();
}

/// The tests of this file share one cleaner (this process's), and one of them kills it: the
/// names a killed child registered with a cleaner that was killed too are nobody's to remove (a
/// double failure the cleaner does not cover). So they take turns.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn wait_gone(path: &Path) {
    // The watchdog fails a hang.
    while path.exists() {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn a_segment_goes_with_its_creator(method: StartMethod) {
    let _turn = one_at_a_time();
    let _w = watchdog(60);
    // This process has named segments (and so a cleaner) before it starts the children: a fork
    // child shares that cleaner, which must still unlink the child's names when the child goes.
    let mine = SharedMemory::create(None, 4096).unwrap();
    let names = Queue::new().unwrap();

    let mut killed = Process::builder().start_method(method).spawn(create_and_wait, (names.clone(),)).unwrap();
    let (name, _) = names.get().unwrap();
    let path = Path::new("/dev/shm").join(&name);
    assert!(path.exists());
    killed.kill().unwrap();
    let _ = killed.join();
    wait_gone(&path);

    let mut left = Process::builder().start_method(method).spawn(create_and_leave, (names.clone(),)).unwrap();
    let (name, _) = names.get().unwrap();
    left.join().unwrap();
    wait_gone(&Path::new("/dev/shm").join(&name));

    // Ours stays while we live.
    assert!(Path::new("/dev/shm").join(mine.name().unwrap()).exists());
    mine.unlink().unwrap();
}

per_method!(a_segment_goes_with_its_creator);

/// The link target of `/proc/<pid>/fd/<fd>`.
fn fd_link(pid: u32, fd: &str) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok().map(|p| p.to_string_lossy().into_owned())
}

/// The live cleaner whose pipe process `pid` writes to (its descriptor 3 is that pipe's read end,
/// 4 is `/dev/shm`).
fn cleaner_of(pid: u32) -> Option<u32> {
    let pipes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|e| fd_link(pid, e.ok()?.file_name().to_str()?))
        .filter(|l| l.starts_with("pipe:"))
        .collect();
    std::fs::read_dir("/proc").ok()?.find_map(|e| {
        let other: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let pipe = fd_link(other, "3")?;
        (other != pid && fd_link(other, "4")? == "/dev/shm" && pipes.contains(&pipe)).then_some(other)
    })
}

fn wait_cleaner_of(pid: u32, not: Option<u32>) -> u32 {
    loop {
        if let Some(cleaner) = cleaner_of(pid).filter(|&c| Some(c) != not) {
            return cleaner;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_cleaner_ignores_interrupts_and_is_replaced_when_killed() {
    let _turn = one_at_a_time();
    let _w = watchdog(90);
    let names = Queue::new().unwrap();
    // A fresh process of its own, so that killing its cleaner disturbs no other test.
    let mut creator =
        Process::builder().start_method(StartMethod::Spawn).spawn(create_and_wait, (names.clone(),)).unwrap();
    let (name, pid) = names.get().unwrap();
    let path = Path::new("/dev/shm").join(&name);
    let cleaner = wait_cleaner_of(pid, None);
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: kill(2) has no memory-safety preconditions; the cleaner is ours.
        unsafe { libc::kill(cleaner as i32, signal) };
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(running(cleaner), "the cleaner died of an interrupt");
    assert_eq!(cleaner_of(pid), Some(cleaner));

    common::kill_pid(cleaner);
    // The creator notices and starts a new cleaner, which is told the creator's names.
    let second = wait_cleaner_of(pid, Some(cleaner));
    assert!(path.exists());
    creator.kill().unwrap();
    let _ = creator.join();
    wait_gone(&path);
    // With its only writer gone, the new cleaner ends too.
    assert!(common::ends_within(second, Duration::from_secs(30)));
}
