//! What a child runs: a task (a function plus its arguments), and how it is named across processes.
//!
//! A task is a zero-sized callable — a `fn` item or a closure that captures nothing — so the child
//! can run it knowing only its type. The type is carried as the address of a monomorphised
//! trampoline, written as an offset from a fixed anchor function of this crate: in the same build
//! the offset is the same whatever address-space randomisation did, and the child checks the
//! build fingerprint before it ever turns the offset back into a function.

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

/// The fixed point that entry offsets are measured from. Never inlined, and its body differs from
/// every other function's, so the linker cannot fold it into another.
#[inline(never)]
fn anchor() -> u64 {
    std::hint::black_box(0x6d75_6c74_6970_726f)
}

/// The offset of task `F`'s trampoline from the anchor: the same in every run of one build.
pub(crate) fn entry_offset<F, A>() -> i64
where
    F: Task<A>,
    A: DeserializeOwned,
    F::Output: Serialize,
{
    const { assert!(size_of::<F>() == 0, "a task must be a fn item or a closure that captures nothing") };
    let entry: Entry = trampoline::<F, A>;
    (entry as *const () as usize as i64).wrapping_sub(anchor as *const () as usize as i64)
}

/// Turns an offset back into the trampoline it came from.
///
/// # Safety
/// `offset` must have come from [`entry_offset`] in a process running this very build (checked
/// through the build fingerprint before this is called).
pub(crate) unsafe fn entry_from_offset(offset: i64) -> Entry {
    let address = (anchor as *const () as usize as i64).wrapping_add(offset) as usize;
    // SAFETY: by the caller's contract `address` is the address of an `Entry` trampoline in this
    // same build, and function pointers and `usize` have the same size on every supported target.
    unsafe { std::mem::transmute::<usize, Entry>(address) }
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
    // SAFETY: `F` is zero-sized (asserted at compile time in `entry_offset`, the only way to name
    // this trampoline) and is a fn item or a closure with no captures, so it has no bytes and no
    // validity invariant: a value of it is the same whichever way it is made.
    let task: F = unsafe { std::mem::zeroed() };
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

/// How one item of a batch failed.
pub(crate) enum ItemFailure {
    /// The task panicked (or a `Serialize`/`Deserialize` of its values did).
    Panicked(Panic),
    /// The item could not be run or its result not sent: decoding its arguments failed
    /// ([`ErrorKind::Decode`]), or encoding its result ([`ErrorKind::Encode`]).
    Failed(ErrorKind, String),
}

/// Where a batch's results go: every item's encoded value packed in `bytes`, item `i` ending at
/// `ends[i]` (empty for a failed item), and the failures by item index.
#[derive(Default)]
pub(crate) struct BatchOut {
    pub(crate) bytes: Vec<u8>,
    pub(crate) ends: Vec<u64>,
    pub(crate) failures: Vec<(u32, ItemFailure)>,
}

/// The type-erased form of a task run over a batch (a pool's chunk): the items' encoded
/// arguments packed in one buffer (item `i` ends at `ends[i]`), descriptors for their handles,
/// a hook called with each item's index before it runs, and the output.
pub(crate) type BatchEntry = fn(&[u8], &[u64], Vec<OwnedFd>, &mut dyn FnMut(usize), &mut BatchOut);

/// The offset of task `F`'s batch trampoline from the anchor (see [`entry_offset`]).
pub(crate) fn batch_entry_offset<F, A>() -> i64
where
    F: Task<A>,
    A: DeserializeOwned,
    F::Output: Serialize,
{
    const { assert!(size_of::<F>() == 0, "a task must be a fn item or a closure that captures nothing") };
    let entry: BatchEntry = batch_trampoline::<F, A>;
    (entry as *const () as usize as i64).wrapping_sub(anchor as *const () as usize as i64)
}

/// Turns an offset back into the batch trampoline it came from.
///
/// # Safety
/// As for [`entry_from_offset`]: `offset` must come from [`batch_entry_offset`] in this build.
pub(crate) unsafe fn batch_entry_from_offset(offset: i64) -> BatchEntry {
    let address = (anchor as *const () as usize as i64).wrapping_add(offset) as usize;
    // SAFETY: by the caller's contract `address` is a `BatchEntry` trampoline of this build.
    unsafe { std::mem::transmute::<usize, BatchEntry>(address) }
}

/// The monomorphised body that runs task `F` over a batch, encoding results straight into one
/// buffer (no allocation per item beyond what `F` itself does).
fn batch_trampoline<F, A>(
    args: &[u8],
    ends: &[u64],
    mut fds: Vec<OwnedFd>,
    starting: &mut dyn FnMut(usize),
    out: &mut BatchOut,
) where
    F: Task<A>,
    A: DeserializeOwned,
    F::Output: Serialize,
{
    let mut start = 0usize;
    let scope = handle::EncodeScope::new();
    for (index, &end) in ends.iter().enumerate() {
        let end = end as usize;
        starting(index);
        let item = args.get(start..end).unwrap_or(&[]);
        start = end;
        let decoded = catch_unwind(AssertUnwindSafe(|| {
            if fds.is_empty() {
                handle::receiving(|| postcard::from_bytes::<A>(item))
            } else {
                handle::provide(std::mem::take(&mut fds), || postcard::from_bytes::<A>(item))
            }
        }));
        let failure = match decoded {
            Err(payload) => {
                Some(ItemFailure::Panicked(Panic::during("decoding the task's arguments", payload.as_ref())))
            }
            Ok(Err(err)) => {
                let why = crate::codec::decode_failure::<A>(item, &err);
                Some(ItemFailure::Failed(ErrorKind::Decode, format!("the arguments: {why}")))
            }
            Ok(Ok(args)) => {
                // SAFETY: as in `trampoline`: `F` is zero-sized (asserted in
                // `batch_entry_offset`, the only way to name this function), so it has no bytes.
                let task: F = unsafe { std::mem::zeroed() };
                match catch_unwind(AssertUnwindSafe(|| task.call(args))) {
                    Ok(value) => {
                        let before = out.bytes.len();
                        match catch_unwind(AssertUnwindSafe(|| scope.append(&value, &mut out.bytes))) {
                            Err(payload) => {
                                out.bytes.truncate(before);
                                Some(ItemFailure::Panicked(Panic::during(
                                    "encoding the task's result",
                                    payload.as_ref(),
                                )))
                            }
                            Ok(Ok(fds)) if fds.is_empty() => None,
                            Ok(Ok(_)) => {
                                out.bytes.truncate(before);
                                Some(ItemFailure::Failed(
                                    ErrorKind::Encode,
                                    "the result holds handles (descriptors), which a pool's results cannot carry"
                                        .into(),
                                ))
                            }
                            Ok(Err(err)) => {
                                out.bytes.truncate(before);
                                let why = crate::codec::encode_failure(&value, &err);
                                Some(ItemFailure::Failed(ErrorKind::Encode, format!("the task's result: {why}")))
                            }
                        }
                    }
                    Err(payload) => Some(ItemFailure::Panicked(Panic::caught(payload.as_ref()))),
                }
            }
        };
        if let Some(failure) = failure {
            out.failures.push((index as u32, failure));
        }
        out.ends.push(out.bytes.len() as u64);
    }
}

/// The type-erased form of an update function run by a manager server on one stored value:
/// the old value's encoding (if any) in, the new value's encoding out.
pub(crate) type ApplyEntry = fn(Option<&[u8]>) -> Result<Vec<u8>, String>;

/// The offset of update function `F`'s trampoline from the anchor (see [`entry_offset`]).
pub(crate) fn apply_entry_offset<F, V>() -> i64
where
    F: Fn(Option<V>) -> V + Copy + Send + Sync + 'static,
    V: Serialize + DeserializeOwned,
{
    const { assert!(size_of::<F>() == 0, "an update must be a fn item or a closure that captures nothing") };
    let entry: ApplyEntry = apply_trampoline::<F, V>;
    (entry as *const () as usize as i64).wrapping_sub(anchor as *const () as usize as i64)
}

/// A manager client of this very process tree: it proved it holds the tree's key (which never
/// leaves the tree: see `manager::proxy`) and says it runs this build. Such a client is one of
/// this program's own processes, and sends only offsets that this module made — the same trust
/// a child places in the entry offset its parent sends. The only way to name functions by
/// offset from a manager's wire.
pub(crate) struct TreeClient(());

impl TreeClient {
    /// The witness for a client that proved it holds `key` and said it runs build `build`, if
    /// that is this process tree's key and this build.
    pub(crate) fn check(key: &[u8; 32], build: &[u8]) -> Option<TreeClient> {
        let ours = crate::process::identity::hold().authkey().ok()?;
        (*key == ours && build == crate::sys::build_id::fingerprint()).then_some(TreeClient(()))
    }

    /// The update trampoline at `offset`, which this client made with [`apply_entry_offset`].
    pub(crate) fn update_fn(&self, offset: i64) -> ApplyEntry {
        let address = (anchor as *const () as usize as i64).wrapping_add(offset) as usize;
        // SAFETY: a client of this tree and build names update functions only by offsets from
        // `apply_entry_offset`, which are `ApplyEntry` trampolines of this build (see the type).
        unsafe { std::mem::transmute::<usize, ApplyEntry>(address) }
    }

    /// The constructor at `offset`, which this client made with [`new_object_offset`].
    pub(crate) fn constructor(&self, offset: i64) -> NewObject {
        let address = (anchor as *const () as usize as i64).wrapping_add(offset) as usize;
        // SAFETY: as in `update_fn`, for offsets from `new_object_offset`.
        unsafe { std::mem::transmute::<usize, NewObject>(address) }
    }
}

/// Decodes the whole of `bytes` as a `T`: a longer encoding is another type, not a `T` with
/// leftovers.
fn decode_whole<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    crate::handle::decode_exact(bytes).map_err(|e| format!("not a {}: {e}", crate::error::type_name::<T>()))
}

