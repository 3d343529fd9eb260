//! The message-passing stories of the seeds: the buffet (producers and consumers in their four
//! versions), the counter with a full and an empty queue, and an echo over a Pipe.
// Each example binary includes this file and runs only some of its stories.
#![allow(dead_code)]

use std::time::Duration;

use multiproc::queue::{TryGetError, TryPutError};
use multiproc::{JoinableQueue, Process, Queue, SimpleQueue, pipe};

/// A short pause standing in for cooking or eating (the seeds sleep 1–2 s; we keep the tour short).
fn pause(seed: u32) {
    std::thread::sleep(Duration::from_millis(5 + u64::from(seed % 4) * 5));
}

/// A cook puts `dishes` plates of `food` on the counter, numbered `first..`.
fn cook(name: String, food: String, first: u32, dishes: u32, q: Queue<Option<(u32, String)>>) {
    for i in first..first + dishes {
        pause(i);
        println!("  [{name}] made {food} #{i}");
        q.put(Some((i, food.clone()))).unwrap();
    }
}

/// An eater takes plates until the sentinel `None`; returns what it ate, in the order eaten.
fn eat(name: String, q: Queue<Option<(u32, String)>>) -> Vec<(u32, String)> {
    let mut eaten = Vec::new();
    while let Some((number, food)) = q.get().unwrap() {
        pause(number * 7);
        println!("  [{name}] ate {food} #{number}");
        eaten.push((number, food));
    }
    eaten
}

