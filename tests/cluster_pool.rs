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

/// Waits until the namespace's pending tasks (id, node, idle ms, deliveries) satisfy `ready`;
/// returns them. No group yet is nothing pending yet.
fn await_pending(
    server: &Server,
    namespace: &str,
    ready: impl Fn(&[(String, String, u64, u64)]) -> bool,
) -> Vec<(String, String, u64, u64)> {
    let mut raw = redis::Client::open(server.url()).unwrap().get_connection().unwrap();
    let began = Instant::now();
    loop {
        let pending: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
            .arg(format!("mp:{{{namespace}:pool}}:tasks"))
            .arg("nodes")
            .arg("-")
            .arg("+")
            .arg(10)
            .query(&mut raw)
            .unwrap_or_default();
        if ready(&pending) {
            return pending;
        }
        assert!(began.elapsed() < Duration::from_secs(30), "pending tasks never got there: {pending:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `future`'s task is running on some node.
fn await_running<R: serde::de::DeserializeOwned>(future: &multiproc::pool::TaskFuture<R>) {
    let began = Instant::now();
    while !future.running() {
        assert!(!future.done(), "the task finished before it could be interrupted");
        assert!(began.elapsed() < Duration::from_secs(30), "the task never started");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn agent_after_ms(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::os::unix::process::parent_id()
}

#[test]
fn a_killed_node_s_task_is_delivered_again_then_lost_after_the_maximum() {
    let _w = watchdog(180);
    let Some(server) = Server::start(&[]) else { return };
    let cluster = Cluster::connect(&server.url(), "kill").unwrap();
    let lease = Duration::from_millis(600);
    let executor = cluster.pool().lease(lease).max_deliveries(2).build_executor().unwrap();
    let first = Node::start(&server.url(), "kill", "first", 1);
    let future = executor.submit(agent_after_ms, (1500,)).unwrap();
    await_running(&future);
    first.signal(libc::SIGKILL);
    let killed = Instant::now();
    drop(first);
    // Another node takes it over once the dead one's lease ran out, and runs it.
    let second = Node::start(&server.url(), "kill", "second", 1);
    assert_eq!(future.result().unwrap(), second.pid());
    // Not before its lease ran out: the dead node last renewed it at most a third of a lease
    // before it was killed.
    assert!(killed.elapsed() >= lease * 2 / 3, "taken over after {:?}", killed.elapsed());

    // Handed out twice and lost twice: the third node fails it without running it.
    let future = executor.submit(agent_after_ms, (1500,)).unwrap();
    await_running(&future);
    drop(second); // killed
    let third = Node::start(&server.url(), "kill", "third", 1);
    // Wait until the third node holds it, then kill that one too.
    await_pending(&server, "kill", |pending| pending.iter().any(|(_, node, _, _)| node == "third"));
    drop(third);
    let _fourth = Node::start(&server.url(), "kill", "fourth", 1);
    match future.result() {
        Err(TaskError::WorkerLost { node, deliveries }) => {
            assert_eq!((node.as_str(), deliveries), ("third", 2));
        }
        other => panic!("expected the task lost, got {other:?}"),
    }
}

#[test]
fn a_node_stopped_past_its_lease_loses_the_task_and_its_late_result_is_dropped() {
    let _w = watchdog(180);
    let Some(server) = Server::start(&[]) else { return };
    let cluster = Cluster::connect(&server.url(), "stop").unwrap();
    let pool = cluster.pool().lease(Duration::from_millis(500)).build().unwrap();
    let stopped = Node::start(&server.url(), "stop", "stopped", 1);
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = calls.clone();
    let result = pool
        .apply_async_with(
            agent_after_ms,
            (1200,),
            move |_| {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            },
            |_| {},
        )
        .unwrap();
    // Running on the first node (its lease is renewed meanwhile) ...
    await_pending(&server, "stop", |pending| !pending.is_empty());
    // ... which is stopped, and the task goes to another node after the lease.
    stopped.signal(libc::SIGSTOP);
    let other = Node::start(&server.url(), "stop", "other", 1);
    assert_eq!(result.get().unwrap(), other.pid(), "the first result is the other node's");
    // The stopped node comes back, finishes and reports late: dropped, the callback ran once.
    stopped.signal(libc::SIGCONT);
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(result.get().unwrap(), other.pid());
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Both nodes serve on.
    assert_eq!(pool.map(square, 0..100).unwrap().len(), 100);
}

#[test]
fn a_broker_killed_and_restarted_with_its_log_is_transparent() {
    let _w = watchdog(240);
    let Some(mut server) = Server::start(&["--appendonly", "yes", "--appendfsync", "always"]) else { return };
    let _node = Node::start(&server.url(), "aof", "survivor", 2);
    let cluster = Cluster::connect(&server.url(), "aof").unwrap();
    // A read whose reply the kill cut off is taken again after a lease.
    let pool = cluster.pool().lease(Duration::from_secs(1)).build().unwrap();
    std::thread::scope(|s| {
        let mapping = s.spawn(|| pool.map_chunked(nap_ms, std::iter::repeat_n(20, 150), 1));
        std::thread::sleep(Duration::from_millis(600));
        server.kill();
        std::thread::sleep(Duration::from_millis(1000));
        server.restart();
        let values = mapping.join().unwrap().unwrap();
        assert_eq!(values, vec![20; 150], "nothing lost");
    });
    // And on it goes.
    assert_eq!(pool.map(square, 0..10).unwrap().len(), 10);
}

#[test]
fn a_broker_restarted_without_its_data_fails_every_outstanding_call_clearly() {
    let _w = watchdog(180);
    let Some(mut server) = Server::start(&[]) else { return };
    let node = Node::start(&server.url(), "lost", "forgetful", 1);
    let cluster = Cluster::connect(&server.url(), "lost").unwrap();
    let pool = cluster.pool().build().unwrap();
    let pending = pool.apply_async(nap_ms, (5_000,)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    server.kill();
    server.restart();
    match pending.get() {
        Err(TaskError::Broken(why)) => assert!(why.contains("lost its data"), "{why}"),
        other => panic!("expected a broken pool, got {other:?}"),
    }
    assert!(matches!(pool.apply_async(square, (1,)), Err(TaskError::Broken(_))));
    // The cluster's objects say so too.
    let q = cluster.queue::<u8>("q").unwrap();
    assert_eq!(q.put(&1).unwrap_err().kind(), ErrorKind::StateLost);
    // The node notices and exits.
    let (code, said) = node.exit(Duration::from_secs(60));
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("lost its data"), "{said}");
}

fn drive_and_hang(url: String) {
    let cluster = Cluster::connect(&url, "orphan").unwrap();
    let pool = cluster.pool().heartbeat(Duration::from_millis(600)).build().unwrap();
    let _running = pool.apply_async(nap_ms, (60_000,)).unwrap();
    let _waiting: Vec<_> = (0..4).map(|_| pool.apply_async(nap_ms, (60_000,)).unwrap()).collect();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_killed_driver_s_work_is_dropped_by_the_nodes() {
    let _w = watchdog(180);
    let Some(server) = Server::start(&[]) else { return };
    let _node = Node::start(&server.url(), "orphan", "orphans", 1);
    let mut driver = Process::spawn(drive_and_hang, (server.url(),)).unwrap();
    await_pending(&server, "orphan", |pending| !pending.is_empty());
    let mut raw = redis::Client::open(server.url()).unwrap().get_connection().unwrap();
    driver.kill().unwrap();
    let _ = driver.join();
    // Once its heartbeat expires, the node stops its task and drops the rest.
    let began = Instant::now();
    loop {
        let left: usize = redis::cmd("XLEN").arg("mp:{orphan:pool}:tasks").query(&mut raw).unwrap();
        if left == 0 {
            break;
        }
        assert!(began.elapsed() < Duration::from_secs(60), "{left} tasks of a dead driver stayed");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The node is free for others at once (its worker was not kept busy for a minute).
    let cluster = Cluster::connect(&server.url(), "orphan").unwrap();
    let pool = cluster.pool().build().unwrap();
    assert_eq!(pool.apply(square, (9,)).unwrap(), 81);
}

#[test]
fn a_node_of_another_build_is_refused_and_both_sides_are_told() {
    let _w = watchdog(120);
    let Some(server) = Server::start(&[]) else { return };
    let cluster = Cluster::connect(&server.url(), "builds").unwrap();
    let pool = cluster.pool().build().unwrap();
    let dir = std::env::temp_dir().join(format!("multiproc-cluster-build-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = common::other_build(&dir);
    let stranger = Node::start_exe(&exe, &server.url(), "builds", "stranger", 1, &[]);
    let (code, said) = stranger.exit(Duration::from_secs(60));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, Some(3), "{said}");
    assert!(said.contains("build"), "{said}");
    let refusals = cluster.refused_nodes().unwrap();
    assert_eq!(refusals.len(), 1);
    assert_eq!(refusals[0].kind(), ErrorKind::BuildMismatch);
    assert!(refusals[0].to_string().contains("stranger"), "{}", refusals[0]);
    // Nodes of this build still serve.
    let _ours = Node::start(&server.url(), "builds", "ours", 1);
    assert_eq!(pool.apply(square, (3,)).unwrap(), 9);
}

#[test]
fn a_node_drains_on_sigterm_finishing_what_it_holds() {
    let _w = watchdog(120);
    let Some(server) = Server::start(&[]) else { return };
    let node = Node::start(&server.url(), "drain", "leaving", 1);
    let cluster = Cluster::connect(&server.url(), "drain").unwrap();
    let executor = cluster.pool().build_executor().unwrap();
    let future = executor.submit(agent_after_ms, (800,)).unwrap();
    await_running(&future);
    let pid = node.pid();
    node.signal(libc::SIGTERM);
    // It finishes the task it runs, then leaves cleanly and unregisters.
    assert_eq!(future.result().unwrap(), pid);
    let (code, said) = node.exit(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{said}");
    let mut raw = redis::Client::open(server.url()).unwrap().get_connection().unwrap();
    let registered: bool = redis::cmd("HEXISTS").arg("mp:{drain:pool}:nodes").arg("leaving").query(&mut raw).unwrap();
    assert!(!registered);
    // Work submitted after it left waits for the next node.
    let later = executor.submit(square, (5,)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(!later.done());
    let _next = Node::start(&server.url(), "drain", "next", 1);
    assert_eq!(later.result().unwrap(), 25);
}

fn add_on_the_cluster(url: String, times: u32) -> u32 {
    let hits = Cluster::connect(&url, "adds").unwrap().dict::<String, i64>("hits").unwrap();
    for _ in 0..times {
        hits.add("total", 1).unwrap();
    }
    times
}

#[test]
fn the_atomic_add_from_eight_tasks_on_two_nodes_is_exact() {
    let _w = watchdog(180);
    let Some(server) = Server::start(&[]) else { return };
    let _a = Node::start(&server.url(), "adds", "a", 4);
    let _b = Node::start(&server.url(), "adds", "b", 4);
    await_nodes(&server, "adds", 2);
    let cluster = Cluster::connect(&server.url(), "adds").unwrap();
    let pool = cluster.pool().build().unwrap();
    let url = server.url();
    let done = pool.starmap(add_on_the_cluster, (0..8).map(|_| (url.clone(), 100))).unwrap();
    assert_eq!(done, vec![100; 8]);
    assert_eq!(cluster.dict::<String, i64>("hits").unwrap().get("total").unwrap(), Some(800));
}

#[test]
fn a_node_cut_off_by_a_partition_loses_its_task_and_serves_again_when_the_link_returns() {
    let _w = watchdog(240);
    let Some(link) = common::redis_server::Link::make() else { return };
    let port = "6390";
    // A server reachable from another host needs a password (Redis's protected mode).
    let args = ["--bind", &link.server_address, "--port", port, "--requirepass", "secret"];
    let Some(server) = Server::start_in(Some(&link.server), &args) else { return };
    let far_url = format!("redis://:secret@{}:{port}", link.server_address);
    let near_url = server.url_with_password("secret");
    let far = Node::start_in(&link.node, &far_url, "split", "far", 1);
    // The driver reaches the server through its socket file.
    let cluster = Cluster::connect(&near_url, "split").unwrap();
    let executor = cluster.pool().lease(Duration::from_secs(1)).build_executor().unwrap();
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let future = executor.submit(agent_after_ms, (2500,)).unwrap();
    let counted = calls.clone();
    future.add_done_callback(move |_| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    await_running(&future);
    link.set_up(false);
    let cut = Instant::now();
    let near = Node::start(&near_url, "split", "near", 1);
    assert_eq!(future.result().unwrap(), near.pid(), "the task finished on the node that could be reached");
    // Not before its lease ran out (renewed at most a third of a lease before the cut).
    let lease = Duration::from_secs(1);
    assert!(cut.elapsed() >= lease * 2 / 3, "taken over after {:?}, within the lease", cut.elapsed());
    // The link comes back: the far node reports late (dropped) and serves again.
    link.set_up(true);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(future.result().unwrap(), near.pid());
    drop(near);
    assert_eq!(executor.submit(agent_after_ms, (0,)).unwrap().result().unwrap(), far.pid());
}

/// A certificate authority and a server certificate for 127.0.0.1, made with `openssl`; `None`
/// (after one loud line) if it is not installed.
#[cfg(feature = "cluster-tls")]
fn certificates(dir: &std::path::Path) -> Option<()> {
    let run = |args: &[&str]| {
        std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
    };
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=multiproc-test-ca",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext",
        ],
    ];
    std::fs::write(dir.join("ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    for step in steps {
        match run(step) {
            Ok(status) if status.success() => {}
            Ok(status) => panic!("openssl {}: {status}", step.join(" ")),
            Err(_) => {
                assert!(std::env::var("CI").as_deref() != Ok("true"), "openssl is not installed, and CI=true");
                eprintln!("SKIPPED: openssl is not installed (it makes the test's certificates)");
                return None;
            }
        }
    }
    Some(())
}

#[cfg(feature = "cluster-tls")]
#[test]
fn a_cluster_over_tls_runs_tasks_and_refuses_an_unknown_authority() {
    let _w = watchdog(120);
    let dir = std::env::temp_dir().join(format!("multiproc-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    if certificates(&dir).is_none() {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let file = |name: &str| dir.join(name).display().to_string();
    let args = [
        "--tls-port",
        &port,
        "--tls-cert-file",
        &file("server.crt"),
        "--tls-key-file",
        &file("server.key"),
        "--tls-ca-cert-file",
        &file("ca.crt"),
        "--tls-auth-clients",
        "no",
        "--requirepass",
        "secret",
    ];
    let Some(_server) = Server::start(&args) else { return };
    let url = format!("rediss://:secret@127.0.0.1:{port}/?ca={}", file("ca.crt"));
    let cluster = Cluster::connect(&url, "tls").unwrap();
    let q = cluster.queue::<String>("q").unwrap();
    q.put(&"over TLS".to_string()).unwrap();
    assert_eq!(q.get().unwrap(), "over TLS");
    let _node = Node::start(&url, "tls", "private", 1);
    let pool = cluster.pool().build().unwrap();
    assert_eq!(pool.apply(square, (12,)).unwrap(), 144);
    // Without the authority the server's certificate is not trusted: refused, not a hang.
    let untrusted = format!("rediss://:secret@127.0.0.1:{port}/");
    assert!(Cluster::connect(&untrusted, "tls").is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

fn hold_the_lock(url: String, lease_ms: u64) -> u64 {
    let lock = Cluster::connect(&url, "locks").unwrap().lock("ledger", Duration::from_millis(lease_ms)).unwrap();
    let guard = lock.acquire().unwrap();
    let token = guard.token();
    std::mem::forget(guard);
    std::thread::sleep(Duration::from_secs(600)); // the node is killed meanwhile
    token
}

fn pid_of_worker(_: u8) -> u32 {
    std::process::id()
}

#[test]
fn a_lock_whose_holder_node_is_killed_goes_to_the_next_acquirer_with_owner_died() {
    let _w = watchdog(120);
    let Some(server) = Server::start(&[]) else { return };
    let holder = Node::start(&server.url(), "locks", "holder", 1);
    let cluster = Cluster::connect(&server.url(), "locks").unwrap();
    let executor = cluster.pool().build_executor().unwrap();
    let lease = Duration::from_millis(500);
    let _held = executor.submit(hold_the_lock, (server.url(), lease.as_millis() as u64)).unwrap();
    let lock = cluster.lock("ledger", lease).unwrap();
    let began = Instant::now();
    // Until the task holds it (taken here first, it is let go at once and looked at again).
    while let Some(early) = lock.try_acquire().unwrap() {
        drop(early);
        assert!(began.elapsed() < Duration::from_secs(30), "the task never took the lock");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The holder's node (and with it the task's worker) is killed.
    holder.signal(libc::SIGKILL);
    drop(holder);
    let guard = lock.acquire().unwrap();
    assert!(guard.owner_died(), "the next acquirer must be told its holder died");
}

#[test]
fn a_node_replaces_its_workers_after_max_tasks_per_child() {
    let _w = watchdog(120);
    let Some(server) = Server::start(&[]) else { return };
    let _node =
        Node::start_with(&server.url(), "recycle", "recycler", 1, &[("MULTIPROC_NODE_MAX_TASKS_PER_CHILD", "2")]);
    let cluster = Cluster::connect(&server.url(), "recycle").unwrap();
    let pool = cluster.pool().build().unwrap();
    let pids: Vec<u32> = (0..6).map(|_| pool.apply(pid_of_worker, (0,)).unwrap()).collect();
    let distinct: std::collections::HashSet<u32> = pids.iter().copied().collect();
    assert_eq!(distinct.len(), 3, "two tasks per worker: {pids:?}");
}

#[test]
fn a_cluster_executor_cancels_waits_and_shuts_down_like_a_local_one() {
    let _w = watchdog(120);
    let Some(server) = Server::start(&[]) else { return };
    let _node = Node::start(&server.url(), "futures", "busy", 1);
    let cluster = Cluster::connect(&server.url(), "futures").unwrap();
    let executor = cluster.pool().build_executor().unwrap();
    let long = executor.submit(nap_ms, (1_000,)).unwrap();
    let quick: Vec<_> = (0..4).map(|x| executor.submit(square, (x,)).unwrap()).collect();
    // Cancelled before it ran: it never does, and says so.
    let doomed = executor.submit(nap_ms, (60_000,)).unwrap();
    assert!(doomed.cancel() && doomed.cancelled());
    assert_eq!(doomed.result(), Err(TaskError::Cancelled));
    // as_completed yields each index once; wait sees them all done.
    let mut seen: Vec<usize> = multiproc::pool::as_completed(&quick, None).map(Result::unwrap).collect();
    seen.sort();
    assert_eq!(seen, [0, 1, 2, 3]);
    let (done, not_done) = multiproc::pool::wait(&quick, multiproc::pool::ReturnWhen::AllCompleted, None);
    assert_eq!((done.len(), not_done.len()), (4, 0));
    // A progress bar does not change the results.
    #[cfg(feature = "progress")]
    {
        let shown = cluster.pool().progress(true).build().unwrap();
        assert_eq!(shown.map(square, 0..50).unwrap().len(), 50);
    }
    executor.shutdown(true, false);
    assert_eq!(long.result().unwrap(), 1_000, "shutdown waits for the work in hand");
    assert!(executor.submit(square, (1,)).is_err(), "a shut-down executor takes nothing");
}

#[test]
fn a_server_unreachable_past_the_timeout_is_a_typed_error_and_a_broken_pool() {
    let _w = watchdog(120);
    let Some(mut server) = Server::start(&[]) else { return };
    let cluster = Cluster::connect(&server.url(), "gone").unwrap();
    let unreachable = Duration::from_millis(500);
    cluster.set_unreachable_timeout(unreachable);
    let pool = cluster.pool().build().unwrap();
    let pending = pool.apply_async(square, (3,)).unwrap(); // no node: it waits on the server
    let q = cluster.queue::<u8>("q").unwrap();
    server.kill();
    let began = Instant::now();
    assert_eq!(q.put(&1).unwrap_err().kind(), ErrorKind::Disconnected);
    assert!(began.elapsed() >= unreachable, "gave up after {:?}", began.elapsed());
    match pending.get() {
        Err(TaskError::Broken(why)) => assert!(why.contains("unreachable"), "{why}"),
        other => panic!("expected a broken pool, got {other:?}"),
    }
    assert!(matches!(pool.apply_async(square, (1,)), Err(TaskError::Broken(_))));
}
