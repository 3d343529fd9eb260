//! A seed story: see `examples/stories/sync.rs`. Run with `cargo run --example ticket_office`.

#[path = "stories/sync.rs"]
mod sync;

fn main() {
    sync::ticket_office_story();
}
