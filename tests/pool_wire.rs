//! A pool's two wires for a chunk's items and results (issue 13): plain numbers and structs of
//! them go flat (fixed-width, no codec per item); anything else goes by postcard; and a
//! submission whose items stop being flat part-way over goes on by postcard without losing or
//! garbling an item — on the way out (arguments) and on the way back (results).

mod common;

use multiproc::Pool;
use multiproc::pool::TaskError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A number that serializes as a `u8` when it is small and as a `u64` otherwise, and reads back
/// as a `u64`: postcard writes both the same way for small values (a byte), the flat wire does
/// not (1 byte against 8) — so its flat size depends on the value.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Shifty(u64);

impl Serialize for Shifty {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 < 100 { s.serialize_u8(self.0 as u8) } else { s.serialize_u64(self.0) }
    }
}

impl<'de> Deserialize<'de> for Shifty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Shifty, D::Error> {
        u64::deserialize(d).map(Shifty)
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
struct Point {
    x: f64,
    y: f64,
    id: u32,
}

fn twice(p: Point) -> Point {
    Point { x: 2.0 * p.x, y: 2.0 * p.y, id: p.id }
}

fn same(x: Shifty) -> Shifty {
    x
}

/// Big results first, then small ones: the first result of a chunk goes flat at 8 bytes, and a
/// later one does not fit.
fn big_then_small(i: u64) -> Shifty {
    if i % 10 < 5 { Shifty(1_000 + i) } else { Shifty(i % 10) }
}

fn nothing(_: u64) {}

fn fails_at_37(i: u64) -> u64 {
    assert!(i != 37, "item 37 fails");
    i * 3
}

fn describe(i: u64) -> String {
    format!("item {i}")
}

#[test]
fn structs_of_numbers_go_out_and_back_whole() {
    let _watchdog = common::watchdog(60);
    let pool = Pool::new(2).unwrap();
    let points: Vec<Point> = (0..5_000).map(|i| Point { x: i as f64, y: -(i as f64) / 4.0, id: i }).collect();
    let doubled = pool.map(twice, points.clone()).unwrap();
    assert_eq!(doubled, points.iter().copied().map(twice).collect::<Vec<_>>());
    pool.close();
    pool.join().unwrap();
}

#[test]
fn arguments_that_stop_being_flat_part_way_go_on_by_postcard() {
    let _watchdog = common::watchdog(60);
    let pool = Pool::new(2).unwrap();
    // The first items are 8 bytes flat, then a small one is 1: the chunk so far goes flat, the
    // rest by postcard. Then big ones again (they stay on postcard).
    let items: Vec<Shifty> = [500, 600, 700, 5, 6, 800, 7, 900].into_iter().map(Shifty).collect();
    assert_eq!(pool.map(same, items.clone()).unwrap(), items);
    assert_eq!(pool.map_chunked(same, items.clone(), 3).unwrap(), items);
    // A small first item never goes flat: it does not read back as the u64 it claims to be.
    let items: Vec<Shifty> = [1, 500, 2, 600].into_iter().map(Shifty).collect();
    assert_eq!(pool.map(same, items.clone()).unwrap(), items);
    pool.close();
    pool.join().unwrap();
}

#[test]
fn results_that_stop_being_flat_part_way_are_taken_over_to_postcard() {
    let _watchdog = common::watchdog(60);
    let pool = Pool::new(2).unwrap();
    let expected: Vec<Shifty> = (0..1_000).map(big_then_small).collect();
    assert_eq!(pool.map(big_then_small, 0..1_000).unwrap(), expected);
    assert_eq!(pool.map_chunked(big_then_small, 0..1_000, 7).unwrap(), expected);
    let unordered: u64 = pool.imap_unordered(big_then_small, 0..1_000).unwrap().map(|r| r.unwrap().0).sum();
    assert_eq!(unordered, expected.iter().map(|s| s.0).sum::<u64>());
    pool.close();
    pool.join().unwrap();
}

#[test]
fn empty_results_and_failed_items_keep_their_places() {
    let _watchdog = common::watchdog(60);
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.map(nothing, 0..10_000).unwrap().len(), 10_000);
    // One item of a flat chunk fails; the others' values are where they belong.
    let outcomes: Vec<Result<u64, TaskError>> = pool.imap(fails_at_37, 0..100u64).unwrap().collect();
    for (i, outcome) in outcomes.iter().enumerate() {
        match outcome {
            Ok(v) => assert_eq!(*v, 3 * i as u64),
            Err(TaskError::Panicked { message, .. }) => {
                assert_eq!(i, 37);
                assert!(message.contains("item 37 fails"), "{message}");
            }
            Err(other) => panic!("item {i}: {other}"),
        }
    }
    // The first item of each chunk fails (before the results' flat size is known).
    let outcomes: Vec<Result<u64, TaskError>> = pool.imap(fails_at_37, (37..60u64).chain(37..38)).unwrap().collect();
    assert!(outcomes[0].is_err() && outcomes[23].is_err());
    for (i, outcome) in outcomes.iter().enumerate().skip(1).take(22) {
        assert_eq!(*outcome.as_ref().unwrap(), 3 * (37 + i as u64));
    }
    let chunked = pool.map_chunked(fails_at_37, [37u64, 38, 39, 37, 40], 3);
    assert!(matches!(chunked, Err(TaskError::Panicked { .. })), "{chunked:?}");
    match pool.map(fails_at_37, 0..100u64) {
        Err(TaskError::Panicked { message, .. }) => assert!(message.contains("item 37"), "{message}"),
        other => panic!("expected item 37 to fail the map: {other:?}"),
    }
    // Numbers out, strings back: flat one way, postcard the other.
    let described = pool.map(describe, 0..3u64).unwrap();
    assert_eq!(described, ["item 0", "item 1", "item 2"]);
    pool.close();
    pool.join().unwrap();
}

