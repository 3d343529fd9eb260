//! Every child starts in its parent's current directory, whatever the start method — also a
//! fork-server child whose server was launched from another directory. (Its own test binary:
//! it changes the directory of the whole test process.)

mod common;

use common::watchdog;
use multiproc::{Context, StartMethod};

fn cwd() -> String {
    std::env::current_dir().unwrap().display().to_string()
}

#[test]
fn children_start_in_the_parents_current_directory() {
    let _w = watchdog(60);
    // Launch the fork server from the first directory.
    Context::new(StartMethod::ForkServer).spawn(cwd, ()).unwrap().join().unwrap();
    let dir = std::env::temp_dir().join(format!("multiproc-cwd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::env::set_current_dir(&dir).unwrap();
    let expected = std::env::current_dir().unwrap().display().to_string();
    for method in StartMethod::ALL {
        let mut p = Context::new(method).spawn(cwd, ()).unwrap();
        assert_eq!(p.join().unwrap(), expected, "under {method}");
    }
    std::fs::remove_dir(&dir).unwrap();
}
