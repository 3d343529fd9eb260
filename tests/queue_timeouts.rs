//! Items bigger than the ring under `try_put` and `put_timeout`: the deadline holds, the item is
//! handed back and the queue is left whole.

mod common;

use std::time::{Duration, Instant};

use common::watchdog;
use multiproc::queue::{PutTimeoutError, TryPutError};
use multiproc::{JoinableQueue, Process, Queue};

const BIG: usize = 8 << 20;

#[test]
fn try_put_of_an_item_bigger_than_the_ring_is_full_at_once_when_nobody_consumes() {
    let _w = watchdog(60);
    let q = Queue::<Vec<u8>>::new().unwrap();
    match q.try_put(vec![7u8; BIG]) {
        Err(TryPutError::Full(item)) => assert_eq!(item.len(), BIG),
        other => panic!("expected Full, got {:?}", other.map_err(|e| e.to_string())),
    }
    // The queue is whole: a small item goes through, and nothing of the big one is left.
    q.put(vec![1, 2, 3]).unwrap();
    assert_eq!(q.get_timeout(Duration::from_secs(5)).unwrap(), vec![1, 2, 3]);
    assert!(q.try_get().is_err());

    let jq = JoinableQueue::<Vec<u8>>::new().unwrap();
    assert!(matches!(jq.try_put(vec![0u8; BIG]), Err(TryPutError::Full(_))));
    jq.join_timeout(Duration::from_secs(5)).expect("a refused put was left counted as unfinished");
}

#[test]
fn put_timeout_of_a_big_item_returns_after_its_timeout_with_the_item() {
    let _w = watchdog(60);
    let q = Queue::<Vec<u8>>::new().unwrap();
    let start = Instant::now();
    match q.put_timeout(vec![9u8; BIG], Duration::from_millis(300)) {
        Err(PutTimeoutError::Timeout(item)) => assert_eq!(item.len(), BIG),
        other => panic!("expected Timeout, got {:?}", other.map_err(|e| e.to_string())),
    }
    assert!(start.elapsed() >= Duration::from_millis(300));
    let jq = JoinableQueue::<Vec<u8>>::new().unwrap();
    assert!(matches!(jq.put_timeout(vec![0u8; BIG], Duration::from_millis(50)), Err(PutTimeoutError::Timeout(_))));
    jq.join_timeout(Duration::from_secs(5)).unwrap();
}

fn take_one(q: Queue<Vec<u8>>) -> usize {
    q.get().unwrap().len()
}

#[test]
fn after_a_timed_out_big_put_a_consumer_gets_the_next_item_and_big_puts_still_pass() {
    let _w = watchdog(60);
    let q = Queue::<Vec<u8>>::new().unwrap();
    assert!(q.put_timeout(vec![9u8; BIG], Duration::from_millis(50)).is_err());
    q.put(vec![5u8; 1000]).unwrap();
    let mut consumer = Process::spawn(take_one, (q.clone(),)).unwrap();
    assert_eq!(consumer.join().unwrap(), 1000);
    // And with a consumer taking chunks, a big put_timeout goes through whole.
    let mut consumer = Process::spawn(take_one, (q.clone(),)).unwrap();
    q.put_timeout(vec![3u8; BIG], Duration::from_secs(30)).unwrap();
    assert_eq!(consumer.join().unwrap(), BIG);
}
