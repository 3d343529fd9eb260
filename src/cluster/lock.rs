//! [`Lock`] on the cluster: a lease, renewed while held, with a fencing token.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::Cluster;
use crate::error::{Error, ErrorKind, Result};

/// Takes the lock if nobody holds it: a new fencing token, the holder's lease, and the mark that
/// says "held" (no expiry). Returns `{token, died}`, `died` being the mark a holder whose lease ran
/// out left behind; nil if held.
const ACQUIRE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return nil end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. token, 'PX', ARGV[2])
local died = redis.call('GET', KEYS[3])
redis.call('SET', KEYS[3], '1')
if died then return {token, 1} end
return {token, 0}
";

/// Lets go if the caller still holds it (its lease has not run out); returns whether it did.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[3])
return 1
";

/// Extends the caller's lease if it still holds the lock; returns whether it does.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
";

/// A lock on the cluster: one holder at a time among every process of the namespace, on any
/// machine. A holder keeps a *lease*, renewed by a thread of its own while the guard lives; a
/// holder that dies (or is cut off) loses it when the lease runs out, and the next acquirer is
/// told the owner died ([`LockGuard::owner_died`]), as with a local lock. Each acquisition gets a
/// *fencing token*, larger than every earlier one: pass it to what the lock protects, so that a
/// holder that was cut off and came back cannot overwrite a later holder's work.
///
/// ```no_run
/// use std::time::Duration;
/// let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap();
/// let lock = cluster.lock("ledger", Duration::from_secs(10)).unwrap();
/// let guard = lock.acquire().unwrap();
/// println!("holding with token {}", guard.token());
/// ```
/// Python counterpart: `multiprocessing.Lock`, reached through a manager (whose holders' deaths
/// it does not see).
#[derive(Clone, Debug)]
pub struct Lock {
    cluster: Cluster,
    name: String,
    keys: [String; 3],
    lease: Duration,
}

travels_by_name!(Lock, |l| [l.lease.as_millis() as u64, 0], |cluster, name, x| {
    cluster.lock(&name, Duration::from_millis(x[0]))
});

/// Holds a cluster [`Lock`] until dropped (its lease renewed meanwhile).
///
/// ```no_run
/// # let lock = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap()
/// #     .lock("l", std::time::Duration::from_secs(10)).unwrap();
/// let guard = lock.acquire().unwrap();
/// assert!(!guard.owner_died());
/// drop(guard); // released
/// ```
/// Python counterpart: holding `lock` inside `with lock:`.
#[derive(Debug)]
pub struct LockGuard {
    lock: Lock,
    holder: String,
    token: u64,
    owner_died: bool,
    stop: Arc<AtomicBool>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

impl Cluster {
    /// The lock named `name` in this namespace, whose holders keep it by a lease of `lease`
    /// (renewed every third of it while held; a dead holder's is taken over after it).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a bad name or a lease under 10 ms.
    ///
    /// ```no_run
    /// let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap();
    /// let lock = cluster.lock("ledger", std::time::Duration::from_secs(5)).unwrap();
    /// ```
    /// Python counterpart: `manager.Lock()` registered under a name.
    pub fn lock(&self, name: &str, lease: Duration) -> Result<Lock> {
        super::check_name(name)?;
        if lease < Duration::from_millis(10) {
            return Err(Error::new(ErrorKind::InvalidInput, format!("a lease of {lease:?} (at least 10 ms)")));
        }
        let keys = [self.key(name, "owner"), self.key(name, "fence"), self.key(name, "held")];
        Ok(Lock { cluster: self.clone(), name: name.to_owned(), keys, lease })
    }
}

impl Lock {
    /// Waits for the lock for as long as it takes.
    ///
    /// # Errors
    /// The server's errors (see [`Cluster::connect`]).
    ///
    /// ```no_run
    /// # let lock = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap()
    /// #     .lock("l", std::time::Duration::from_secs(10)).unwrap();
    /// let guard = lock.acquire().unwrap();
    /// ```
    /// Python counterpart: `lock.acquire()`.
    pub fn acquire(&self) -> Result<LockGuard> {
        loop {
            if let Some(guard) = self.acquire_timeout(Duration::from_secs(3600))? {
                return Ok(guard);
            }
        }
    }

