//! Panics in children come back with their message and location: in the task itself, and in a
//! `Serialize`/`Deserialize` of its arguments or result (a pool worker survives those too).

mod common;

use common::watchdog;
use multiproc::pool::TaskError;
use multiproc::{JoinError, Pool, Process};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Decodes by panicking when its value is 13.
#[derive(Serialize)]
struct Touchy(u32);

impl<'de> Deserialize<'de> for Touchy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Touchy, D::Error> {
        let n = u32::deserialize(d)?;
        assert!(n != 13, "thirteen will not decode");
        Ok(Touchy(n))
    }
}

/// Encodes by panicking when its value is 7.
#[derive(Deserialize, Debug, PartialEq)]
struct Shy(u32);

impl Serialize for Shy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        assert!(self.0 != 7, "seven will not encode");
        self.0.serialize(s)
    }
}

fn id(t: Touchy) -> u32 {
    t.0
}

fn shy(n: u32) -> Shy {
    Shy(n)
}

fn boom() {
    panic!("boom on purpose");
}

#[test]
fn a_panicking_decode_or_encode_fails_its_item_alone_with_the_message() {
    let _w = watchdog(60);
    let pool = Pool::new(1).unwrap();
    let results: Vec<_> = pool.imap(id, (10..16).map(Touchy)).unwrap().collect();
    let pid = pool.stats()[0].pid;
    for (i, result) in results.into_iter().enumerate() {
        match (i + 10, result) {
            (13, Err(TaskError::Panicked { message, .. })) => {
                assert!(message.contains("decoding") && message.contains("thirteen will not decode"), "{message}")
            }
            (n, Ok(v)) => assert_eq!(v, n as u32),
            (n, other) => panic!("item {n}: {other:?}"),
        }
    }
    let results: Vec<_> = pool.imap(shy, 5..9).unwrap().collect();
    match &results[2] {
        Err(TaskError::Panicked { message, location, .. }) => {
            assert!(message.contains("encoding") && message.contains("seven will not encode"), "{message}");
            assert!(location.as_deref().is_some_and(|l| l.contains("panics.rs")), "{location:?}");
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    assert_eq!(results[3], Ok(Shy(8)));
    assert_eq!(pool.stats()[0].pid, pid, "the worker died instead of reporting the panic");
    assert_eq!(pool.stats()[0].restarts, 0);
}

#[test]
fn panics_carry_their_location() {
    let _w = watchdog(60);
    match Process::spawn(boom, ()).unwrap().join() {
        Err(JoinError::Panicked { message, location }) => {
            assert_eq!(message, "boom on purpose");
            let location = location.expect("a location");
            assert!(location.starts_with("tests/panics.rs:"), "{location}");
            let err = JoinError::Panicked { message, location: Some(location) };
            assert!(err.to_string().contains(" at tests/panics.rs:"), "{err}");
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    let pool = Pool::new(1).unwrap();
    match pool.apply(boom, ()) {
        Err(TaskError::Panicked { location: Some(location), .. }) => {
            assert!(location.starts_with("tests/panics.rs:"), "{location}")
        }
        other => panic!("expected a panic with a location, got {other:?}"),
    }
    match Process::spawn(id, (Touchy(13),)).unwrap().join() {
        Err(JoinError::Panicked { message, .. }) => {
            assert!(message.contains("decoding the task's arguments"), "{message}")
        }
        other => panic!("expected a panic, got {other:?}"),
    }
}
