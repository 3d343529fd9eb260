//! The seeds' class-style processes: a serde struct with a `run` method, started with arguments.
//! Run with `cargo run --example class_style`.

#[path = "stories/process.rs"]
mod process;

fn main() {
    process::class_story();
}
