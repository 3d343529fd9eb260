//! Who a Condition's notification wakes: only waiters that were waiting when it was sent, and
//! never a dead one; under every start method, and after many waiters were killed in `wait`.

mod common;

use std::time::{Duration, Instant};

use common::watchdog;
use multiproc::{Condition, Context, Process, Semaphore, StartMethod};

per_method!(a_notifier_that_waits_next_cannot_take_its_own_notification);

/// Notifies one waiter, then waits itself; returns whether anyone notified *it* (nobody does).
fn notify_then_wait(cond: Condition) -> bool {
    let _g = cond.acquire().unwrap();
    cond.notify(1).unwrap();
    cond.wait_timeout(Duration::from_secs(3)).unwrap()
}

fn a_notifier_that_waits_next_cannot_take_its_own_notification(method: StartMethod) {
    let _w = watchdog(60);
    let cond = Condition::new().unwrap();
    let guard = cond.acquire().unwrap();
    // The child can take the lock only once we wait (which releases it), so we are waiting when
    // it notifies.
    let mut child = Context::new(method).spawn(notify_then_wait, (cond.clone(),)).unwrap();
    let notified = cond.wait_timeout(Duration::from_secs(20)).unwrap();
    drop(guard);
    assert!(notified, "the waiting parent was not woken: the notifier's own wait took the notification");
    assert!(!child.join().unwrap(), "the notifier's own wait was woken by a notification sent before it waited");
}

/// Waits forever (until killed) after saying so under the lock.
fn wait_until_killed(cond: Condition, ready: Semaphore) {
    let _g = cond.acquire().unwrap();
    ready.release().unwrap();
    let _ = cond.wait();
}

#[test]
fn waiters_killed_in_wait_are_not_counted_and_no_wake_up_is_invented() {
    let _w = watchdog(240);
    let cond = Condition::new().unwrap();
    let ready = Semaphore::new(0).unwrap();
    let ctx = Context::new(StartMethod::Fork);
    for round in 0..10 {
        let mut doomed: Vec<Process<()>> =
            (0..10).map(|_| ctx.spawn(wait_until_killed, (cond.clone(), ready.clone())).unwrap()).collect();
        for _ in 0..10 {
            assert!(ready.acquire_timeout(Duration::from_secs(20)), "round {round}: a waiter never started");
        }
        // Each announced itself under the lock, so taking the lock means every one is waiting.
        drop(cond.acquire().unwrap());
        for p in &mut doomed {
            p.kill().unwrap();
            let _ = p.join();
        }
    }
    // A hundred dead waiters: notify_all must find nobody to wake...
    {
        let _g = cond.acquire().unwrap();
        cond.notify_all().unwrap();
    }
    // ...and leave nothing behind for a waiter that comes later.
    let _g = cond.acquire().unwrap();
    let start = Instant::now();
    let notified = cond.wait_timeout(Duration::from_millis(300)).unwrap();
    assert!(!notified, "a waiter that came after notify_all returned 'notified'");
    assert!(start.elapsed() >= Duration::from_millis(300));
    // The condition still works for live processes.
    drop(_g);
    let woken = Semaphore::new(0).unwrap();
    fn wait_once(cond: Condition, ready: Semaphore, woken: Semaphore) -> bool {
        let _g = cond.acquire().unwrap();
        ready.release().unwrap();
        let notified = cond.wait_timeout(Duration::from_secs(20)).unwrap();
        if notified {
            woken.release().unwrap();
        }
        notified
    }
    let mut live = Process::spawn(wait_once, (cond.clone(), ready.clone(), woken.clone())).unwrap();
    assert!(ready.acquire_timeout(Duration::from_secs(20)));
    {
        let _g = cond.acquire().unwrap();
        cond.notify(1).unwrap();
    }
    assert!(live.join().unwrap(), "a live waiter after the kills was not woken");
}

#[test]
fn notify_wakes_the_longest_waiting_first() {
    use std::sync::{Arc, Mutex};
    let _w = watchdog(60);
    let cond = Condition::new().unwrap();
    let registered = Arc::new(Mutex::new(0));
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for i in 0..3 {
        let (c, registered_, order_) = (cond.clone(), registered.clone(), order.clone());
        threads.push(std::thread::spawn(move || {
            let _g = c.acquire().unwrap();
            *registered_.lock().unwrap() += 1;
            assert!(c.wait_timeout(Duration::from_secs(20)).unwrap());
            order_.lock().unwrap().push(i);
        }));
        // Thread i counts itself under the condition's lock and releases it only by waiting, so
        // once we hold the lock and see the count, it is waiting before thread i + 1 starts.
        loop {
            let _g = cond.acquire().unwrap();
            if *registered.lock().unwrap() == i + 1 {
                break;
            }
            drop(_g);
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    for woken in 1..=3 {
        {
            let _g = cond.acquire().unwrap();
            cond.notify(1).unwrap();
        }
        while order.lock().unwrap().len() < woken {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2]);
}
