//! The synchronization stories of the seeds: the ticket office (Lock), the KTV room (Semaphore)
//! and the traffic light (Event).
// Each example binary includes this file and runs only some of its stories.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use multiproc::{Event, Lock, Process, Semaphore};
use serde::{Deserialize, Serialize};

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("multiproc-{name}-{}", std::process::id()))
}

#[derive(Serialize, Deserialize)]
struct Tickets {
    count: i64,
}

fn read_tickets(path: &str) -> Tickets {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A buyer: looks up the count, thinks (the network is slow), buys if there is one left.
fn buy(path: String, lock: Option<Lock>, buyer: u32) -> bool {
    let _guard = lock.as_ref().map(|l| l.acquire().unwrap());
    let tickets = read_tickets(&path);
    std::thread::sleep(Duration::from_millis(20 + u64::from(buyer % 3) * 5));
    if tickets.count > 0 {
        let left = Tickets { count: tickets.count - 1 };
        std::fs::write(&path, serde_json::to_string(&left).unwrap()).unwrap();
        true
    } else {
        false
    }
}

fn sell(tickets: i64, buyers: u32, lock: Option<Lock>) -> (usize, i64) {
    let path = scratch("tickets");
    std::fs::write(&path, serde_json::to_string(&Tickets { count: tickets }).unwrap()).unwrap();
    let path_text = path.to_string_lossy().into_owned();
    let mut crowd: Vec<Process<bool>> =
        (0..buyers).map(|b| Process::spawn(buy, (path_text.clone(), lock.clone(), b)).unwrap()).collect();
    let sold = crowd.iter_mut().filter_map(|p| p.join().ok()).filter(|&bought| bought).count();
    let left = read_tickets(&path_text).count;
    std::fs::remove_file(path).unwrap();
    (sold, left)
}

/// The ticket office: ten buyers race for three tickets in a JSON file.
pub fn ticket_office_story() {
    println!("== The ticket office: ten buyers, three tickets, one Lock ==");
    let (sold, left) = sell(3, 10, None);
    println!(
        "    without a lock: {sold} tickets sold, the file says {left} left{}",
        if sold > 3 {
            " -- OVERSOLD: every buyer read the count before anyone wrote it"
        } else {
            " (the race did not bite this time)"
        }
    );
    let (sold, left) = sell(3, 10, Some(Lock::new().unwrap()));
    println!(
        "    with a lock:    {sold} tickets sold, the file says {left} left{}",
        if sold == 3 && left == 0 { " -- exact" } else { " -- WRONG" }
    );
}

fn sing(room: Semaphore, log: String, guest: u32) {
    let note = |what: &str| {
        let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        // One short write to an O_APPEND file lands whole and in order.
        file.write_all(format!("{what} {guest}\n").as_bytes()).unwrap();
    };
    room.acquire();
    note("enter");
    std::thread::sleep(Duration::from_millis(30 + u64::from(guest % 4) * 10));
    note("leave");
    room.release().unwrap();
}

/// The KTV room: twenty guests, room for four at a time.
pub fn ktv_story() {
    println!("== The KTV room: Semaphore(4), twenty guests ==");
    let log = scratch("ktv");
    std::fs::write(&log, "").unwrap();
    let room = Semaphore::new(4).unwrap();
    let log_text = log.to_string_lossy().into_owned();
    let started = Instant::now();
    let mut guests: Vec<Process> =
        (0..20).map(|g| Process::spawn(sing, (room.clone(), log_text.clone(), g)).unwrap()).collect();
    for guest in &mut guests {
        guest.join().unwrap();
    }
    let (mut inside, mut most, mut entries) = (0i32, 0i32, 0);
    for line in std::fs::read_to_string(&log).unwrap().lines() {
        if line.starts_with("enter") {
            inside += 1;
            entries += 1;
        } else {
            inside -= 1;
        }
        most = most.max(inside);
    }
    std::fs::remove_file(log).unwrap();
    println!(
        "    {entries} guests sang in {:?}; the most in the room at once, from the log: {most} (the limit is 4)",
        started.elapsed()
    );
}

fn traffic_light(light: Event, cycles: u32, period_ms: u64) {
    for _ in 0..cycles {
        println!("    [light] green");
        light.set();
        std::thread::sleep(Duration::from_millis(period_ms));
        light.clear();
        println!("    [light] red");
        std::thread::sleep(Duration::from_millis(period_ms));
    }
    light.set();
}

fn drive(light: Event, car: u32, arrive_ms: u64) -> bool {
    std::thread::sleep(Duration::from_millis(arrive_ms));
    if !light.is_set() {
        println!("    [car {car}] red light: waiting");
        light.wait();
    }
    let green = light.is_set();
    println!("    [car {car}] passes on green");
    green
}

/// The traffic light: an Event that turns green and red; cars wait for green.
pub fn traffic_light_story() {
    println!("== The traffic light: cars wait on an Event ==");
    let light = Event::new().unwrap();
    let mut controller = Process::builder().daemon(true).spawn(traffic_light, (light.clone(), 3, 250)).unwrap();
    let mut cars: Vec<Process<bool>> =
        (0..6).map(|c| Process::spawn(drive, (light.clone(), c, 60 + u64::from(c) * 170)).unwrap()).collect();
    let on_green = cars.iter_mut().filter_map(|c| c.join().ok()).filter(|&g| g).count();
    controller.join().unwrap();
    println!("    {on_green} of 6 cars passed, every one on green");
}
