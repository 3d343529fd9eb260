//! The scenario registry: what is measured, how often, and what it is held to.
//!
//! A [`Scenario`] is one row of the results table. It has
//! - a `name`, unique, shown in the table and matched by `--filter`;
//! - a Rust closure that performs `iterations` operations and returns seconds per operation
//!   (use [`per_op`] to time a loop);
//! - optionally the name of the same scenario in `bench/python/bench.py` (CPython's
//!   multiprocessing), run with its own iteration count because CPython is often far slower;
//! - [`Target`]s, as data: a minimum speed-up over CPython, or a maximum cost relative to another
//!   row (a baseline, or another scenario).
//!
//! # Adding a scenario
//! 1. Write a module here (say `queue.rs`) with a `pub fn scenarios() -> Vec<Scenario>` that builds
//!    its rows with [`Scenario::new`], [`Scenario::python`] and [`Scenario::target`].
//! 2. Add `mod queue;` below and append `queue::scenarios()` in [`all`].
//! 3. If it has a CPython counterpart, add a function to `bench/python/bench.py` and register it in
//!    its `SCENARIOS` dict under the name given to [`Scenario::python`].
//!
//! Choose iteration counts so that one repetition of a side takes roughly 0.05–1 s; `--quick`
//! divides them by [`QUICK_DIVISOR`]. Every Rust closure is first called, untimed, with a tenth of
//! its iterations to warm up (start a fork server, fault pages in, wake the CPUs); the Python
//! script warms up itself (one untimed operation per invocation).

use std::error::Error;
use std::time::Instant;

mod baseline;
mod cluster;
mod manager;
mod pipe;
mod pool;
mod process;
mod queue;
mod shm;
mod sync;

pub use baseline::EXIT_AT_ONCE;

/// What a scenario's Rust side may fail with.
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// A scenario's Rust side: performs `iterations` operations, returns seconds per operation.
pub type RustFn = Box<dyn Fn(u64) -> Result<f64, BoxError>>;

/// `--quick` divides every iteration count by this (keeping at least one).
pub const QUICK_DIVISOR: u64 = 8;

/// A goal a scenario's median is checked against after the run.
#[derive(Clone, Debug)]
pub enum Target {
    /// CPython's median divided by ours must be at least this.
    FasterThanCpython(f64),
    /// Our median divided by the named row's (Rust) median must be at most this.
    AtMostTimes(f64, String),
    /// Our median must be at most this many seconds per operation (a throughput target).
    AtMostSeconds(f64),
}

impl Target {
    /// A short description for the table, e.g. `≥10× CPython` or `≤2× fork`.
    pub fn describe(&self) -> String {
        match self {
            Target::FasterThanCpython(factor) => format!("≥{factor}× CPython"),
            Target::AtMostTimes(factor, row) => format!("≤{factor:.3}× {row}"),
            Target::AtMostSeconds(seconds) => format!("≤{:.3} µs/op ({:.0}/s)", seconds * 1e6, 1.0 / seconds),
        }
    }
}

/// One benchmark row.
pub struct Scenario {
    /// Unique name; shown in the table, matched by `--filter`, referenced by [`Target::AtMostTimes`].
    pub name: String,
    /// Measures `iterations` operations and returns seconds per operation.
    pub rust: RustFn,
    /// Iterations per repetition for the Rust side (before `--quick`).
    pub rust_iterations: u64,
    /// The scenario's name in `bench/python/bench.py` and its iterations per repetition, if any.
    pub python: Option<(&'static str, u64)>,
    /// What the medians are checked against.
    pub targets: Vec<Target>,
}

impl Scenario {
    /// A Rust-only row running `rust` with `iterations` operations per repetition.
    pub fn new(
        name: impl Into<String>,
        iterations: u64,
        rust: impl Fn(u64) -> Result<f64, BoxError> + 'static,
    ) -> Scenario {
        Scenario { name: name.into(), rust: Box::new(rust), rust_iterations: iterations, python: None, targets: vec![] }
    }

    /// Adds the CPython counterpart: scenario `name` of `bench.py`, `iterations` per repetition.
    pub fn python(mut self, name: &'static str, iterations: u64) -> Scenario {
        self.python = Some((name, iterations));
        self
    }

    /// Adds a target.
    pub fn target(mut self, target: Target) -> Scenario {
        self.targets.push(target);
        self
    }
}

/// Runs `op` `iterations` times and returns the mean seconds per call.
pub fn per_op(iterations: u64, mut op: impl FnMut() -> Result<(), BoxError>) -> Result<f64, BoxError> {
    let iterations = iterations.max(1);
    let start = Instant::now();
    for _ in 0..iterations {
        op()?;
    }
    Ok(start.elapsed().as_secs_f64() / iterations as f64)
}

/// Every scenario, in table order (baselines first).
pub fn all() -> Vec<Scenario> {
    let mut all = baseline::scenarios();
    all.extend(process::scenarios());
    all.extend(sync::scenarios());
    all.extend(pipe::scenarios());
    all.extend(queue::scenarios());
    all.extend(pool::scenarios());
    all.extend(shm::scenarios());
    all.extend(manager::scenarios());
    all.extend(cluster::scenarios());
    all
}

/// A fresh anonymous shared mapping of `len` zeroed bytes (inherited by forked children); the
/// caller unmaps it.
pub fn shared_mapping(len: usize) -> Result<*mut libc::c_void, BoxError> {
    // SAFETY: mmap makes a new mapping or fails; checked below.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(base)
}
