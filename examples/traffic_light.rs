//! A seed story: see `examples/stories/sync.rs`. Run with `cargo run --example traffic_light`.

#[path = "stories/sync.rs"]
mod sync;

fn main() {
    sync::traffic_light_story();
}
