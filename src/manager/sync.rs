//! Synchronization hosted by a manager, for processes that share nothing but its address:
//! [`LockProxy`], [`RLockProxy`], [`SemaphoreProxy`], [`EventProxy`], [`ConditionProxy`],
//! [`BarrierProxy`].
//!
//! A hosted lock belongs to the connection that took it — one thread of one process (see
//! [`proxy`](super::proxy)). When that connection closes (the thread or process ended, or was
//! killed) the manager releases the lock, and the next holder learns of it from
//! [`LockProxyGuard::owner_died`]; nobody deadlocks on a dead holder.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use super::Manager;
use super::protocol::{BarrierOp, ConditionOp, EventOp, Kind, LockOp, New, Reply, Request, SemaphoreOp, Wait};
use super::proxy::{Address, Proxy, call, call_bool, call_done, call_waited, proxy_type, unexpected, wait_ms};
use crate::error::Result;
use crate::sync::BrokenBarrier;

impl Manager {
    /// A lock hosted by the manager.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) if the server is gone.
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// let lock = manager.lock().unwrap();
    /// let guard = lock.acquire().unwrap();
    /// assert!(lock.locked().unwrap());
    /// drop(guard);
    /// ```
    /// Python counterpart: `manager.Lock()`.
    pub fn lock(&self) -> Result<LockProxy> {
        self.new_object(New::Lock { reentrant: false })
    }

    /// As [`dict_named`](Self::dict_named), for a lock.
    ///
    /// # Errors
    /// As [`dict_named`](Self::dict_named).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let lock = m.lock_named("printer").unwrap();
    /// let _guard = lock.acquire().unwrap();
    /// assert!(m.lock_named("printer").unwrap().locked().unwrap());
    /// ```
    /// Python counterpart: `BaseManager.register("get_lock", ...)`.
    pub fn lock_named(&self, name: &str) -> Result<LockProxy> {
        self.named(name, New::Lock { reentrant: false })
    }

    /// A recursive lock hosted by the manager: the thread that holds it may take it again, and
    /// it is free once every hold is released.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) if the server is gone.
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// let rlock = manager.rlock().unwrap();
    /// let outer = rlock.acquire().unwrap();
    /// let inner = rlock.acquire().unwrap();
    /// drop(inner);
    /// drop(outer);
    /// assert!(rlock.release().is_err());
    /// ```
    /// Python counterpart: `manager.RLock()`.
    pub fn rlock(&self) -> Result<RLockProxy> {
        self.new_object(New::Lock { reentrant: true })
    }

    /// A semaphore hosted by the manager, starting at `value`.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) if the server is gone.
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// let room = manager.semaphore(4).unwrap();
    /// room.acquire().unwrap();
    /// assert_eq!(room.value().unwrap(), 3);
    /// room.release().unwrap();
    /// ```
    /// Python counterpart: `manager.Semaphore(value)`.
    pub fn semaphore(&self, value: u32) -> Result<SemaphoreProxy> {
        self.new_object(New::Semaphore { value, bound: None })
    }

    /// A semaphore that may not be released above its starting `value`.
    ///
    /// # Errors
    /// As [`semaphore`](Self::semaphore).
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// let s = manager.bounded_semaphore(1).unwrap();
    /// assert!(s.release().is_err());
    /// ```
    /// Python counterpart: `manager.BoundedSemaphore(value)`.
    pub fn bounded_semaphore(&self, value: u32) -> Result<SemaphoreProxy> {
        self.new_object(New::Semaphore { value, bound: Some(value) })
    }

    /// An event hosted by the manager.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) if the server is gone.
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// let e = manager.event().unwrap();
    /// e.set().unwrap();
    /// assert!(e.wait_timeout(std::time::Duration::from_secs(1)).unwrap());
    /// ```
    /// Python counterpart: `manager.Event()`.
    pub fn event(&self) -> Result<EventProxy> {
        self.new_object(New::Event)
    }

