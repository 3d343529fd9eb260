//! A pool build that fails part-way (out of descriptors) leaves nothing behind: no worker, no
//! descriptor. Alone in its own test binary: it lowers the descriptor limit of the process.

mod common;

use common::watchdog;
use multiproc::{ErrorKind, Pool, StartMethod};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn set_fd_limit(soft: u64) -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read and write the struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        let old = limit.rlim_cur;
        limit.rlim_cur = soft;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        old
    }
}

#[test]
fn pool_builds_that_run_out_of_descriptors_at_every_step_leak_nothing() {
    let _w = watchdog(240);
    for method in StartMethod::ALL {
        // Warm up what is made once (the fork server, the process's own pidfd).
        Pool::builder().processes(1).start_method(method).build().unwrap().terminate();
        let _ = multiproc::active_children();
        let before = open_fds();
        let mut failures = 0;
        // Every limit from "almost nothing" up, so that the build fails at every step of it.
        for room in 0..64 {
            let old = set_fd_limit((before + room) as u64);
            let built = Pool::builder().processes(8).start_method(method).build();
            set_fd_limit(old);
            match built {
                Ok(pool) => pool.terminate(),
                Err(err) => {
                    assert!(matches!(err.kind(), ErrorKind::Os | ErrorKind::ForkServer), "{err}");
                    failures += 1;
                }
            }
        }
        assert!(failures > 0, "{method}: no build ran out of descriptors");
        assert_eq!(open_fds(), before, "{method}: descriptors leaked over {failures} failed builds");
        assert!(multiproc::active_children().is_empty(), "{method}: workers of a failed build still run");
    }
}
