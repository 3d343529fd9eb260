//! A seed story: see `examples/stories/shared.rs`. Run with `cargo run --example remote_manager`.
//! It serves a manager on localhost and starts itself again, as a separate program, with
//! `--remote-worker ADDRESS` to work from the shared queue.

#[path = "stories/shared.rs"]
mod shared;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--remote-worker") {
        shared::remote_worker(&args[2]);
        return;
    }
    shared::remote_manager_story(&std::env::current_exe().unwrap(), &["--remote-worker"]);
}