    /// As [`dict_named`](Self::dict_named), for an event.
    ///
    /// # Errors
    /// As [`dict_named`](Self::dict_named).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// m.event_named("ready").unwrap().set().unwrap();
    /// assert!(m.event_named("ready").unwrap().is_set().unwrap());
    /// ```
    /// Python counterpart: `BaseManager.register("get_event", ...)`.
    pub fn event_named(&self, name: &str) -> Result<EventProxy> {
        self.named(name, New::Event)
    }

    /// A condition variable hosted by the manager, over a new hosted [`RLockProxy`] (Python's
    /// default).
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) if the server is gone.
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// let cond = manager.condition().unwrap();
    /// let _held = cond.acquire().unwrap();
    /// assert!(!cond.wait_timeout(std::time::Duration::from_millis(10)).unwrap());
    /// ```
    /// Python counterpart: `manager.Condition()`.
    pub fn condition(&self) -> Result<ConditionProxy> {
        let lock = self.rlock()?;
        self.condition_with(&lock)
    }

    /// A condition variable over an existing hosted lock or rlock.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) if `lock` is not a lock or an
    /// rlock of this manager; [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected).
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// let lock = manager.lock().unwrap();
    /// let cond = manager.condition_with(&lock).unwrap();
    /// let _held = cond.acquire().unwrap();
    /// assert!(lock.locked().unwrap());
    /// assert!(manager.condition_with(&manager.event().unwrap()).is_err());
    /// ```
    /// Python counterpart: `manager.Condition(lock)`.
    pub fn condition_with<L: Proxy>(&self, lock: &L) -> Result<ConditionProxy> {
        let (address, id) = lock.parts();
        if *address != self.address {
            return Err(crate::Error::new(crate::ErrorKind::InvalidInput, "the lock is an object of another manager"));
        }
        self.new_object(New::Condition { lock: id })
    }

    /// A barrier for `parties` processes hosted by the manager.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) for zero parties;
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected).
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// let barrier = manager.barrier(1).unwrap();
    /// assert_eq!(barrier.wait().unwrap(), Ok(0));
    /// assert!(manager.barrier(0).is_err());
    /// ```
    /// Python counterpart: `manager.Barrier(parties)`.
    pub fn barrier(&self, parties: u32) -> Result<BarrierProxy> {
        self.new_object(New::Barrier { parties })
    }
}

/// A hold on a hosted lock, released when dropped. It stays with the thread that took it (the
/// lock belongs to that thread's connection), so it is not `Send`.
///
/// ```
/// let m = multiproc::Manager::start().unwrap();
/// let lock = m.lock().unwrap();
/// {
///     let guard = lock.acquire().unwrap();
///     assert!(!guard.owner_died());
///     assert!(lock.locked().unwrap());
/// }
/// assert!(!lock.locked().unwrap());
/// ```
/// Python counterpart: `with lock:` on a manager's lock.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockProxyGuard<'a> {
    address: &'a Address,
    id: u64,
    owner_died: bool,
    _not_send: PhantomData<*const ()>,
}

impl LockProxyGuard<'_> {
    /// Whether the previous holder went away (its thread or process ended, or was killed)
    /// without releasing the lock, so that the manager released it: the state the lock protects
    /// may be half-changed.
    ///
    /// ```
    /// use multiproc::{Manager, Process, manager::LockProxy};
    /// fn take_and_die(lock: LockProxy) {
    ///     std::mem::forget(lock.acquire().unwrap());
    ///     std::process::abort();
    /// }
    /// let manager = Manager::start().unwrap();
    /// let lock = manager.lock().unwrap();
    /// let _ = Process::spawn(take_and_die, (lock.clone(),)).unwrap().join();
    /// assert!(lock.acquire().unwrap().owner_died());
    /// ```
    /// Python counterpart: none (Python's manager leaves such a lock held forever).
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }
}

impl std::fmt::Debug for LockProxyGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockProxyGuard").field("id", &self.id).field("owner_died", &self.owner_died).finish()
    }
}

