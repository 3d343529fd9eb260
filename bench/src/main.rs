//! Side-by-side benchmarks of `multiproc` against CPython's `multiprocessing`.
//!
//! ```text
//! cargo run --release -p multiproc-bench [-- --reps N] [--quick] [--filter SUBSTR] [--json PATH] [--chart PATH] [--list]
//! ```
//!
//! Every [scenario](scenarios) runs its Rust side in this process and, if it has one, the same
//! scenario in CPython (`python3 bench/python/bench.py <scenario> <iterations>`, which prints
//! `{"per_op_s": ...}`), interleaved per repetition: Rust 1, Python 1, Rust 2, Python 2, ... so
//! that a noisy neighbour hurts both sides alike. The table shows the medians of seconds per
//! operation, their ratio (CPython / multiproc: how many times faster multiproc is), the min–max
//! spread of the multiproc samples and the targets; then each target is checked (PASS / MISS /
//! SKIP). All samples and medians go to a JSON file (`target/bench-results.json` by default), and
//! a chart of every row's ratio to CPython and to its bound to an SVG file
//! (`target/bench-chart.svg`; see [`chart`]).
//!
//! Options:
//! - `--reps N`: repetitions per side (default 7; 3 with `--quick`).
//! - `--quick`: iterations divided by [`scenarios::QUICK_DIVISOR`], for a CI smoke run.
//! - `--filter SUBSTR`: only scenarios whose name contains `SUBSTR`, plus the rows their targets
//!   refer to.
//! - `--json PATH`: where to write the results.
//! - `--chart PATH`: where to write the chart.
//! - `--list`: list the scenarios and exit.
//!
//! Without `python3` on `PATH` the CPython column says "python3 missing" and the Rust side still
//! runs. The exit status is 1 if a Rust side failed, 0 otherwise (a missed target is reported, not
//! fatal: the machines are shared and noisy).
//!
//! To add scenarios, see the [`scenarios`] module.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use serde::Serialize;

mod chart;
mod scenarios;

use scenarios::{QUICK_DIVISOR, Scenario, Target};

/// Command-line options.
struct Options {
    reps: usize,
    quick: bool,
    filter: Option<String>,
    json: PathBuf,
    chart: PathBuf,
    list: bool,
}

const USAGE: &str =
    "usage: multiproc-bench [--reps N] [--quick] [--filter SUBSTR] [--json PATH] [--chart PATH] [--list]";

impl Options {
    fn parse() -> Result<Options, String> {
        let mut reps = None;
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new(".")).join("target");
        let mut options = Options {
            reps: 7,
            quick: false,
            filter: None,
            json: target.join("bench-results.json"),
            chart: target.join("bench-chart.svg"),
            list: false,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = |flag: &str| args.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"));
            match arg.as_str() {
                "--reps" => {
                    let n = value("--reps")?;
                    reps = Some(n.parse().ok().filter(|&n| n > 0).ok_or_else(|| format!("bad --reps {n:?}"))?);
                }
                "--quick" => options.quick = true,
                "--filter" => options.filter = Some(value("--filter")?),
                "--json" => options.json = value("--json")?.into(),
                "--chart" => options.chart = value("--chart")?.into(),
                "--list" => options.list = true,
                "-h" | "--help" => return Err(USAGE.to_owned()),
                other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            }
        }
        options.reps = reps.unwrap_or(if options.quick { 3 } else { 7 });
        Ok(options)
    }

    /// The iteration count to use for a scenario's `default`.
    fn iterations(&self, default: u64) -> u64 {
        if self.quick { (default / QUICK_DIVISOR).max(1) } else { default.max(1) }
    }
}

/// What became of a scenario's CPython side.
enum Python {
    /// The scenario has no CPython counterpart.
    None,
    /// `python3` is not on `PATH`.
    Missing,
    /// The script failed; its message.
    Failed(String),
    /// Seconds per operation, one per repetition.
    Samples(Vec<f64>),
}

/// The measurements of one row.
struct Row<'a> {
    scenario: &'a Scenario,
    rust: Result<Vec<f64>, String>,
    python: Python,
}

impl Row<'_> {
    fn rust_median(&self) -> Option<f64> {
        self.rust.as_ref().ok().and_then(|s| median(s))
    }

    fn python_median(&self) -> Option<f64> {
        match &self.python {
            Python::Samples(s) => median(s),
            _ => None,
        }
    }

    /// CPython's median over ours.
    fn ratio(&self) -> Option<f64> {
        Some(self.python_median()? / self.rust_median()?)
    }
}

