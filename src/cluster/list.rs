//! [`List`] on the cluster: a Redis list of encoded values.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Cluster;
use crate::error::{Error, ErrorKind, Result};

const WHAT: &str = "a cluster list";

/// Removes and returns the element at an index (negative from the end), or nil if out of range.
const TAKE: &str = r"
local v = redis.call('LINDEX', KEYS[1], ARGV[1])
if not v then return nil end
redis.call('LSET', KEYS[1], ARGV[1], '__mp_taken__')
redis.call('LREM', KEYS[1], 1, '__mp_taken__')
return v
";

/// Replaces the element at an index; 0 if there is none.
const SET: &str = r"
if not redis.call('LINDEX', KEYS[1], ARGV[1]) then return 0 end
redis.call('LSET', KEYS[1], ARGV[1], ARGV[2])
return 1
";

/// A list on the cluster under a name, shared by every process of the namespace on any
/// machine: a manager's list without the manager. Values are encoded as locally (postcard).
/// Each call is one atomic step on the server; [`apply`](Self::apply) changes an element
/// atomically with respect to every other write.
///
/// ```no_run
/// let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "crawl").unwrap();
/// let seen = cluster.list::<String>("seen").unwrap();
/// seen.append(&"https://example.com".to_string()).unwrap();
/// assert_eq!(seen.get(0).unwrap().as_deref(), Some("https://example.com"));
/// ```
/// Python counterpart: `manager.list()`.
pub struct List<T> {
    cluster: Cluster,
    name: String,
    key: String,
    _type: PhantomData<fn(T) -> T>,
}

impl<T> Clone for List<T> {
    fn clone(&self) -> List<T> {
        List::named(self.cluster.clone(), self.name.clone())
    }
}

impl<T> std::fmt::Debug for List<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("cluster::List").field("name", &self.name).finish()
    }
}

travels_by_name!(List<T>, |l| [0, 0], |cluster, name, x| Ok::<_, Error>(List::named(cluster, name)));

impl<T> List<T> {
    fn named(cluster: Cluster, name: String) -> List<T> {
        let key = cluster.key(&name, "elements");
        List { cluster, name, key, _type: PhantomData }
    }
}

impl Cluster {
    /// The list named `name` in this namespace (empty until first written).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a bad name.
    ///
    /// ```no_run
    /// let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "crawl").unwrap();
    /// let results = cluster.list::<(String, u32)>("results").unwrap();
    /// ```
    /// Python counterpart: `manager.list()` registered under a name.
    pub fn list<T: Serialize + DeserializeOwned>(&self, name: &str) -> Result<List<T>> {
        super::check_name(name)?;
        Ok(List::named(self.clone(), name.to_owned()))
    }
}

impl<T: Serialize + DeserializeOwned> List<T> {
    /// Appends a value at the end.
    ///
    /// # Errors
    /// [`ErrorKind::Encode`] if it cannot be encoded; the server's errors.
    ///
    /// ```no_run
    /// # let l = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "c").unwrap().list::<u8>("l").unwrap();
    /// l.append(&1).unwrap();
    /// ```
    /// Python counterpart: `l.append(x)`.
    pub fn append(&self, value: &T) -> Result<()> {
        self.extend(std::slice::from_ref(value))
    }

    /// Appends every value, in one atomic step.
    ///
    /// # Errors
    /// As [`append`](Self::append).
    ///
    /// ```no_run
    /// # let l = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "c").unwrap().list::<u8>("l").unwrap();
    /// l.extend(&[1, 2, 3]).unwrap();
    /// ```
    /// Python counterpart: `l.extend(values)`.
    pub fn extend(&self, values: &[T]) -> Result<()> {
        if values.is_empty() {
            return Ok(());
        }
        let encoded = values.iter().map(|v| crate::handle::encode_bytes_only(v, WHAT)).collect::<Result<Vec<_>>>()?;
        self.cluster.call("appending", |c| redis::cmd("RPUSH").arg(&self.key).arg(&encoded).query::<i64>(c))?;
        Ok(())
    }

    /// The value at `i` (negative counts from the end), if there is one.
    ///
    /// # Errors
    /// [`ErrorKind::Decode`] if it is not a `T`; the server's errors.
    ///
    /// ```no_run
    /// # let l = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "c").unwrap().list::<u8>("l").unwrap();
    /// l.extend(&[1, 2]).unwrap();
    /// assert_eq!(l.get(-1).unwrap(), Some(2));
    /// ```
    /// Python counterpart: `l[i]`.
    pub fn get(&self, i: isize) -> Result<Option<T>> {
        let bytes: Option<Vec<u8>> =
            self.cluster.call("reading an element", |c| redis::cmd("LINDEX").arg(&self.key).arg(i as i64).query(c))?;
        bytes.map(|b| super::decode(&b, WHAT)).transpose()
    }