impl Drop for LockProxyGuard<'_> {
    fn drop(&mut self) {
        // A manager that is gone holds no lock any more: nothing to report.
        let _ = call(self.address, &Request::Lock { id: self.id, op: LockOp::Release });
    }
}

fn acquire(address: &Address, id: u64, wait: Wait) -> Result<Option<LockProxyGuard<'_>>> {
    match call(address, &Request::Lock { id, op: LockOp::Acquire { wait } })? {
        Reply::Acquired { abandoned } => {
            Ok(Some(LockProxyGuard { address, id, owner_died: abandoned, _not_send: PhantomData }))
        }
        Reply::TimedOut => Ok(None),
        other => Err(unexpected(other)),
    }
}

/// Python's `acquire(block, timeout)`: the hold stays until `release`.
fn acquire_with(address: &Address, id: u64, block: bool, timeout: Option<Duration>) -> Result<bool> {
    if !block && timeout.is_some() {
        return Err(crate::Error::new(
            crate::ErrorKind::InvalidInput,
            "can't specify a timeout for a non-blocking acquire",
        ));
    }
    let wait = if block { timeout.and_then(wait_ms) } else { Some(0) };
    Ok(acquire(address, id, wait)?.map(std::mem::forget).is_some())
}

fn release(address: &Address, id: u64) -> Result<()> {
    call_done(address, &Request::Lock { id, op: LockOp::Release })
}

/// The methods a lock and an rlock share; `$make` names the factory in the examples.
macro_rules! lock_methods {
    ($proxy:ident, $make:literal) => {
        impl $proxy {
            /// Takes the lock, waiting as long as it takes; the guard releases it.
            ///
            /// # Errors
            /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) if the manager is
            /// gone (also while waiting).
            ///
            /// ```
            /// let m = multiproc::Manager::start().unwrap();
            #[doc = concat!("let lock = m.", $make, "().unwrap();")]
            /// let _guard = lock.acquire().unwrap();
            /// ```
            /// Python counterpart: `lock.acquire()`, `with lock:`.
            pub fn acquire(&self) -> Result<LockProxyGuard<'_>> {
                acquire(&self.address, self.id, None)?.ok_or_else(|| unexpected(Reply::TimedOut))
            }

            /// Takes the lock if it is free now.
            ///
            /// # Errors
            /// As [`acquire`](Self::acquire).
            ///
            /// ```
            /// let m = multiproc::Manager::start().unwrap();
            #[doc = concat!("let lock = m.", $make, "().unwrap();")]
            /// assert!(lock.try_acquire().unwrap().is_some());
            /// ```
            /// Python counterpart: `lock.acquire(False)`.
            pub fn try_acquire(&self) -> Result<Option<LockProxyGuard<'_>>> {
                acquire(&self.address, self.id, Some(0))
            }

            /// Takes the lock, waiting up to `timeout`; `None` if it stayed held by someone else.
            ///
            /// # Errors
            /// As [`acquire`](Self::acquire).
            ///
            /// ```
            /// use std::time::Duration;
            /// let m = multiproc::Manager::start().unwrap();
            #[doc = concat!("let lock = m.", $make, "().unwrap();")]
            /// assert!(lock.acquire_timeout(Duration::from_secs(1)).unwrap().is_some());
            /// ```
            /// Python counterpart: `lock.acquire(timeout=t)`.
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<Option<LockProxyGuard<'_>>> {
                acquire(&self.address, self.id, wait_ms(timeout))
            }

            /// Python's `acquire(block, timeout)`: whether the lock was taken. The hold stays
            /// until [`release`](Self::release) (no guard).
            ///
            /// # Errors
            /// As [`acquire`](Self::acquire);
            /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) for a timeout without
            /// `block` (as Python's `ValueError`).
            ///
            /// ```
            /// let m = multiproc::Manager::start().unwrap();
            #[doc = concat!("let lock = m.", $make, "().unwrap();")]
            /// assert!(lock.acquire_with(true, None).unwrap());
            /// lock.release().unwrap();
            /// ```
            /// Python counterpart: `lock.acquire(block=True, timeout=None)`.
            pub fn acquire_with(&self, block: bool, timeout: Option<Duration>) -> Result<bool> {
                acquire_with(&self.address, self.id, block, timeout)
            }

            /// Releases one hold taken with [`acquire_with`](Self::acquire_with) (or a guard
            /// forgotten).
            ///
            /// # Errors
            /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) if this thread does
            /// not hold the lock (nothing changes);
            /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected).
            ///
            /// ```
            /// let m = multiproc::Manager::start().unwrap();
            #[doc = concat!("assert!(m.", $make, "().unwrap().release().is_err());")]
            /// ```
            /// Python counterpart: `lock.release()`.
            pub fn release(&self) -> Result<()> {
                release(&self.address, self.id)
            }

            /// Whether somebody holds the lock (a snapshot).
            ///
            /// # Errors
            /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected).
            ///
            /// ```
            /// let m = multiproc::Manager::start().unwrap();
            #[doc = concat!("assert!(!m.", $make, "().unwrap().locked().unwrap());")]
            /// ```
            /// Python counterpart: `lock.locked()`.
            pub fn locked(&self) -> Result<bool> {
                call_bool(&self.address, &Request::Lock { id: self.id, op: LockOp::Locked })
            }
        }
    };
}

