//! The process stories of the seeds: daemons, class-style processes, joining many, terminating.
// Each example binary includes this file and runs only some of its stories.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use multiproc::{Context, Process, Run, StartMethod};
use serde::{Deserialize, Serialize};

fn say(who: &str, what: &str) {
    println!("    [{who:>9} pid {:>6}] {what}", std::process::id());
}

fn consort_life(years_ms: u64) {
    say("consort", "enters the palace (a daemon of the emperor)");
    std::thread::sleep(Duration::from_millis(years_ms));
    say("consort", "dies of illness, many years later");
}

fn chronicler(ms: u64) -> String {
    say("chronicler", "writes the history (not a daemon)");
    std::thread::sleep(Duration::from_millis(ms));
    say("chronicler", "finishes the history");
    "history written".to_owned()
}

/// The emperor's reign: his "main code". A daemon consort and an ordinary chronicler.
fn reign(reign_ms: u64) -> (u32, String) {
    say("emperor", "ascends the throne");
    let consort = Process::builder().name("consort").daemon(true).spawn(consort_life, (30_000,)).unwrap();
    let mut chronicler = Process::builder().name("chronicler").spawn(chronicler, (reign_ms * 2,)).unwrap();
    std::thread::sleep(Duration::from_millis(reign_ms));
    say("emperor", "dies: the story is over for him");
    // Python's rule, kept at the end of every process: daemons are terminated, others joined.
    // The chronicler is joined here explicitly only to hand its result back.
    let history = chronicler.join().unwrap();
    (consort.pid(), history)
}

/// The emperor and the consort: a daemon dies with the main code, a non-daemon runs to its end.
pub fn daemon_story() {
    println!("== The emperor and the consort: daemon processes ==");
    let mut emperor = Process::builder().name("emperor").spawn(reign, (600,)).unwrap();
    let (consort, history) = emperor.join().unwrap();
    let consort_alive = std::path::Path::new(&format!("/proc/{consort}")).exists();
    println!("    the chronicler reported: {history}");
    println!(
        "    the consort (pid {consort}) is {}",
        if consort_alive { "STILL ALIVE (wrong)" } else { "gone: terminated when the emperor's reign ended" }
    );
}

/// A process written in the class style: fields are the constructor's arguments, `run` the work.
#[derive(Serialize, Deserialize)]
struct TicketServer {
    name: String,
    port: u16,
}

impl Run for TicketServer {
    type Output = String;
    fn run(self) -> String {
        say(&self.name, &format!("serving on port {}", self.port));
        format!("{} served on {} in pid {}", self.name, self.port, std::process::id())
    }
}

/// Class-style processes with arguments (Python's subclass of `Process` with `run`).
pub fn class_story() {
    println!("== Class-style processes ==");
    let mut servers: Vec<Process<String>> = [("server-1", 8001), ("server-2", 8002)]
        .into_iter()
        .map(|(name, port)| Process::start(TicketServer { name: name.into(), port }).unwrap())
        .collect();
    for server in &mut servers {
        println!("    joined: {}", server.join().unwrap());
    }
}

fn buy(i: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(100 + 20 * (i % 3)));
    i * i
}

/// Ten processes started together and joined in a loop: they run side by side.
pub fn ten_story() {
    println!("== Ten processes, joined in a loop ==");
    let started = Instant::now();
    let mut children: Vec<Process<u64>> = (0..10).map(|i| Process::spawn(buy, (i,)).unwrap()).collect();
    let results: Vec<u64> = children.iter_mut().map(|p| p.join().unwrap()).collect();
    println!("    results {results:?}");
    println!("    ten tasks of 100-140 ms each took {:?} in all: they ran in parallel", started.elapsed());
}

fn work_forever() {
    loop {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `is_alive` before and after `terminate`, under each start method.
pub fn terminate_story() {
    println!("== is_alive before and after terminate ==");
    for method in [StartMethod::Fork, StartMethod::Spawn, StartMethod::ForkServer] {
        let mut p = Context::new(method).spawn(work_forever, ()).unwrap();
        let before = p.is_alive();
        p.terminate().unwrap();
        // terminate() only sends the signal; like Python, the child may still look alive here.
        let _ = p.join();
        println!(
            "    {method:>10}: alive before terminate: {before}; after join: {}; exit status: {}",
            p.is_alive(),
            p.exit_code().unwrap()
        );
    }
}
