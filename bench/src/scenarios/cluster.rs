//! The pool on a cluster (a `redis-server` on loopback TCP and two node processes of this very
//! program, one worker process each), beside Celery with a Redis broker and result backend and
//! a prefork worker of 2 processes (`bench/python/celery_bench.py`, which starts its own
//! `redis-server` and worker), and the raw bound of one task: an `LPUSH`/`BRPOP` round trip
//! between two processes.
//!
//! The server and the nodes are started once, at the first cluster row, and die with this
//! program. Without `redis-server` the rows fail with a clear message.

use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use multiproc::Process;
use multiproc::cluster::Cluster;

use super::{BoxError, Scenario, Target};

const RAW: &str = "baseline: LPUSH/BRPOP round trip between 2 processes (redis)";

/// The cluster rows.
pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario::new(RAW, 5_000, raw_round_trip),
        Scenario::new("cluster apply_async + get, 2 nodes (vs Celery delay().get())", 2_000, apply_get)
            .python("celery_delay_get", 300)
            .target(Target::FasterThanCpython(10.0))
            .target(Target::AtMostTimes(1.3, RAW.into())),
        Scenario::new("cluster 10k apply_async, then results (vs Celery group)", 10_000, apply_many)
            .python("celery_group", 2_000)
            .target(Target::FasterThanCpython(40.0))
            .target(Target::AtMostSeconds(50e-6)),
        Scenario::new("cluster map 100k items, default chunking (vs Celery 1000-item chunks)", 100_000, map_trivial)
            .python("celery_chunked", 100_000)
            .target(Target::FasterThanCpython(10.0))
            .target(Target::AtMostSeconds(1.0 / 600_000.0)),
        Scenario::new("cluster map, CPU-bound items (2 nodes)", 200, map_cpu)
            .target(Target::AtMostTimes(1.0 / 1.8, super::pool::SERIAL.into())),
    ]
}

/// The server and the nodes, for the whole run.
struct Running {
    url: String,
    _server: Child,
    _nodes: Vec<Child>,
}

static RUNNING: OnceLock<Result<Running, String>> = OnceLock::new();

/// A child that dies with this program.
fn dies_with_us(command: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe, and the closure touches nothing else.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        })
    }
}

fn start() -> Result<Running, String> {
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let dir = std::env::temp_dir().join(format!("multiproc-bench-redis-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let server = dies_with_us(
        Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no", "--dir"])
            .arg(&dir)
            .stdout(Stdio::null()),
    )
    .spawn()
    .map_err(|e| format!("redis-server: {e} (scripts/test installs it)"))?;
    let url = format!("redis://127.0.0.1:{port}");
    let began = Instant::now();
    while Cluster::connect(&url, "bench").is_err() {
        if began.elapsed() > Duration::from_secs(20) {
            return Err("redis-server did not come up".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let nodes = (0..2)
        .map(|i| {
            dies_with_us(
                Command::new(&exe)
                    .env(multiproc::cluster::NODE_VAR, &url)
                    .env(multiproc::cluster::NAMESPACE_VAR, "bench")
                    .env(multiproc::cluster::NODE_PROCESSES_VAR, "1")
                    .env(multiproc::cluster::NODE_NAME_VAR, format!("bench-{i}"))
                    .stdout(Stdio::null()),
            )
            .spawn()
            .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Running { url, _server: server, _nodes: nodes })
}

fn url() -> Result<String, BoxError> {
    RUNNING.get_or_init(start).as_ref().map(|r| r.url.clone()).map_err(|e| e.clone().into())
}

/// A pool on the bench cluster, warmed up: both nodes have run a task.
fn pool() -> Result<multiproc::Pool, BoxError> {
    let cluster = Cluster::connect(&url()?, "bench")?;
    let pool = cluster.pool().build()?;
    let began = Instant::now();
    while pool.size() < 2 {
        if began.elapsed() > Duration::from_secs(30) {
            return Err("the bench nodes did not register".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    pool.map_chunked(plus_one, 0..8, 1)?;
    Ok(pool)
}

fn plus_one(x: u64) -> u64 {
    x + 1
}

fn echo(url: String) {
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    loop {
        let (_, v): (String, Vec<u8>) = redis::cmd("BRPOP").arg("bench:req").arg(0).query(&mut c).unwrap();
        if v.is_empty() {
            return;
        }
        redis::cmd("LPUSH").arg("bench:resp").arg(v).query::<()>(&mut c).unwrap();
    }
}

/// One request pushed, echoed by another process, its answer popped: the least one task on the
/// cluster can cost.
fn raw_round_trip(n: u64) -> Result<f64, BoxError> {
    let url = url()?;
    let mut peer = Process::spawn(echo, (url.clone(),))?;
    let mut c = redis::Client::open(url)?.get_connection()?;
    let began = Instant::now();
    for i in 0..n {
        redis::cmd("LPUSH").arg("bench:req").arg(i.to_le_bytes().as_slice()).query::<()>(&mut c)?;
        let _: (String, Vec<u8>) = redis::cmd("BRPOP").arg("bench:resp").arg(0).query(&mut c)?;
    }
    let elapsed = began.elapsed();
    redis::cmd("LPUSH").arg("bench:req").arg(Vec::<u8>::new()).query::<()>(&mut c)?;
    peer.join()?;
    Ok(elapsed.as_secs_f64() / n as f64)
}

fn apply_get(n: u64) -> Result<f64, BoxError> {
    let pool = pool()?;
    let began = Instant::now();
    for i in 0..n {
        if pool.apply_async(plus_one, (i,))?.get()? != i + 1 {
            return Err("wrong apply result".into());
        }
    }
    Ok(began.elapsed().as_secs_f64() / n as f64)
}

fn apply_many(n: u64) -> Result<f64, BoxError> {
    let pool = pool()?;
    let began = Instant::now();
    let results = (0..n).map(|i| pool.apply_async(plus_one, (i,))).collect::<Result<Vec<_>, _>>()?;
    for (i, r) in results.iter().enumerate() {
        if r.get()? != i as u64 + 1 {
            return Err("wrong apply_async result".into());
        }
    }
    Ok(began.elapsed().as_secs_f64() / n as f64)
}

fn map_trivial(n: u64) -> Result<f64, BoxError> {
    let pool = pool()?;
    let began = Instant::now();
    let out = pool.map(plus_one, 0..n)?;
    let elapsed = began.elapsed();
    if out.last() != Some(&n) {
        return Err("wrong map result".into());
    }
    Ok(elapsed.as_secs_f64() / n as f64)
}

fn map_cpu(n: u64) -> Result<f64, BoxError> {
    let pool = pool()?;
    let began = Instant::now();
    let out = pool.map(super::pool::cpu_bound, 0..n)?;
    let elapsed = began.elapsed();
    std::hint::black_box(out);
    Ok(elapsed.as_secs_f64() / n as f64)
}
