//! A seed story: see `examples/stories/pool.rs`. Run with `cargo run --example executor`.

#[path = "stories/pool.rs"]
mod pool;

fn main() {
    pool::executor_story();
}
