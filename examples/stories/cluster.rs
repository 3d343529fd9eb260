//! More than one machine: the crawler and a CPU-bound `map` on a pool whose workers are nodes
//! — this same program, started again with `MULTIPROC_NODE` — and a node killed in the middle
//! of a map, whose tasks finish on the other (feature `cluster`; needs `redis-server`).

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use multiproc::cluster::{Cluster, NAMESPACE_VAR, NODE_NAME_VAR, NODE_PROCESSES_VAR, NODE_VAR};

use super::pool::{count_primes, fetch, parse_title, serve_site};

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

/// A node: this program again, with the variables that make it one before `main` runs.
fn node(url: &str, name: &str) -> Child {
    dies_with_us(
        Command::new(std::env::current_exe().unwrap())
            .env(NODE_VAR, url)
            .env(NAMESPACE_VAR, "tour")
            .env(NODE_NAME_VAR, name)
            .env(NODE_PROCESSES_VAR, "1")
            .stdout(Stdio::null()),
    )
    .spawn()
    .expect("start a node")
}

/// Runs on a node: sleeps a little (a slow task) and says which node's agent ran it.
fn slow_step(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::os::unix::process::parent_id()
}

pub fn cluster_story() {
    println!("== More than one machine: a pool whose workers are nodes ==");
    let dir = std::env::temp_dir().join(format!("multiproc-tour-redis-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("redis.sock");
    let server = dies_with_us(
        Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args(["--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir"])
            .arg(&dir)
            .stdout(Stdio::null()),
    )
    .spawn();
    let Ok(mut server) = server else {
        println!(
            "(skipped: redis-server is not installed; `apt-get install redis-server`, or run scripts/test once)\n"
        );
        return;
    };
    let url = format!("redis+unix://{}", socket.display());
    let began = Instant::now();
    let cluster = loop {
        match Cluster::connect(&url, "tour") {
            Ok(cluster) => break cluster,
            Err(_) if began.elapsed() < Duration::from_secs(20) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("redis-server did not come up: {e}"),
        }
    };
    let mut nodes = vec![node(&url, "node-a"), node(&url, "node-b")];
    let pool = cluster.pool().lease(Duration::from_secs(1)).build().unwrap();
    while pool.size() < 2 {
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("a redis-server on {}, two nodes (pids {} and {})", socket.display(), nodes[0].id(), nodes[1].id());

    // The CPU-bound map, against the same work done here serially.
    let inputs: Vec<u64> = (0..20).map(|i| 60_000 + i * 1_000).collect();
    let began = Instant::now();
    let serial: Vec<usize> = inputs.iter().map(|&n| count_primes(n)).collect();
    let serial_time = began.elapsed();
    let began = Instant::now();
    let mapped = pool.map(count_primes, inputs).unwrap();
    let cluster_time = began.elapsed();
    assert_eq!(mapped, serial);
    println!(
        "map of count_primes over 20 inputs: serial {serial_time:.2?}, on the two nodes {cluster_time:.2?} ({:.2}×)",
        serial_time.as_secs_f64() / cluster_time.as_secs_f64()
    );

    // The crawler: pages fetched on the nodes, parsed in this process's callback.
    let pages = 8;
    let (site, site_server) = serve_site(pages);
    let titles = Arc::new(Mutex::new(Vec::new()));
    let results: Vec<_> = (0..pages)
        .map(|n| {
            let titles = titles.clone();
            pool.apply_async_with(
                fetch,
                (format!("{site}/page/{n}"),),
                move |html: &String| titles.lock().unwrap().push(parse_title(html)),
                |err| eprintln!("a fetch failed: {err}"),
            )
            .unwrap()
        })
        .collect();
    results.iter().for_each(|r| r.wait());
    site_server.join().unwrap();
    println!("crawler: {} pages fetched on the nodes, titles parsed here: {:?} …", pages, &titles.lock().unwrap()[..3]);

    // A node killed in the middle of a map: its tasks finish on the other after the lease.
    let steps = pool.map_async(slow_step, vec![200u64; 10]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let killed = nodes[0].id();
    nodes[0].kill().unwrap();
    nodes[0].wait().unwrap();
    let by = steps.get().unwrap();
    let survivor = nodes[1].id();
    println!(
        "node {killed} was killed mid-map: all 10 steps finished, {} of them on node {survivor} (its lease ran out, and \
         the survivor took its tasks)",
        by.iter().filter(|&&pid| pid == survivor).count()
    );
    assert!(by.iter().filter(|&&pid| pid == survivor).count() > by.iter().filter(|&&pid| pid == killed).count());

    pool.close();
    pool.join().unwrap();
    for mut n in nodes {
        let _ = n.kill();
        let _ = n.wait();
    }
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    println!();
}