proxy_type!(
    /// A lock hosted by a [`Manager`], held by the thread (of a process) that took it, and
    /// released by the manager if that thread or process ends or is killed holding it.
    ///
    /// ```
    /// use multiproc::{Manager, Process, manager::{DictProxy, LockProxy}};
    /// fn count(lock: LockProxy, d: DictProxy<u8, u32>) {
    ///     for _ in 0..10 {
    ///         let _held = lock.acquire().unwrap();
    ///         let n = d.get(&0).unwrap().unwrap_or(0);
    ///         d.insert(0, n + 1).unwrap();
    ///     }
    /// }
    /// let manager = Manager::start().unwrap();
    /// let (lock, d) = (manager.lock().unwrap(), manager.dict().unwrap());
    /// let mut ps: Vec<_> = (0..3).map(|_| Process::spawn(count, (lock.clone(), d.clone())).unwrap()).collect();
    /// ps.iter_mut().for_each(|p| p.join().unwrap());
    /// assert_eq!(d.get(&0).unwrap(), Some(30));
    /// ```
    /// Python counterpart: the proxy of `manager.Lock()`.
    LockProxy<> = Kind::Lock, ()
);
lock_methods!(LockProxy, "lock");

proxy_type!(
    /// A recursive lock hosted by a [`Manager`]: as [`LockProxy`], and the holder may take it
    /// again; each hold is released on its own.
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let rlock = m.rlock().unwrap();
    /// let _outer = rlock.acquire().unwrap();
    /// let _inner = rlock.acquire().unwrap(); // the same thread: no deadlock
    /// ```
    /// Python counterpart: the proxy of `manager.RLock()`.
    RLockProxy<> = Kind::RLock, ()
);
lock_methods!(RLockProxy, "rlock");

proxy_type!(
    /// A semaphore hosted by a [`Manager`] (plain or bounded).
    ///
    /// ```
    /// use multiproc::{Manager, Process, manager::SemaphoreProxy};
    /// fn sing(room: SemaphoreProxy) {
    ///     room.acquire().unwrap(); // at most two inside at once
    ///     room.release().unwrap();
    /// }
    /// let manager = Manager::start().unwrap();
    /// let room = manager.semaphore(2).unwrap();
    /// let mut guests: Vec<_> = (0..4).map(|_| Process::spawn(sing, (room.clone(),)).unwrap()).collect();
    /// guests.iter_mut().for_each(|g| g.join().unwrap());
    /// assert_eq!(room.value().unwrap(), 2);
    /// ```
    /// Python counterpart: the proxy of `manager.Semaphore(value)`.
    SemaphoreProxy<> = Kind::Semaphore, ()
);

