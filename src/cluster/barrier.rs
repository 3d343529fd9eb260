//! [`Barrier`] on the cluster: a count of arrivals per generation, and a one-element list per
//! generation that says how it ended.

use std::time::{Duration, Instant};

use super::Cluster;
use crate::error::{Error, ErrorKind, Result};
use crate::sync::BrokenBarrier;

/// Arrives in generation `ARGV[1]`: the last of `ARGV[2]` parties releases it (its list gets
/// "ok"). Returns `{arrived, released}`; `{-1}` if the barrier is broken, `{-2}` if the
/// generation moved on before the call (read it again).
const ARRIVE: &str = r"
if redis.call('GET', KEYS[3]) then return {-1} end
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then return {-2} end
local n = redis.call('INCR', KEYS[1])
if n >= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[1], 0)
  redis.call('INCR', KEYS[2])
  redis.call('RPUSH', KEYS[4], 'ok')
  redis.call('PEXPIRE', KEYS[4], 600000)
  return {n, 1}
end
return {n, 0}
";

/// Breaks generation `ARGV[1]` (its waiters get "broken"), unless it was released already;
/// returns 1 if it broke it.
const BREAK: &str = r"
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[3], '1')
redis.call('RPUSH', KEYS[4], 'broken')
redis.call('PEXPIRE', KEYS[4], 600000)
return 1
";

/// Back to the start: not broken, nobody waiting; waiters of the current generation get
/// "broken".
const RESET: &str = r"
local g = redis.call('GET', KEYS[2]) or '0'
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 and not redis.call('GET', KEYS[3]) then
  redis.call('RPUSH', KEYS[4], 'broken')
  redis.call('PEXPIRE', KEYS[4], 600000)
end
redis.call('DEL', KEYS[3])
redis.call('SET', KEYS[1], 0)
redis.call('INCR', KEYS[2])
return 1
";

/// A barrier on the cluster: `parties` processes of the namespace, on any machine, wait until
/// all have arrived, then all go on. Waiters block on the server (a non-consuming `BLMOVE` of
/// their generation's list), so the last arrival releases them at once. As in Python, a wait
/// that times out breaks the barrier for everyone until [`reset`](Self::reset).
///
/// ```no_run
/// let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "sims").unwrap();
/// let step = cluster.barrier("step", 1).unwrap();
/// assert_eq!(step.wait().unwrap(), Ok(0));
/// ```
/// Python counterpart: `multiprocessing.Barrier`, reached through a manager.
#[derive(Clone, Debug)]
pub struct Barrier {
    cluster: Cluster,
    name: String,
    parties: u32,
    /// Count, generation, broken flag.
    keys: [String; 3],
}

travels_by_name!(Barrier, |b| [u64::from(b.parties), 0], |cluster, name, x| cluster.barrier(&name, x[0] as u32));

impl Cluster {
    /// The barrier named `name` in this namespace, for `parties` processes (every handle should
    /// give the same number).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a bad name or 0 parties.
    ///
    /// ```no_run
    /// let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "sims").unwrap();
    /// let b = cluster.barrier("step", 4).unwrap();
    /// ```
    /// Python counterpart: `manager.Barrier(parties)` registered under a name.
    pub fn barrier(&self, name: &str, parties: u32) -> Result<Barrier> {
        super::check_name(name)?;
        if parties == 0 {
            return Err(Error::new(ErrorKind::InvalidInput, "a barrier for 0 parties"));
        }
        let keys = [self.key(name, "count"), self.key(name, "generation"), self.key(name, "broken")];
        Ok(Barrier { cluster: self.clone(), name: name.to_owned(), parties, keys })
    }
}

impl Barrier {
    fn released(&self, generation: &str) -> String {
        self.cluster.key(&self.name, &format!("released.{generation}"))
    }

    /// The current generation, and the key of its release list.
    fn generation(&self) -> Result<(String, String)> {
        let generation: Option<String> =
            self.cluster.call("reading a barrier", |c| redis::cmd("GET").arg(&self.keys[1]).query(c))?;
        let generation = generation.unwrap_or_else(|| "0".to_owned());
        let released = self.released(&generation);
        Ok((generation, released))
    }

    /// Breaks `generation` unless it was released already; whether it broke it.
    fn break_generation(&self, generation: &str, released: &str) -> Result<bool> {
        let broke: i64 = self.cluster.call("breaking a barrier", |c| {
            redis::Script::new(BREAK)
                .key(&self.keys[0])
                .key(&self.keys[1])
                .key(&self.keys[2])
                .key(released)
                .arg(generation)
                .invoke(c)
        })?;
        Ok(broke == 1)
    }

    /// The number of parties.
    ///
    /// ```no_run
    /// # let b = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "s").unwrap().barrier("b", 3).unwrap();
    /// assert_eq!(b.parties(), 3);
    /// ```
    /// Python counterpart: `barrier.parties`.
    pub fn parties(&self) -> u32 {
        self.parties
    }

    /// Waits until every party has arrived; returns this party's arrival index (0 to
    /// `parties - 1`, different for each).
    ///
    /// # Errors
    /// `Ok(Err(BrokenBarrier))` if the barrier is or gets broken; the server's errors outside.
    ///
    /// ```no_run
    /// # let b = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "s").unwrap().barrier("b", 1).unwrap();
    /// assert_eq!(b.wait().unwrap(), Ok(0));
    /// ```
    /// Python counterpart: `barrier.wait()`.
    pub fn wait(&self) -> Result<std::result::Result<u32, BrokenBarrier>> {
        self.wait_deadline(None)
    }

