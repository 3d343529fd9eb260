//! [`Dict`] on the cluster: a Redis hash of encoded keys and values.

use std::borrow::Borrow;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Cluster;
use crate::error::{Error, ErrorKind, Result};
use crate::manager::Number;

/// What the dict holds, for messages.
const WHAT: &str = "a cluster dict";

/// Sets a field and returns what it held.
const SWAP: &str = r"
local old = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return old
";

/// Removes a field and returns what it held.
const TAKE: &str = r"
local old = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
return old
";

/// A dict that lives on the cluster under a name, as a manager's [`DictProxy`] lives in its
/// server: any process of the namespace reads and writes it. [`add`](Self::add) and
/// [`apply`](Self::apply) change an entry atomically, by optimistic retry in the caller (`WATCH`,
/// then `MULTI`/`EXEC`): the server never runs this program's code. Keys and values are encoded as
/// locally; `items` comes in no particular order (a Redis hash keeps none).
///
/// ```no_run
/// let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "crawl").unwrap();
/// let seen = cluster.dict::<String, u64>("seen").unwrap();
/// seen.add("example.com", 1).unwrap();
/// assert_eq!(seen.get("example.com").unwrap(), Some(1));
/// ```
/// Python counterpart: `manager.dict()`.
///
/// [`DictProxy`]: crate::manager::DictProxy
pub struct Dict<K, V> {
    cluster: Cluster,
    name: String,
    key: String,
    _type: PhantomData<fn(K) -> V>,
}

impl<K, V> Clone for Dict<K, V> {
    fn clone(&self) -> Dict<K, V> {
        Dict { cluster: self.cluster.clone(), name: self.name.clone(), key: self.key.clone(), _type: PhantomData }
    }
}

impl<K, V> std::fmt::Debug for Dict<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("cluster::Dict").field("name", &self.name).finish()
    }
}

/// A dict travels as its cluster and name (see [`Cluster`]'s serialization).
impl<K, V> Serialize for Dict<K, V> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.cluster, &self.name).serialize(serializer)
    }
}

impl<'de, K, V> serde::Deserialize<'de> for Dict<K, V> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Dict<K, V>, D::Error> {
        let (cluster, name) = <(Cluster, String)>::deserialize(deserializer)?;
        Ok(Dict::named(cluster, name))
    }
}

impl<K, V> Dict<K, V> {
    /// The dict stored under object name `name` (checked by the caller).
    pub(crate) fn named(cluster: Cluster, name: String) -> Dict<K, V> {
        let key = cluster.key(&name, "entries");
        Dict { cluster, name, key, _type: PhantomData }
    }
}