impl SemaphoreProxy {
    fn acquire_wait(&self, wait: Wait) -> Result<bool> {
        call_waited(&self.address, &Request::Semaphore { id: self.id, op: SemaphoreOp::Acquire { wait } })
    }

    /// Takes one unit, waiting as long as it takes.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) (also while waiting).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// m.semaphore(1).unwrap().acquire().unwrap();
    /// ```
    /// Python counterpart: `sem.acquire()`.
    pub fn acquire(&self) -> Result<()> {
        self.acquire_wait(None).map(drop)
    }

    /// Takes one unit if one is free now; whether it did.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// assert!(!m.semaphore(0).unwrap().try_acquire().unwrap());
    /// ```
    /// Python counterpart: `sem.acquire(False)`.
    pub fn try_acquire(&self) -> Result<bool> {
        self.acquire_wait(Some(0))
    }

    /// Takes one unit, waiting up to `timeout`; whether it did.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    ///
    /// ```
    /// use std::time::Duration;
    /// let m = multiproc::Manager::start().unwrap();
    /// assert!(!m.semaphore(0).unwrap().acquire_timeout(Duration::from_millis(10)).unwrap());
    /// ```
    /// Python counterpart: `sem.acquire(timeout=t)`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        self.acquire_wait(wait_ms(timeout))
    }

    /// Gives back one unit, waking a waiter.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) if a bounded semaphore is
    /// at its bound (nothing changes); [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let s = m.semaphore(0).unwrap();
    /// s.release().unwrap();
    /// assert_eq!(s.value().unwrap(), 1);
    /// ```
    /// Python counterpart: `sem.release()`.
    pub fn release(&self) -> Result<()> {
        call_done(&self.address, &Request::Semaphore { id: self.id, op: SemaphoreOp::Release })
    }

    /// The units free now (a snapshot).
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// assert_eq!(m.semaphore(3).unwrap().value().unwrap(), 3);
    /// ```
    /// Python counterpart: `sem.get_value()`.
    #[doc(alias = "get_value")]
    pub fn value(&self) -> Result<u32> {
        match call(&self.address, &Request::Semaphore { id: self.id, op: SemaphoreOp::Value })? {
            Reply::Len(n) => Ok(n as u32),
            other => Err(unexpected(other)),
        }
    }
}

proxy_type!(
    /// An event hosted by a [`Manager`].
    ///
    /// ```
    /// use multiproc::{Manager, Process, manager::EventProxy};
    /// fn go(e: EventProxy) { e.set().unwrap() }
    /// let manager = Manager::start().unwrap();
    /// let e = manager.event().unwrap();
    /// let mut p = Process::spawn(go, (e.clone(),)).unwrap();
    /// e.wait().unwrap();
    /// p.join().unwrap();
    /// ```
    /// Python counterpart: the proxy of `manager.Event()`.
    EventProxy<> = Kind::Event, ()
);

impl EventProxy {
    fn op(&self, op: EventOp) -> Request {
        Request::Event { id: self.id, op }
    }

    /// Sets the flag, waking every waiter.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let e = m.event().unwrap();
    /// e.set().unwrap();
    /// assert!(e.is_set().unwrap());
    /// ```
    /// Python counterpart: `event.set()`.
    pub fn set(&self) -> Result<()> {
        call_done(&self.address, &self.op(EventOp::Set))
    }

    /// Clears the flag.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let e = m.event().unwrap();
    /// e.set().unwrap();
    /// e.clear().unwrap();
    /// assert!(!e.is_set().unwrap());
    /// ```
    /// Python counterpart: `event.clear()`.
    pub fn clear(&self) -> Result<()> {
        call_done(&self.address, &self.op(EventOp::Clear))
    }

