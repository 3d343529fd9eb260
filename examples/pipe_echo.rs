//! A seed story: see `examples/stories/queue.rs`. Run with `cargo run --example pipe_echo`.

#[path = "stories/queue.rs"]
mod queue;

fn main() {
    queue::pipe_echo_story();
}
