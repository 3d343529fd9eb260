//! What a child runs: a task (a function plus its arguments), and how it is named across processes.
//!
//! A task is a zero-sized callable — a `fn` item or a closure that captures nothing — so the child
//! can run it knowing only its type. The type is carried as a monomorphised trampoline named by
//! offset (see [`entry`](crate::entry)); the child checks the build fingerprint before it ever
//! turns the offset back into a function. A pool's batches (`pool::batch`) and a manager's
//! update functions and hosted types (`manager::hosted`) name their own trampolines the same way.

use std::os::fd::OwnedFd;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ErrorKind;
use crate::handle;

/// A function a child process can run with arguments `Args` (a tuple, unpacked into its parameters).
///
/// Implemented for every `fn` item and every non-capturing closure of up to eight parameters,
/// with `Args` the tuple of the parameter types: `fn add(a: i32, b: i32) -> i32` is a
/// `Task<(i32, i32)>`, and `fn tick()` is a `Task<()>`. A closure that captures anything is
/// rejected at compile time: its captures could not be rebuilt in another process.
///
/// # Example
/// ```
/// use multiproc::Process;
/// fn add(a: i32, b: i32) -> i32 { a + b }
/// let mut p = Process::spawn(add, (2, 3)).unwrap();
/// assert_eq!(p.join().unwrap(), 5);
/// let mut q = Process::spawn(|| "closure".to_string(), ()).unwrap();
/// assert_eq!(q.join().unwrap(), "closure");
/// ```
/// To give a task values of its own (what a closure would capture), pass them as arguments, list
/// them in [`spawn!`](crate::spawn!) (`spawn!((a, b) || a + b)`), or make a serde struct that
/// implements [`Run`] — its fields travel to the child. A closure that captures a value that is
/// not `Copy` is refused by `cargo check`; one that captures only `Copy` values, and a `fn`
/// pointer chosen at run time, pass the type check (Rust has no trait for "zero-sized") and are
/// refused by `cargo build`, with an error that says the task must capture nothing:
///
/// ```compile_fail
/// // A closure that captures a `String` is no task: `cargo check` rejects it.
/// let greeting = String::from("hello");
/// let _ = multiproc::Process::spawn(move || greeting.clone(), ());
/// ```
///
/// ```
/// // The same as an argument.
/// let greeting = String::from("hello");
/// let mut p = multiproc::Process::spawn(|g: String| g, (greeting,)).unwrap();
/// assert_eq!(p.join().unwrap(), "hello");
/// ```
/// Python counterpart: `Process(target=f, args=(a, b))`, where `f` must be importable and the
/// arguments picklable.
pub trait Task<Args>: Copy + Send + Sync + 'static {
    /// What the function returns; it comes back to the parent through `join`.
    type Output;
    /// Calls the function with the unpacked arguments.
    fn call(self, args: Args) -> Self::Output;
}

macro_rules! impl_task {
    ($($arg:ident),*) => {
        impl<Func, Ret, $($arg),*> Task<($($arg,)*)> for Func
        where
            Func: Fn($($arg),*) -> Ret + Copy + Send + Sync + 'static,
        {
            type Output = Ret;
            #[allow(non_snake_case)]
            fn call(self, ($($arg,)*): ($($arg,)*)) -> Ret {
                self($($arg),*)
            }
        }
    };
}

impl_task!();
impl_task!(A1);
impl_task!(A1, A2);
impl_task!(A1, A2, A3);
impl_task!(A1, A2, A3, A4);
impl_task!(A1, A2, A3, A4, A5);
impl_task!(A1, A2, A3, A4, A5, A6);
impl_task!(A1, A2, A3, A4, A5, A6, A7);
impl_task!(A1, A2, A3, A4, A5, A6, A7, A8);

/// The class style of Python's `Process` subclasses: a serde struct whose `run` is the child's work.
///
/// The struct's fields play the part of the arguments to `__init__`; they are serialized into the
/// child, which calls [`run`](Run::run) and sends the result back.
///
/// # Example
/// ```
/// use multiproc::{Process, Run};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Greeter { name: String }
///
/// impl Run for Greeter {
///     type Output = String;
///     fn run(self) -> String { format!("hello, {}", self.name) }
/// }
///
/// let mut p = Process::start(Greeter { name: "egon".into() }).unwrap();
/// assert_eq!(p.join().unwrap(), "hello, egon");
/// ```
/// Python counterpart: `class Greeter(Process): def run(self): ...`, then `Greeter(...).start()`.
pub trait Run: Serialize + DeserializeOwned + 'static {
    /// What `run` returns; it comes back to the parent through `join`.
    type Output: Serialize + DeserializeOwned;
    /// The child's work.
    fn run(self) -> Self::Output;
}

/// The `fn` item through which [`Run`] types become tasks.
pub(crate) fn run_object<T: Run>(object: T) -> T::Output {
    object.run()
}