    /// Takes the lock if it is free now.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    ///
    /// ```no_run
    /// # let lock = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap()
    /// #     .lock("l", std::time::Duration::from_secs(10)).unwrap();
    /// let held = lock.try_acquire().unwrap();
    /// assert!(held.is_some());
    /// assert!(lock.try_acquire().unwrap().is_none());
    /// ```
    /// Python counterpart: `lock.acquire(block=False)`.
    pub fn try_acquire(&self) -> Result<Option<LockGuard>> {
        let holder = super::holder_id(false)?;
        let taken: Option<(u64, u8)> = self.cluster.call("taking a lock", |c| {
            redis::Script::new(ACQUIRE)
                .key(&self.keys[0])
                .key(&self.keys[1])
                .key(&self.keys[2])
                .arg(&holder)
                .arg(self.lease.as_millis() as u64)
                .invoke(c)
        })?;
        let Some((token, died)) = taken else { return Ok(None) };
        let value = format!("{holder}:{token}");
        let stop = Arc::new(AtomicBool::new(false));
        let (me, held, flag) = (self.clone(), value.clone(), stop.clone());
        let renewer = renew_every(self.lease, stop.clone(), move || {
            let kept: Result<u8> = me.cluster.call("renewing a lease", |c| {
                redis::Script::new(RENEW).key(&me.keys[0]).arg(&held).arg(me.lease.as_millis() as u64).invoke(c)
            });
            !flag.load(Ordering::SeqCst) && !matches!(kept, Ok(0))
        });
        Ok(Some(LockGuard { lock: self.clone(), holder: value, token, owner_died: died == 1, stop, renewer }))
    }

    /// Waits up to `timeout` for the lock; `None` if it stayed taken.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    ///
    /// ```no_run
    /// # let lock = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap()
    /// #     .lock("l", std::time::Duration::from_secs(10)).unwrap();
    /// let guard = lock.acquire_timeout(std::time::Duration::from_secs(1)).unwrap();
    /// ```
    /// Python counterpart: `lock.acquire(timeout=t)`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Option<LockGuard>> {
        poll_until(Instant::now() + timeout, || self.try_acquire())
    }
}

