//! The cluster against a real `redis-server`, started by each test on a Unix socket in a
//! temporary directory and stopped by its pid. Without the server binary a test says so loudly
//! and passes — unless `CI=true`, where a missing server is a failure.
#![cfg(feature = "cluster")]

mod common;

use std::time::{Duration, Instant};

use common::redis_server::Server;
use common::watchdog;
use multiproc::cluster::Cluster;
use multiproc::{ErrorKind, Process};

fn produce(url: String, n: u32) {
    let cluster = Cluster::connect(&url, "test").unwrap();
    let q = cluster.queue::<(u32, String)>("work").unwrap();
    for i in 0..n {
        q.put(&(i, format!("item {i}"))).unwrap();
    }
}

#[test]
fn a_queue_on_the_cluster_carries_items_between_processes_in_order() {
    let _w = watchdog(120);
    let Some(server) = Server::start(&[]) else { return };
    let cluster = Cluster::connect(&server.url(), "test").unwrap();
    let q = cluster.queue::<(u32, String)>("work").unwrap();
    assert!(q.is_empty().unwrap());
    assert_eq!(q.try_get().unwrap(), None);
    // An empty queue waits at least its timeout.
    let began = Instant::now();
    assert_eq!(q.get_timeout(Duration::from_millis(200)).unwrap(), None);
    assert!(began.elapsed() >= Duration::from_millis(200));
    let mut producer = Process::spawn(produce, (server.url(), 100)).unwrap();
    let got: Vec<(u32, String)> = (0..100).map(|_| q.get().unwrap()).collect();
    producer.join().unwrap();
    assert_eq!(got, (0..100).map(|i| (i, format!("item {i}"))).collect::<Vec<_>>());
    assert_eq!(q.len().unwrap(), 0);
    // An item of the wrong type is refused clearly and consumed; the next one still comes.
    let strings = cluster.queue::<String>("work").unwrap();
    strings.put(&"not a tuple".to_string()).unwrap();
    q.put(&(7, "seven".into())).unwrap();
    assert_eq!(q.get().unwrap_err().kind(), ErrorKind::Decode);
    assert_eq!(q.get().unwrap(), (7, "seven".to_string()));
}

fn answer(requests: multiproc::cluster::Queue<u32>, replies: multiproc::cluster::Queue<u32>) {
    while let Ok(x) = requests.get() {
        if x == 0 {
            return;
        }
        replies.put(&(x * 10)).unwrap();
    }
}

#[test]
fn cluster_queues_ride_in_a_process_s_arguments() {
    let _w = watchdog(120);
    let Some(server) = Server::start(&[]) else { return };
    let cluster = Cluster::connect(&server.url(), "test").unwrap();
    let (requests, replies) = (cluster.queue::<u32>("requests").unwrap(), cluster.queue::<u32>("replies").unwrap());
    let mut child = Process::spawn(answer, (requests.clone(), replies.clone())).unwrap();
    for x in 1..=20 {
        requests.put(&x).unwrap();
        assert_eq!(replies.get().unwrap(), x * 10);
    }
    requests.put(&0).unwrap();
    child.join().unwrap();
}

#[test]
fn a_wrong_password_is_an_authentication_error() {
    let _w = watchdog(60);
    let Some(server) = Server::start(&["--requirepass", "right"]) else { return };
    assert!(Cluster::connect(&server.url_with_password("right"), "test").is_ok());
    let wrong = Cluster::connect(&server.url_with_password("wrong"), "test").unwrap_err();
    assert_eq!(wrong.kind(), ErrorKind::Authentication, "{wrong}");
    assert!(!wrong.to_string().contains("wrong"), "the password must not be in the message: {wrong}");
    let none = Cluster::connect(&server.url(), "test").unwrap_err();
    assert_eq!(none.kind(), ErrorKind::Authentication, "{none}");
}

#[test]
fn a_server_that_may_evict_keys_is_refused() {
    let _w = watchdog(60);
    let Some(server) = Server::start(&["--maxmemory-policy", "allkeys-lru"]) else { return };
    let err = Cluster::connect(&server.url(), "test").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("allkeys-lru") && err.to_string().contains("noeviction"), "{err}");
}