    /// Whether the flag is set.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// assert!(!m.event().unwrap().is_set().unwrap());
    /// ```
    /// Python counterpart: `event.is_set()`.
    pub fn is_set(&self) -> Result<bool> {
        call_bool(&self.address, &self.op(EventOp::IsSet))
    }

    /// Waits until the flag is set.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) (also while waiting).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let e = m.event().unwrap();
    /// e.set().unwrap();
    /// e.wait().unwrap();
    /// ```
    /// Python counterpart: `event.wait()`.
    pub fn wait(&self) -> Result<()> {
        call_waited(&self.address, &self.op(EventOp::Wait { wait: None })).map(drop)
    }

    /// Waits up to `timeout` for the flag; whether it was set.
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// assert!(!m.event().unwrap().wait_timeout(std::time::Duration::from_millis(10)).unwrap());
    /// ```
    /// Python counterpart: `event.wait(timeout)`.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        call_waited(&self.address, &self.op(EventOp::Wait { wait: wait_ms(timeout) }))
    }
}

proxy_type!(
    /// A condition variable hosted by a [`Manager`]. A waiter that dies takes no notification
    /// away from the live ones (the manager forgets it when its connection closes).
    ///
    /// ```
    /// use multiproc::{Manager, Process, manager::{ConditionProxy, DictProxy}};
    /// fn ready(cond: ConditionProxy, state: DictProxy<String, bool>) {
    ///     let _held = cond.acquire().unwrap();
    ///     state.insert("ready".into(), true).unwrap();
    ///     cond.notify_all().unwrap();
    /// }
    /// let manager = Manager::start().unwrap();
    /// let (cond, state) = (manager.condition().unwrap(), manager.dict::<String, bool>().unwrap());
    /// let held = cond.acquire().unwrap();
    /// let mut p = Process::spawn(ready, (cond.clone(), state.clone())).unwrap();
    /// let ready = || state.get(&"ready".to_string()).unwrap() == Some(true);
    /// assert!(cond.wait_for(ready, None).unwrap());
    /// drop(held);
    /// p.join().unwrap();
    /// ```
    /// Python counterpart: the proxy of `manager.Condition()`.
    ConditionProxy<> = Kind::Condition, ()
);

