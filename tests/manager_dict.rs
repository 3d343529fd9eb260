//! The manager's containers and user types: proxy semantics, the counter race and its two
//! fixes, atomic updates from many processes, names, authentication, garbage on the wire, and
//! shutdown.

mod common;

use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};

use common::watchdog;
use multiproc::manager::DictProxy;
use multiproc::{ErrorKind, Lock, Manager, Process};

#[test]
fn dict_proxy_semantics() {
    let _w = watchdog(60);
    let manager = Manager::start().unwrap();
    let made = manager.dict_from([("count".to_string(), vec![100u32])]).unwrap();
    assert_eq!(made.get(&"count".to_string()).unwrap(), Some(vec![100]));
    assert_eq!(manager.list_from(['a', 'b']).unwrap().to_vec().unwrap(), ['a', 'b']);
    let d = manager.dict::<String, Vec<u32>>().unwrap();
    assert!(d.is_empty().unwrap());
    assert_eq!(d.insert("a".into(), vec![1]).unwrap(), None);
    assert_eq!(d.insert("a".into(), vec![1, 2]).unwrap(), Some(vec![1]));
    d.update([("b".to_string(), vec![]), ("c".to_string(), vec![3])]).unwrap();
    assert_eq!(d.len().unwrap(), 3);
    assert!(d.contains_key(&"b".to_string()).unwrap());
    let mut keys = d.keys().unwrap();
    keys.sort();
    assert_eq!(keys, ["a", "b", "c"]);
    assert_eq!(d.remove(&"b".to_string()).unwrap(), Some(vec![]));
    assert_eq!(d.remove(&"b".to_string()).unwrap(), None);
    // A copy read out is a copy: changing it changes nothing until it is put back.
    let mut a = d.get(&"a".to_string()).unwrap().unwrap();
    a.push(99);
    assert_eq!(d.get(&"a".to_string()).unwrap(), Some(vec![1, 2]));
    d.clear().unwrap();
    assert_eq!(d.len().unwrap(), 0);
    // Two dicts are independent.
    let other = manager.dict::<String, Vec<u32>>().unwrap();
    other.insert("x".into(), vec![]).unwrap();
    assert!(d.is_empty().unwrap());
}

#[test]
fn keys_can_be_borrowed_and_entries_keep_python_order() {
    let _w = watchdog(60);
    let manager = Manager::start().unwrap();
    let d = manager.dict::<String, i64>().unwrap();
    for (k, v) in [("GET", 1), ("PUT", 2), ("DELETE", 3), ("HEAD", 4)] {
        d.insert(k.into(), v).unwrap();
    }
    // Borrowed forms of the key: a &str for a String key, as HashMap takes them.
    assert_eq!(d.get("PUT").unwrap(), Some(2));
    assert_eq!(d.add("GET", 10).unwrap(), 11);
    assert!(d.contains_key("HEAD").unwrap());
    assert_eq!(d.remove("PUT").unwrap(), Some(2));
    assert!(!d.contains_key("PUT").unwrap());
    // Insertion order, kept by a removal and by re-setting a key (as in Python).
    d.insert("GET".into(), 0).unwrap();
    assert_eq!(d.keys().unwrap(), ["GET", "DELETE", "HEAD"]);
    assert_eq!(d.popitem().unwrap(), Some(("HEAD".to_string(), 4)));
    d.insert("PATCH".into(), 5).unwrap();
    assert_eq!(d.popitem().unwrap(), Some(("PATCH".to_string(), 5)));
    assert_eq!(d.popitem().unwrap(), Some(("DELETE".to_string(), 3)));
    assert_eq!(d.popitem().unwrap(), Some(("GET".to_string(), 0)));
    assert_eq!(d.popitem().unwrap(), None, "an empty dict pops nothing");
    // A byte-string key looked up by slice.
    let blobs = manager.dict::<Vec<u8>, u8>().unwrap();
    blobs.insert(vec![1, 2, 3], 6).unwrap();
    assert_eq!(blobs.get(&[1u8, 2, 3][..]).unwrap(), Some(6));
}

fn take_one_locked(tickets: DictProxy<String, i64>, lock: Lock, times: u32) {
    for _ in 0..times {
        let _g = lock.acquire().unwrap();
        let left = tickets.get(&"left".to_string()).unwrap().unwrap();
        tickets.insert("left".to_string(), left - 1).unwrap();
    }
}