#[test]
fn a_namespace_made_by_another_build_is_refused_and_names_are_checked() {
    let _w = watchdog(60);
    let Some(server) = Server::start(&[]) else { return };
    // Another build's stamp, written as that build would have.
    let client = redis::Client::open(server.url()).unwrap();
    let mut raw = client.get_connection().unwrap();
    redis::cmd("SET").arg("mp:{other}:build").arg("00ff").query::<()>(&mut raw).unwrap();
    let err = Cluster::connect(&server.url(), "other").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BuildMismatch);
    assert!(err.to_string().contains("00ff"), "{err}");
    // The same build is welcome back, under any number of connections.
    Cluster::connect(&server.url(), "ours").unwrap();
    Cluster::connect(&server.url(), "ours").unwrap();
    // Names that would break the key scheme.
    assert_eq!(Cluster::connect(&server.url(), "a:b").unwrap_err().kind(), ErrorKind::InvalidInput);
    let cluster = Cluster::connect(&server.url(), "ours").unwrap();
    assert_eq!(cluster.queue::<u8>("x{y}").unwrap_err().kind(), ErrorKind::InvalidInput);
    // Nobody listening: a clear error, not a hang.
    let gone = format!("redis+unix://{}", server.dir.join("nobody.sock").display());
    assert_eq!(Cluster::connect(&gone, "ours").unwrap_err().kind(), ErrorKind::Disconnected);
}

fn bump_under_the_lock(url: String, counter: multiproc::Fd, times: u32) {
    let counter = common::Counter::map(counter);
    let lock = Cluster::connect(&url, "test").unwrap().lock("counter", Duration::from_secs(5)).unwrap();
    for _ in 0..times {
        let _held = lock.acquire().unwrap();
        counter.bump();
        std::thread::sleep(Duration::from_micros(200)); // widen the window a lost update needs
        counter.bump();
    }
}

#[test]
fn a_cluster_lock_excludes_processes() {
    let _w = watchdog(120);
    let Some(server) = Server::start(&[]) else { return };
    let counter = common::Counter::new();
    let mut workers: Vec<_> =
        (0..4).map(|_| Process::spawn(bump_under_the_lock, (server.url(), counter.share(), 25)).unwrap()).collect();
    workers.iter_mut().for_each(|w| w.join().unwrap());
    assert_eq!(counter.get(), 4 * 25 * 2);
}