/// The outcome of checking one target.
struct Check {
    row: String,
    target: String,
    /// The measured factor, if both sides were there.
    value: Option<f64>,
    pass: Option<bool>,
}

fn main() -> ExitCode {
    if std::env::var_os(scenarios::EXIT_AT_ONCE).is_some() {
        std::process::exit(0);
    }
    let options = match Options::parse() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return if message == USAGE { ExitCode::SUCCESS } else { ExitCode::from(2) };
        }
    };
    let all = scenarios::all();
    let selected = select(&all, options.filter.as_deref());
    if options.list {
        for s in &selected {
            let python = s.python.map_or("—".to_owned(), |(name, n)| format!("{name} ×{}", options.iterations(n)));
            let targets: Vec<_> = s.targets.iter().map(Target::describe).collect();
            println!(
                "{}  [rust ×{}; python: {python}; targets: {}]",
                s.name,
                options.iterations(s.rust_iterations),
                targets.join(", ")
            );
        }
        return ExitCode::SUCCESS;
    }
    if selected.is_empty() {
        eprintln!("no scenario matches {:?}; try --list", options.filter.unwrap_or_default());
        return ExitCode::from(2);
    }

    let python_version = python_version();
    println!(
        "multiproc-bench: {} reps{}, {} CPUs, load {}, {}",
        options.reps,
        if options.quick { " (quick)" } else { "" },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average(),
        python_version.as_deref().unwrap_or("python3 missing"),
    );
    let rows: Vec<Row> = selected.iter().map(|s| measure(s, &options, python_version.is_some())).collect();
    let checks = check(&rows);
    print_table(&rows);
    println!();
    for c in &checks {
        let verdict = match c.pass {
            Some(true) => "PASS",
            Some(false) => "MISS",
            None => "SKIP",
        };
        let value = c.value.map_or("no data".to_owned(), |v| format!("measured {v:.2}×"));
        println!("{verdict}  {}: {} ({value})", c.row, c.target);
    }
    let mut failed = false;
    for row in &rows {
        if let Err(e) = &row.rust {
            eprintln!("error: {}: {e}", row.scenario.name);
            failed = true;
        }
        if let Python::Failed(e) = &row.python {
            eprintln!("warning: {} (CPython): {e}", row.scenario.name);
        }
    }
    match write_json(&options, python_version.as_deref(), &rows, &checks) {
        Ok(()) => println!("\nresults: {}", options.json.display()),
        Err(e) => {
            eprintln!("error: writing {}: {e}", options.json.display());
            failed = true;
        }
    }
    match chart::write(&options.chart, &bars(&rows)) {
        Ok(()) => println!("chart: {}", options.chart.display()),
        Err(e) => {
            eprintln!("error: writing {}: {e}", options.chart.display());
            failed = true;
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

/// The chart's bars: each row's ratio to CPython, and its share of the row its first bound
/// target names, with the targets.
fn bars(rows: &[Row]) -> Vec<chart::Bar> {
    let medians: HashMap<&str, f64> =
        rows.iter().filter_map(|r| Some((r.scenario.name.as_str(), r.rust_median()?))).collect();
    rows.iter()
        .map(|row| {
            let cpython_target = row.scenario.targets.iter().find_map(|t| match t {
                Target::FasterThanCpython(min) => Some(*min),
                _ => None,
            });
            let bound = row.scenario.targets.iter().find_map(|t| match t {
                Target::AtMostTimes(max, other) => {
                    let share = medians.get(other.as_str())? / row.rust_median()?;
                    Some((share, 1.0 / max))
                }
                _ => None,
            });
            chart::Bar { name: row.scenario.name.clone(), cpython: row.ratio().map(|r| (r, cpython_target)), bound }
        })
        .collect()
}

/// The scenarios matching `filter`, plus the rows their targets refer to, in registry order.
fn select<'a>(all: &'a [Scenario], filter: Option<&str>) -> Vec<&'a Scenario> {
    let mut keep: Vec<bool> = all.iter().map(|s| filter.is_none_or(|f| s.name.contains(f))).collect();
    loop {
        let mut changed = false;
        for i in 0..all.len() {
            if !keep[i] {
                continue;
            }
            for t in &all[i].targets {
                let Target::AtMostTimes(_, row) = t else { continue };
                if let Some(j) = all.iter().position(|s| &s.name == row).filter(|&j| !keep[j]) {
                    keep[j] = true;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    all.iter().zip(keep).filter(|(_, k)| *k).map(|(s, _)| s).collect()
}

/// Runs one scenario: an untimed Rust warm-up of a tenth of its iterations, then the interleaved
/// repetitions.
fn measure<'a>(scenario: &'a Scenario, options: &Options, have_python: bool) -> Row<'a> {
    eprintln!("running {} ...", scenario.name);
    let rust_iterations = options.iterations(scenario.rust_iterations);
    let mut python = match scenario.python {
        None => Python::None,
        Some(_) if !have_python => Python::Missing,
        Some(_) => Python::Samples(Vec::with_capacity(options.reps)),
    };
    let warm_up = (rust_iterations / 10).max(1);
    let mut rust = (scenario.rust)(warm_up).map(|_| Vec::with_capacity(options.reps)).map_err(|e| e.to_string());
    for _ in 0..options.reps {
        if let Ok(samples) = &mut rust {
            match (scenario.rust)(rust_iterations) {
                Ok(s) => samples.push(s),
                Err(e) => rust = Err(e.to_string()),
            }
        }
        if let (Python::Samples(samples), Some((name, n))) = (&mut python, scenario.python) {
            match run_python(name, options.iterations(n)) {
                Ok(s) => samples.push(s),
                Err(e) => python = Python::Failed(e),
            }
        }
    }
    Row { scenario, rust, python }
}

/// The script with the CPython side of every scenario.
fn python_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python/bench.py")
}

/// `python3 --version`, or `None` if there is no `python3` to run.
fn python_version() -> Option<String> {
    let out = Command::new("python3").arg("--version").stdin(Stdio::null()).output().ok()?;
    let text = String::from_utf8_lossy(if out.stdout.is_empty() { &out.stderr } else { &out.stdout }).trim().to_owned();
    out.status.success().then_some(text)
}

/// Runs CPython's side of scenario `name` once; seconds per operation.
/// A CPython run that takes longer than this is stopped (its whole process group) and reported:
/// a broken script must not hang the harness.
const PYTHON_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

fn run_python(name: &str, iterations: u64) -> Result<f64, String> {
    use std::os::unix::process::CommandExt;
    let child = Command::new("python3")
        .arg(python_script())
        .arg(name)
        .arg(iterations.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    let group = child.id() as libc::pid_t;
    let (finished, watch) = std::sync::mpsc::channel::<()>();
    let guard = std::thread::spawn(move || {
        if watch.recv_timeout(PYTHON_LIMIT) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
            // SAFETY: kill(2) has no memory-safety preconditions; the group is the one we started.
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
    });
    let out = child.wait_with_output().map_err(|e| format!("waiting for python3: {e}"));
    drop(finished);
    let _ = guard.join();
    let out = out?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("bench.py {name} {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()));
    }
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v.get("per_op_s")?.as_f64())
        .ok_or_else(|| format!("bench.py {name}: no per_op_s in {line:?}"))
}

/// The first three fields of `/proc/loadavg`.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
}

