//! A pool on the cluster against a real `redis-server` and real node processes (this test
//! binary, started with `MULTIPROC_NODE`): the methods across two nodes, and the failure
//! contract — nodes killed, stopped past their lease, tasks that crash, a broker restarted with
//! and without its data, a driver killed.
#![cfg(feature = "cluster")]

mod common;

use std::time::{Duration, Instant};

use common::redis_server::{Node, Server};
use common::watchdog;
use multiproc::cluster::Cluster;
use multiproc::pool::TaskError;
use multiproc::{ErrorKind, Process};

fn square(x: u64) -> u64 {
    x * x
}

fn whoami(_: u32) -> u32 {
    std::os::unix::process::parent_id()
}

fn nap_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Waits until `n` nodes have registered in `namespace`.
fn await_nodes(server: &Server, namespace: &str, n: usize) {
    let began = Instant::now();
    let key = format!("mp:{{{namespace}:pool}}:nodes");
    let mut raw = redis::Client::open(server.url()).unwrap().get_connection().unwrap();
    loop {
        let have: usize = redis::cmd("HLEN").arg(&key).query(&mut raw).unwrap();
        if have >= n {
            return;
        }
        assert!(began.elapsed() < Duration::from_secs(30), "{n} nodes did not register");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn map_imap_and_apply_async_run_across_two_nodes() {
    let _w = watchdog(180);
    let Some(server) = Server::start(&[]) else { return };
    let _a = Node::start(&server.url(), "two", "a", 1);
    let _b = Node::start(&server.url(), "two", "b", 1);
    let cluster = Cluster::connect(&server.url(), "two").unwrap();
    await_nodes(&server, "two", 2);
    let pool = cluster.pool().build().unwrap();
    assert_eq!(pool.size(), 2, "the nodes' processes");
    assert_eq!(pool.map(square, 0..1000).unwrap(), (0..1000).map(|x| x * x).collect::<Vec<_>>());
    let lazy: Vec<u64> = pool.imap(square, 0..50).unwrap().map(Result::unwrap).collect();
    assert_eq!(lazy, (0..50).map(|x| x * x).collect::<Vec<_>>());
    let mut unordered: Vec<u64> = pool.imap_unordered(square, 0..50).unwrap().map(Result::unwrap).collect();
    unordered.sort();
    assert_eq!(unordered, lazy);
    let pending: Vec<_> = (0..20).map(|x| pool.apply_async(square, (x,)).unwrap()).collect();
    for (x, r) in pending.into_iter().enumerate() {
        assert_eq!(r.get().unwrap(), (x * x) as u64);
    }
    assert_eq!(pool.starmap(|a: u64, b: u64| a + b, [(1, 2), (3, 4)]).unwrap(), [3, 7]);
    // Both nodes ran tasks: the parents of the workers (the agents) differ.
    let agents: std::collections::HashSet<u32> = pool.map_chunked(whoami, 0..40, 1).unwrap().into_iter().collect();
    assert_eq!(agents.len(), 2, "tasks ran on {agents:?}");
    pool.close();
    pool.join().unwrap();
}

fn panics(x: u32) -> u32 {
    assert!(x != 2, "two is not allowed");
    x
}

fn segfaults(x: u32) -> u32 {
    if x == 1 {
        // SAFETY: deliberately not: the task must die of SIGSEGV.
        unsafe { libc::raise(libc::SIGSEGV) };
    }
    x
}

fn exits(x: u32) -> u32 {
    if x == 1 {
        std::process::exit(7);
    }
    x
}

#[test]
fn a_task_that_panics_segfaults_or_exits_fails_alone_with_its_node() {
    let _w = watchdog(180);
    let Some(server) = Server::start(&[]) else { return };
    let _a = Node::start(&server.url(), "crash", "crashy", 2);
    let cluster = Cluster::connect(&server.url(), "crash").unwrap();
    let pool = cluster.pool().build().unwrap();
    let results: Vec<_> = pool.imap(panics, 0..4).unwrap().collect();
    assert_eq!(results[1], Ok(1));
    match &results[2] {
        Err(TaskError::OnNode { node, error }) => {
            assert_eq!(node, "crashy");
            assert!(matches!(&**error, TaskError::Panicked { message, .. } if message.contains("two")), "{error}");
        }
        other => panic!("{other:?}"),
    }
    let results: Vec<_> = pool.imap_chunked(segfaults, 0..3, 1).unwrap().collect();
    match results[1].as_ref().unwrap_err().cause() {
        TaskError::WorkerDied { status, .. } => assert_eq!(status.to_string(), "killed by SIGSEGV"),
        other => panic!("{other:?}"),
    }
    assert_eq!((results[0].clone(), results[2].clone()), (Ok(0), Ok(2)));
    let results: Vec<_> = pool.imap_chunked(exits, 0..3, 1).unwrap().collect();
    assert!(matches!(results[1].as_ref().unwrap_err().cause(), TaskError::WorkerDied { .. }), "{results:?}");
    // The node carries on.
    assert_eq!(pool.map(square, 0..10).unwrap(), (0..10).map(|x| x * x).collect::<Vec<_>>());
    // A per-task timeout is enforced on the node.
    let timed = cluster.pool().task_timeout(Duration::from_millis(300)).build().unwrap();
    let err = timed.apply(nap_ms, (30_000,)).unwrap_err();
    assert!(matches!(err.cause(), TaskError::TimedOut { .. }), "{err}");
}
