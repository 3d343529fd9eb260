//! A seed story: see `examples/stories/pool.rs`. Run with `cargo run --example crawler`.

#[path = "stories/pool.rs"]
mod pool;

fn main() {
    pool::crawler_story();
}
