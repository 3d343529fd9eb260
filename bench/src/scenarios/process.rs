//! Starting and joining a process that does nothing, under each start method.

use multiproc::{Context, StartMethod};

use super::{Scenario, Target, baseline, per_op};

/// The task: nothing at all, so only the start and join are measured.
fn trivial() {}

/// Name of the start+join row for `method`.
fn row(method: StartMethod) -> String {
    format!("process start+join ({method})")
}

/// One start+join row per start method.
pub fn scenarios() -> Vec<Scenario> {
    [
        // (method, Rust iterations, CPython iterations, the bound it is held to)
        (StartMethod::Fork, 600, 80, Target::AtMostTimes(2.0, baseline::FORK.into())),
        (StartMethod::Spawn, 300, 12, Target::AtMostTimes(1.5, baseline::EXEC.into())),
        (StartMethod::ForkServer, 600, 50, Target::AtMostTimes(2.0, row(StartMethod::Fork))),
    ]
    .into_iter()
    .map(|(method, rust_iterations, python_iterations, bound)| {
        let ctx = Context::new(method);
        Scenario::new(row(method), rust_iterations, move |n| {
            per_op(n, || {
                ctx.spawn(trivial, ())?.join()?;
                Ok(())
            })
        })
        .python(py_name(method), python_iterations)
        .target(Target::FasterThanCpython(10.0))
        .target(bound)
    })
    .collect()
}

/// The scenario's name in `bench.py`.
fn py_name(method: StartMethod) -> &'static str {
    match method {
        StartMethod::Fork => "start_join_fork",
        StartMethod::Spawn => "start_join_spawn",
        StartMethod::ForkServer => "start_join_forkserver",
    }
}
