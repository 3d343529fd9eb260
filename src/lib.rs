//! Python's `multiprocessing`, in Rust: processes started by fork, spawn or a fork server, with
//! typed arguments and results, that cannot hang you or be left behind; locks, events and the
//! rest that survive a holder being killed; pipes and queues that move millions of items a
//! second; process pools where a crashed worker costs one task, not the program.
//!
//! # A tour
//!
//! ## Starting a process
//! A task is a plain function (or a closure that captures nothing) and a tuple of arguments that
//! serde can encode. [`Process::spawn`] starts it in a child; [`Process::join`] waits for it and
//! returns what it returned.
//!
//! ```
//! use multiproc::Process;
//!
//! fn sell(tickets: u32, buyer: String) -> String {
//!     format!("{buyer} bought {tickets} tickets in process {}", std::process::id())
//! }
//!
//! let mut p = Process::spawn(sell, (2, "egon".to_string())).unwrap();
//! println!("{}", p.join().unwrap());
//! ```
//!
//! No line in `main` is needed: a constructor that runs before `main` turns a re-executed program
//! into the child (see [`StartMethod`]), and that works the same in `cargo test` binaries.
//!
//! ## Processes as objects
//! Python's subclass-of-`Process` style is a serde struct implementing [`Run`], started with
//! [`Process::start`]. Names, the daemon flag and the start method go through
//! [`Process::builder`]. A process can be waited for with a deadline ([`Process::join_timeout`]),
//! polled ([`Process::is_alive`], [`Process::exit_code`]) and signalled
//! ([`terminate`](Process::terminate), [`kill`](Process::kill), [`interrupt`](Process::interrupt)).
//!
//! ## When things go wrong, you get data, not a hang
//! A panic in the child comes back as [`JoinError::Panicked`] with its message; an early
//! `exit(3)`, an abort or a kill as [`JoinError::Exited`] with an [`ExitStatus`] that names the
//! code or the [`Signal`]. A child that is a different build from its parent refuses to run the
//! task ([`ErrorKind::BuildMismatch`]) instead of jumping to a wrong address.
//!
//! ```
//! use multiproc::{ExitStatus, JoinError, Process};
//! fn quit() -> u8 { std::process::exit(3) }
//! let mut p = Process::spawn(quit, ()).unwrap();
//! assert!(matches!(p.join(), Err(JoinError::Exited(ExitStatus::Code(3)))));
//! ```
//!
//! ## Start methods
//! [`StartMethod::Fork`], [`StartMethod::Spawn`] and [`StartMethod::ForkServer`] (the default;
//! [`StartMethod`] says why). A [`Context`] binds the whole API to
//! one method; [`set_start_method`] sets the process-wide default once.
//!
//! ## Handles travel with the arguments
//! An [`Fd`] (and later every lock, queue and pipe end of this crate) can sit inside a task's
//! arguments: its descriptor is inherited under fork and passed over a Unix socket under spawn and
//! forkserver, and the child gets a working handle (see [`handle`]).
//!
//! ## Synchronization
//! [`Lock`], [`RLock`], [`Semaphore`], [`BoundedSemaphore`], [`Event`], [`Condition`] and
//! [`Barrier`] work across processes: create one, clone it into the arguments of the processes
//! that share it. They live in shared memory and block on futexes after a short spin, so an
//! uncontended lock costs a few nanoseconds and a hand-off between running processes well under
//! a microsecond. A process killed while holding a lock does not deadlock the others: the next
//! acquirer gets the lock with an [`OwnerDied`] error that carries the guard (see [`sync`]).
//!
//! ```
//! use multiproc::{Process, Semaphore};
//!
//! fn sing(room: Semaphore, guest: u32) -> u32 {
//!     room.acquire(); // at most four guests inside at once
//!     room.release().unwrap();
//!     guest
//! }
//!
//! let room = Semaphore::new(4).unwrap();
//! let mut guests: Vec<_> = (0..8).map(|g| Process::spawn(sing, (room.clone(), g)).unwrap()).collect();
//! let sung: u32 = guests.iter_mut().map(|g| g.join().unwrap()).sum();
//! assert_eq!(sung, 28);
//! ```
//!
//! ## Pipes and queues
//! [`pipe`] gives two typed [`Connection`]s: what one end sends, the other receives, messages of
//! any size (hundreds of MiB) with their boundaries kept; handles (locks, descriptors, other
//! connections, queues) may ride inside a message. A [`Queue`] is a multi-producer,
//! multi-consumer ring in shared memory: `put` encodes the item straight into the ring in the
//! caller — an item that cannot be encoded fails right there — and `get` decodes it straight out.
//! There is no feeder thread, so a child that put items always exits, and a process killed in
//! the middle of a `put` or `get` leaves the queue whole for everyone else (see [`queue`]).
//! [`SimpleQueue`] and [`JoinableQueue`] (with `task_done` and `join`) complete Python's set, and
//! [`connection::wait`] waits for whichever of several connections, queues and processes is
//! ready first.
//!
//! ```
//! use multiproc::{Process, Queue};
//!
//! fn cook(q: Queue<Option<String>>) {
//!     for dish in ["noodles", "pizza"] {
//!         q.put(Some(dish.to_string())).unwrap();
//!     }
//!     q.put(None).unwrap(); // the sentinel
//! }
//!
//! let q = Queue::new().unwrap();
//! let mut cook = Process::spawn(cook, (q.clone(),)).unwrap();
//! let mut eaten = Vec::new();
//! while let Some(dish) = q.get().unwrap() {
//!     eaten.push(dish);
//! }
//! cook.join().unwrap();
//! assert_eq!(eaten, ["noodles", "pizza"]);
//! ```
//!
//! ## Shared state
//! [`Value`] and [`Array`] put plain data (numbers, arrays of numbers: [`shm::ShmSafe`]) in
//! shared memory behind a robust lock; [`RawValue`] and [`RawArray`] without one.
//! [`SharedMemory`] is a block of bytes, named in `/dev/shm` so that any process can attach to it
//! by name, or anonymous; a small cleaner process unlinks whatever a crashed creator left behind.
//!
//! ```
//! use multiproc::{Process, Value};
//!
//! fn take(tickets: Value<i32>) {
//!     *tickets.lock().unwrap() -= 1; // read-modify-write under the value's own lock
//! }
//!
//! let tickets = Value::new(10).unwrap();
//! let mut buyers: Vec<_> = (0..10).map(|_| Process::spawn(take, (tickets.clone(),)).unwrap()).collect();
//! buyers.iter_mut().for_each(|b| b.join().unwrap());
//! assert_eq!(tickets.get(), 0);
//! ```
//!
//! ## The manager
//! A [`Manager`] is a server process that holds shared dicts, lists, namespaces and values, hosts
//! queues, locks, rlocks, semaphores, events, conditions and barriers, and your own types
//! ([`manager::SharedObject`]), all reached through typed proxies: plain values that travel in
//! arguments, queues, pool tasks and other managed objects. Beyond Python,
//! [`manager::DictProxy::add`] and [`manager::DictProxy::apply`] update an entry inside the
//! server under the dict's own lock, so the seeds' shared counter needs no Lock at all; a hosted
//! lock whose holder dies is released by the manager; and a proxy stored inside a managed
//! container stays a live reference.
//!
//! ```
//! use multiproc::{Manager, Process, manager::DictProxy};
//!
//! fn take_one(d: DictProxy<String, i64>) {
//!     d.add(&"num".to_string(), -1).unwrap(); // one step, in the manager
//! }
//!
//! let manager = Manager::start().unwrap();
//! let d = manager.dict::<String, i64>().unwrap();
//! d.insert("num".into(), 10).unwrap();
//! let mut ps: Vec<_> = (0..10).map(|_| Process::spawn(take_one, (d.clone(),)).unwrap()).collect();
//! ps.iter_mut().for_each(|p| p.join().unwrap());
//! assert_eq!(d.get(&"num".to_string()).unwrap(), Some(0));
//! ```
//!
//! [`Manager::serve`] puts one on TCP (or a Unix socket path) for other programs that know its
//! key, [`Manager::connect`] reaches it, and objects registered by name are how programs that
//! share nothing else meet. Decoding never runs code, and a manager runs code named by its
//! clients (update functions, user types) only for its own program's processes (see
//! [`manager`]).
//!
//! ## Pools
//! A [`Pool`] keeps worker processes and feeds them tasks: [`Pool::map`] (chunked, ordered),
//! [`Pool::imap`] and [`Pool::imap_unordered`] (lazy, a bounded number ahead), [`Pool::starmap`],
//! [`Pool::apply`] and [`Pool::apply_async`] with callbacks that run in the parent. A
//! [`ProcessPoolExecutor`] offers the same workers behind `concurrent.futures`' interface:
//! [`TaskFuture`]s, [`pool::as_completed`], [`pool::wait`]. Failures are per task and come back as
//! data — a panic, a worker killed mid-task, a task past its timeout (the pool's, or its own:
//! [`Pool::apply_async_timeout`], [`ProcessPoolExecutor::submit_timeout`]) — while every other
//! task completes and dead workers are replaced (see [`pool`]).
//!
//! ```
//! use multiproc::Pool;
//!
//! fn word_length(word: String) -> usize {
//!     word.len()
//! }
//!
//! let pool = Pool::new(2).unwrap();
//! let words = ["process", "pool", "map"].map(String::from);
//! assert_eq!(pool.map(word_length, words).unwrap(), [7, 4, 3]);
//! ```
//!
//! ## Async code
//! Every blocking wait has an `_async` twin that leaves the runtime's thread free, on any
//! executor and with no feature to turn on: [`Queue::get_async`] and [`Queue::put_async`] (on
//! every queue), [`JoinableQueue::join_async`], [`Connection::recv_async`],
//! [`Event::wait_async`], [`Process::join_async`]; an [`AsyncResult`] and a [`TaskFuture`] are
//! futures, and `imap` and [`pool::as_completed`] are streams. A future dropped before it is
//! ready has taken nothing — a `get_async` that lost a `select!` leaves its item in the queue —
//! and [`asyncio::to_thread`] runs the calls that have no twin (a manager proxy's) off the
//! runtime (see [`asyncio`]).
//!
//! ```
//! use multiproc::{Process, Queue};
//! fn cook(q: Queue<String>) { q.put("noodles".into()).unwrap() }
//!
//! let q = Queue::new().unwrap();
//! let mut cook = Process::spawn(cook, (q.clone(),)).unwrap();
//! let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! rt.block_on(async {
//!     assert_eq!(q.get_async().await.unwrap(), "noodles");
//!     cook.join_async().await.unwrap();
//! });
//! ```
//!
//! ## More than one machine
//! With the feature `cluster`, the same pool runs on many machines: build it on a cluster (a
//! Redis-protocol server) instead of here, and start this same program on each worker machine
//! with `MULTIPROC_NODE` naming the server — it becomes a node before `main` runs. Tasks are at
//! least once with leases: a node that dies or is cut off has its tasks run elsewhere, a task
//! that crashes fails alone, and nothing waits for ever (see the `cluster` module).
//!
//! ```no_run
//! # #[cfg(feature = "cluster")]
//! # fn main() -> Result<(), multiproc::Error> {
//! let pool = match multiproc::cluster::Cluster::from_env()? {
//!     Some(cluster) => cluster.pool().build()?, // MULTIPROC_CLUSTER=redis://… set
//!     None => multiproc::Pool::new(4)?,
//! };
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "cluster"))]
//! # fn main() {}
//! ```
//!
//! ## Children never linger
//! Beyond Python: children are SIGKILLed when their parent dies, even by SIGKILL
//! ([`ProcessBuilder::die_with_parent`] turns that off for one child); every finished child is
//! reaped; at the program's end daemonic children are terminated and the others joined, as
//! Python does.
//!
//! ## Features
//! - `progress`: a progress bar for `Pool::map` and `Pool::imap` (`PoolBuilder::progress`).
//! - `self-describing`: `codec::SelfDescribing`, for values with serde features postcard cannot
//!   carry (see [`codec`]).
//! - `cluster`: past one machine, on a Redis-protocol server: `Cluster::pool()` builds the same
//!   `Pool` and `ProcessPoolExecutor` with tasks run by nodes of the same binary (started with
//!   `MULTIPROC_NODE`), and named queues, dicts, lists, locks, semaphores, events and barriers
//!   with leases (see the `cluster` module: what differs, and the failure contract).
//! - `cluster-tls`: `rediss://` addresses for the cluster (rustls).
//! - `tracing`: events for the program's `tracing` subscriber (target `multiproc`): children
//!   started and their exits seen, pool workers replaced, the fork server launched or found gone,
//!   connections that failed their handshake or were pushed out by strangers, what happens at
//!   exit, and the `/dev/shm` cleaner's starts. Without it they compile to nothing.
//!
//! ## How the crate is layered
//! Each layer uses only those below it, so each can be read (and tested) without the ones above:
//!
//! 1. `sys` — system calls, futexes, pidfds, the `/dev/shm` cleaner; it imports nothing of the
//!    crate above it.
//! 2. `entry` (code named by offset), `handle` (descriptors inside values), `codec` (why a value
//!    did not encode), `wire` (the authenticated, framed sockets and the door for strangers).
//! 3. [`process`]: starting, watching and joining children; layers above hook into a child's
//!    start through `process::hooks` instead of being named by it.
//! 4. [`sync`], [`shm`], [`queue`], [`connection`]: the shared objects; none of them names the
//!    manager or the pool.
//! 5. [`manager`] and [`pool`], on top of everything else.
//!
//! # Python → Rust
//!
//! | Python | multiproc |
//! |---|---|
//! | `Process(target=f, args=(a, b)).start()` | [`Process::spawn(f, (a, b))`](Process::spawn) |
//! | `Process(name=, daemon=)` | [`Process::builder()`](Process::builder)`.name(..).daemon(..)` |
//! | subclass of `Process` with `run()` | a serde struct implementing [`Run`]; [`Process::start`] |
//! | `p.join()`, `p.join(timeout)` | [`join`](Process::join), [`join_timeout`](Process::join_timeout) (returns the value) |
//! | `p.is_alive()`, `p.exitcode`, `p.pid`, `p.name`, `p.daemon` | [`is_alive`](Process::is_alive), [`exit_code`](Process::exit_code), [`pid`](Process::pid), [`name`](Process::name), [`is_daemon`](Process::is_daemon) |
//! | `p.terminate()`, `p.kill()`, `p.interrupt()` | [`terminate`](Process::terminate), [`kill`](Process::kill), [`interrupt`](Process::interrupt) |
//! | `p.sentinel` | [`sentinel`](Process::sentinel) (a pidfd) |
//! | `get_context('fork')`, `set_start_method`, `get_start_method` | [`Context::new`], [`set_start_method`], [`get_start_method`] |
//! | `set_executable(path)` | [`ProcessBuilder::executable`] |
//! | `current_process()`, `parent_process()`, `active_children()` | [`current_process`], [`parent_process`], [`active_children`] |
//! | `os.process_cpu_count()` / `cpu_count()` | [`cpu_count`] (affinity and cgroup quota aware) |
//! | `reduction.DupFd` / `send_handle` | [`Fd`] inside the arguments |
//! | `Lock()`, `with lock:`, `lock.acquire(block, timeout)`, `lock.release()` | [`Lock::new`], [`Lock::acquire`] (a guard), [`Lock::acquire_with`], [`Lock::release`] |
//! | `lock.acquire(False)`, `lock.acquire(timeout=t)` | [`Lock::try_acquire`], [`Lock::acquire_timeout`] |
//! | `RLock()` | [`RLock`] |
//! | `Semaphore(n)`, `BoundedSemaphore(n)`, `get_value()` | [`Semaphore`], [`BoundedSemaphore`], [`Semaphore::value`] |
//! | `Event()`: `set`, `clear`, `is_set`, `wait(timeout)` | [`Event`]: the same, [`Event::wait_timeout`] |
//! | `Condition(lock)`: `wait`, `wait_for`, `notify(n)`, `notify_all` | [`Condition`]: the same, plus [`Condition::wait_while`] |
//! | `Barrier(parties, action, timeout)`: `wait`, `abort`, `reset`, `broken` | [`Barrier::with`]: the same |
//! | `Pipe()`, `Pipe(duplex=False)` | [`pipe`], [`pipe_one_way`] |
//! | `conn.send(obj)`, `conn.recv()`, `conn.poll(t)` | [`Connection::send`], [`Connection::recv`], [`Connection::poll`], plus [`Connection::recv_timeout`] |
//! | `send_bytes`, `recv_bytes`, `recv_bytes_into` | the same names; [`Connection::try_clone`] for a second handle |
//! | `await loop.run_in_executor(None, q.get)`, `asyncio.to_thread(f)` | [`Queue::get_async`] and the other `_async` methods, [`asyncio::to_thread`] (see [`asyncio`]) |
//! | `multiprocessing.connection.wait(objects, timeout)` | [`connection::wait`] (also over queues) |
//! | `connection.Listener(address, authkey)`, `connection.Client(address, authkey)` | [`connection::Listener`] ([`bind`](connection::Listener::bind), [`bind_unix`](connection::Listener::bind_unix)), [`connection::client`]: typed, over TCP or a Unix socket |
//! | `Queue(maxsize)`: `put`, `get`, `put_nowait`, `get_nowait`, `qsize`, `empty`, `full`, `close` | [`Queue::bounded`]: [`put`](Queue::put), [`get`](Queue::get), [`try_put`](Queue::try_put), [`try_get`](Queue::try_get), [`len`](Queue::len), [`is_empty`](Queue::is_empty), [`is_full`](Queue::is_full), [`close`](Queue::close) |
//! | `q.put(obj, timeout=t)`, `q.get(timeout=t)` | [`Queue::put_timeout`], [`Queue::get_timeout`] |
//! | `SimpleQueue()`, `JoinableQueue()`: `task_done`, `join` | [`SimpleQueue`], [`JoinableQueue`]: the same |
//! | `Value(typecode, v)`, `v.value`, `with v.get_lock():` | [`Value::new`], [`Value::get`]/[`Value::set`], [`Value::lock`] (a guard) |
//! | `Array(typecode, n)`, `arr[i]`, `arr[:]` | [`Array::new`], [`Array::get`]/[`Array::set`], [`Array::to_vec`], [`Array::lock`] (a slice) |
//! | `RawValue`, `RawArray` | [`RawValue`], [`RawArray`] |
//! | `shared_memory.SharedMemory(name, create, size)`, `.buf`, `.unlink()` | [`SharedMemory::create`], [`SharedMemory::attach`], [`SharedMemory::bytes`], [`read_at`](SharedMemory::read_at)/[`write_at`](SharedMemory::write_at), [`SharedMemory::unlink`] |
//! | `shared_memory.ShareableList(seq)`: `sl[i]`, `sl[i] = v`, `count`, `index` | [`shm::ShareableList::new`]: [`get`](shm::ShareableList::get), [`set`](shm::ShareableList::set), [`count`](shm::ShareableList::count), [`index`](shm::ShareableList::index) |
//! | `managers.SharedMemoryManager()`: `SharedMemory(size)`, `ShareableList(seq)`, `shutdown()` | [`shm::SharedMemoryManager::start`]: [`shared_memory`](shm::SharedMemoryManager::shared_memory), [`shareable_list`](shm::SharedMemoryManager::shareable_list), [`shutdown`](shm::SharedMemoryManager::shutdown); [`shm::BlockKeeper`] for children |
//! | `Manager()`, `manager.dict()`, `d[k]`, `d[k] = v`, `del d[k]`, `k in d`, `len(d)`, `d.items()`, `d.update(..)`, `d.clear()`, `d.setdefault(k, v)`, `d.popitem()` | [`Manager::start`], [`Manager::dict`], [`get`](manager::DictProxy::get) (by any borrowed form of the key), [`insert`](manager::DictProxy::insert), [`remove`](manager::DictProxy::remove), [`contains_key`](manager::DictProxy::contains_key), [`len`](manager::DictProxy::len), [`items`](manager::DictProxy::items) (in insertion order), [`update`](manager::DictProxy::update), [`clear`](manager::DictProxy::clear), [`setdefault`](manager::DictProxy::setdefault), [`popitem`](manager::DictProxy::popitem) |
//! | `manager.list()`: `append`, `pop`, `l[i]`, `l[i] = v`, `len`, `extend`, `remove`, `l[:]`, `insert`, `pop(i)`, `index`, `count`, `reverse`, `clear`, `sort` | [`Manager::list`]: [`push`](manager::ListProxy::push), [`pop`](manager::ListProxy::pop), [`get`](manager::ListProxy::get), [`set`](manager::ListProxy::set), [`len`](manager::ListProxy::len), [`extend`](manager::ListProxy::extend), [`remove`](manager::ListProxy::remove), [`to_vec`](manager::ListProxy::to_vec), [`insert`](manager::ListProxy::insert), [`pop_at`](manager::ListProxy::pop_at), [`index`](manager::ListProxy::index), [`count`](manager::ListProxy::count), [`reverse`](manager::ListProxy::reverse), [`clear`](manager::ListProxy::clear), [`sort`](manager::ListProxy::sort) |
//! | `manager.Namespace()`, `manager.Value(..)`, `manager.Queue(maxsize)`, `manager.JoinableQueue()`, `manager.Lock()`, `manager.RLock()`, `manager.Semaphore(n)`, `manager.BoundedSemaphore(n)`, `manager.Event()`, `manager.Barrier(n)`, `manager.Condition(lock)` | [`Manager::namespace`], [`Manager::value`], [`Manager::queue`]/[`Manager::queue_bounded`], [`Manager::joinable_queue`], [`Manager::lock`], [`Manager::rlock`], [`Manager::semaphore`], [`Manager::bounded_semaphore`], [`Manager::event`], [`Manager::barrier`], [`Manager::condition`]/[`Manager::condition_with`] |
//! | `with lock:` on a manager's lock, `lock.acquire(block, timeout)` | [`manager::LockProxy::acquire`] (a guard, which also says whether the last holder died), [`manager::LockProxy::acquire_with`] |
//! | `get_context(m).Manager()`, `BaseManager(address, authkey)`: `start()`, `connect()`, `shutdown()` | [`Manager::builder`], [`Manager::serve`]/[`Manager::serve_unix`], [`Manager::connect`], [`Manager::shutdown`] |
//! | `BaseManager.register("get_queue", callable=lambda: q)`, `manager.get_queue()` | [`Manager::register`], [`Manager::lookup`]; [`Manager::queue_named`] and the other `_named` makers |
//! | `BaseManager.register(typeid, MyClass)` and its proxy | [`manager::SharedObject`], [`ManagerBuilder::register`], [`Manager::object`], [`manager::ObjectProxy::call`] |
//! | `current_process().authkey` | [`CurrentProcess::authkey`] |
//! | `with lock: d[k] += n` | [`manager::DictProxy::add`], [`manager::DictProxy::apply`] (atomic in the server, no lock) |
//! | `Pool(processes, initializer, initargs, maxtasksperchild)` | [`Pool::new`], [`Pool::builder`] (plus a per-task timeout) |
//! | `pool.map(f, it, chunksize)`, `imap`, `imap_unordered`, `starmap` | [`Pool::map`], [`Pool::map_chunked`], [`Pool::imap`], [`Pool::imap_unordered`], [`Pool::starmap`] |
//! | `pool.apply`, `apply_async(f, args, callback, error_callback)`, `map_async` | [`Pool::apply`], [`Pool::apply_async`], [`Pool::apply_async_with`], [`Pool::map_async`] |
//! | `AsyncResult.get(timeout)`, `wait`, `ready`, `successful` | [`AsyncResult::get`], [`AsyncResult::get_timeout`], the same |
//! | `pool.close()`, `join()`, `terminate()`, `with Pool() as p:` | the same; dropping a pool terminates it |
//! | loky: `get_reusable_executor(max_workers)`, an executor's idle `timeout`, memory-leak protection | [`pool::get_reusable_executor`], [`PoolBuilder::idle_timeout`](pool::PoolBuilder::idle_timeout), [`PoolBuilder::max_memory_per_child`](pool::PoolBuilder::max_memory_per_child); and [`Pool::resize`] |
//! | `ProcessPoolExecutor(n)`: `submit`, `map`, `shutdown(wait, cancel_futures)` | [`ProcessPoolExecutor`]: the same |
//! | `Future`: `result`, `exception`, `cancel`, `cancelled`, `running`, `done`, `add_done_callback` | [`TaskFuture`]: the same (and `.await`) |
//! | `as_completed(fs, timeout)`, `wait(fs, timeout, return_when)` | [`pool::as_completed`], [`pool::wait`] |
//!
//! # Differences from Python
//! - Arguments and results are typed and encoded with serde ([postcard]), never pickled: decoding
//!   cannot run code, and a value that cannot be encoded fails in the caller. An encode or decode
//!   error names the type, the place in the value (`.picks[1]`), the item's index in a `map`, and
//!   the message the `Serialize`/`Deserialize` gave.
//! - postcard writes no field names or type tags, so `#[serde(skip_serializing_if)]`,
//!   `#[serde(flatten)]`, `#[serde(untagged)]` and `serde_json::Value` cannot cross it as they
//!   are: each is refused with an error that names the type and the attribute — over a pipe and
//!   in a task's arguments before the other side does any work — and
//!   `codec::SelfDescribing` (feature `self-describing`) carries them as MessagePack (see
//!   [`codec`]).
//! - A pool's chunk of items made only of numbers, `bool`s and `char`s (in tuples, arrays and
//!   structs) travels on a flat wire instead: each item its fields' fixed-width bytes, no codec
//!   per item, so `pool.map(f, 0..n)` costs about 16 ns per item here, counting everything from
//!   the call to the result vector (CPython's `pool.map`: 187 ns). The first item
//!   picks the wire, which holds while items keep its size; the first that does not (say, a
//!   custom `Serialize` whose width depends on the value) sends the rest by postcard. Results
//!   come back the same way. A type whose `Serialize` and `Deserialize` disagree on field widths
//!   is caught on its first item, and goes by postcard.
//! - `join` returns the task's value; the error says how the child failed.
//! - Children die with a killed parent unless asked not to.
//! - A lock whose holder died is taken over by the next acquirer (with [`OwnerDied`]) instead of
//!   deadlocking everyone.
//! - A queue has no feeder thread: `put` returns once the item is in shared memory, an item that
//!   cannot be encoded fails in `put`, and a process that put items can always exit. An
//!   unbounded queue is unbounded in items; a `put` into a full ring waits for room.
//! - Queue handles may be sent over a [`Connection`] (Python forbids it).
//! - A pool never hangs on a dead worker: the task it ran fails with the signal or exit code, and
//!   a new worker takes its place. Tasks can have a timeout; a running future can be cancelled.
//! - A task never waits behind a long one while a worker is idle: work a worker holds but has
//!   not started is taken back and given to the idle one. Dropping an `imap` or executor `map`
//!   iterator early cancels the items not started; [`Imap::cancel`](pool::Imap::cancel) also
//!   stops the running ones.
//! - A named [`SharedMemory`] segment that its creator never unlinked (it crashed, say) is
//!   unlinked by a small cleaner process once the creator is gone, under every start method;
//!   nothing piles up in `/dev/shm`. Python's resource tracker does this only at the end of the
//!   whole program, and before 3.13 also unlinked segments that a process merely attached to.
//!   Like Python's, the cleaner ignores SIGINT and SIGTERM; killed, it is replaced.
//! - Ctrl-C: under every start method a child is in its parent's process group, so a terminal's
//!   Ctrl-C reaches every child as well as the parent and (by default) ends them, where Python's
//!   children raise `KeyboardInterrupt`. [`ProcessBuilder::ignore_interrupts`] makes a child
//!   ignore it; pool and executor workers always do, and the fork server blocks it.
//! - A [`JoinableQueue`]'s `join` does not hang on an item whose consumer died before its
//!   `task_done`: the item is counted done (and in [`JoinableQueue::lost`]).
//! - A `try_put`/`put_timeout` of an item larger than the ring keeps its deadline: the item
//!   comes back and nothing of it stays in the queue.
//! - A [`Condition`]'s notification goes to the longest-waiting live waiter that was waiting
//!   when it was sent; a waiter killed in `wait` is passed over.
//! - Killing the fork server ends none of its children: the parent still signals and joins them,
//!   with their true results and exit statuses. Spawned and fork-server children start in the
//!   parent's current directory, hold only the descriptors they were given, and default to the
//!   start method they were started with.
//! - A panic in a child comes back with its location (and backtrace with `RUST_BACKTRACE`), also
//!   when a `Serialize`/`Deserialize` of the arguments or result panicked.
//! - `fork` children keep stdin; `spawn` and fork-server children read an empty stdin.
//! - Manager objects live as long as their manager (a proxy is a plain value with no reference
//!   count); a hosted lock can be released only by the thread that holds it, and is released by
//!   the manager when that thread or process ends; a manager runs client-named code (update
//!   functions, user types) only for its own program's processes.
//! - Strangers cannot lock clients out of a manager or a [`Listener`](connection::Listener):
//!   each connection does its handshake on its own thread with a 5 s deadline, and silent ones
//!   are capped (256 in all, 32 per IP address or user) with the oldest pushed out for a
//!   newcomer. A private manager serves only its owner's user.
//! - A proxy carries its manager's key only to processes of the same program (Python leaves it
//!   out of every pickle but those for a new process); stored or sent elsewhere, the reader uses
//!   the key it knows.
//!
//! [postcard]: https://docs.rs/postcard

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "multiproc runs on Linux 5.3 or later only: it is built on pidfds, futexes, memfds and /proc \
     (a port to another system is a new `sys/` backend)"
);

