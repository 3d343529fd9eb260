//! Bad arguments get a clear `InvalidInput` (or simply work): never a panic, a hang, a wrapped
//! clock or the OOM killer.

mod common;

use std::time::{Duration, Instant};

use common::watchdog;
use multiproc::connection::{Listener, client};
use multiproc::pool::TaskError;
use multiproc::shm::SharedMemory;
use multiproc::{Array, ErrorKind, Pool, pipe_one_way};

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn an_absurd_pool_size_is_refused() {
    let err = Pool::new(usize::MAX).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(Pool::new(0).unwrap_err().kind(), ErrorKind::InvalidInput);
}

#[test]
fn an_endless_kill_grace_still_lets_a_task_time_out() {
    let _w = watchdog(60);
    let pool = Pool::builder()
        .processes(1)
        .kill_grace(Duration::MAX)
        .task_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    match pool.apply_async(nap, (30_000,)).unwrap().get() {
        Err(TaskError::TimedOut { .. }) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(pool.apply(square, (3,)).unwrap(), 9);
    drop(pool);
}

#[test]
fn a_task_timeout_near_the_largest_duration_is_no_timeout() {
    let _w = watchdog(60);
    let pool = Pool::builder().processes(1).task_timeout(Duration::from_nanos(u64::MAX)).build().unwrap();
    let start = Instant::now();
    assert_eq!(pool.apply(nap, (1000,)).unwrap(), 1000);
    assert!(start.elapsed() >= Duration::from_secs(1));
}

#[test]
fn a_zero_chunksize_is_refused_as_in_python() {
    let _w = watchdog(60);
    let pool = Pool::new(1).unwrap();
    assert!(matches!(pool.map_chunked(square, 0..10u64, 0), Err(TaskError::InvalidInput(_))));
    assert!(matches!(pool.imap_chunked(square, 0..10u64, 0), Err(TaskError::InvalidInput(_))));
    assert_eq!(pool.map_chunked(square, 0..4u64, 1).unwrap(), vec![0, 1, 4, 9]);
}

#[test]
fn an_array_larger_than_memory_is_refused_not_oom_killed() {
    let err = Array::<u64>::new(1 << 40).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(Array::<u64>::new(usize::MAX).unwrap_err().kind(), ErrorKind::InvalidInput);
}

#[test]
fn a_shared_memory_segment_of_zero_bytes_is_refused() {
    let err = SharedMemory::create(None, 0).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

#[test]
fn polling_a_write_only_end_is_an_error() {
    let (reader, writer) = pipe_one_way::<u8>().unwrap();
    let err = writer.poll(Some(Duration::ZERO)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(!reader.poll(Some(Duration::ZERO)).unwrap());
}

#[test]
fn a_listener_in_the_abstract_namespace_is_reachable_as_clients_name_it() {
    let _w = watchdog(60);
    let name = format!("@multiproc-test-listener-{}", std::process::id());
    let listener = Listener::bind_unix(&name, b"key").unwrap();
    let address = listener.address().unwrap();
    assert_eq!(address, format!("unix:{name}"));
    let sender = std::thread::spawn(move || client::<u32>(&address, b"key").unwrap().send(&7).unwrap());
    assert_eq!(listener.accept::<u32>().unwrap().recv().unwrap(), 7);
    sender.join().unwrap();
}
