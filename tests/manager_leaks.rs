//! Starting, using and dropping managers, over and over, from two threads, leaves no descriptor
//! behind. Alone in its own test binary, so that no other test opens descriptors meanwhile.

mod common;

use std::sync::mpsc;

use common::watchdog;
use multiproc::manager::DictProxy;
use multiproc::{Manager, StartMethod};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn a_thousand_manager_cycles_leak_no_descriptor() {
    let _w = watchdog(400);
    // A long-lived second thread that uses every manager too (it keeps a connection per manager).
    let (to_helper, jobs) = mpsc::channel::<(DictProxy<u32, u32>, mpsc::Sender<u32>)>();
    let helper = std::thread::spawn(move || {
        for (d, done) in jobs {
            d.insert(1, 2).unwrap();
            done.send(d.get(&1).unwrap().unwrap()).unwrap();
        }
    });
    let cycle = |i: u32| {
        let manager = Manager::builder().start_method(StartMethod::Fork).start().unwrap();
        let d = manager.dict::<u32, u32>().unwrap();
        d.insert(0, i).unwrap();
        assert_eq!(d.get(&0).unwrap(), Some(i));
        let (done, answer) = mpsc::channel();
        to_helper.send((d, done)).unwrap();
        assert_eq!(answer.recv().unwrap(), 2);
        drop(manager);
    };
    for i in 0..20 {
        cycle(i);
    }
    let before = open_fds();
    for i in 0..1000 {
        cycle(i);
    }
    // The helper closes its connections to dropped managers on its next call: make one more.
    cycle(0);
    let after = open_fds();
    drop(to_helper);
    helper.join().unwrap();
    assert!(after <= before, "{} descriptors more after 1,000 manager cycles", after - before);
}