/// Tries `attempt` until it gives something or `deadline` passes. Nobody tells a waiter that
/// a lease was let go (or ran out): it looks again, less often the longer it waits.
pub(crate) fn poll_until<G>(deadline: Instant, mut attempt: impl FnMut() -> Result<Option<G>>) -> Result<Option<G>> {
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(got) = attempt()? {
            return Ok(Some(got));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// A thread that runs `renew` every third of `lease` until `stop` is set or `renew` says the
/// lease is gone (false).
pub(crate) fn renew_every(
    lease: Duration,
    stop: Arc<AtomicBool>,
    mut renew: impl FnMut() -> bool + Send + 'static,
) -> Option<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("multiproc-lease".into())
        .spawn(move || {
            let every = lease / 3;
            let mut next = Instant::now() + every;
            while !stop.load(Ordering::SeqCst) {
                let now = Instant::now();
                if now < next {
                    std::thread::park_timeout(next - now);
                    continue;
                }
                next = now + every;
                if !renew() {
                    return;
                }
            }
        })
        .ok()
}

impl LockGuard {
    /// The fencing token of this acquisition: larger than every earlier holder's.
    ///
    /// ```no_run
    /// # let lock = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap()
    /// #     .lock("l", std::time::Duration::from_secs(10)).unwrap();
    /// let first = lock.acquire().unwrap().token();
    /// assert!(lock.acquire().unwrap().token() > first);
    /// ```
    /// Python counterpart: none.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// Whether the last holder never let go: its lease ran out (it died, hung, or was cut off
    /// from the server), so what it protected may be half-changed.
    ///
    /// ```no_run
    /// # let lock = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap()
    /// #     .lock("l", std::time::Duration::from_secs(10)).unwrap();
    /// assert!(!lock.acquire().unwrap().owner_died());
    /// ```
    /// Python counterpart: none (the local lock's [`OwnerDied`](crate::sync::OwnerDied)).
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }

    /// Lets go now; whether this guard still held the lock (its lease had not run out).
    ///
    /// # Errors
    /// The server's errors.
    ///
    /// ```no_run
    /// # let lock = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap()
    /// #     .lock("l", std::time::Duration::from_secs(10)).unwrap();
    /// assert!(lock.acquire().unwrap().release().unwrap());
    /// ```
    /// Python counterpart: `lock.release()`.
    pub fn release(mut self) -> Result<bool> {
        self.let_go()
    }

    fn let_go(&mut self) -> Result<bool> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(renewer) = self.renewer.take() {
            renewer.thread().unpark();
            let _ = renewer.join();
        }
        let released: u8 = self.lock.cluster.call("letting a lock go", |c| {
            redis::Script::new(RELEASE)
                .key(&self.lock.keys[0])
                .key(&self.lock.keys[1])
                .key(&self.lock.keys[2])
                .arg(&self.holder)
                .invoke(c)
        })?;
        Ok(released == 1)
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if !self.stop.load(Ordering::SeqCst) {
            let _ = self.let_go();
        }
    }
}

/// A reentrant lock on the cluster: a [`Lock`] that the thread holding it may take again
/// (each take released by its own guard; the lock goes at the last). Other threads and
/// processes wait as for a `Lock`. Clones of one handle share who holds it; a handle sent to
/// another process is a stranger there.
///
/// ```no_run
/// use std::time::Duration;
/// let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap();
/// let lock = cluster.rlock("ledger", Duration::from_secs(10)).unwrap();
/// let outer = lock.acquire().unwrap();
/// let inner = lock.acquire().unwrap(); // the same thread: taken again at once
/// drop(inner);
/// drop(outer); // released here
/// ```
/// Python counterpart: `multiprocessing.RLock`, reached through a manager.
#[derive(Clone, Debug)]
pub struct RLock {
    cluster: Cluster,
    name: String,
    lock: Lock,
    held: Arc<std::sync::Mutex<Option<Reentry>>>,
}

/// Who holds a reentrant lock in this process, how deep, and the underlying guard.
#[derive(Debug)]
struct Reentry {
    thread: std::thread::ThreadId,
    depth: u32,
    guard: LockGuard,
}

travels_by_name!(RLock, |l| [l.lock.lease.as_millis() as u64, 0], |cluster, name, x| {
    cluster.rlock(&name, Duration::from_millis(x[0]))
});

/// One take of a cluster [`RLock`], given back when dropped.
///
/// ```no_run
/// # let lock = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap()
/// #     .rlock("l", std::time::Duration::from_secs(10)).unwrap();
/// let guard = lock.acquire().unwrap();
/// assert!(!guard.owner_died());
/// ```
/// Python counterpart: holding an `RLock` inside `with lock:`.
#[derive(Debug)]
pub struct RLockGuard {
    held: Arc<std::sync::Mutex<Option<Reentry>>>,
    token: u64,
    owner_died: bool,
}

impl Cluster {
    /// The reentrant lock named `name` in this namespace (leases as for [`Cluster::lock`]; it
    /// shares no state with a `Lock` of the same name).
    ///
    /// # Errors
    /// As [`Cluster::lock`].
    ///
    /// ```no_run
    /// let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap();
    /// let lock = cluster.rlock("ledger", std::time::Duration::from_secs(5)).unwrap();
    /// ```
    /// Python counterpart: `manager.RLock()` registered under a name.
    pub fn rlock(&self, name: &str, lease: Duration) -> Result<RLock> {
        super::check_name(name)?;
        let lock = self.lock(&format!("{name}.r"), lease)?;
        Ok(RLock { cluster: self.clone(), name: name.to_owned(), lock, held: Arc::default() })
    }
}