/// One cook, one eater; the cook's last act is the sentinel. (The seeds' first version had no
/// sentinel, and its eater waited forever on an empty counter.)
pub fn one_to_one_story() {
    println!("== The buffet, one to one: a cook, an eater and a sentinel ==");
    let q = Queue::new().unwrap();
    let mut xxq = Process::spawn(cook, ("xxq".to_string(), "Noodles".to_string(), 0, 10, q.clone())).unwrap();
    let mut darker = Process::spawn(eat, ("darker".to_string(), q.clone())).unwrap();
    xxq.join().unwrap();
    q.put(None).unwrap(); // the cook is done: tell the eater
    let eaten = darker.join().unwrap();
    // One producer: its items come out in the order it put them.
    assert_eq!(eaten.iter().map(|(n, _)| *n).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
    println!("darker ate all {} plates, in order\n", eaten.len());
}

/// Two cooks and three eaters: once both cooks are done, one sentinel per eater. Every plate is
/// eaten exactly once, and the plates' numbers put the results back in order.
pub fn many_to_many_story() {
    println!("== The buffet, many to many: two cooks, three eaters, a sentinel each ==");
    let q = Queue::new().unwrap();
    let mut cooks = vec![
        Process::spawn(cook, ("xxq".to_string(), "Noodles".to_string(), 0, 10, q.clone())).unwrap(),
        Process::spawn(cook, ("zsy".to_string(), "Pizza".to_string(), 10, 10, q.clone())).unwrap(),
    ];
    let mut eaters: Vec<_> = ["darker", "ben", "Alen"]
        .into_iter()
        .map(|name| Process::spawn(eat, (name.to_string(), q.clone())).unwrap())
        .collect();
    for c in &mut cooks {
        c.join().unwrap();
    }
    for _ in &eaters {
        q.put(None).unwrap(); // one per eater, behind every plate
    }
    let mut in_order: Vec<Option<String>> = vec![None; 20];
    for (eater, name) in eaters.iter_mut().zip(["darker", "ben", "Alen"]) {
        let eaten = eater.join().unwrap();
        println!("{name} ate {} plates", eaten.len());
        for (number, food) in eaten {
            assert!(in_order[number as usize].replace(food).is_none(), "plate #{number} eaten twice");
        }
    }
    let in_order: Vec<String> = in_order.into_iter().map(|food| food.expect("every plate eaten")).collect();
    println!("all 20 plates eaten once; in order: {} ... {}\n", in_order[0], in_order[19]);
}

fn serve(name: String, food: String, dishes: u32, q: JoinableQueue<String>) {
    for i in 0..dishes {
        pause(i);
        q.put(format!("{food} #{i}")).unwrap();
    }
    println!("  [{name}] cooked {dishes} {food}");
}

/// A daemon eater: takes plates forever, marking each one done; ends with the main process.
fn eat_forever(name: String, q: JoinableQueue<String>, log: SimpleQueue<String>) {
    loop {
        let dish = q.get().unwrap();
        pause(dish.len() as u32);
        log.put(format!("{name} ate {dish}")).unwrap();
        q.task_done().unwrap(); // this plate is dealt with
    }
}

/// JoinableQueue: no sentinels. The main process waits until every plate is marked done; the
/// eaters are daemons, so they end with it.
pub fn joinable_story() {
    println!("== The buffet with a JoinableQueue: daemon eaters, q.join() ==");
    let (q, log) = (JoinableQueue::new().unwrap(), SimpleQueue::new().unwrap());
    let mut cooks = vec![
        Process::spawn(serve, ("Cook1".to_string(), "Beef".to_string(), 10, q.clone())).unwrap(),
        Process::spawn(serve, ("Cook2".to_string(), "Cake".to_string(), 10, q.clone())).unwrap(),
    ];
    let eaters: Vec<Process<()>> = ["Alan", "Ben", "Cindy"]
        .into_iter()
        .map(|name| {
            Process::builder()
                .name(name)
                .daemon(true)
                .spawn(eat_forever, (name.to_string(), q.clone(), log.clone()))
                .unwrap()
        })
        .collect();
    for c in &mut cooks {
        c.join().unwrap();
    }
    q.join().unwrap(); // every plate put has been marked done
    let mut eaten = 0;
    while !log.is_empty() {
        println!("  {}", log.get().unwrap());
        eaten += 1;
    }
    assert_eq!(eaten, 20);
    println!("all {eaten} plates done; the {} daemon eaters end with the main process\n", eaters.len());
    // At the end of main this happens by itself; the tour goes on, so end them here.
    for mut eater in eaters {
        eater.terminate().unwrap();
        let _ = eater.join(); // reports the SIGTERM that ended it
    }
}

/// A queue of three: `try_put` on a full one and `try_get` on an empty one hand back an error
/// (Python's `queue.Full` and `queue.Empty`) instead of blocking.
pub fn full_and_empty_story() {
    println!("== A queue of three: full and empty ==");
    let q = Queue::bounded(3).unwrap();
    for plate in 1..=3 {
        q.try_put(plate).unwrap();
    }
    println!("three plates in: len {}, full {}", q.len(), q.is_full());
    match q.try_put(4) {
        Err(TryPutError::Full(plate)) => println!("plate {plate} handed back: the queue is full"),
        other => panic!("expected a full queue, got {other:?}"),
    }
    while let Ok(plate) = q.try_get() {
        println!("took plate {plate}");
    }
    assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
    println!("the queue is empty: try_get says so\n");
}

fn shout_back(conn: multiproc::Connection<String>) {
    while let Ok(line) = conn.recv() {
        conn.send(&line.to_uppercase()).unwrap();
    }
    // The parent closed its end: recv reports the disconnection after the last message.
}

/// A Pipe between parent and child: each line sent comes back shouted.
pub fn pipe_echo_story() {
    println!("== Echo over a Pipe ==");
    let (ours, theirs) = pipe::<String>().unwrap();
    let mut child = Process::spawn(shout_back, (theirs,)).unwrap();
    for line in ["hello", "how are you", "goodbye"] {
        ours.send(&line.to_string()).unwrap();
        let echo = ours.recv().unwrap();
        println!("sent {line:?}, heard {echo:?}");
        assert_eq!(echo, line.to_uppercase());
    }
    drop(ours);
    child.join().unwrap();
    println!();
}
