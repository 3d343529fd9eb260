//! The pool stories of the seeds: a crawler whose pages are fetched in workers and parsed in the
//! parent's callback, a CPU-bound `map` against serial, and the executor with done callbacks.
// Each example binary includes this file and runs only some of its stories.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use multiproc::pool::{ReturnWhen, as_completed, wait};
use multiproc::{Pool, ProcessPoolExecutor, cpu_count};

/// A tiny local web site: `/page/N` answers a page with a title, for `pages` requests.
pub(crate) fn serve_site(pages: usize) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
    let address = format!("http://{}", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        for stream in listener.incoming().take(pages) {
            let Ok(mut stream) = stream else { continue };
            // The request line names the page; read the headers through to the blank line.
            let mut reader = BufReader::new(&stream);
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let body = format!(
                "<html><head><title>Page {}</title></head><body>{}</body></html>",
                path.trim_start_matches("/page/"),
                "lorem ipsum ".repeat(50)
            );
            let _ = write!(stream, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        }
    });
    (address, server)
}

/// Runs in a worker: fetches a page (plain HTTP/1.0 over a socket) and returns its HTML.
pub(crate) fn fetch(url: String) -> String {
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut stream = TcpStream::connect(host).expect("connect to the local site");
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default()
}

/// Runs in the parent (the callback): pulls the title out of a page.
pub(crate) fn parse_title(html: &str) -> String {
    html.split_once("<title>").and_then(|(_, rest)| rest.split_once("</title>")).map_or("?", |(t, _)| t).to_string()
}

/// The crawler: a pool of five fetches pages with `apply_async`; each page is parsed in the
/// callback, which runs in the main process and appends to one result file.
pub fn crawler_story() {
    println!("== The crawler: fetch in workers, parse in the parent's callback ==");
    let pages = 12;
    let (site, server) = serve_site(pages);
    let out_path = std::env::temp_dir().join(format!("multiproc-crawl-{}.txt", std::process::id()));
    let out = Arc::new(Mutex::new(std::fs::File::create(&out_path).unwrap()));
    let pool = Pool::new(5).unwrap();
    let results: Vec<_> = (0..pages)
        .map(|n| {
            let out = out.clone();
            pool.apply_async_with(
                fetch,
                (format!("{site}/page/{n}"),),
                move |html: &String| {
                    let title = parse_title(html);
                    writeln!(out.lock().unwrap(), "{title}: {} bytes (parsed in {})", html.len(), std::process::id())
                        .unwrap();
                },
                |err| eprintln!("a fetch failed: {err}"),
            )
            .unwrap()
        })
        .collect();
    pool.close();
    pool.join().unwrap();
    assert!(results.iter().all(|r| r.successful() == Some(true)));
    server.join().unwrap();
    let written = std::fs::read_to_string(&out_path).unwrap();
    assert_eq!(written.lines().count(), pages);
    println!("{pages} pages fetched by workers, parsed by the main process {}:", std::process::id());
    for line in written.lines().take(3) {
        println!("  {line}");
    }
    println!("  ... (all in {})\n", out_path.display());
    std::fs::remove_file(out_path).unwrap();
}

/// A deliberately CPU-bound function: counts primes below `limit`.
pub(crate) fn count_primes(limit: u64) -> usize {
    (2..limit).filter(|&n| (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)).count()
}

/// `map` of a CPU-bound function over 40 inputs, against the same work done serially.
pub fn cpu_map_story() {
    println!("== map of a CPU-bound function: the speed-up ==");
    let inputs: Vec<u64> = (0..40).map(|i| 60_000 + i * 1_000).collect();
    let began = Instant::now();
    let serial: Vec<usize> = inputs.iter().map(|&n| count_primes(n)).collect();
    let serial_time = began.elapsed();
    let pool = Pool::new(cpu_count()).unwrap();
    pool.apply(count_primes, (10,)).unwrap(); // the workers are up
    let began = Instant::now();
    // Items differ in cost, so hand them out one at a time to keep both workers busy to the end.
    let parallel = pool.map_chunked(count_primes, inputs.clone(), 1).unwrap();
    let parallel_time = began.elapsed();
    assert_eq!(serial, parallel);
    println!(
        "serial {serial_time:.2?}, pool of {} {parallel_time:.2?}: {:.2}× faster",
        cpu_count(),
        serial_time.as_secs_f64() / parallel_time.as_secs_f64()
    );
    // apply blocks for one result; apply_async + get collects several; close + join ends it.
    println!("apply: {} primes below 1000", pool.apply(count_primes, (1000,)).unwrap());
    let pending: Vec<_> = [100, 200, 300].iter().map(|&n| pool.apply_async(count_primes, (n,)).unwrap()).collect();
    let counts: Vec<usize> = pending.iter().map(|r| r.get().unwrap()).collect();
    println!("apply_async + get: {counts:?}");
    pool.close();
    pool.join().unwrap();
    println!();
}

fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(10 * (5 - x % 5)));
    x * x
}

/// The executor: `submit` + `add_done_callback`, then `as_completed` and `wait`.
pub fn executor_story() {
    println!("== ProcessPoolExecutor: futures, done callbacks, as_completed ==");
    let executor = ProcessPoolExecutor::new(2).unwrap();
    let done = Arc::new(Mutex::new(Vec::new()));
    let futures: Vec<_> = (0..6)
        .map(|x| {
            let future = executor.submit(slow_square, (x,)).unwrap();
            let done = done.clone();
            future.add_done_callback(move |f| done.lock().unwrap().push(f.result().unwrap()));
            future
        })
        .collect();
    let order: Vec<u64> = as_completed(&futures, Some(Duration::from_secs(60)))
        .map(|i| futures[i.expect("in time")].result().unwrap())
        .collect();
    println!("results as they completed: {order:?}");
    let (finished, pending) = wait(&futures, ReturnWhen::AllCompleted, None);
    assert!(pending.is_empty() && finished.len() == 6);
    let mut called = done.lock().unwrap().clone();
    called.sort();
    assert_eq!(called, [0, 1, 4, 9, 16, 25]);
    println!("every done callback ran in the main process: {called:?}");
    executor.shutdown(true, false);
    println!();
}