fn take_one_atomic(tickets: DictProxy<String, i64>, times: u32) {
    for _ in 0..times {
        tickets.add(&"left".to_string(), -1).unwrap();
    }
}

#[test]
fn the_counter_is_exact_with_a_lock_and_with_the_atomic_update() {
    let _w = watchdog(120);
    let manager = Manager::start().unwrap();
    let tickets = manager.dict::<String, i64>().unwrap();
    tickets.insert("left".into(), 1_000).unwrap();
    let lock = Lock::new().unwrap();
    let mut ps: Vec<_> =
        (0..10).map(|_| Process::spawn(take_one_locked, (tickets.clone(), lock.clone(), 50)).unwrap()).collect();
    ps.iter_mut().for_each(|p| p.join().unwrap());
    assert_eq!(tickets.get(&"left".to_string()).unwrap(), Some(500));
    let mut ps: Vec<_> = (0..10).map(|_| Process::spawn(take_one_atomic, (tickets.clone(), 50)).unwrap()).collect();
    ps.iter_mut().for_each(|p| p.join().unwrap());
    assert_eq!(tickets.get(&"left".to_string()).unwrap(), Some(0));
}

fn append_me(log: Vec<u32>) -> Vec<u32> {
    let mut log = log;
    log.push(log.len() as u32);
    log
}

fn push_many(d: DictProxy<u8, Vec<u32>>, times: u32) {
    for _ in 0..times {
        d.apply(&0, |old: Option<Vec<u32>>| append_me(old.unwrap_or_default())).unwrap();
    }
}

#[test]
fn eight_processes_apply_updates_to_one_key_and_none_is_lost() {
    let _w = watchdog(120);
    let manager = Manager::start().unwrap();
    let d = manager.dict::<u8, Vec<u32>>().unwrap();
    let mut ps: Vec<_> = (0..8).map(|_| Process::spawn(push_many, (d.clone(), 25)).unwrap()).collect();
    ps.iter_mut().for_each(|p| p.join().unwrap());
    assert_eq!(d.get(&0).unwrap().unwrap(), (0..200).collect::<Vec<u32>>());
}

fn panicking_update(_: Option<u32>) -> u32 {
    panic!("no update for you")
}

