//! The seeds' ten processes, started together and joined in a loop; then `is_alive` before and
//! after `terminate`. Run with `cargo run --example join_ten`.

#[path = "stories/process.rs"]
mod process;

fn main() {
    process::ten_story();
    process::terminate_story();
}