impl ConditionProxy {
    /// Takes the condition's lock; the guard releases it.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let c = m.condition().unwrap();
    /// let _held = c.acquire().unwrap();
    /// ```
    /// Python counterpart: `cond.acquire()`, `with cond:`.
    pub fn acquire(&self) -> Result<LockProxyGuard<'_>> {
        acquire(&self.address, self.id, None)?.ok_or_else(|| unexpected(Reply::TimedOut))
    }

    /// Takes the condition's lock if it is free now.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let c = m.condition_with(&m.lock().unwrap()).unwrap();
    /// let _held = c.try_acquire().unwrap().expect("free");
    /// assert!(c.try_acquire().unwrap().is_none(), "a plain lock is not taken twice");
    /// ```
    /// Python counterpart: `cond.acquire(False)`.
    pub fn try_acquire(&self) -> Result<Option<LockProxyGuard<'_>>> {
        acquire(&self.address, self.id, Some(0))
    }

    /// Takes the condition's lock, waiting up to `timeout`.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let c = m.condition().unwrap();
    /// assert!(c.acquire_timeout(std::time::Duration::from_secs(1)).unwrap().is_some());
    /// ```
    /// Python counterpart: `cond.acquire(timeout=t)`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Option<LockProxyGuard<'_>>> {
        acquire(&self.address, self.id, wait_ms(timeout))
    }

    /// Python's `acquire(block, timeout)` on the condition's lock: whether it was taken; the
    /// hold stays until [`release`](Self::release).
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let c = m.condition().unwrap();
    /// assert!(c.acquire_with(false, None).unwrap());
    /// c.release().unwrap();
    /// ```
    /// Python counterpart: `cond.acquire(block, timeout)`.
    pub fn acquire_with(&self, block: bool, timeout: Option<Duration>) -> Result<bool> {
        acquire_with(&self.address, self.id, block, timeout)
    }

    /// Releases the condition's lock (a hold taken with [`acquire_with`](Self::acquire_with)).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) if not held;
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// assert!(m.condition().unwrap().release().is_err());
    /// ```
    /// Python counterpart: `cond.release()`.
    pub fn release(&self) -> Result<()> {
        release(&self.address, self.id)
    }

    fn wait_inner(&self, wait: Wait) -> Result<bool> {
        call_bool(&self.address, &Request::Condition { id: self.id, op: ConditionOp::Wait { wait } })
    }

    /// Releases the lock (every hold of an rlock), waits for a notification, takes the lock back
    /// as it was held. As with every condition, check the state you wait for in a loop (or use
    /// [`wait_for`](Self::wait_for)).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) without the lock;
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// assert!(m.condition().unwrap().wait().is_err()); // not holding the lock
    /// ```
    /// Python counterpart: `cond.wait()`.
    pub fn wait(&self) -> Result<()> {
        self.wait_inner(None).map(drop)
    }

    /// As [`wait`](Self::wait), for up to `timeout`; whether it was notified.
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let c = m.condition().unwrap();
    /// let _held = c.acquire().unwrap();
    /// assert!(!c.wait_timeout(std::time::Duration::from_millis(10)).unwrap());
    /// ```
    /// Python counterpart: `cond.wait(timeout)`.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.wait_inner(wait_ms(timeout))
    }

    /// Waits until `predicate` is true, checking it first and after every wake-up, for up to
    /// `timeout` in all (`None`: as long as it takes); returns the predicate's last value. The
    /// lock must be held.
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    ///
    /// ```
    /// use std::time::Duration;
    /// let m = multiproc::Manager::start().unwrap();
    /// let c = m.condition().unwrap();
    /// let _held = c.acquire().unwrap();
    /// assert!(!c.wait_for(|| false, Some(Duration::from_millis(10))).unwrap());
    /// ```
    /// Python counterpart: `cond.wait_for(predicate, timeout)`.
    pub fn wait_for(&self, mut predicate: impl FnMut() -> bool, timeout: Option<Duration>) -> Result<bool> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            if predicate() {
                return Ok(true);
            }
            let wait = match deadline {
                None => None,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(false);
                    }
                    wait_ms(left)
                }
            };
            self.wait_inner(wait)?;
        }
    }

    /// Wakes up to `n` waiters. The lock must be held.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) without the lock;
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let c = m.condition().unwrap();
    /// let _held = c.acquire().unwrap();
    /// c.notify(1).unwrap();
    /// ```
    /// Python counterpart: `cond.notify(n)`.
    pub fn notify(&self, n: u32) -> Result<()> {
        call_done(&self.address, &Request::Condition { id: self.id, op: ConditionOp::Notify(n) })
    }

    /// Wakes every waiter.
    ///
    /// # Errors
    /// As [`notify`](Self::notify).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let c = m.condition().unwrap();
    /// let _held = c.acquire().unwrap();
    /// c.notify_all().unwrap();
    /// ```
    /// Python counterpart: `cond.notify_all()`.
    pub fn notify_all(&self) -> Result<()> {
        self.notify(u32::MAX)
    }
}

proxy_type!(
    /// A barrier hosted by a [`Manager`]. A party whose process dies while it waits breaks the
    /// barrier for the others (it can never arrive), instead of letting them through one short.
    ///
    /// ```
    /// use multiproc::{Manager, Process, manager::BarrierProxy};
    /// fn meet(b: BarrierProxy) -> u32 { b.wait().unwrap().unwrap() }
    /// let manager = Manager::start().unwrap();
    /// let b = manager.barrier(3).unwrap();
    /// let mut ps: Vec<_> = (0..3).map(|_| Process::spawn(meet, (b.clone(),)).unwrap()).collect();
    /// let mut arrivals: Vec<u32> = ps.iter_mut().map(|p| p.join().unwrap()).collect();
    /// arrivals.sort();
    /// assert_eq!(arrivals, [0, 1, 2]);
    /// ```
    /// Python counterpart: the proxy of `manager.Barrier(parties)`.
    BarrierProxy<> = Kind::Barrier, ()
);