#[test]
fn a_panicking_update_leaves_the_entry_alone_and_numbers_refuse_overflow() {
    let _w = watchdog(60);
    let manager = Manager::start().unwrap();
    let d = manager.dict::<u8, u32>().unwrap();
    d.insert(1, 7).unwrap();
    let err = d.apply(&1, panicking_update).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("no update for you"), "{err}");
    assert_eq!(d.get(&1).unwrap(), Some(7));
    let big = manager.dict::<u8, u64>().unwrap();
    big.insert(0, u64::MAX).unwrap();
    assert_eq!(big.add(&0, 1).unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(big.get(&0).unwrap(), Some(u64::MAX));
    let f = manager.dict::<u8, f64>().unwrap();
    assert_eq!(f.add(&0, 0.5).unwrap(), 0.5);
    // Sums stay in the dict's own type, however it is encoded (a u8 is one raw byte).
    let small = manager.dict::<u8, u8>().unwrap();
    assert_eq!(small.add(&0, 200).unwrap(), 200);
    assert_eq!(small.add(&0, 55).unwrap(), 255);
    assert_eq!(small.add(&0, 1).unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(small.get(&0).unwrap(), Some(255), "a refused sum leaves the entry alone");
    let signed = manager.dict::<u8, i8>().unwrap();
    assert_eq!(signed.add(&0, -100).unwrap(), -100);
    assert_eq!(signed.add(&0, -29).unwrap_err().kind(), ErrorKind::InvalidInput);
    let mid = manager.dict::<u8, i32>().unwrap();
    mid.insert(0, i32::MAX - 1).unwrap();
    assert_eq!(mid.add(&0, 1).unwrap(), i32::MAX);
    assert_eq!(mid.add(&0, 1).unwrap_err().kind(), ErrorKind::InvalidInput);
    // A number of another type in the entry is refused, not misread.
    let text = manager.dict::<u8, String>().unwrap();
    text.insert(0, "not a number".into()).unwrap();
    let (_, json) = address_of(&text);
    let as_numbers: DictProxy<u8, u64> = serde_json::from_value(json).unwrap();
    assert_eq!(as_numbers.add(&0, 1).unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(text.get(&0).unwrap().as_deref(), Some("not a number"));
}

/// The proxy's form outside a transfer, to reach the server like a stranger would: the abstract
/// socket name and the proxy as JSON (which carries no key).
fn address_of<K, V>(proxy: &DictProxy<K, V>) -> (String, serde_json::Value) {
    let json = serde_json::to_value(proxy).unwrap();
    assert!(json[0][2].is_null(), "a proxy written outside a transfer to our own processes carries no key");
    let name = json[0][0]["Abstract"].as_str().unwrap().to_string();
    (name, json)
}

#[test]
fn keys_in_data_from_elsewhere_are_ignored_and_a_wrong_key_is_refused_clearly() {
    let _w = watchdog(60);
    let manager = Manager::start().unwrap();
    let d = manager.dict::<u8, u8>().unwrap();
    let (_, mut json) = address_of(&d);
    // Read back here without a key, it uses the key this process knows, the manager's.
    let keyless: DictProxy<u8, u8> = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(keyless.len().unwrap(), 0);
    // A key inside data that did not come from one of our processes is not believed.
    json[0][2] = serde_json::to_value([7u8; 32]).unwrap();
    let forged: DictProxy<u8, u8> = serde_json::from_value(json).unwrap();
    assert_eq!(forged.len().unwrap(), 0, "the embedded key was ignored");
    // A wrong key is refused, clearly (served managers take keys from anyone who knows one).
    let served = Manager::serve("127.0.0.1:0", b"right").unwrap();
    served.dict_named::<u8, u8>("d").unwrap();
    let wrong = Manager::connect(&served.address(), b"wrong").unwrap();
    let err = wrong.dict_named::<u8, u8>("d").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Authentication);
    assert!(err.to_string().contains("did not accept our authkey"), "{err}");
    assert_eq!(d.len().unwrap(), 0, "the server is unharmed");
}

fn connect(name: &str) -> UnixStream {
    UnixStream::connect_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap()
}

#[test]
fn garbage_on_the_wire_drops_only_that_connection() {
    let _w = watchdog(60);
    let manager = Manager::start().unwrap();
    let d = manager.dict::<u8, u8>().unwrap();
    d.insert(1, 1).unwrap();
    let (name, _) = address_of(&d);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for round in 0..20 {
        let mut s = connect(&name);
        let mut challenge = [0u8; 32];
        s.read_exact(&mut challenge).unwrap();
        let junk: Vec<u8> = (0..(round * 37 + 5))
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng as u8
            })
            .collect();
        let _ = s.write_all(&junk);
        let _ = s.shutdown(std::net::Shutdown::Write); // a short answer ends here
        // The server hangs up on a bad or short answer; reading sees the end (or a reset).
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    }
    // Truncated handshakes and huge length prefixes.
    for bytes in [&[1u8, 2, 3][..], &[0xff; 64][..], &u32::MAX.to_le_bytes()[..]] {
        let mut s = connect(&name);
        let _ = s.write_all(bytes);
        drop(s);
    }
    assert_eq!(d.get(&1).unwrap(), Some(1), "a well-behaved client is still served");
}

fn use_after_shutdown(d: DictProxy<u8, u8>) -> bool {
    d.len().unwrap_err().kind() == ErrorKind::Disconnected
}

#[test]
fn clients_of_a_manager_that_is_gone_get_an_error() {
    let _w = watchdog(60);
    let manager = Manager::start().unwrap();
    let d = manager.dict::<u8, u8>().unwrap();
    d.insert(1, 1).unwrap();
    manager.shutdown();
    assert_eq!(d.get(&1).unwrap_err().kind(), ErrorKind::Disconnected);
    let mut child = Process::spawn(use_after_shutdown, (d.clone(),)).unwrap();
    assert!(child.join().unwrap(), "a process that never talked to the manager gets the same error");
}

#[test]
fn list_proxy_semantics() {
    let _w = watchdog(60);
    let manager = Manager::start().unwrap();
    let l = manager.list::<String>().unwrap();
    assert!(l.is_empty().unwrap());
    l.push("a".into()).unwrap();
    l.extend(["b".to_string(), "c".to_string(), "b".to_string()]).unwrap();
    assert_eq!(l.len().unwrap(), 4);
    assert_eq!(l.get(1).unwrap().as_deref(), Some("b"));
    l.set(0, "A".into()).unwrap();
    assert_eq!(l.set(9, "z".into()).unwrap_err().kind(), ErrorKind::InvalidInput);
    assert!(l.remove(&"b".to_string()).unwrap());
    assert!(!l.remove(&"q".to_string()).unwrap());
    assert_eq!(l.to_vec().unwrap(), ["A", "c", "b"]);
    assert_eq!(l.pop().unwrap().as_deref(), Some("b"));
    // A list is not a dict: using an id as the wrong kind is refused.
    let d = manager.dict::<u8, u8>().unwrap();
    let (_, json) = address_of(&d);
    let as_list: multiproc::manager::ListProxy<u8> = serde_json::from_value(json).unwrap();
    assert_eq!(as_list.len().unwrap_err().kind(), ErrorKind::InvalidInput);
}