/// Starts a closure in a child process with the values it names — what a closure would
/// capture — sent along as its arguments: `spawn!((a, b) || a + b)` runs `a + b` in the child
/// with copies of `a` and `b`. Returns what [`Process::spawn`] does.
///
/// A closure handed to [`Process::spawn`] must capture nothing (a child cannot rebuild what it
/// borrowed or owned in the parent); listing the values here turns captures into arguments,
/// which serde carries. Naming a value not listed is still a capture, refused at build time.
///
/// ```
/// let word = String::from("ha");
/// let times = 3usize;
/// let mut child = multiproc::spawn!((word, times) || word.to_uppercase().repeat(times)).unwrap();
/// assert_eq!(child.join().unwrap(), "HAHAHA");
/// ```
/// Python counterpart: `Process(target=lambda: ..., ...)` is impossible under spawn (a lambda
/// does not pickle); procspawn's `spawn!((a, b) || ...)` is this macro's model.
#[macro_export]
macro_rules! spawn {
    (($($value:ident),* $(,)?) || $body:expr) => {
        $crate::Process::spawn_with(($($value,)*), |($($value,)*)| $body)
    };
}

pub mod asyncio;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod codec;
pub mod connection;
mod entry;
mod error;
pub mod handle;
pub mod manager;
pub mod pool;
pub mod process;
pub mod queue;
pub mod shm;
pub mod sync;
mod sys;
mod trace;
mod wire;

pub use connection::{Connection, pipe, pipe_one_way};
pub use error::{Error, ErrorKind, Result};
pub use handle::Fd;
pub use manager::{Manager, ManagerBuilder};
pub use pool::{AsyncResult, Pool, ProcessPoolExecutor, TaskFuture};
pub use process::{
    ChildProcess, Context, CurrentProcess, ExitStatus, JoinError, ParentProcess, Process, ProcessBuilder, Run, Signal,
    StartMethod, Task, UnknownStartMethod, active_children, cpu_count, current_process, get_start_method,
    parent_process, set_start_method,
};
pub use queue::{JoinableQueue, Queue, SimpleQueue};
pub use shm::{Array, RawArray, RawValue, SharedMemory, Value};
pub use sync::{
    AcquireTimeoutError, Barrier, BoundedSemaphore, BrokenBarrier, Condition, ConditionGuard, ConditionLock, Event,
    Lock, LockGuard, LockResult, NotOwner, OwnerDied, RLock, RLockGuard, ReleaseError, Semaphore,
    SemaphoreReleaseError, TryAcquireError, WaitError,
};
