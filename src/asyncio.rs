//! Async code: awaiting processes, queues, pipes, events and pool results without blocking the
//! runtime, on any executor.
//!
//! Every blocking wait of the crate has an `_async` twin that returns a future:
//!
//! | blocking | async | ready when |
//! |---|---|---|
//! | [`Queue::get`](crate::Queue::get), [`SimpleQueue::get`](crate::SimpleQueue::get) | [`get_async`](crate::Queue::get_async) | an item was taken |
//! | [`Queue::put`](crate::Queue::put), [`JoinableQueue::put`](crate::JoinableQueue::put) | [`put_async`](crate::Queue::put_async) | the item is in |
//! | [`JoinableQueue::join`](crate::JoinableQueue::join) | [`join_async`](crate::JoinableQueue::join_async) | every item is done |
//! | [`Connection::recv`](crate::Connection::recv) / [`send`](crate::Connection::send) | [`recv_async`](crate::Connection::recv_async) / [`send_async`](crate::Connection::send_async) | a message came / went |
//! | [`Event::wait`](crate::Event::wait) | [`wait_async`](crate::Event::wait_async) | the flag was set |
//! | [`Process::join`](crate::Process::join) | [`join_async`](crate::Process::join_async) | the child ended |
//! | [`AsyncResult::get`](crate::AsyncResult::get), [`TaskFuture::result`](crate::TaskFuture::result) | `.await` them | the task is done |
//! | [`Pool::imap`](crate::Pool::imap), [`as_completed`](crate::pool::as_completed) | use them as a [`Stream`](futures_core::Stream) | the next item is in |
//! | a manager proxy's call | [`to_thread`] | the call returned |
//!
//! ```
//! use multiproc::{Process, Queue};
//! fn produce(q: Queue<u32>) { q.put(42).unwrap() }
//!
//! let q = Queue::new().unwrap();
//! let mut child = Process::spawn(produce, (q.clone(),)).unwrap();
//! // Any executor: tokio here, async-std, smol or a hand-written one alike.
//! let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! rt.block_on(async {
//!     assert_eq!(q.get_async().await.unwrap(), 42);
//!     child.join_async().await.unwrap();
//! });
//! ```
//!
//! # How it works, and what it costs
//! Pipes and processes have descriptors; queues and events live in shared memory and wake their
//! sleepers with futexes, which no reactor can poll. So a future first tries the operation
//! without blocking (`try_get`, `try_recv`, …) on the runtime's thread, and if it must wait, hands
//! the *waiting* — never the operation — to a watcher thread, which sleeps on the futex or polls
//! the descriptor and wakes the task. The watcher threads are pooled and shared by every future
//! in the process, and end after a few seconds idle. No runtime feature is needed, and any
//! executor works. A wait costs one extra thread wake-up over the blocking call (see the
//! benchmarks' async queue row).
//!
//! # Cancellation
//! Dropping a future before it is ready cancels it, and a cancelled future has done nothing:
//! an item is taken from a queue only inside a poll that returns it, so a `get_async` dropped
//! (by `select!` or a timeout) never consumes an item; a dropped `put_async` has put nothing; a
//! half-received message stays in the connection for the next `recv`. Its watcher is woken and
//! returns to the pool at once.
//!
//! Two waits finish on the calling thread once begun: a queue item too large for the ring (it
//! streams in chunks, as fast as its producer writes them) and a message sent on a connection
//! larger than the socket's free buffer (as fast as the peer reads).
//!
//! Python counterpart: `asyncio` has no multiprocessing objects; Python programs wrap blocking
//! calls in `loop.run_in_executor` or [`asyncio.to_thread`](to_thread), which cannot be
//! cancelled without losing what the call took.

use std::future::Future;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::sys::poll::{Ready, wait_ready};

/// How long a watcher thread stays in the pool with nothing to do.
const IDLE_FOR: Duration = Duration::from_secs(5);