fn bump_slot(l: multiproc::manager::ListProxy<u64>, times: u32) {
    for _ in 0..times {
        l.apply(0, |v: Option<u64>| v.unwrap_or(0) + 1).unwrap();
    }
}

#[test]
fn list_elements_update_atomically() {
    let _w = watchdog(60);
    let manager = Manager::start().unwrap();
    let l = manager.list::<u64>().unwrap();
    l.push(0).unwrap();
    let mut ps: Vec<_> = (0..4).map(|_| Process::spawn(bump_slot, (l.clone(), 50)).unwrap()).collect();
    ps.iter_mut().for_each(|p| p.join().unwrap());
    assert_eq!(l.get(0).unwrap(), Some(200));
}

#[test]
fn namespace_and_value_semantics() {
    let _w = watchdog(60);
    let manager = Manager::start().unwrap();
    let ns = manager.namespace().unwrap();
    ns.set("count", &3u32).unwrap();
    ns.set("name", &"seeds".to_string()).unwrap();
    assert_eq!(ns.get::<u32>("count").unwrap(), Some(3));
    assert_eq!(ns.get::<String>("name").unwrap().as_deref(), Some("seeds"));
    assert_eq!(ns.get::<u32>("nope").unwrap(), None);
    assert_eq!(ns.get::<bool>("name").unwrap_err().kind(), ErrorKind::Decode, "a wrong type is a decode error");
    let mut names = ns.names().unwrap();
    names.sort();
    assert_eq!(names, ["count", "name"]);
    assert!(ns.remove("count").unwrap());
    assert!(!ns.remove("count").unwrap());
    let v = manager.value(vec![1u8]).unwrap();
    v.set(vec![2, 3]).unwrap();
    assert_eq!(v.get().unwrap(), [2, 3]);
    assert_eq!(v.apply(|old: Option<Vec<u8>>| old.unwrap_or_default().into_iter().rev().collect()).unwrap(), [3, 2]);
}

fn add_to_nested(outer: DictProxy<String, multiproc::manager::ListProxy<u32>>, item: u32) {
    // Fetch the inner list from the outer dict and change it: the change is live for everyone.
    outer.get(&"inner".to_string()).unwrap().unwrap().push(item).unwrap();
}

#[test]
fn a_proxy_stored_in_a_container_stays_a_live_reference() {
    let _w = watchdog(60);
    let manager = Manager::start().unwrap();
    let outer = manager.dict::<String, multiproc::manager::ListProxy<u32>>().unwrap();
    outer.insert("inner".into(), manager.list().unwrap()).unwrap();
    let mut ps: Vec<_> = (0..3).map(|i| Process::spawn(add_to_nested, (outer.clone(), i)).unwrap()).collect();
    ps.iter_mut().for_each(|p| p.join().unwrap());
    let mut items = outer.get(&"inner".to_string()).unwrap().unwrap().to_vec().unwrap();
    items.sort();
    assert_eq!(items, [0, 1, 2], "Python's lost-update trap on nested containers does not exist here");
}

/// A user type hosted by the manager: a bank account that refuses overdrafts.
#[derive(Default)]
struct Account {
    balance: i64,
}

#[derive(serde::Serialize, serde::Deserialize)]
enum Op {
    Deposit(i64),
    Withdraw(i64),
    Explode,
}

impl multiproc::manager::SharedObject for Account {
    type Request = Op;
    type Response = Result<i64, String>;
    fn handle(&mut self, op: Op) -> Result<i64, String> {
        match op {
            Op::Deposit(n) => self.balance += n,
            Op::Withdraw(n) if n > self.balance => return Err(format!("only {} left", self.balance)),
            Op::Withdraw(n) => self.balance -= n,
            Op::Explode => panic!("kaboom"),
        }
        Ok(self.balance)
    }
}

fn deposit_many(account: multiproc::manager::ObjectProxy<Account>) {
    for _ in 0..50 {
        account.call(Op::Deposit(2)).unwrap().unwrap();
    }
}

