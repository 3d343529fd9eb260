//! A seed story: see `examples/stories/pool.rs`. Run with `cargo run --example cpu_map`.

#[path = "stories/pool.rs"]
mod pool;

fn main() {
    pool::cpu_map_story();
}