/// Runs `f` on a pooled thread and returns a future of its value: for blocking calls that have
/// no `_async` twin, such as a manager proxy's.
///
/// Dropping the future does not stop the call: it runs to its end, and its value is dropped. A
/// call that consumes something (a manager queue's `get`) then loses it, as in Python; the
/// crate's own `_async` methods do not.
///
/// # Panics
/// The future resumes a panic of `f`.
///
/// ```
/// let manager = multiproc::Manager::start().unwrap();
/// let scores = manager.dict::<String, u32>().unwrap();
/// let proxy = scores.clone();
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// rt.block_on(async move {
///     multiproc::asyncio::to_thread(move || proxy.insert("ann".into(), 3)).await.unwrap();
/// });
/// assert_eq!(scores.get(&"ann".to_string()).unwrap(), Some(3));
/// ```
/// Python counterpart: `asyncio.to_thread(func)`.
pub fn to_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> impl Future<Output = T> + Send {
    type Outcome<T> = Option<std::thread::Result<T>>;
    let call = Arc::new(Mutex::new(Some(f)));
    let slot: Arc<Mutex<Outcome<T>>> = Arc::new(Mutex::new(None));
    let (taken, filled) = (call.clone(), slot.clone());
    let mut watch = Some(Watch::start(
        move |_| {
            if let Some(f) = lock(&taken).take() {
                *lock(&filled) = Some(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
            }
        },
        || {},
    ));
    std::future::poll_fn(move |cx| {
        if let Some(w) = &watch {
            if w.poll(cx).is_pending() {
                return Poll::Pending;
            }
            watch = None;
        }
        let outcome = lock(&slot).take();
        // No thread could be started to run it: run it here rather than not at all.
        let outcome =
            outcome.or_else(|| lock(&call).take().map(|f| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))));
        match outcome {
            Some(Ok(value)) => Poll::Ready(value),
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => unreachable!("the call ran, and its outcome is taken once"),
        }
    })
}

/// What a watcher sleeps until: it returns once it saw what it waits for or `stop` was set.
/// Descriptor waits poll [`Stop::signal`] with their own descriptors.
pub(crate) struct Stop {
    flag: Arc<AtomicBool>,
    signal: Arc<OwnedFd>,
}

impl Stop {
    /// The flag a futex sleeper checks between sleeps (its interrupt wakes it to look).
    pub(crate) fn flag(&self) -> &AtomicBool {
        &self.flag
    }

    /// Waits until one of `fds` is ready or the watch is dropped; returns whether one is ready.
    fn wait_fds(&self, fds: &[(OwnedFd, Ready)]) -> bool {
        let mut all: Vec<(BorrowedFd<'_>, Ready)> = fds.iter().map(|(fd, r)| (fd.as_fd(), *r)).collect();
        all.push((self.signal.as_fd(), Ready::Read));
        loop {
            if self.flag.load(Ordering::SeqCst) {
                return false;
            }
            match wait_ready(&all, None) {
                Ok(ready) if ready[..fds.len()].iter().any(|&r| r) => return true,
                // The signal: this watch's drop, or a late one meant for the thread's last job.
                Ok(_) => drain(self.signal.as_fd()),
                // Let the future look for itself (it reports the error it meets).
                Err(_) => return true,
            }
        }
    }
}

/// Empties an eventfd.
fn drain(fd: BorrowedFd<'_>) {
    let mut count = [0u8; 8];
    let _ = rustix::io::read(fd, &mut count);
}

/// The part of a watch its future and its thread share.
struct Shared {
    fired: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

/// A wait handed to a watcher thread. Dropping it before it fired stops the thread's wait.
pub(crate) struct Watch {
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    signal: Option<Arc<OwnedFd>>,
    interrupt: Box<dyn Fn() + Send + Sync>,
}

impl Watch {
    /// Runs `sleep` on a watcher thread; the watch fires when it returns. `interrupt` must make
    /// a `sleep` that already saw its stop flag clear look again (wake its futex); descriptor
    /// waits need none.
    pub(crate) fn start(
        sleep: impl FnOnce(&Stop) + Send + 'static,
        interrupt: impl Fn() + Send + Sync + 'static,
    ) -> Watch {
        let shared = Arc::new(Shared { fired: AtomicBool::new(false), waker: Mutex::new(None) });
        let stop = Arc::new(AtomicBool::new(false));
        let (done, flag) = (shared.clone(), stop.clone());
        let job: Job = Box::new(move |signal| {
            let stop = Stop { flag, signal };
            // A panic in a wait must not take the watcher down, nor leave the future waiting.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sleep(&stop)));
            done.fired.store(true, Ordering::SeqCst);
            if let Some(waker) = lock(&done.waker).take() {
                waker.wake();
            }
        });
        let signal = dispatch(job);
        if signal.is_none() {
            // No thread could be had: the future polls again at once instead of waiting.
            shared.fired.store(true, Ordering::SeqCst);
        }
        Watch { shared, stop, signal, interrupt: Box::new(interrupt) }
    }