#[test]
fn a_registered_user_type_serves_typed_requests_from_many_processes() {
    let _w = watchdog(60);
    let manager = Manager::start().unwrap();
    let account = manager.object::<Account>().unwrap();
    let mut ps: Vec<_> = (0..4).map(|_| Process::spawn(deposit_many, (account.clone(),)).unwrap()).collect();
    ps.iter_mut().for_each(|p| p.join().unwrap());
    assert_eq!(account.call(Op::Withdraw(1_000)).unwrap(), Err("only 400 left".to_string()));
    assert_eq!(account.call(Op::Withdraw(100)).unwrap(), Ok(300));
    let err = account.call(Op::Explode).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("kaboom"));
    assert_eq!(account.call(Op::Deposit(0)).unwrap(), Ok(300), "the object and the server go on");
}

fn add_one(counts: DictProxy<String, u64>, word: String) -> usize {
    // Written out by the task itself, the proxy carries no key (only the transfer did).
    let shown: serde_json::Value = serde_json::to_value(&counts).unwrap();
    assert!(shown[0][2].is_null(), "a key leaked into {shown}");
    counts.add(&word, 1).unwrap();
    word.len()
}

#[test]
fn proxies_travel_in_pool_tasks() {
    let _w = watchdog(60);
    let manager = Manager::start().unwrap();
    let counts = manager.dict::<String, u64>().unwrap();
    let pool = multiproc::Pool::new(2).unwrap();
    let words = ["a", "bb", "a", "ccc", "a"].map(String::from);
    let lengths = pool.starmap(add_one, words.map(|w| (counts.clone(), w))).unwrap();
    assert_eq!(lengths, [1, 2, 1, 3, 1]);
    assert_eq!(counts.get(&"a".to_string()).unwrap(), Some(3));
    assert_eq!(counts.len().unwrap(), 3);
}

#[test]
fn names_register_once_and_look_up_by_kind() {
    let _w = watchdog(60);
    let manager = Manager::start().unwrap();
    assert!(manager.lookup::<multiproc::manager::ListProxy<u8>>("log").unwrap().is_none());
    let first = manager.list::<u8>().unwrap();
    first.push(1).unwrap();
    let registered = manager.register("log", &first).unwrap();
    assert_eq!(registered.to_vec().unwrap(), [1]);
    // The name is taken: registering another list hands back the first one.
    let second = manager.list::<u8>().unwrap();
    assert_eq!(manager.register("log", &second).unwrap().to_vec().unwrap(), [1]);
    assert_eq!(manager.lookup::<multiproc::manager::ListProxy<u8>>("log").unwrap().unwrap().len().unwrap(), 1);
    // Another kind under a taken name, or a lookup of the wrong kind, is refused clearly.
    let err = manager.register("log", &manager.event().unwrap()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("list"), "{err}");
    assert_eq!(manager.lookup::<DictProxy<u8, u8>>("log").unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(manager.dict_named::<u8, u8>("log").unwrap_err().kind(), ErrorKind::InvalidInput);
    // A proxy of another manager cannot be registered here.
    let other = Manager::start().unwrap();
    assert_eq!(manager.register("x", &other.list::<u8>().unwrap()).unwrap_err().kind(), ErrorKind::InvalidInput);
    // Names check what the object holds, not only what it is: two programs cannot read one
    // object as different types.
    manager.dict_named::<String, u64>("scores").unwrap().insert("x".into(), 5).unwrap();
    let err = manager.dict_named::<String, i64>("scores").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("dict of String → u64"), "{err}");
    assert_eq!(manager.lookup::<DictProxy<String, i64>>("scores").unwrap_err().kind(), ErrorKind::InvalidInput);
    manager.register("small", &manager.value(300u32).unwrap()).unwrap();
    assert!(manager.lookup::<multiproc::manager::ValueProxy<i32>>("small").is_err());
    assert_eq!(manager.lookup::<multiproc::manager::ValueProxy<u32>>("small").unwrap().unwrap().get().unwrap(), 300);
    manager.queue_named::<u8>("jobs").unwrap().put(1).unwrap();
    assert!(manager.queue_named::<String>("jobs").is_err());
    assert_eq!(manager.queue_named::<u8>("jobs").unwrap().get().unwrap(), 1, "nothing was lost by the wrong look");
    // Namespaces and values are their own kinds, though the server keeps them as dicts.
    manager.register("ns", &manager.namespace().unwrap()).unwrap();
    assert!(manager.lookup::<multiproc::manager::NamespaceProxy>("ns").unwrap().is_some());
    assert_eq!(manager.lookup::<DictProxy<String, u8>>("ns").unwrap_err().kind(), ErrorKind::InvalidInput);
}

