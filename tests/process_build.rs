//! A child that is not the same build as its parent refuses to run the task.

mod common;

use common::watchdog;
use multiproc::{Context, ErrorKind, JoinError, StartMethod};

fn touch(path: String) {
    std::fs::write(path, b"the task ran").unwrap();
}

#[test]
fn a_child_of_another_build_refuses_to_run() {
    let _w = watchdog(120);
    let dir = std::env::temp_dir().join(format!("multiproc-build-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = common::other_build(&dir);
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let marker = dir.join(format!("ran-{method}"));
        let mut p = Context::new(method)
            .process()
            .executable(&exe)
            .spawn(touch, (marker.to_string_lossy().into_owned(),))
            .unwrap();
        match p.join() {
            Err(JoinError::Failed(err)) => {
                assert_eq!(err.kind(), ErrorKind::BuildMismatch, "{method}: {err}");
                assert!(err.to_string().contains("refusing to run the task"), "{err}");
            }
            other => panic!("{method}: expected a build mismatch, got {other:?}"),
        }
        assert!(!marker.exists(), "{method}: the task ran in another build");
        assert!(!p.exit_code().unwrap().success());
    }
    // The same program under its own name runs the task.
    let marker = dir.join("ran-same");
    let same = dir.join("same-build");
    std::fs::copy(std::env::current_exe().unwrap(), &same).unwrap();
    let mut p = Context::new(StartMethod::Spawn)
        .process()
        .executable(&same)
        .spawn(touch, (marker.to_string_lossy().into_owned(),))
        .unwrap();
    p.join().unwrap();
    assert!(marker.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