    /// Waits until one of `fds` is ready (readable or writable, as each says).
    pub(crate) fn fds(fds: Vec<(OwnedFd, Ready)>) -> Watch {
        Watch::start(
            move |stop| {
                stop.wait_fds(&fds);
            },
            || {},
        )
    }

    /// Ready once the wait ended; otherwise wakes `cx` when it does.
    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.shared.fired.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        *lock(&self.shared.waker) = Some(cx.waker().clone());
        // Fired between the look and the store: its waker may have been taken already.
        if self.shared.fired.load(Ordering::SeqCst) { Poll::Ready(()) } else { Poll::Pending }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if self.shared.fired.load(Ordering::SeqCst) {
            return;
        }
        self.stop.store(true, Ordering::SeqCst);
        if let Some(signal) = &self.signal {
            let _ = rustix::io::write(signal.as_fd(), &1u64.to_ne_bytes());
        }
        (self.interrupt)();
    }
}

/// One step of a future made with [`retry`]: done, or wait on this watch and try again.
pub(crate) enum Step<T> {
    Done(T),
    Wait(Watch),
}

/// A future that calls `attempt` (which must not block) until it is done, waiting on the watch
/// each failed attempt hands back. Dropping it drops the watch.
pub(crate) fn retry<T>(mut attempt: impl FnMut() -> Step<T>) -> impl Future<Output = T> {
    let mut watch: Option<Watch> = None;
    std::future::poll_fn(move |cx| {
        // Watches that fire at once (the state moved while the watch started) are retried here,
        // a few times, before the task yields to its executor.
        for _ in 0..8 {
            if let Some(w) = &watch {
                if w.poll(cx).is_pending() {
                    return Poll::Pending;
                }
                watch = None;
            }
            match attempt() {
                Step::Done(value) => return Poll::Ready(value),
                Step::Wait(w) => watch = Some(w),
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    })
}

/// A watcher's work: given the thread's signal eventfd.
type Job = Box<dyn FnOnce(Arc<OwnedFd>) + Send>;

/// The idle watcher threads of this process.
struct Idle {
    /// The process they belong to: a forked child inherits the list but not the threads.
    pid: u32,
    threads: Vec<Watcher>,
}

struct Watcher {
    id: u64,
    jobs: mpsc::Sender<Job>,
    signal: Arc<OwnedFd>,
}

static IDLE: Mutex<Idle> = Mutex::new(Idle { pid: 0, threads: Vec::new() });
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn idle() -> MutexGuard<'static, Idle> {
    // A fork made while another thread holds the list would leave the child's copy locked for
    // good: the fork holds it, and hands it to the child unlocked.
    static HOOKED: std::sync::Once = std::sync::Once::new();
    HOOKED.call_once(|| crate::process::hooks::at_fork("asyncio watchers", hold_idle, drop));
    let mut idle = lock(&IDLE);
    let pid = std::process::id();
    if idle.pid != pid {
        idle.threads.clear();
        idle.pid = pid;
    }
    idle
}

/// Held across a fork by the forking thread (see [`idle`]); the child drops it, unlocking its
/// copy, and its first `idle()` forgets the parent's watchers.
fn hold_idle() -> crate::process::hooks::Held {
    Box::new(lock(&IDLE))
}

/// Hands `job` to an idle watcher, or to a new one; returns the signal of the thread that runs
/// it (`None` if no thread could be started; the job is dropped).
fn dispatch(mut job: Job) -> Option<Arc<OwnedFd>> {
    loop {
        let Some(watcher) = idle().threads.pop() else { break };
        match watcher.jobs.send(job) {
            Ok(()) => return Some(watcher.signal),
            Err(mpsc::SendError(back)) => job = back,
        }
    }
    let signal = Arc::new(crate::sys::poll::eventfd().ok()?);
    let (jobs, inbox) = mpsc::channel::<Job>();
    // The receiver is alive (the thread starts with it), so this cannot fail.
    let _ = jobs.send(job);
    let watcher = Watcher { id: NEXT_ID.fetch_add(1, Ordering::Relaxed), jobs, signal: signal.clone() };
    std::thread::Builder::new().name("multiproc-watch".into()).spawn(move || serve(watcher, inbox)).ok()?;
    Some(signal)
}

/// A watcher thread: runs jobs, rejoins the idle list after each, and ends once idle long enough.
fn serve(watcher: Watcher, inbox: mpsc::Receiver<Job>) {
    loop {
        match inbox.recv_timeout(IDLE_FOR) {
            Ok(job) => {
                // A late stop meant for the previous job must not cut this one short.
                drain(watcher.signal.as_fd());
                job(watcher.signal.clone());
                let mut idle = idle();
                idle.threads.push(Watcher {
                    id: watcher.id,
                    jobs: watcher.jobs.clone(),
                    signal: watcher.signal.clone(),
                });
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let mut idle = idle();
                match idle.threads.iter().position(|w| w.id == watcher.id) {
                    Some(at) => {
                        idle.threads.swap_remove(at);
                        return;
                    }
                    // Taken from the list: a job is on its way.
                    None => continue,
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// A future ready at `deadline`: a watcher sleeps until then.
pub(crate) fn timer(deadline: Instant) -> Watch {
    Watch::start(
        move |stop| {
            stop.wait_until(deadline);
        },
        || {},
    )
}

impl Stop {
    /// Sleeps until `deadline` or the watch is dropped.
    fn wait_until(&self, deadline: Instant) -> bool {
        loop {
            if self.flag.load(Ordering::SeqCst) {
                return false;
            }
            match wait_ready(&[(self.signal.as_fd(), Ready::Read)], Some(deadline)) {
                Ok(ready) if ready[0] => drain(self.signal.as_fd()),
                _ => return Instant::now() >= deadline,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{IDLE, lock};
    use crate::{Process, Queue, StartMethod};

    fn get_in_a_runtime(q: Queue<u8>) -> u8 {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
        rt.block_on(q.get_async()).expect("an item")
    }

    /// A fork while another thread holds the watcher list: the fork waits for it, and the child
    /// gets a list it can lock (without the hook, the child's first wait would hang).
    #[test]
    fn a_fork_while_another_thread_holds_the_watcher_list_leaves_the_child_a_usable_one() {
        let q = Queue::<u8>::new().unwrap();
        // Make sure the hook is registered, as any earlier wait would.
        drop(super::idle());
        let (held, holding) = std::sync::mpsc::channel();
        let holder = std::thread::spawn(move || {
            let _list = lock(&IDLE);
            held.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(300));
        });
        holding.recv().unwrap();
        let mut child =
            Process::builder().start_method(StartMethod::Fork).spawn(get_in_a_runtime, (q.clone(),)).unwrap();
        // Late enough that the child must wait for it, with a watcher.
        std::thread::sleep(Duration::from_millis(100));
        q.put(4).unwrap();
        let got = child.join_timeout(Duration::from_secs(30));
        if got.is_err() {
            let _ = child.kill();
        }
        holder.join().unwrap();
        assert_eq!(got.unwrap(), 4);
    }
}