fn send_back(n: u64, fd: multiproc::Fd) -> u64 {
    use std::io::Write;
    let mut stream = std::os::unix::net::UnixStream::from(fd.into_owned());
    stream.write_all(&n.to_le_bytes()).unwrap();
    n * 2
}

#[test]
fn items_with_handles_fit_the_flat_shape_yet_travel_alone_with_their_descriptors() {
    use std::io::Read;
    let _watchdog = common::watchdog(60);
    let pool = Pool::new(2).unwrap();
    // `(u64, Fd)` writes as 12 flat bytes (a handle is an index), but its descriptor must go
    // along: these items take the careful way.
    let (mut ours, mut items) = (Vec::new(), Vec::new());
    for n in [7u64, 8, 9] {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.push(a);
        items.push((n, multiproc::Fd::from(b)));
    }
    assert_eq!(pool.starmap(send_back, items).unwrap(), [14, 16, 18]);
    for (mut stream, n) in ours.into_iter().zip([7u64, 8, 9]) {
        let mut bytes = [0; 8];
        stream.read_exact(&mut bytes).unwrap();
        assert_eq!(u64::from_le_bytes(bytes), n);
    }
    pool.close();
    pool.join().unwrap();
}

/// A number whose `Serialize` panics at 13 and whose `Deserialize` refuses odd numbers above 90:
/// the failures of the flat lane, each in one item only.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Touchy(u64);

impl Serialize for Touchy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        assert!(self.0 != 13, "13 will not be written");
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Touchy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Touchy, D::Error> {
        let n = u64::deserialize(d)?;
        if n > 90 && n % 2 == 1 {
            return Err(serde::de::Error::custom(format!("{n} is odd and big")));
        }
        Ok(Touchy(n))
    }
}

fn touchy(i: u64) -> Touchy {
    Touchy(i)
}

fn untouched(t: Touchy) -> u64 {
    t.0
}

/// Plain numbers both ways take the workers' flat lane (decode, run and encode in one pass): a
/// result whose encoding panics, and arguments that do not decode, fail their own items and no
/// other, with the reason of the careful path.
#[test]
fn the_flat_lane_fails_only_the_items_that_fail() {
    let _watchdog = common::watchdog(60);
    let pool = Pool::new(2).unwrap();
    let outcomes: Vec<Result<Touchy, TaskError>> = pool.imap(touchy, 0..90u64).unwrap().collect();
    for (i, outcome) in outcomes.iter().enumerate() {
        match outcome {
            Ok(t) => assert_eq!(t.0, i as u64),
            Err(TaskError::Panicked { message, .. }) => {
                assert_eq!(i, 13);
                assert!(message.contains("encoding the task's result") && message.contains("13 will not"), "{message}");
            }
            Err(other) => panic!("item {i}: {other}"),
        }
    }
    // Arguments: sent flat as u64s (Touchy's Serialize writes one), refused on the way in.
    let outcomes: Vec<Result<u64, TaskError>> = pool.imap(untouched, (80..100u64).map(Touchy)).unwrap().collect();
    for (i, outcome) in (80..100u64).zip(&outcomes) {
        match outcome {
            Ok(v) => assert_eq!(*v, i),
            Err(TaskError::Decode(why)) => assert!(i > 90 && i % 2 == 1 && why.contains("odd and big"), "{i}: {why}"),
            Err(other) => panic!("item {i}: {other}"),
        }
    }
    assert_eq!(outcomes.iter().filter(|o| o.is_err()).count(), 5);
    pool.close();
    pool.join().unwrap();
}

fn fail_first_then_nap(i: u64) -> u64 {
    assert!(i != 1, "item 1 fails");
    if i == 90 {
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    i
}

/// `map` decodes chunks as they arrive, yet a failure in an early chunk is told only once every
/// item has finished (Python's `map`), and it is the first failing item's.
#[test]
fn map_tells_its_first_failure_only_when_every_item_is_in() {
    let _watchdog = common::watchdog(60);
    let pool = Pool::new(2).unwrap();
    let began = std::time::Instant::now();
    match pool.map_chunked(fail_first_then_nap, 0..100u64, 10) {
        Err(TaskError::Panicked { message, .. }) => assert!(message.contains("item 1 fails"), "{message}"),
        other => panic!("expected item 1's failure: {other:?}"),
    }
    assert!(began.elapsed() >= std::time::Duration::from_millis(300));
    let began = std::time::Instant::now();
    assert!(pool.map(fail_first_then_nap, 0..100u64).is_err());
    assert!(began.elapsed() >= std::time::Duration::from_millis(300));
    pool.close();
    pool.join().unwrap();
}