fn apply_trampoline<F, V>(old: Option<&[u8]>) -> Result<Vec<u8>, String>
where
    F: Fn(Option<V>) -> V + Copy + Send + Sync + 'static,
    V: Serialize + DeserializeOwned,
{
    let old: Option<V> = old.map(decode_whole).transpose().map_err(|e| format!("the stored value is {e}"))?;
    // SAFETY: as in `trampoline`: `F` is zero-sized (asserted in `apply_entry_offset`, the only
    // way to name this function), so it has no bytes and no validity invariant.
    let f: F = unsafe { std::mem::zeroed() };
    let new = catch_unwind(AssertUnwindSafe(|| f(old)))
        .map_err(|p| format!("the update panicked: {}", panic_message(p.as_ref())))?;
    postcard::to_stdvec(&new).map_err(|e| format!("the new value could not be encoded: {e}"))
}

/// A user type living in a manager server, driven by encoded requests (see
/// `manager::SharedObject`).
pub(crate) trait CustomObject: Send {
    /// Decodes a request, handles it, encodes the response.
    fn call(&mut self, request: &[u8]) -> Result<Vec<u8>, String>;
    /// The user type's name (what named look-ups compare).
    fn type_name(&self) -> &'static str;
}

/// Makes a new custom object: what a manager server calls, by offset, to host a user type.
pub(crate) type NewObject = fn() -> Box<dyn CustomObject>;

