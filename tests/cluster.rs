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

fn drain_slowly(q: multiproc::cluster::Queue<u32>, n: u32) {
    for _ in 0..n {
        std::thread::sleep(Duration::from_millis(100));
        q.get().unwrap();
    }
}

#[test]
fn a_bounded_cluster_queue_makes_putters_wait_for_room() {
    let _w = watchdog(120);
    let Some(server) = Server::start(&[]) else { return };
    let cluster = Cluster::connect(&server.url(), "test").unwrap();
    let q = cluster.queue_with_capacity::<u32>("bounded", 2).unwrap();
    assert!(q.try_put(&1).unwrap() && q.try_put(&2).unwrap());
    assert!(q.is_full().unwrap());
    assert!(!q.try_put(&3).unwrap(), "a full queue took an item");
    let began = Instant::now();
    assert!(!q.put_timeout(&3, Duration::from_millis(150)).unwrap());
    assert!(began.elapsed() >= Duration::from_millis(150));
    // A consumer elsewhere makes room; the blocked puts go through, nothing is lost.
    let mut consumer = Process::spawn(drain_slowly, (q.clone(), 3)).unwrap();
    q.put(&3).unwrap();
    q.put(&4).unwrap();
    consumer.join().unwrap();
    assert_eq!(q.get().unwrap(), 4);
    assert_eq!(q.len().unwrap(), 0);
}

fn take_and_die(q: multiproc::cluster::JoinableQueue<u32>, taken: multiproc::cluster::Queue<u32>) {
    let item = q.get().unwrap();
    taken.put(&item).unwrap();
    std::thread::sleep(Duration::from_secs(600)); // killed before task_done
}

fn consume_all(q: multiproc::cluster::JoinableQueue<u32>, seen: multiproc::cluster::List<u32>) {
    while let Some(item) = q.get_timeout(Duration::from_secs(5)).unwrap() {
        seen.append(&item).unwrap();
        q.task_done().unwrap();
    }
}

#[test]
fn a_joinable_queue_item_whose_consumer_died_is_delivered_again_and_join_returns() {
    let _w = watchdog(120);
    let Some(server) = Server::start(&[]) else { return };
    let cluster = Cluster::connect(&server.url(), "test").unwrap();
    let lease = Duration::from_millis(400);
    let q = cluster.joinable_queue::<u32>("jobs", lease).unwrap();
    let taken = cluster.queue::<u32>("taken").unwrap();
    assert!(q.task_done().is_err(), "task_done with nothing taken");
    q.put(&7).unwrap();
    let mut doomed = Process::spawn(take_and_die, (q.clone(), taken.clone())).unwrap();
    assert_eq!(taken.get().unwrap(), 7);
    doomed.kill().unwrap();
    let _ = doomed.join();
    for i in 0..5 {
        q.put(&i).unwrap();
    }
    assert_eq!(q.unfinished().unwrap(), 6);
    assert!(!q.join_timeout(Duration::from_millis(100)).unwrap());
    let seen = cluster.list::<u32>("seen").unwrap();
    let mut consumer = Process::spawn(consume_all, (q.clone(), seen.clone())).unwrap();
    q.join().unwrap();
    consumer.join().unwrap();
    let mut all = seen.to_vec().unwrap();
    all.sort();
    assert_eq!(all, [0, 1, 2, 3, 4, 7], "the dead consumer's item came again, once");
    assert_eq!(q.unfinished().unwrap(), 0);
}

fn use_the_objects(
    list: multiproc::cluster::List<String>,
    value: multiproc::cluster::Value<i64>,
    ns: multiproc::cluster::Namespace,
    lock: multiproc::cluster::Lock,
) {
    let _held = lock.acquire().unwrap();
    list.append(&format!("from {}", std::process::id())).unwrap();
    value.add(10).unwrap();
    ns.set("child", &std::process::id()).unwrap();
}