fn hold_and_hang(url: String, tokens: multiproc::cluster::Queue<u64>) {
    let lock = Cluster::connect(&url, "test").unwrap().lock("doomed", Duration::from_millis(300)).unwrap();
    let guard = lock.acquire().unwrap();
    tokens.put(&guard.token()).unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_killed_holder_s_lease_runs_out_and_the_next_acquirer_is_told() {
    let _w = watchdog(120);
    let Some(server) = Server::start(&[]) else { return };
    let cluster = Cluster::connect(&server.url(), "test").unwrap();
    let tokens = cluster.queue::<u64>("tokens").unwrap();
    let mut holder = Process::spawn(hold_and_hang, (server.url(), tokens.clone())).unwrap();
    let dead_token = tokens.get().unwrap();
    // While it lives its lease is renewed: held well past one lease.
    let lock = cluster.lock("doomed", Duration::from_millis(300)).unwrap();
    std::thread::sleep(Duration::from_millis(900));
    assert!(lock.try_acquire().unwrap().is_none(), "a live holder lost its lease");
    holder.kill().unwrap();
    let _ = holder.join();
    let killed = Instant::now();
    let guard = lock.acquire().unwrap();
    assert!(guard.owner_died(), "the next acquirer must be told its holder died");
    assert!(guard.token() > dead_token);
    // Not before the dead holder's lease (300 ms, less what had run since its last renewal).
    let waited = killed.elapsed();
    assert!(waited >= Duration::from_millis(100), "taken over after {waited:?}");
    assert!(guard.release().unwrap());
    // A clean release leaves no death behind.
    assert!(!lock.acquire().unwrap().owner_died());
}

fn add_many(url: String, times: u32) {
    let hits = Cluster::connect(&url, "test").unwrap().dict::<String, i64>("hits").unwrap();
    for _ in 0..times {
        hits.add("total", 1).unwrap();
    }
}

#[test]
fn the_atomic_add_from_eight_processes_is_exact() {
    let _w = watchdog(120);
    let Some(server) = Server::start(&[]) else { return };
    let mut adders: Vec<_> = (0..8).map(|_| Process::spawn(add_many, (server.url(), 50)).unwrap()).collect();
    adders.iter_mut().for_each(|a| a.join().unwrap());
    let hits = Cluster::connect(&server.url(), "test").unwrap().dict::<String, i64>("hits").unwrap();
    assert_eq!(hits.get("total").unwrap(), Some(400));
}

#[test]
fn a_cluster_dict_behaves_like_a_manager_s() {
    let _w = watchdog(60);
    let Some(server) = Server::start(&[]) else { return };
    let cluster = Cluster::connect(&server.url(), "test").unwrap();
    let d = cluster.dict::<String, Vec<u32>>("d").unwrap();
    assert!(d.is_empty().unwrap());
    assert_eq!(d.insert("a".into(), vec![1]).unwrap(), None);
    assert_eq!(d.insert("a".into(), vec![1, 2]).unwrap(), Some(vec![1]));
    assert_eq!(d.get("a").unwrap(), Some(vec![1, 2]));
    assert_eq!(d.apply("a", |old| [old.unwrap_or_default(), vec![3]].concat()).unwrap(), vec![1, 2, 3]);
    assert_eq!(d.apply("b", |old| old.unwrap_or_default()).unwrap(), Vec::<u32>::new());
    let mut items = d.items().unwrap();
    items.sort();
    assert_eq!(items, [("a".to_string(), vec![1, 2, 3]), ("b".to_string(), vec![])]);
    assert_eq!(d.remove("b").unwrap(), Some(vec![]));
    assert_eq!(d.len().unwrap(), 1);
    // A sum that does not fit is refused, and the entry stays.
    let small = cluster.dict::<String, u8>("small").unwrap();
    small.add("n", 250).unwrap();
    assert_eq!(small.add("n", 10).unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(small.get("n").unwrap(), Some(250));
    // A value of another type is refused clearly.
    let wrong = cluster.dict::<String, String>("small").unwrap();
    assert_eq!(wrong.get("n").unwrap_err().kind(), ErrorKind::Decode);
    d.clear().unwrap();
    assert!(d.is_empty().unwrap());
}

fn wait_for(go: multiproc::cluster::Event, done: multiproc::cluster::Queue<u32>) {
    go.wait().unwrap();
    done.put(&std::process::id()).unwrap();
}

#[test]
fn a_cluster_event_wakes_every_waiter() {
    let _w = watchdog(120);
    let Some(server) = Server::start(&[]) else { return };
    let cluster = Cluster::connect(&server.url(), "test").unwrap();
    let (go, done) = (cluster.event("go").unwrap(), cluster.queue::<u32>("done").unwrap());
    assert!(!go.is_set().unwrap());
    let began = Instant::now();
    assert!(!go.wait_timeout(Duration::from_millis(200)).unwrap());
    assert!(began.elapsed() >= Duration::from_millis(200));
    let mut waiters: Vec<_> = (0..3).map(|_| Process::spawn(wait_for, (go.clone(), done.clone())).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(done.len().unwrap(), 0, "a waiter went before the set");
    go.set().unwrap();
    waiters.iter_mut().for_each(|w| w.join().unwrap());
    assert_eq!(done.len().unwrap(), 3);
    // Set stays set; clear clears.
    assert!(go.wait_timeout(Duration::ZERO).unwrap());
    go.clear().unwrap();
    assert!(!go.is_set().unwrap());
    assert!(!go.wait_timeout(Duration::from_millis(50)).unwrap());
}
