//! A seed story: see `examples/stories/queue.rs`. Run with `cargo run --example full_and_empty`.

#[path = "stories/queue.rs"]
mod queue;

fn main() {
    queue::full_and_empty_story();
}
