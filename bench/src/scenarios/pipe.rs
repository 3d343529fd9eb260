//! Pipes: round trips between two processes, one-way streams, and the raw socket bound.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use multiproc::connection::{Connection, pipe};
use multiproc::{Context, StartMethod};

use super::{BoxError, Scenario, Target};

const SOCKET_PINGPONG: &str = "baseline: socketpair ping-pong (blocking)";

/// The pipe rows.
pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario::new(SOCKET_PINGPONG, 5_000, socket_pingpong),
        Scenario::new("pipe round trip (2 processes)", 20_000, pipe_round_trip)
            .python("pipe_round_trip", 5_000)
            .target(Target::FasterThanCpython(3.0))
            .target(Target::AtMostTimes(1.0, SOCKET_PINGPONG.into())),
        Scenario::new("pipe one-way, 64-byte messages", 200_000, |n| pipe_one_way_stream(n, 64))
            .python("pipe_one_way_64", 50_000)
            .target(Target::FasterThanCpython(1.0)),
        Scenario::new("pipe one-way, 1 MiB messages", 500, |n| pipe_one_way_stream(n, 1 << 20))
            .python("pipe_one_way_1m", 500)
            .target(Target::FasterThanCpython(1.0)),
    ]
}

fn echo(conn: Connection<u64>, rounds: u64) {
    for _ in 0..rounds {
        let n = conn.recv().expect("recv");
        conn.send(&(n + 1)).expect("send");
    }
}

/// `n` round trips of a `u64` through a duplex pipe.
fn pipe_round_trip(n: u64) -> Result<f64, BoxError> {
    let (ours, theirs) = pipe::<u64>()?;
    let mut child = Context::new(StartMethod::Fork).spawn(echo, (theirs, n + 1))?;
    ours.send(&0)?;
    ours.recv()?;
    let began = Instant::now();
    for i in 0..n {
        ours.send(&i)?;
        if ours.recv()? != i + 1 {
            return Err("wrong echo".into());
        }
    }
    let elapsed = began.elapsed();
    child.join()?;
    Ok(elapsed.as_secs_f64() / n as f64)
}

fn drain(conn: Connection<()>, count: u64) {
    for _ in 0..count {
        conn.recv_bytes().expect("recv");
    }
    conn.send_bytes(b"done").expect("ack");
}

/// `n` messages of `size` bytes one way, then one acknowledgement back.
fn pipe_one_way_stream(n: u64, size: usize) -> Result<f64, BoxError> {
    let (ours, theirs) = pipe::<()>()?;
    let mut child = Context::new(StartMethod::Fork).spawn(drain, (theirs, n))?;
    let message = vec![7u8; size];
    let began = Instant::now();
    for _ in 0..n {
        ours.send_bytes(&message)?;
    }
    ours.recv_bytes()?;
    let elapsed = began.elapsed();
    child.join()?;
    Ok(elapsed.as_secs_f64() / n as f64)
}

/// The raw bound: one byte back and forth over a blocking socket pair, no spinning.
fn socket_pingpong(n: u64) -> Result<f64, BoxError> {
    let (mut ours, mut theirs) = UnixStream::pair()?;
    // SAFETY: the child uses only its socket and `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        drop(ours);
        let mut byte = [0u8; 1];
        for _ in 0..=n {
            if theirs.read_exact(&mut byte).is_err() || theirs.write_all(&byte).is_err() {
                break;
            }
        }
        // SAFETY: ends the child at once.
        unsafe { libc::_exit(0) };
    }
    drop(theirs);
    let mut byte = [0u8; 1];
    ours.write_all(&byte)?;
    ours.read_exact(&mut byte)?;
    let began = Instant::now();
    for _ in 0..n {
        ours.write_all(&byte)?;
        ours.read_exact(&mut byte)?;
    }
    let elapsed = began.elapsed();
    let mut status = 0;
    // SAFETY: reaps the child we forked.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    Ok(elapsed.as_secs_f64() / n as f64)
}