#[test]
fn lists_values_and_namespaces_on_the_cluster_ride_in_arguments() {
    let _w = watchdog(120);
    let Some(server) = Server::start(&[]) else { return };
    let cluster = Cluster::connect(&server.url(), "test").unwrap();
    let list = cluster.list::<String>("log").unwrap();
    list.extend(&["a".into(), "b".into(), "c".into()]).unwrap();
    assert_eq!(list.get(-1).unwrap().as_deref(), Some("c"));
    list.set(1, &"B".into()).unwrap();
    assert_eq!(list.set(9, &"x".into()).unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(list.pop(1).unwrap().as_deref(), Some("B"));
    assert_eq!(list.apply(0, |s| s + "!").unwrap(), "a!");
    assert_eq!(list.to_vec().unwrap(), ["a!", "c"]);
    let value = cluster.value("total", 5i64).unwrap();
    assert_eq!(cluster.value("total", 99i64).unwrap().get().unwrap(), 5, "an existing value stays");
    let ns = cluster.namespace_object("shared").unwrap();
    ns.set("label", &"run".to_string()).unwrap();
    let lock = cluster.lock("objects", Duration::from_secs(5)).unwrap();
    let mut children: Vec<_> = (0..3)
        .map(|_| Process::spawn(use_the_objects, (list.clone(), value.clone(), ns.clone(), lock.clone())).unwrap())
        .collect();
    let pids: Vec<u32> = children.iter().map(|c| c.pid()).collect();
    children.iter_mut().for_each(|c| c.join().unwrap());
    assert_eq!(list.len().unwrap(), 5);
    assert_eq!(value.get().unwrap(), 35);
    assert_eq!(value.apply(|v| v * 2).unwrap(), 70);
    assert!(pids.contains(&ns.get::<u32>("child").unwrap().unwrap()));
    assert_eq!(ns.get::<String>("label").unwrap().as_deref(), Some("run"));
    assert_eq!(ns.get::<u8>("label").unwrap_err().kind(), ErrorKind::Decode);
    let mut attrs = ns.attributes().unwrap();
    attrs.sort();
    assert_eq!(attrs, ["child", "label"]);
    assert!(ns.remove("child").unwrap() && !ns.remove("child").unwrap());
}

fn hold_a_place(
    s: multiproc::cluster::Semaphore,
    inside: multiproc::cluster::Value<i64>,
    most: multiproc::cluster::Value<i64>,
) {
    let _place = s.acquire().unwrap();
    let now = inside.add(1).unwrap();
    most.apply(|m| m.max(now)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    inside.add(-1).unwrap();
}

fn hold_a_place_and_hang(s: multiproc::cluster::Semaphore, held: multiproc::cluster::Queue<u8>) {
    let _place = s.acquire().unwrap();
    held.put(&1).unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_cluster_semaphore_admits_its_value_and_a_dead_holder_s_place_returns() {
    let _w = watchdog(120);
    let Some(server) = Server::start(&[]) else { return };
    let cluster = Cluster::connect(&server.url(), "test").unwrap();
    let s = cluster.semaphore("slots", 2, Duration::from_millis(400)).unwrap();
    let (inside, most) = (cluster.value("inside", 0i64).unwrap(), cluster.value("most", 0i64).unwrap());
    let mut holders: Vec<_> =
        (0..6).map(|_| Process::spawn(hold_a_place, (s.clone(), inside.clone(), most.clone())).unwrap()).collect();
    holders.iter_mut().for_each(|h| h.join().unwrap());
    assert_eq!(most.get().unwrap(), 2, "never more than the value inside, and it was full");
    assert_eq!(s.value().unwrap(), 2);
    let held = cluster.queue::<u8>("held").unwrap();
    let mut doomed: Vec<_> =
        (0..2).map(|_| Process::spawn(hold_a_place_and_hang, (s.clone(), held.clone())).unwrap()).collect();
    held.get().unwrap();
    held.get().unwrap();
    assert!(s.try_acquire().unwrap().is_none());
    doomed.iter_mut().for_each(|d| d.kill().unwrap());
    let killed = Instant::now();
    let place = s.acquire().unwrap();
    assert!(killed.elapsed() >= Duration::from_millis(100), "a dead holder's place came back before its lease ran out");
    drop(place);
    doomed.iter_mut().for_each(|d| drop(d.join()));
}

fn try_the_rlock(lock: multiproc::cluster::RLock) -> bool {
    lock.try_acquire().unwrap().is_some()
}

fn meet(b: multiproc::cluster::Barrier, arrived: multiproc::cluster::List<u32>) -> u32 {
    let index = b.wait().unwrap().unwrap();
    arrived.append(&index).unwrap();
    index
}

#[test]
fn a_cluster_rlock_reenters_and_a_barrier_releases_all_or_breaks() {
    let _w = watchdog(120);
    let Some(server) = Server::start(&[]) else { return };
    let cluster = Cluster::connect(&server.url(), "test").unwrap();
    let lock = cluster.rlock("r", Duration::from_secs(5)).unwrap();
    let outer = lock.acquire().unwrap();
    let inner = lock.try_acquire().unwrap().expect("the holder takes it again");
    assert_eq!(inner.token(), outer.token());
    let mut other = Process::spawn(try_the_rlock, (lock.clone(),)).unwrap();
    assert!(!other.join().unwrap(), "another process took a held lock");
    drop(inner);
    let mut other = Process::spawn(try_the_rlock, (lock.clone(),)).unwrap();
    assert!(!other.join().unwrap(), "released at the inner take");
    drop(outer);
    let mut other = Process::spawn(try_the_rlock, (lock.clone(),)).unwrap();
    assert!(other.join().unwrap(), "not released at the last take");

    let b = cluster.barrier("meet", 3).unwrap();
    let arrived = cluster.list::<u32>("arrived").unwrap();
    let mut parties: Vec<_> = (0..2).map(|_| Process::spawn(meet, (b.clone(), arrived.clone())).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    assert!(arrived.is_empty().unwrap(), "released before all arrived");
    assert_eq!(b.n_waiting().unwrap(), 2);
    let mine = b.wait().unwrap().unwrap();
    let mut indexes: Vec<u32> = parties.iter_mut().map(|p| p.join().unwrap()).collect();
    indexes.push(mine);
    indexes.sort();
    assert_eq!(indexes, [0, 1, 2]);
    // A wait that times out breaks it for all, until reset.
    let began = Instant::now();
    assert!(b.wait_timeout(Duration::from_millis(150)).unwrap().is_err());
    assert!(began.elapsed() >= Duration::from_millis(150));
    assert!(b.broken().unwrap() && b.wait().unwrap().is_err());
    b.reset().unwrap();
    assert!(!b.broken().unwrap());
}
