//! A seed story: see `examples/stories/shared.rs`. Run with `cargo run --example shared_counter`.

#[path = "stories/shared.rs"]
mod shared;

fn main() {
    shared::counter_story();
    shared::array_story();
    shared::manager_counter_story();
}
