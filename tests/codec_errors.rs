//! Encode and decode errors keep their cause: the value's type, the item's index where there is
//! one, and the message the `Serialize`/`Deserialize` gave.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use common::watchdog;
use multiproc::pool::TaskError;
use multiproc::{ErrorKind, JoinError, Pool, Process, Queue, pipe};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Encodes as its number; refuses to encode 13, and refuses to decode odd numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Picky(u32);

impl Serialize for Picky {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 13 {
            return Err(serde::ser::Error::custom("thirteen is unlucky"));
        }
        s.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for Picky {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Picky, D::Error> {
        let n = u32::deserialize(d)?;
        if n % 2 == 1 {
            return Err(serde::de::Error::custom(format_args!("odd numbers are refused ({n})")));
        }
        Ok(Picky(n))
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Order {
    id: u32,
    picks: Vec<Picky>,
}

fn bad_path() -> PathBuf {
    PathBuf::from(OsStr::from_bytes(b"/tmp/not-utf8-\xff"))
}

fn same(x: Picky) -> Picky {
    x
}

fn echo_order(order: Order) -> u32 {
    order.id
}

fn path_len(p: PathBuf) -> usize {
    p.as_os_str().len()
}

fn odd_result() -> Picky {
    Picky(3)
}

#[test]
fn a_process_argument_that_does_not_encode_says_why() {
    let _w = watchdog(60);
    let order = Order { id: 1, picks: vec![Picky(2), Picky(13)] };
    let err = Process::spawn(echo_order, (order,)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Encode);
    let message = err.to_string();
    assert!(message.contains("Order") && message.contains("thirteen is unlucky"), "{message}");
    assert!(message.contains(".picks[1]"), "{message}");
}

#[test]
fn a_process_argument_that_does_not_decode_in_the_child_says_why() {
    let _w = watchdog(60);
    // Encodes fine (3 is not 13), but the child refuses odd numbers.
    let mut child = Process::spawn(echo_order, (Order { id: 1, picks: vec![Picky(3)] },)).unwrap();
    let message = match child.join() {
        Err(err) => err.to_string(),
        Ok(v) => panic!("decoded: {v}"),
    };
    assert!(message.contains("odd numbers are refused (3)"), "{message}");
    assert!(message.contains("Order") && message.contains(".picks[0]"), "{message}");
}

#[test]
fn a_process_result_that_does_not_decode_in_the_parent_says_why() {
    let _w = watchdog(60);
    let mut child = Process::spawn(odd_result, ()).unwrap();
    match child.join() {
        Err(JoinError::Failed(err)) => {
            assert_eq!(err.kind(), ErrorKind::Decode);
            let message = err.to_string();
            assert!(message.contains("Picky") && message.contains("odd numbers are refused (3)"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn map_names_the_item_whose_argument_does_not_encode() {
    let _w = watchdog(60);
    let pool = Pool::new(2).unwrap();
    let paths = vec![PathBuf::from("/a"), PathBuf::from("/bb"), bad_path(), PathBuf::from("/d")];
    match pool.map(path_len, paths) {
        Err(TaskError::ArgumentEncode(message)) => {
            assert!(message.contains("item 2"), "{message}");
            assert!(message.contains("PathBuf") && message.contains("UTF-8"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // The pool is unharmed.
    assert_eq!(pool.map(path_len, [PathBuf::from("/a")]).unwrap(), [2]);
}

#[test]
fn map_names_the_item_whose_argument_does_not_decode_in_the_worker() {
    let _w = watchdog(60);
    let pool = Pool::new(2).unwrap();
    let items: Vec<Picky> = (0..40).map(|i| Picky(if i == 27 { 5 } else { 2 * i })).collect();
    // Every item is its own batch, and each batch many: the index must be the map's, not the batch's.
    let results: Vec<_> = pool.imap_chunked(same, items, 4).unwrap().collect();
    for (i, r) in results.iter().enumerate() {
        if i == 27 {
            let Err(TaskError::Decode(message)) = r else { panic!("{r:?}") };
            assert!(message.contains("item 27"), "{message}");
            assert!(message.contains("Picky") && message.contains("odd numbers are refused (5)"), "{message}");
        } else {
            assert_eq!(*r, Ok(Picky(2 * i as u32)));
        }
    }
}

#[test]
fn a_pool_result_that_does_not_encode_or_decode_says_why() {
    let _w = watchdog(60);
    fn unlucky(n: u32) -> Picky {
        Picky(n)
    }
    let pool = Pool::new(1).unwrap();
    let results: Vec<_> = pool.imap(unlucky, [2, 13, 7]).unwrap().collect();
    assert_eq!(results[0], Ok(Picky(2)));
    let Err(TaskError::ResultEncode(message)) = &results[1] else { panic!("{:?}", results[1]) };
    assert!(message.contains("item 1") && message.contains("thirteen is unlucky"), "{message}");
    let Err(TaskError::Decode(message)) = &results[2] else { panic!("{:?}", results[2]) };
    assert!(message.contains("item 2") && message.contains("odd numbers are refused (7)"), "{message}");
}

#[test]
fn queues_and_pipes_say_why() {
    let _w = watchdog(60);
    let queue: Queue<Picky> = Queue::new().unwrap();
    let message = queue.put(Picky(13)).unwrap_err().to_string();
    assert!(message.contains("Picky") && message.contains("thirteen is unlucky"), "{message}");
    queue.put(Picky(9)).unwrap();
    let message = queue.get().unwrap_err().to_string();
    assert!(message.contains("Picky") && message.contains("odd numbers are refused (9)"), "{message}");
    // Nothing is lost: the next item comes through.
    queue.put(Picky(4)).unwrap();
    assert_eq!(queue.get().unwrap(), Picky(4));

    let (a, b) = pipe::<Picky>().unwrap();
    let message = a.send(&Picky(13)).unwrap_err().to_string();
    assert!(message.contains("thirteen is unlucky"), "{message}");
    a.send(&Picky(11)).unwrap();
    let message = b.recv().unwrap_err().to_string();
    assert!(message.contains("odd numbers are refused (11)"), "{message}");
    a.send(&Picky(6)).unwrap();
    assert_eq!(b.recv().unwrap(), Picky(6));
}

/// A type that leaves a field out when it is `None`: postcard would make the decoder read the
/// next field in its place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Sparse {
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    count: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Labels {
    name: String,
    #[serde(flatten)]
    rest: std::collections::BTreeMap<String, u32>,
}

fn count_of(s: Sparse) -> u32 {
    s.count
}

fn ran_anyway(ran: Queue<u8>, _s: Sparse) {
    ran.put(1).unwrap();
}

#[test]
fn what_postcard_cannot_carry_is_refused_before_the_other_side_works_and_named() {
    let _w = watchdog(60);
    // skip_serializing_if: refused at the start, naming the field and the attribute; the child
    // never runs.
    let ran = Queue::new().unwrap();
    let sparse = Sparse { note: None, count: 3 };
    let err = Process::spawn(ran_anyway, (ran.clone(), sparse.clone())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Encode);
    let message = err.to_string();
    assert!(message.contains("Sparse") && message.contains("`note`"), "{message}");
    assert!(message.contains("skip_serializing_if") && message.contains("SelfDescribing"), "{message}");
    assert!(ran.get_timeout(std::time::Duration::from_millis(100)).is_err(), "the child ran");
    // The same over a pipe; a value that keeps every field still goes.
    let (a, b) = pipe::<Sparse>().unwrap();
    let full = Sparse { note: Some("n".into()), count: 2 };
    a.send(&full).unwrap();
    assert_eq!(b.recv().unwrap(), full);
    let message = a.send(&sparse).unwrap_err().to_string();
    assert!(message.contains("skip_serializing_if"), "{message}");

    // On a queue's path nothing is checked: the getter's error names the attribute.
    let q = Queue::new().unwrap();
    q.put(sparse.clone()).unwrap();
    let message = q.get().unwrap_err().to_string();
    assert!(message.contains("Sparse") && message.contains("skip_serializing_if"), "{message}");

    // flatten: a map of unknown length, refused when sent.
    let (a, _b) = pipe::<Labels>().unwrap();
    let labels = Labels { name: "x".into(), rest: [("a".to_string(), 1)].into() };
    let message = a.send(&labels).unwrap_err().to_string();
    assert!(message.contains("Labels") && message.contains("flatten"), "{message}");

    // deserialize_any (serde_json::Value): named when received; the connection goes on.
    let (a, b) = pipe::<serde_json::Value>().unwrap();
    a.send(&serde_json::json!({ "status": 200 })).unwrap();
    let message = b.recv().unwrap_err().to_string();
    assert!(message.contains("deserialize_any") && message.contains("SelfDescribing"), "{message}");

    // A task's argument of such a type, in a pool: refused in the caller.
    let pool = Pool::new(1).unwrap();
    let err = pool.apply(count_of, (sparse,)).unwrap_err();
    assert!(err.to_string().contains("skip_serializing_if"), "{err}");
    pool.close();
    pool.join().unwrap();
}

#[cfg(feature = "self-describing")]
mod self_describing {
    use multiproc::codec::SelfDescribing;
    use multiproc::{Pool, Process, Queue, pipe};

    use super::{Labels, Sparse};

    fn echo(s: SelfDescribing<Sparse>) -> SelfDescribing<(Sparse, serde_json::Value)> {
        SelfDescribing((s.0, serde_json::json!({ "seen": true })))
    }

    fn count_of(s: SelfDescribing<Sparse>) -> u32 {
        s.count
    }

    #[test]
    fn self_describing_values_carry_what_postcard_cannot() {
        let _w = super::common::watchdog(60);
        let sparse = Sparse { note: None, count: 3 };
        let (back, meta) = Process::spawn(echo, (SelfDescribing(sparse.clone()),)).unwrap().join().unwrap().0;
        assert_eq!((back, meta["seen"].as_bool()), (sparse.clone(), Some(true)));

        let (a, b) = pipe::<SelfDescribing<Labels>>().unwrap();
        let labels = Labels { name: "x".into(), rest: [("a".to_string(), 1)].into() };
        a.send(&SelfDescribing(labels.clone())).unwrap();
        assert_eq!(b.recv().unwrap().into_inner(), labels);

        let q = Queue::new().unwrap();
        q.put(SelfDescribing(serde_json::json!([1, "two", null]))).unwrap();
        assert_eq!(q.get().unwrap().0, serde_json::json!([1, "two", null]));

        let pool = Pool::new(2).unwrap();
        let items: Vec<_> = (0..100).map(|i| SelfDescribing(Sparse { note: None, count: i })).collect();
        assert_eq!(pool.map(count_of, items).unwrap(), (0..100).collect::<Vec<u32>>());
        pool.close();
        pool.join().unwrap();
    }
}