fn median(samples: &[f64]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let mid = s.len() / 2;
    Some(if s.len() % 2 == 1 { s[mid] } else { (s[mid - 1] + s[mid]) / 2.0 })
}

/// Checks every target of every row.
fn check(rows: &[Row]) -> Vec<Check> {
    let medians: HashMap<&str, f64> =
        rows.iter().filter_map(|r| Some((r.scenario.name.as_str(), r.rust_median()?))).collect();
    let mut checks = Vec::new();
    for row in rows {
        for target in &row.scenario.targets {
            let (value, pass) = match target {
                Target::FasterThanCpython(min) => {
                    let value = row.ratio();
                    (value, value.map(|v| v >= *min))
                }
                Target::AtMostTimes(max, other) => {
                    let value = row.rust_median().zip(medians.get(other.as_str())).map(|(ours, base)| ours / base);
                    (value, value.map(|v| v <= *max))
                }
                // The factor shown is ours over the target's time: at most 1 passes.
                Target::AtMostSeconds(seconds) => {
                    let value = row.rust_median().map(|ours| ours / seconds);
                    (value, value.map(|v| v <= 1.0))
                }
            };
            checks.push(Check { row: row.scenario.name.clone(), target: target.describe(), value, pass });
        }
    }
    checks
}

/// The unit in which to show a duration of `seconds`.
fn unit(seconds: f64) -> (f64, &'static str) {
    match seconds {
        s if s < 1e-6 => (1e9, "ns"),
        s if s < 1e-3 => (1e6, "µs"),
        s if s < 1.0 => (1e3, "ms"),
        _ => (1.0, "s"),
    }
}

/// A number with three significant digits (or all integer digits).
fn number(v: f64) -> String {
    match v.abs() {
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        _ => format!("{v:.2}"),
    }
}

/// A duration in a fitting unit.
fn duration(seconds: f64) -> String {
    let (scale, unit) = unit(seconds);
    format!("{} {unit}", number(seconds * scale))
}

