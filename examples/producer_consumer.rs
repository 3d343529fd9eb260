//! A seed story: see `examples/stories/queue.rs`. Run with `cargo run --example producer_consumer`.

#[path = "stories/queue.rs"]
mod queue;

fn main() {
    queue::one_to_one_story();
    queue::many_to_many_story();
    queue::joinable_story();
}