/// How a child's task ended, ready to be framed and sent to the parent.
pub(crate) enum Outcome {
    /// The task returned; its encoded value and the descriptors of any handles inside it.
    Returned(Vec<u8>, Vec<OwnedFd>),
    /// The task panicked.
    Panicked(Panic),
    /// The child could not run the task.
    Failed(ErrorKind, String),
}

/// The type-erased form of a task as the child calls it: encoded arguments and received
/// descriptors in, outcome out.
pub(crate) type Entry = fn(&[u8], Vec<OwnedFd>) -> Outcome;

/// The offset of task `F`'s trampoline from the anchor: the same in every run of one build.
pub(crate) fn entry_offset<F, A>() -> i64
where
    F: Task<A>,
    A: DeserializeOwned,
    F::Output: Serialize,
{
    const { assert!(size_of::<F>() == 0, "a task must be a fn item or a closure that captures nothing") };
    let entry: Entry = trampoline::<F, A>;
    crate::entry::offset(entry as *const ())
}

/// Turns an offset back into the trampoline it came from.
///
/// # Safety
/// `offset` must have come from [`entry_offset`] in a process running this very build (checked
/// through the build fingerprint before this is called).
pub(crate) unsafe fn entry_from_offset(offset: i64) -> Entry {
    // SAFETY: by the caller's contract `offset` names an `Entry` trampoline of this build.
    unsafe { crate::entry::resolve(offset) }
}

/// The monomorphised body that runs task `F` in the child.
fn trampoline<F, A>(encoded: &[u8], fds: Vec<OwnedFd>) -> Outcome
where
    F: Task<A>,
    A: DeserializeOwned,
    F::Output: Serialize,
{
    let args: A = match catch_unwind(AssertUnwindSafe(|| handle::provide(fds, || postcard::from_bytes(encoded)))) {
        Ok(Ok(args)) => args,
        Ok(Err(err)) => {
            return Outcome::Failed(
                ErrorKind::Decode,
                format!("the task's arguments: {}", crate::codec::decode_failure::<A>(encoded, &err)),
            );
        }
        Err(payload) => return Outcome::Panicked(Panic::during("decoding the task's arguments", payload.as_ref())),
    };
    let task: F = crate::entry::summon();
    match catch_unwind(AssertUnwindSafe(|| task.call(args))) {
        Ok(value) => {
            let (encoded, fds) = match catch_unwind(AssertUnwindSafe(|| handle::encode(&value))) {
                Ok(Ok((bytes, fds))) => (bytes, fds.iter().filter_map(|fd| fd.try_clone_to_owned().ok()).collect()),
                Ok(Err(err)) => {
                    let why = crate::codec::encode_failure(&value, &err);
                    return Outcome::Failed(ErrorKind::Encode, format!("the task's result: {why}"));
                }
                Err(payload) => {
                    return Outcome::Panicked(Panic::during("encoding the task's result", payload.as_ref()));
                }
            };
            drop(value);
            Outcome::Returned(encoded, fds)
        }
        Err(payload) => Outcome::Panicked(Panic::caught(payload.as_ref())),
    }
}

/// A panic caught in a child: its message, and where it happened (`file:line:col`, followed by
/// the backtrace when `RUST_BACKTRACE` asks for one), as Python sends a remote traceback.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Panic {
    pub(crate) message: String,
    pub(crate) location: Option<String>,
}

impl Panic {
    /// The panic just caught on this thread, with what the hook recorded of it.
    pub(crate) fn caught(payload: &(dyn std::any::Any + Send)) -> Panic {
        Panic { message: panic_message(payload), location: LAST_PANIC.take() }
    }

    /// A panic in `what` (decoding arguments, encoding a result), which the task itself did
    /// not cause: the message says so.
    pub(crate) fn during(what: &str, payload: &(dyn std::any::Any + Send)) -> Panic {
        let mut panic = Panic::caught(payload);
        panic.message = format!("panicked while {what}: {}", panic.message);
        panic
    }
}

thread_local! {
    /// Where this thread's last panic happened (see [`record_panic_locations`]).
    static LAST_PANIC: std::cell::Cell<Option<String>> = const { std::cell::Cell::new(None) };
}

/// Installs, once per process, a panic hook that records each panic's location (and backtrace,
/// if `RUST_BACKTRACE` is set) for [`Panic::caught`], then runs the hook that was there before.
pub(crate) fn record_panic_locations() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let mut location = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
            let backtrace = std::backtrace::Backtrace::capture();
            if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
                location = Some(format!("{}\nstack backtrace:\n{backtrace}", location.unwrap_or_default()));
            }
            LAST_PANIC.set(location);
            previous(info);
        }));
    });
}

/// The text of a panic payload (`&str` or `String`, as `panic!` makes them).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}