    /// As [`wait`](Self::wait), breaking the barrier if not released within `timeout`.
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    ///
    /// ```no_run
    /// # let b = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "s").unwrap().barrier("b", 2).unwrap();
    /// assert!(b.wait_timeout(std::time::Duration::from_millis(10)).unwrap().is_err());
    /// assert!(b.broken().unwrap());
    /// ```
    /// Python counterpart: `barrier.wait(timeout)`.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<std::result::Result<u32, BrokenBarrier>> {
        self.wait_deadline(Some(Instant::now() + timeout))
    }

    fn wait_deadline(&self, deadline: Option<Instant>) -> Result<std::result::Result<u32, BrokenBarrier>> {
        let (generation, arrived, released) = loop {
            let (generation, released) = self.generation()?;
            let reply: Vec<i64> = self.cluster.call("arriving at a barrier", |c| {
                redis::Script::new(ARRIVE)
                    .key(&self.keys[0])
                    .key(&self.keys[1])
                    .key(&self.keys[2])
                    .key(&released)
                    .arg(&generation)
                    .arg(self.parties)
                    .invoke(c)
            })?;
            match reply.as_slice() {
                [-1] => return Ok(Err(BrokenBarrier)),
                [-2] => continue,
                &[n, done] => {
                    let index = self.parties - n as u32;
                    if done == 1 {
                        return Ok(Ok(index));
                    }
                    break (generation, index, released);
                }
                _ => return Err(Error::new(ErrorKind::Protocol, "an unexpected reply from a barrier")),
            }
        };
        loop {
            let outcome = self.cluster.wait_call("waiting at a barrier", deadline, |c, left| {
                redis::cmd("BLMOVE")
                    .arg(&released)
                    .arg(&released)
                    .arg("RIGHT")
                    .arg("RIGHT")
                    .arg(left.as_secs_f64())
                    .query::<Option<String>>(c)
            })?;
            match outcome.as_deref() {
                Some("ok") => return Ok(Ok(arrived)),
                Some(_) => return Ok(Err(BrokenBarrier)),
                None if deadline.is_some_and(|d| Instant::now() >= d) => {
                    // Timed out: break it for everyone — unless it was released just now.
                    let broke = self.break_generation(&generation, &released)?;
                    return Ok(if broke { Err(BrokenBarrier) } else { Ok(arrived) });
                }
                None => {}
            }
        }
    }

    /// Breaks the barrier: waiters now and later get `BrokenBarrier` until [`reset`](Self::reset).
    ///
    /// # Errors
    /// The server's errors.
    ///
    /// ```no_run
    /// # let b = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "s").unwrap().barrier("b", 2).unwrap();
    /// b.abort().unwrap();
    /// assert!(b.wait().unwrap().is_err());
    /// ```
    /// Python counterpart: `barrier.abort()`.
    pub fn abort(&self) -> Result<()> {
        // The generation may move on between the read and the break: then break the next.
        loop {
            let (generation, released) = self.generation()?;
            if self.break_generation(&generation, &released)? {
                return Ok(());
            }
        }
    }

    /// Back to the start: not broken, nobody waiting (those waiting now get `BrokenBarrier`).
    ///
    /// # Errors
    /// The server's errors.
    ///
    /// ```no_run
    /// # let b = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "s").unwrap().barrier("b", 1).unwrap();
    /// b.abort().unwrap();
    /// b.reset().unwrap();
    /// assert_eq!(b.wait().unwrap(), Ok(0));
    /// ```
    /// Python counterpart: `barrier.reset()`.
    pub fn reset(&self) -> Result<()> {
        let (_, released) = self.generation()?;
        self.cluster.call("resetting a barrier", |c| {
            redis::Script::new(RESET)
                .key(&self.keys[0])
                .key(&self.keys[1])
                .key(&self.keys[2])
                .key(&released)
                .invoke::<i64>(c)
        })?;
        Ok(())
    }

    /// Whether the barrier is broken.
    ///
    /// # Errors
    /// The server's errors.
    ///
    /// ```no_run
    /// # let b = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "s").unwrap().barrier("b", 2).unwrap();
    /// assert!(!b.broken().unwrap());
    /// ```
    /// Python counterpart: `barrier.broken`.
    pub fn broken(&self) -> Result<bool> {
        self.cluster.call("reading a barrier", |c| redis::cmd("EXISTS").arg(&self.keys[2]).query(c))
    }

    /// How many parties are waiting now.
    ///
    /// # Errors
    /// The server's errors.
    ///
    /// ```no_run
    /// # let b = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "s").unwrap().barrier("b", 2).unwrap();
    /// assert_eq!(b.n_waiting().unwrap(), 0);
    /// ```
    /// Python counterpart: `barrier.n_waiting`.
    pub fn n_waiting(&self) -> Result<u32> {
        let n: Option<u32> =
            self.cluster.call("reading a barrier", |c| redis::cmd("GET").arg(&self.keys[0]).query(c))?;
        Ok(n.unwrap_or(0))
    }
}