/// The offset of the constructor of hosted type `T` (see [`entry_offset`]).
pub(crate) fn new_object_offset<T: crate::manager::SharedObject>() -> i64 {
    let entry: NewObject = new_object::<T>;
    (entry as *const () as usize as i64).wrapping_sub(anchor as *const () as usize as i64)
}

struct Hosted<T>(T);

impl<T: crate::manager::SharedObject> CustomObject for Hosted<T> {
    fn call(&mut self, request: &[u8]) -> Result<Vec<u8>, String> {
        // The user's serde code and `handle` alike may panic: the server thread must go on.
        catch_unwind(AssertUnwindSafe(|| {
            let request: T::Request = decode_whole(request).map_err(|e| format!("the request is {e}"))?;
            let response = self.0.handle(request);
            postcard::to_stdvec(&response).map_err(|e| format!("the response could not be encoded: {e}"))
        }))
        .map_err(|p| format!("the shared object panicked: {}", panic_message(p.as_ref())))?
    }

    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }
}

fn new_object<T: crate::manager::SharedObject>() -> Box<dyn CustomObject> {
    Box::new(Hosted(T::default()))
}

/// Makes a `T` for a manager server, catching a panic in the user's `Default`.
pub(crate) fn construct(new: NewObject) -> Result<Box<dyn CustomObject>, String> {
    catch_unwind(new).map_err(|p| format!("making the shared object panicked: {}", panic_message(p.as_ref())))
}

/// The text of a panic payload (`&str` or `String`, as `panic!` makes them).
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
    fn during(what: &str, payload: &(dyn std::any::Any + Send)) -> Panic {
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

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

/// The offset of a plain function from the anchor, for naming it in shared memory (a
/// [`Barrier`](crate::Barrier)'s action): valid in every process of this build.
pub(crate) fn plain_fn_offset(f: fn()) -> i64 {
    (f as *const () as usize as i64).wrapping_sub(anchor as *const () as usize as i64)
}

/// Turns an offset from [`plain_fn_offset`] back into the function.
///
/// # Safety
/// `offset` must have come from `plain_fn_offset` in a process running this very build.
pub(crate) unsafe fn plain_fn_from_offset(offset: i64) -> fn() {
    let address = (anchor as *const () as usize as i64).wrapping_add(offset) as usize;
    // SAFETY: by the caller's contract `address` is a `fn()` of this build.
    unsafe { std::mem::transmute::<usize, fn()>(address) }
}