impl Cluster {
    /// The dict named `name` in this namespace (made on first write).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a bad name.
    ///
    /// ```no_run
    /// let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "crawl").unwrap();
    /// let pages = cluster.dict::<String, Vec<String>>("links").unwrap();
    /// ```
    /// Python counterpart: `manager.dict()` registered under a name.
    pub fn dict<K, V>(&self, name: &str) -> Result<Dict<K, V>>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        super::check_name(name)?;
        Ok(Dict::named(self.clone(), name.to_owned()))
    }
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> Dict<K, V> {
    /// The value for `key` (any borrowed form of `K`, as [`DictProxy::get`] takes), if any.
    ///
    /// # Errors
    /// [`ErrorKind::Decode`] if the stored value is not a `V`; the server's errors.
    ///
    /// ```no_run
    /// # let d = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "c").unwrap().dict::<String, u8>("d").unwrap();
    /// assert_eq!(d.get("absent").unwrap(), None);
    /// ```
    /// Python counterpart: `d.get(key)`.
    ///
    /// [`DictProxy::get`]: crate::manager::DictProxy::get
    pub fn get<Q>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        let field = crate::handle::encode_bytes_only(key, WHAT)?;
        let bytes: Option<Vec<u8>> =
            self.cluster.call("reading an entry", |c| redis::cmd("HGET").arg(&self.key).arg(&field).query(c))?;
        bytes.map(|b| super::decode(&b, WHAT)).transpose()
    }

    /// Sets `key` to `value`; returns the old value.
    ///
    /// # Errors
    /// [`ErrorKind::Encode`] if either cannot be encoded; as [`get`](Self::get).
    ///
    /// ```no_run
    /// # let d = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "c").unwrap().dict::<String, u8>("d").unwrap();
    /// assert_eq!(d.insert("a".into(), 1).unwrap(), None);
    /// assert_eq!(d.insert("a".into(), 2).unwrap(), Some(1));
    /// ```
    /// Python counterpart: `d[key] = value`.
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>> {
        let (key, value) =
            (crate::handle::encode_bytes_only(&key, WHAT)?, crate::handle::encode_bytes_only(&value, WHAT)?);
        let old: Option<Vec<u8>> = self
            .cluster
            .call("setting an entry", |c| redis::Script::new(SWAP).key(&self.key).arg(&key).arg(&value).invoke(c))?;
        old.map(|b| super::decode(&b, WHAT)).transpose()
    }

    /// Removes `key`; returns its value.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    ///
    /// ```no_run
    /// # let d = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "c").unwrap().dict::<String, u8>("d").unwrap();
    /// d.insert("a".into(), 1).unwrap();
    /// assert_eq!(d.remove("a").unwrap(), Some(1));
    /// ```
    /// Python counterpart: `d.pop(key, None)`.
    pub fn remove<Q>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        let key = crate::handle::encode_bytes_only(key, WHAT)?;
        let old: Option<Vec<u8>> =
            self.cluster.call("removing an entry", |c| redis::Script::new(TAKE).key(&self.key).arg(&key).invoke(c))?;
        old.map(|b| super::decode(&b, WHAT)).transpose()
    }

    /// The number of entries.
    ///
    /// # Errors
    /// The server's errors.
    ///
    /// ```no_run
    /// # let d = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "c").unwrap().dict::<String, u8>("d").unwrap();
    /// assert_eq!(d.len().unwrap(), 0);
    /// ```
    /// Python counterpart: `len(d)`.
    pub fn len(&self) -> Result<usize> {
        self.cluster.call("counting entries", |c| redis::cmd("HLEN").arg(&self.key).query(c))
    }

    /// Whether the dict is empty.
    ///
    /// # Errors
    /// The server's errors.
    ///
    /// ```no_run
    /// # let d = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "c").unwrap().dict::<String, u8>("d").unwrap();
    /// assert!(d.is_empty().unwrap());
    /// ```
    /// Python counterpart: `not d`.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// A snapshot of every entry, in no particular order.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    ///
    /// ```no_run
    /// # let d = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "c").unwrap().dict::<String, u8>("d").unwrap();
    /// d.insert("a".into(), 1).unwrap();
    /// assert_eq!(d.items().unwrap(), [("a".to_string(), 1)]);
    /// ```
    /// Python counterpart: `d.items()`.
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> =
            self.cluster.call("reading the entries", |c| redis::cmd("HGETALL").arg(&self.key).query(c))?;
        pairs.iter().map(|(k, v)| Ok((super::decode(k, WHAT)?, super::decode(v, WHAT)?))).collect()
    }

    /// Removes every entry.
    ///
    /// # Errors
    /// The server's errors.
    ///
    /// ```no_run
    /// # let d = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "c").unwrap().dict::<String, u8>("d").unwrap();
    /// d.clear().unwrap();
    /// ```
    /// Python counterpart: `d.clear()`.
    pub fn clear(&self) -> Result<()> {
        self.cluster.call("clearing", |c| redis::cmd("DEL").arg(&self.key).query::<i64>(c))?;
        Ok(())
    }

    /// Replaces the value for `key` by `f(old value)` atomically: if another process changes the
    /// dict in between, `f` runs again on the new value. Returns the new value. `f` runs in this
    /// process (more than once under contention: keep it pure).
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    ///
    /// ```no_run
    /// # let d = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "c").unwrap().dict::<String, Vec<u32>>("d").unwrap();
    /// let log = d.apply("events", |old| { let mut v = old.unwrap_or_default(); v.push(7); v }).unwrap();
    /// ```
    /// Python counterpart: none (`with lock: d[k] = f(d.get(k))`).
    pub fn apply<Q>(&self, key: &Q, mut f: impl FnMut(Option<V>) -> V) -> Result<V>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        self.try_apply(key, |old| Ok(f(old)))
    }

    /// As [`apply`](Self::apply), where `f` may refuse (its error is returned, nothing stored).
    pub(crate) fn try_apply<Q>(&self, key: &Q, mut f: impl FnMut(Option<V>) -> Result<V>) -> Result<V>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        let field = crate::handle::encode_bytes_only(key, WHAT)?;
        self.update(&field, |old| {
            let old = old.map(|b| super::decode(b, WHAT)).transpose()?;
            let new = f(old)?;
            Ok((crate::handle::encode_bytes_only(&new, WHAT)?, new))
        })
    }

    /// Sets `key` to `value` unless it has a value already; whether it did.
    pub(crate) fn insert_if_absent(&self, key: &K, value: &V) -> Result<bool> {
        let (key, value) =
            (crate::handle::encode_bytes_only(key, WHAT)?, crate::handle::encode_bytes_only(value, WHAT)?);
        self.cluster.call("setting an entry", |c| redis::cmd("HSETNX").arg(&self.key).arg(&key).arg(&value).query(c))
    }

    /// Runs `change` on the encoded entry at `field` and stores what it makes, atomically with
    /// respect to every other write of the dict (`WATCH`; retried if one came in between).
    fn update(&self, field: &[u8], mut change: impl FnMut(Option<&[u8]>) -> Result<(Vec<u8>, V)>) -> Result<V> {
        self.cluster.watched(
            &self.key,
            |c| redis::cmd("HGET").arg(&self.key).arg(field).query(c),
            |old| change(old.as_deref()),
            |pipe, bytes| {
                pipe.cmd("HSET").arg(&self.key).arg(field).arg(bytes).ignore();
            },
        )
    }
}

impl<K: Serialize + DeserializeOwned, V: Number> Dict<K, V> {
    /// Adds `delta` to the number at `key` (absent counts as zero) atomically; returns the new
    /// value. Integers never wrap: a sum that does not fit is refused and the entry stays.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if the sum does not fit; as [`get`](Self::get).
    ///
    /// ```no_run
    /// # let d = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "c").unwrap().dict::<String, i64>("d").unwrap();
    /// d.add("hits", 5).unwrap();
    /// assert_eq!(d.add("hits", -2).unwrap(), 3);
    /// ```
    /// Python counterpart: none (`with lock: d[k] += n`).
    pub fn add<Q>(&self, key: &Q, delta: V) -> Result<V>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        let field = crate::handle::encode_bytes_only(key, WHAT)?;
        self.update(&field, |old| {
            let bytes = crate::manager::add_encoded(old, delta)
                .map_err(|why| Error::new(ErrorKind::InvalidInput, format!("adding to an entry: {why}")))?;
            let value = super::decode(&bytes, WHAT)?;
            Ok((bytes, value))
        })
    }
}
