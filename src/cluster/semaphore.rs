//! [`Semaphore`] on the cluster: leases in a sorted set, at most `value` at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::Cluster;
use crate::error::{Error, ErrorKind, Result};

/// Drops the leases that ran out (by the server's clock), then takes one if fewer than the
/// value are held. Returns 1 if taken.
const ACQUIRE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
return 1
";

/// Extends the caller's lease if it still holds one; returns whether it does.
const RENEW: &str = r"
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
return 1
";

/// How many leases are free now.
const FREE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return tonumber(ARGV[1]) - redis.call('ZCARD', KEYS[1])
";

/// A semaphore on the cluster: at most `value` holders at a time among every process of the
/// namespace, on any machine — say, to keep a crawl to eight connections to one site. Each
/// holder keeps a *lease*, renewed by a thread of its own while its guard lives; a holder that
/// dies or is cut off loses it when the lease runs out, so the count never leaks.
///
/// Unlike Python's, a release is the holder's own (its guard's drop): a counter anyone may
/// raise could not tell a dead holder's share from a live one's. It behaves as a
/// `BoundedSemaphore`.
///
/// ```no_run
/// use std::time::Duration;
/// let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "crawl").unwrap();
/// let slots = cluster.semaphore("example.com", 8, Duration::from_secs(30)).unwrap();
/// let _slot = slots.acquire().unwrap();
/// // … fetch a page …
/// ```
/// Python counterpart: `multiprocessing.BoundedSemaphore`, reached through a manager.
#[derive(Clone, Debug)]
pub struct Semaphore {
    cluster: Cluster,
    name: String,
    key: String,
    value: u32,
    lease: Duration,
}

travels_by_name!(Semaphore, |s| [u64::from(s.value), s.lease.as_millis() as u64], |cluster, name, x| {
    cluster.semaphore(&name, x[0] as u32, Duration::from_millis(x[1]))
});

/// One of a cluster [`Semaphore`]'s places, held until dropped (its lease renewed meanwhile).
///
/// ```no_run
/// # let s = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "c").unwrap()
/// #     .semaphore("s", 2, std::time::Duration::from_secs(10)).unwrap();
/// let guard = s.acquire().unwrap();
/// drop(guard); // released
/// ```
/// Python counterpart: holding a semaphore inside `with sem:`.
#[derive(Debug)]
pub struct SemaphoreGuard {
    semaphore: Semaphore,
    holder: String,
    stop: Arc<AtomicBool>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

impl Cluster {
    /// The semaphore named `name` in this namespace, with `value` places held by leases of
    /// `lease`. Every handle of one semaphore should give the same value.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a bad name, a value of 0 or a lease under 10 ms.
    ///
    /// ```no_run
    /// let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "crawl").unwrap();
    /// let s = cluster.semaphore("db", 4, std::time::Duration::from_secs(10)).unwrap();
    /// ```
    /// Python counterpart: `manager.BoundedSemaphore(value)` registered under a name.
    pub fn semaphore(&self, name: &str, value: u32, lease: Duration) -> Result<Semaphore> {
        super::check_name(name)?;
        if value == 0 || lease < Duration::from_millis(10) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("a semaphore of value {value} with leases of {lease:?} (at least 1, and 10 ms)"),
            ));
        }
        let key = self.key(name, "leases");
        Ok(Semaphore { cluster: self.clone(), name: name.to_owned(), key, value, lease })
    }
}

impl Semaphore {
    /// Waits for a place for as long as it takes.
    ///
    /// # Errors
    /// The server's errors.
    ///
    /// ```no_run
    /// # let s = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "c").unwrap()
    /// #     .semaphore("s", 2, std::time::Duration::from_secs(10)).unwrap();
    /// let guard = s.acquire().unwrap();
    /// ```
    /// Python counterpart: `sem.acquire()`.
    pub fn acquire(&self) -> Result<SemaphoreGuard> {
        loop {
            if let Some(guard) = self.acquire_timeout(Duration::from_secs(3600))? {
                return Ok(guard);
            }
        }
    }

    /// Takes a place if one is free now.
    ///
    /// # Errors
    /// The server's errors.
    ///
    /// ```no_run
    /// # let s = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "c").unwrap()
    /// #     .semaphore("s", 1, std::time::Duration::from_secs(10)).unwrap();
    /// let held = s.try_acquire().unwrap();
    /// assert!(held.is_some() && s.try_acquire().unwrap().is_none());
    /// ```
    /// Python counterpart: `sem.acquire(block=False)`.
    pub fn try_acquire(&self) -> Result<Option<SemaphoreGuard>> {
        let holder = super::holder_id(false)?;
        let taken: i64 = self.cluster.call("taking a semaphore", |c| {
            redis::Script::new(ACQUIRE)
                .key(&self.key)
                .arg(&holder)
                .arg(self.value)
                .arg(self.lease.as_millis() as u64)
                .invoke(c)
        })?;
        if taken == 0 {
            return Ok(None);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (me, who, flag) = (self.clone(), holder.clone(), stop.clone());
        let renewer = super::lock::renew_every(self.lease, stop.clone(), move || {
            let kept: Result<i64> = me.cluster.call("renewing a lease", |c| {
                redis::Script::new(RENEW).key(&me.key).arg(&who).arg(me.lease.as_millis() as u64).invoke(c)
            });
            !flag.load(Ordering::SeqCst) && !matches!(kept, Ok(0))
        });
        Ok(Some(SemaphoreGuard { semaphore: self.clone(), holder, stop, renewer }))
    }

    /// Waits up to `timeout` for a place; `None` if none came free.
    ///
    /// # Errors
    /// The server's errors.
    ///
    /// ```no_run
    /// # let s = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "c").unwrap()
    /// #     .semaphore("s", 1, std::time::Duration::from_secs(10)).unwrap();
    /// let guard = s.acquire_timeout(std::time::Duration::from_secs(1)).unwrap();
    /// ```
    /// Python counterpart: `sem.acquire(timeout=t)`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Option<SemaphoreGuard>> {
        super::lock::poll_until(Instant::now() + timeout, || self.try_acquire())
    }

    /// How many places are free now (a snapshot).
    ///
    /// # Errors
    /// The server's errors.
    ///
    /// ```no_run
    /// # let s = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "c").unwrap()
    /// #     .semaphore("s", 3, std::time::Duration::from_secs(10)).unwrap();
    /// assert_eq!(s.value().unwrap(), 3);
    /// ```
    /// Python counterpart: `sem.get_value()`.
    pub fn value(&self) -> Result<u32> {
        let free: i64 = self
            .cluster
            .call("counting a semaphore", |c| redis::Script::new(FREE).key(&self.key).arg(self.value).invoke(c))?;
        Ok(free.max(0) as u32)
    }
}

impl Drop for SemaphoreGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(renewer) = self.renewer.take() {
            renewer.thread().unpark();
            let _ = renewer.join();
        }
        let _ = self.semaphore.cluster.call("letting a semaphore go", |c| {
            redis::cmd("ZREM").arg(&self.semaphore.key).arg(&self.holder).query::<i64>(c)
        });
    }
}