fn print_table(rows: &[Row]) {
    let header = ["scenario", "CPython median", "multiproc median", "ratio", "spread (min–max)", "target"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|row| {
            let python = match &row.python {
                Python::None => "—".to_owned(),
                Python::Missing => "python3 missing".to_owned(),
                Python::Failed(_) => "error".to_owned(),
                Python::Samples(_) => row.python_median().map_or("—".to_owned(), duration),
            };
            let (rust, spread) = match &row.rust {
                Err(_) => ("error".to_owned(), String::new()),
                Ok(samples) => {
                    let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
                    let max = samples.iter().copied().fold(0.0, f64::max);
                    let (scale, unit) = unit(row.rust_median().unwrap_or(min));
                    let spread = format!("{}–{} {unit}", number(min * scale), number(max * scale));
                    (row.rust_median().map_or("—".to_owned(), duration), spread)
                }
            };
            let ratio = row.ratio().map_or(String::new(), |r| format!("{}×", number(r)));
            let targets: Vec<_> = row.scenario.targets.iter().map(Target::describe).collect();
            [row.scenario.name.clone(), python, rust, ratio, spread, targets.join(", ")]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for line in &cells {
        for (w, c) in widths.iter_mut().zip(line) {
            *w = (*w).max(c.chars().count());
        }
    }
    let print = |line: &[String]| {
        let padded: Vec<String> = line
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (c, w))| {
                let pad = " ".repeat(w - c.chars().count());
                // Numbers right-aligned, text left-aligned.
                if (1..=3).contains(&i) { format!("{pad}{c}") } else { format!("{c}{pad}") }
            })
            .collect();
        println!("{}", padded.join(" | ").trim_end());
    };
    print(&header.map(str::to_owned));
    println!("{}", widths.map(|w| "-".repeat(w)).join("-|-"));
    for line in &cells {
        print(line);
    }
}

/// One row in the JSON file.
#[derive(Serialize)]
struct JsonRow<'a> {
    name: &'a str,
    rust_iterations: u64,
    rust_samples_s: Vec<f64>,
    rust_median_s: Option<f64>,
    rust_error: Option<&'a str>,
    python_scenario: Option<&'a str>,
    python_iterations: Option<u64>,
    python_samples_s: Vec<f64>,
    python_median_s: Option<f64>,
    /// "ok", "none" (no counterpart), "missing" (no python3) or "error: ...".
    python_status: String,
    ratio: Option<f64>,
}

/// One checked target in the JSON file.
#[derive(Serialize)]
struct JsonCheck<'a> {
    row: &'a str,
    target: &'a str,
    value: Option<f64>,
    pass: Option<bool>,
}

/// The whole JSON file.
#[derive(Serialize)]
struct JsonResults<'a> {
    reps: usize,
    quick: bool,
    cpus: usize,
    load_average: String,
    python: Option<&'a str>,
    unix_time_s: u64,
    scenarios: Vec<JsonRow<'a>>,
    targets: Vec<JsonCheck<'a>>,
}

fn write_json(options: &Options, python: Option<&str>, rows: &[Row], checks: &[Check]) -> std::io::Result<()> {
    let results = JsonResults {
        reps: options.reps,
        quick: options.quick,
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average: load_average(),
        python,
        unix_time_s: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        scenarios: rows
            .iter()
            .map(|row| JsonRow {
                name: &row.scenario.name,
                rust_iterations: options.iterations(row.scenario.rust_iterations),
                rust_samples_s: row.rust.clone().unwrap_or_default(),
                rust_median_s: row.rust_median(),
                rust_error: row.rust.as_ref().err().map(String::as_str),
                python_scenario: row.scenario.python.map(|(name, _)| name),
                python_iterations: row.scenario.python.map(|(_, n)| options.iterations(n)),
                python_samples_s: match &row.python {
                    Python::Samples(s) => s.clone(),
                    _ => vec![],
                },
                python_median_s: row.python_median(),
                python_status: match &row.python {
                    Python::None => "none".to_owned(),
                    Python::Missing => "missing".to_owned(),
                    Python::Failed(e) => format!("error: {e}"),
                    Python::Samples(_) => "ok".to_owned(),
                },
                ratio: row.ratio(),
            })
            .collect(),
        targets: checks
            .iter()
            .map(|c| JsonCheck { row: &c.row, target: &c.target, value: c.value, pass: c.pass })
            .collect(),
    };
    if let Some(dir) = options.json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let text = serde_json::to_string_pretty(&results).map_err(std::io::Error::other)?;
    std::fs::write(&options.json, text + "\n")
}