/// A user type whose making panics.
struct Explosive;

impl Default for Explosive {
    fn default() -> Explosive {
        panic!("cannot be made")
    }
}

impl multiproc::manager::SharedObject for Explosive {
    type Request = ();
    type Response = ();
    fn handle(&mut self, (): ()) {}
}

#[test]
fn a_reply_over_the_limit_or_a_panicking_user_type_fails_that_call_and_keeps_the_connection() {
    let _w = watchdog(120);
    let manager = Manager::start().unwrap();
    let lock = manager.lock().unwrap();
    let held = lock.acquire().unwrap(); // held through this thread's one connection
    let err = manager.object::<Explosive>().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("cannot be made"), "{err}");
    // 260 MiB in the list: each push fits a frame, the whole list does not.
    let big = manager.list::<serde_bytes::ByteBuf>().unwrap();
    let mib = serde_bytes::ByteBuf::from(vec![1u8; 1 << 20]);
    for _ in 0..260 {
        big.push(mib.clone()).unwrap();
    }
    let err = big.to_vec().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("too large"), "{err}");
    assert_eq!(big.len().unwrap(), 260, "the list is whole");
    assert!(lock.locked().unwrap() && lock.try_acquire().unwrap().is_none(), "and the lock still ours");
    drop(held);
    assert!(!lock.locked().unwrap());
}

#[test]
fn the_rest_of_pythons_list_and_dict_methods() {
    let _w = common::watchdog(60);
    let manager = multiproc::Manager::start().unwrap();
    let l = manager.list::<String>().unwrap();
    l.extend(["b".to_string(), "d".to_string(), "b".to_string()]).unwrap();
    l.insert(0, "a".into()).unwrap();
    l.insert(2, "c".into()).unwrap();
    assert_eq!(l.to_vec().unwrap(), ["a", "b", "c", "d", "b"]);
    assert_eq!(l.index(&"c".into()).unwrap(), Some(2));
    assert_eq!(l.index(&"z".into()).unwrap(), None);
    assert_eq!(l.count(&"b".into()).unwrap(), 2);
    assert_eq!(l.pop_at(1).unwrap(), "b");
    assert_eq!(l.pop_at(9).unwrap_err().kind(), multiproc::ErrorKind::InvalidInput);
    l.reverse().unwrap();
    assert_eq!(l.to_vec().unwrap(), ["b", "d", "c", "a"]);
    l.clear().unwrap();
    assert!(l.is_empty().unwrap());
    l.extend(["pear", "apple", "fig", "apple"].map(String::from)).unwrap();
    l.sort().unwrap();
    assert_eq!(l.to_vec().unwrap(), ["apple", "apple", "fig", "pear"]);
    // A served manager sorts only for its own program's processes (the sort is code named by
    // offset); a client of another program is refused and the list is left alone.
    let served = multiproc::Manager::serve("127.0.0.1:0", b"sorting").unwrap();
    let mine = served.list_named::<u32>("numbers").unwrap();
    mine.extend([3, 1, 2]).unwrap();
    let stranger = multiproc::Manager::connect(&served.address(), b"sorting").unwrap();
    let theirs = stranger.list_named::<u32>("numbers").unwrap();
    assert_eq!(theirs.sort().unwrap_err().kind(), multiproc::ErrorKind::InvalidInput);
    assert_eq!(mine.to_vec().unwrap(), [3, 1, 2]);
    mine.sort().unwrap();
    assert_eq!(theirs.to_vec().unwrap(), [1, 2, 3]);

    // setdefault is one step on the server: from many processes at once, one default wins.
    let d = manager.dict::<String, u32>().unwrap();
    fn claim(d: multiproc::manager::DictProxy<String, u32>, me: u32) -> u32 {
        d.setdefault("owner".into(), me).unwrap()
    }
    let children: Vec<_> = (1..=4).map(|me| multiproc::Process::spawn(claim, (d.clone(), me)).unwrap()).collect();
    let seen: Vec<u32> = children.into_iter().map(|mut c| c.join().unwrap()).collect();
    let owner = d.get("owner").unwrap().unwrap();
    assert!(seen.iter().all(|&s| s == owner), "{seen:?} vs {owner}");
    assert!(manager.pid().is_some());
}
