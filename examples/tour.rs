//! The tour: every story of the seeds that multiproc implements, run end to end.
//!
//! `cargo run --release --features cluster --example tour` (without the feature, the cluster
//! story is left out).

#[cfg(feature = "cluster")]
#[path = "stories/cluster.rs"]
mod cluster;
#[path = "stories/pool.rs"]
mod pool;
#[path = "stories/process.rs"]
mod process;
#[path = "stories/queue.rs"]
mod queue;
#[path = "stories/shared.rs"]
mod shared;
#[path = "stories/sync.rs"]
mod sync;

fn main() {
    // The remote-manager story starts this program again as its second program.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--remote-worker") {
        shared::remote_worker(&args[2]);
        return;
    }
    println!(
        "multiproc tour: default start method {}, {} usable CPUs\n",
        multiproc::get_start_method(),
        multiproc::cpu_count()
    );
    process::daemon_story();
    process::class_story();
    process::ten_story();
    process::terminate_story();
    sync::ticket_office_story();
    sync::ktv_story();
    sync::traffic_light_story();
    queue::one_to_one_story();
    queue::many_to_many_story();
    queue::joinable_story();
    queue::full_and_empty_story();
    queue::pipe_echo_story();
    shared::counter_story();
    shared::array_story();
    shared::manager_counter_story();
    shared::remote_manager_story(&std::env::current_exe().unwrap(), &["--remote-worker"]);
    pool::crawler_story();
    pool::cpu_map_story();
    pool::executor_story();
    #[cfg(feature = "cluster")]
    cluster::cluster_story();
    #[cfg(not(feature = "cluster"))]
    println!("== More than one machine == (left out: run with --features cluster)\n");
    println!("\nthe tour is over");
}
