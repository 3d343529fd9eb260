//! Many short processes in a row leave no descriptors, zombies or memory behind in the parent.
//!
//! Alone in its own test binary, so that no other test opens descriptors meanwhile.

mod common;

use common::watchdog;
use multiproc::{Context, StartMethod};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn echo(v: Vec<u8>) -> Vec<u8> {
    v
}

#[test]
fn a_hundred_short_processes_leave_nothing_behind() {
    let _w = watchdog(240);
    for method in StartMethod::ALL {
        let ctx = Context::new(method);
        // Warm up: the fork server, the process's own pidfd and allocator pools are made once.
        for _ in 0..10 {
            ctx.spawn(echo, (vec![1u8; 1000],)).unwrap().join().unwrap();
        }
        let (fds, rss) = (open_fds(), rss_kib());
        let mut pids = Vec::new();
        for _ in 0..100 {
            let mut p = ctx.spawn(echo, (vec![1u8; 1000],)).unwrap();
            assert_eq!(p.join().unwrap().len(), 1000);
            pids.push(p.pid());
        }
        assert_eq!(open_fds(), fds, "{method}: descriptors leaked");
        let grown = rss_kib().saturating_sub(rss);
        // Generous: allocator pools and page-cache noise move RSS by a few MiB; a leak of even
        // 100 KiB per process (10 MiB over 100) still shows.
        assert!(grown < 8192, "{method}: resident memory grew by {grown} KiB over 100 processes");
        let zombies: Vec<u32> = pids.into_iter().filter(|&pid| common::exists(pid)).collect();
        assert!(zombies.is_empty(), "{method}: not reaped: {zombies:?}");
        assert!(multiproc::active_children().is_empty());
    }
}