impl RLock {
    fn held(&self) -> std::sync::MutexGuard<'_, Option<Reentry>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes it again if this thread holds it.
    fn reenter(&self) -> Option<RLockGuard> {
        let mut held = self.held();
        let reentry = held.as_mut().filter(|r| r.thread == std::thread::current().id())?;
        reentry.depth += 1;
        let (token, owner_died) = (reentry.guard.token(), reentry.guard.owner_died());
        Some(RLockGuard { held: self.held.clone(), token, owner_died })
    }

    fn enter(&self, guard: LockGuard) -> RLockGuard {
        let (token, owner_died) = (guard.token(), guard.owner_died());
        *self.held() = Some(Reentry { thread: std::thread::current().id(), depth: 1, guard });
        RLockGuard { held: self.held.clone(), token, owner_died }
    }

    /// Waits for the lock (at once if this thread holds it).
    ///
    /// # Errors
    /// The server's errors.
    ///
    /// ```no_run
    /// # let lock = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap()
    /// #     .rlock("l", std::time::Duration::from_secs(10)).unwrap();
    /// let guard = lock.acquire().unwrap();
    /// ```
    /// Python counterpart: `rlock.acquire()`.
    pub fn acquire(&self) -> Result<RLockGuard> {
        if let Some(again) = self.reenter() {
            return Ok(again);
        }
        Ok(self.enter(self.lock.acquire()?))
    }

    /// Takes the lock if this thread holds it or it is free now.
    ///
    /// # Errors
    /// The server's errors.
    ///
    /// ```no_run
    /// # let lock = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap()
    /// #     .rlock("l", std::time::Duration::from_secs(10)).unwrap();
    /// assert!(lock.try_acquire().unwrap().is_some());
    /// ```
    /// Python counterpart: `rlock.acquire(block=False)`.
    pub fn try_acquire(&self) -> Result<Option<RLockGuard>> {
        self.acquire_timeout(Duration::ZERO)
    }

    /// Waits up to `timeout` for the lock; `None` if it stayed taken.
    ///
    /// # Errors
    /// The server's errors.
    ///
    /// ```no_run
    /// # let lock = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap()
    /// #     .rlock("l", std::time::Duration::from_secs(10)).unwrap();
    /// let guard = lock.acquire_timeout(std::time::Duration::from_secs(1)).unwrap();
    /// ```
    /// Python counterpart: `rlock.acquire(timeout=t)`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Option<RLockGuard>> {
        if let Some(again) = self.reenter() {
            return Ok(Some(again));
        }
        Ok(self.lock.acquire_timeout(timeout)?.map(|guard| self.enter(guard)))
    }
}

impl RLockGuard {
    /// The fencing token of the outermost take (see [`LockGuard::token`]).
    ///
    /// ```no_run
    /// # let lock = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap()
    /// #     .rlock("l", std::time::Duration::from_secs(10)).unwrap();
    /// let outer = lock.acquire().unwrap();
    /// assert_eq!(lock.acquire().unwrap().token(), outer.token());
    /// ```
    /// Python counterpart: none.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// Whether the last holder's lease ran out (see [`LockGuard::owner_died`]).
    ///
    /// ```no_run
    /// # let lock = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "jobs").unwrap()
    /// #     .rlock("l", std::time::Duration::from_secs(10)).unwrap();
    /// assert!(!lock.acquire().unwrap().owner_died());
    /// ```
    /// Python counterpart: none.
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }
}

impl Drop for RLockGuard {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(reentry) = held.as_mut() {
            reentry.depth -= 1;
            if reentry.depth == 0 {
                // The last take: the lock goes (its guard's drop releases it).
                let last = held.take();
                drop(held);
                drop(last);
            }
        }
    }
}
