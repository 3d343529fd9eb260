//! A seed story: see `examples/stories/sync.rs`. Run with `cargo run --example ktv`.

#[path = "stories/sync.rs"]
mod sync;

fn main() {
    sync::ktv_story();
}
