//! The kill loop: producers and consumers SIGKILLed at random instants — in the middle of puts
//! and gets of small and chunked items — leave the queue consistent for everyone else: nothing
//! torn, nothing duplicated, at most the item in flight in each killed consumer lost.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::watchdog;
use multiproc::{Process, Queue};

type Item = (u32, u64, Vec<u8>, u64);

fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

fn payload(producer: u32, seq: u64) -> Vec<u8> {
    // Mostly small items, one in eight larger than half the 32 KiB ring (streamed in chunks).
    let len = if seq % 8 == 7 { 20_000 + (seq as usize * 131) % 40_000 } else { 16 + (seq as usize * 37) % 300 };
    (0..len).map(|i| (i as u64 ^ seq ^ u64::from(producer)) as u8).collect()
}

fn producer(q: Queue<Option<Item>>, id: u32) {
    for seq in 0.. {
        let data = payload(id, seq);
        let sum = checksum(&data);
        q.put(Some((id, seq, data, sum))).unwrap();
    }
}

/// Checks each item until it meets the `None` sentinel.
fn consumer(q: Queue<Option<Item>>, results: Queue<(u32, u64, bool)>) {
    while let Some((producer, seq, data, sum)) = q.get().unwrap() {
        let intact = checksum(&data) == sum && data == payload(producer, seq);
        results.put((producer, seq, intact)).unwrap();
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

#[test]
fn random_kills_never_tear_duplicate_or_block_the_queue() {
    let _w = watchdog(180);
    let q: Queue<Option<Item>> = Queue::with_capacity(0, 32 << 10).unwrap();
    let results = Queue::new().unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()));
    let mut next_producer = 0u32;
    let mut start_producer = |q: &Queue<Option<Item>>| {
        next_producer += 1;
        (Process::spawn(producer, (q.clone(), next_producer)).unwrap(), true)
    };
    let start_consumer = |q: &Queue<Option<Item>>, r: &Queue<(u32, u64, bool)>| {
        (Process::spawn(consumer, (q.clone(), r.clone())).unwrap(), false)
    };
    let mut workers =
        vec![start_producer(&q), start_producer(&q), start_consumer(&q, &results), start_consumer(&q, &results)];
    let mut consumer_kills = 0;
    let mut kills = 0;
    let mut received: HashMap<(u32, u64), usize> = HashMap::new();
    let mut torn = 0;
    let mut drain = |results: &Queue<(u32, u64, bool)>| {
        while let Ok((p, seq, intact)) = results.try_get() {
            *received.entry((p, seq)).or_default() += 1;
            if !intact {
                torn += 1;
            }
        }
    };
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10 + rng.next(60)));
        let victim = rng.next(workers.len() as u64) as usize;
        let (mut process, is_producer) = workers.swap_remove(victim);
        process.kill().unwrap();
        let _ = process.join();
        kills += 1;
        if is_producer {
            workers.push(start_producer(&q));
        } else {
            consumer_kills += 1;
            workers.push(start_consumer(&q, &results));
        }
        drain(&results);
    }
    // Stop the producers; let the consumers empty the queue; then stop them too.
    let (producers, consumers): (Vec<_>, Vec<_>) = workers.into_iter().partition(|(_, is_producer)| *is_producer);
    for (mut p, _) in producers {
        p.kill().unwrap();
        let _ = p.join();
    }
    // One sentinel per consumer, behind everything still queued: each consumer drains its share
    // and exits, so joining them proves the queue kept moving (the watchdog catches a stall).
    for _ in &consumers {
        q.put(None).unwrap();
    }
    for (mut c, _) in consumers {
        c.join().unwrap();
    }
    drain(&results);

    assert_eq!(torn, 0, "torn items were delivered");
    let duplicates: Vec<_> = received.iter().filter(|&(_, &n)| n > 1).map(|(k, _)| *k).collect();
    assert!(duplicates.is_empty(), "duplicated items: {duplicates:?}");
    // Per producer, what arrived is its sequence with at most a few holes: one per consumer
    // killed with an item in flight (the tail of each killed producer never made it out).
    let mut per_producer: HashMap<u32, Vec<u64>> = HashMap::new();
    for &(p, seq) in received.keys() {
        per_producer.entry(p).or_default().push(seq);
    }
    let holes: u64 = per_producer
        .values_mut()
        .map(|seqs| {
            seqs.sort();
            seqs.last().map_or(0, |&last| last + 1 - seqs.len() as u64)
        })
        .sum();
    assert!(holes <= consumer_kills, "{holes} items lost but only {consumer_kills} consumers killed");
    assert!(!received.is_empty(), "no item was delivered");
    // And the queue still works.
    q.put(Some((0, 0, vec![1, 2, 3], checksum(&[1, 2, 3])))).unwrap();
    assert_eq!(q.get_timeout(Duration::from_secs(20)).unwrap().map(|item| item.2), Some(vec![1, 2, 3]));
    eprintln!(
        "kill loop: {kills} kills ({consumer_kills} consumers), {} items delivered, {holes} lost",
        received.len()
    );
}
