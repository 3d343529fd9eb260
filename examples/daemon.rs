//! The seeds' daemon story: a daemon child dies when the main code ends, while a non-daemon child
//! runs to its end. Run with `cargo run --example daemon`.

#[path = "stories/process.rs"]
mod process;

fn main() {
    process::daemon_story();
}