impl BarrierProxy {
    fn wait_inner(&self, wait: Wait) -> Result<std::result::Result<u32, BrokenBarrier>> {
        match call(&self.address, &Request::Barrier { id: self.id, op: BarrierOp::Wait { wait } })? {
            Reply::Passed(index) => Ok(Ok(index)),
            Reply::Broken => Ok(Err(BrokenBarrier)),
            other => Err(unexpected(other)),
        }
    }

    /// Waits until every party has arrived; this party's arrival index (0 for the first).
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected); the inner `Err` is a broken
    /// barrier (aborted, reset, timed out, or a party died waiting).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let b = m.barrier(2).unwrap();
    /// b.abort().unwrap();
    /// assert_eq!(b.wait().unwrap(), Err(multiproc::sync::BrokenBarrier));
    /// ```
    /// Python counterpart: `barrier.wait()`.
    pub fn wait(&self) -> Result<std::result::Result<u32, BrokenBarrier>> {
        self.wait_inner(None)
    }

    /// Waits up to `timeout`; a timeout breaks the barrier for everyone (as in Python).
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let b = m.barrier(2).unwrap();
    /// assert!(b.wait_timeout(std::time::Duration::from_millis(10)).unwrap().is_err());
    /// assert!(b.broken().unwrap());
    /// ```
    /// Python counterpart: `barrier.wait(timeout)`.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<std::result::Result<u32, BrokenBarrier>> {
        self.wait_inner(wait_ms(timeout))
    }

    /// Breaks the barrier: current and later waits fail until [`reset`](Self::reset).
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let b = m.barrier(2).unwrap();
    /// b.abort().unwrap();
    /// assert!(b.broken().unwrap());
    /// ```
    /// Python counterpart: `barrier.abort()`.
    pub fn abort(&self) -> Result<()> {
        call_done(&self.address, &Request::Barrier { id: self.id, op: BarrierOp::Abort })
    }

    /// Starts over: current waiters fail, later waits work again.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let b = m.barrier(1).unwrap();
    /// b.abort().unwrap();
    /// b.reset().unwrap();
    /// assert_eq!(b.wait().unwrap(), Ok(0));
    /// ```
    /// Python counterpart: `barrier.reset()`.
    pub fn reset(&self) -> Result<()> {
        call_done(&self.address, &Request::Barrier { id: self.id, op: BarrierOp::Reset })
    }

    fn state(&self) -> Result<(u32, u32, bool)> {
        match call(&self.address, &Request::Barrier { id: self.id, op: BarrierOp::State })? {
            Reply::Barrier { parties, waiting, broken } => Ok((parties, waiting, broken)),
            other => Err(unexpected(other)),
        }
    }

    /// How many parties must arrive.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// assert_eq!(m.barrier(3).unwrap().parties().unwrap(), 3);
    /// ```
    /// Python counterpart: `barrier.parties`.
    pub fn parties(&self) -> Result<u32> {
        Ok(self.state()?.0)
    }

    /// How many parties are waiting now (a snapshot).
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// assert_eq!(m.barrier(3).unwrap().n_waiting().unwrap(), 0);
    /// ```
    /// Python counterpart: `barrier.n_waiting`.
    pub fn n_waiting(&self) -> Result<u32> {
        Ok(self.state()?.1)
    }

    /// Whether the barrier is broken.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// assert!(!m.barrier(3).unwrap().broken().unwrap());
    /// ```
    /// Python counterpart: `barrier.broken`.
    pub fn broken(&self) -> Result<bool> {
        Ok(self.state()?.2)
    }
}