    /// Replaces the value at `i`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if there is no element at `i` (Python's `IndexError`); as
    /// [`append`](Self::append).
    ///
    /// ```no_run
    /// # let l = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "c").unwrap().list::<u8>("l").unwrap();
    /// l.append(&1).unwrap();
    /// l.set(0, &5).unwrap();
    /// ```
    /// Python counterpart: `l[i] = x`.
    pub fn set(&self, i: isize, value: &T) -> Result<()> {
        let bytes = crate::handle::encode_bytes_only(value, WHAT)?;
        let set: i64 = self.cluster.call("setting an element", |c| {
            redis::Script::new(SET).key(&self.key).arg(i as i64).arg(&bytes).invoke(c)
        })?;
        if set == 0 {
            return Err(Error::new(ErrorKind::InvalidInput, format!("{WHAT}: no element at index {i}")));
        }
        Ok(())
    }

    /// Removes and returns the value at `i` (`-1`: the last), if there is one.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    ///
    /// ```no_run
    /// # let l = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "c").unwrap().list::<u8>("l").unwrap();
    /// l.extend(&[1, 2, 3]).unwrap();
    /// assert_eq!(l.pop(0).unwrap(), Some(1));
    /// assert_eq!(l.pop(-1).unwrap(), Some(3));
    /// ```
    /// Python counterpart: `l.pop(i)`.
    pub fn pop(&self, i: isize) -> Result<Option<T>> {
        let bytes: Option<Vec<u8>> = self.cluster.call("removing an element", |c| match i {
            -1 => redis::cmd("RPOP").arg(&self.key).query(c),
            0 => redis::cmd("LPOP").arg(&self.key).query(c),
            _ => redis::Script::new(TAKE).key(&self.key).arg(i as i64).invoke(c),
        })?;
        bytes.map(|b| super::decode(&b, WHAT)).transpose()
    }

    /// Replaces the value at `i` by `f(old)` atomically: if another process writes the list in
    /// between, `f` runs again. Returns the new value. `f` runs in this process.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if there is no element at `i`; as [`get`](Self::get).
    ///
    /// ```no_run
    /// # let l = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "c").unwrap().list::<u32>("l").unwrap();
    /// l.append(&1).unwrap();
    /// assert_eq!(l.apply(0, |n| n + 1).unwrap(), 2);
    /// ```
    /// Python counterpart: none (`with lock: l[i] = f(l[i])`).
    pub fn apply(&self, i: isize, mut f: impl FnMut(T) -> T) -> Result<T> {
        self.cluster.watched(
            &self.key,
            |c| redis::cmd("LINDEX").arg(&self.key).arg(i as i64).query(c),
            |old| {
                let old =
                    old.ok_or_else(|| Error::new(ErrorKind::InvalidInput, format!("{WHAT}: no element at index {i}")))?;
                let new = f(super::decode(&old, WHAT)?);
                Ok((crate::handle::encode_bytes_only(&new, WHAT)?, new))
            },
            |pipe, bytes| {
                pipe.cmd("LSET").arg(&self.key).arg(i as i64).arg(bytes).ignore();
            },
        )
    }

    /// Every value, in order (a snapshot).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    ///
    /// ```no_run
    /// # let l = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "c").unwrap().list::<u8>("l").unwrap();
    /// l.extend(&[1, 2]).unwrap();
    /// assert_eq!(l.to_vec().unwrap(), [1, 2]);
    /// ```
    /// Python counterpart: `l[:]`.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        let all: Vec<Vec<u8>> = self
            .cluster
            .call("reading the elements", |c| redis::cmd("LRANGE").arg(&self.key).arg(0).arg(-1).query(c))?;
        all.iter().map(|b| super::decode(b, WHAT)).collect()
    }

    /// The number of values.
    ///
    /// # Errors
    /// The server's errors.
    ///
    /// ```no_run
    /// # let l = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "c").unwrap().list::<u8>("l").unwrap();
    /// assert_eq!(l.len().unwrap(), 0);
    /// ```
    /// Python counterpart: `len(l)`.
    pub fn len(&self) -> Result<usize> {
        self.cluster.call("counting elements", |c| redis::cmd("LLEN").arg(&self.key).query(c))
    }

    /// Whether the list is empty.
    ///
    /// # Errors
    /// The server's errors.
    ///
    /// ```no_run
    /// # let l = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "c").unwrap().list::<u8>("l").unwrap();
    /// assert!(l.is_empty().unwrap());
    /// ```
    /// Python counterpart: `not l`.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Removes every value.
    ///
    /// # Errors
    /// The server's errors.
    ///
    /// ```no_run
    /// # let l = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "c").unwrap().list::<u8>("l").unwrap();
    /// l.clear().unwrap();
    /// ```
    /// Python counterpart: `l.clear()`.
    pub fn clear(&self) -> Result<()> {
        self.cluster.call("clearing", |c| redis::cmd("DEL").arg(&self.key).query::<i64>(c))?;
        Ok(())
    }
}
