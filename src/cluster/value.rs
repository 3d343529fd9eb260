//! [`Value`] and [`Namespace`] on the cluster: a manager's `Value` and `Namespace` as entries
//! of a Redis hash.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;

use super::{Cluster, Dict};
use crate::error::{Error, ErrorKind, Result};
use crate::manager::Number;

/// One value on the cluster under a name, shared by every process of the namespace on any
/// machine. [`apply`](Self::apply) changes it atomically (optimistic retry, run in this
/// process), and numbers have an atomic [`add`](Self::add).
///
/// ```no_run
/// let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "sims").unwrap();
/// let best = cluster.value("best", f64::INFINITY).unwrap();
/// best.apply(|b| b.min(0.5)).unwrap();
/// assert_eq!(best.get().unwrap(), 0.5);
/// ```
/// Python counterpart: `manager.Value(typecode, value)`.
pub struct Value<T> {
    cluster: Cluster,
    name: String,
    cell: Dict<u8, T>,
}

impl<T> Clone for Value<T> {
    fn clone(&self) -> Value<T> {
        Value::named(self.cluster.clone(), self.name.clone())
    }
}

impl<T> std::fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("cluster::Value").field("name", &self.name).finish()
    }
}

travels_by_name!(Value<T>, |v| [0, 0], |cluster, name, x| Ok::<_, Error>(Value::named(cluster, name)));

impl<T> Value<T> {
    fn named(cluster: Cluster, name: String) -> Value<T> {
        let cell = Dict::named(cluster.clone(), name.clone());
        Value { cluster, name, cell }
    }
}

impl Cluster {
    /// The value named `name` in this namespace, set to `initial` unless it exists already.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a bad name; [`ErrorKind::Encode`] if `initial` cannot be
    /// encoded; the server's errors.
    ///
    /// ```no_run
    /// let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "sims").unwrap();
    /// let done = cluster.value("done", 0u64).unwrap();
    /// ```
    /// Python counterpart: `manager.Value(typecode, value)` registered under a name.
    pub fn value<T: Serialize + DeserializeOwned>(&self, name: &str, initial: T) -> Result<Value<T>> {
        super::check_name(name)?;
        let value = Value::named(self.clone(), name.to_owned());
        value.cell.insert_if_absent(&0, &initial)?;
        Ok(value)
    }
}

impl<T: Serialize + DeserializeOwned> Value<T> {
    /// The value now.
    ///
    /// # Errors
    /// [`ErrorKind::Decode`] if it is not a `T`; [`ErrorKind::InvalidInput`] if it was removed
    /// from the server; the server's errors.
    ///
    /// ```no_run
    /// # let v = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "s").unwrap().value("v", 1u8).unwrap();
    /// assert_eq!(v.get().unwrap(), 1);
    /// ```
    /// Python counterpart: `v.value`.
    pub fn get(&self) -> Result<T> {
        self.cell.get(&0)?.ok_or_else(|| self.gone())
    }

    /// Sets the value.
    ///
    /// # Errors
    /// [`ErrorKind::Encode`] if it cannot be encoded; the server's errors.
    ///
    /// ```no_run
    /// # let v = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "s").unwrap().value("v", 1u8).unwrap();
    /// v.set(2).unwrap();
    /// ```
    /// Python counterpart: `v.value = x`.
    pub fn set(&self, value: T) -> Result<()> {
        self.cell.insert(0, value).map(drop)
    }

    /// Replaces the value by `f(old)` atomically; returns the new one. `f` runs in this process
    /// (again, if another process wrote in between: keep it pure).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    ///
    /// ```no_run
    /// # let v = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "s").unwrap().value("v", 1u8).unwrap();
    /// assert_eq!(v.apply(|x| x * 3).unwrap(), 3);
    /// ```
    /// Python counterpart: none (`with v.get_lock(): v.value = f(v.value)`).
    pub fn apply(&self, mut f: impl FnMut(T) -> T) -> Result<T> {
        self.cell.try_apply(&0, |old| old.map(&mut f).ok_or_else(|| self.gone()))
    }

    fn gone(&self) -> Error {
        Error::new(ErrorKind::InvalidInput, format!("cluster value {:?} was removed from the server", self.name))
    }
}

impl<T: Number> Value<T> {
    /// Adds `delta` atomically; returns the new value. Integers never wrap: a sum that does not
    /// fit is refused and the value stays.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if the sum does not fit; as [`get`](Self::get).
    ///
    /// ```no_run
    /// # let v = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "s").unwrap().value("v", 1u64).unwrap();
    /// assert_eq!(v.add(2).unwrap(), 3);
    /// ```
    /// Python counterpart: none (`with v.get_lock(): v.value += n`).
    pub fn add(&self, delta: T) -> Result<T> {
        self.cell.add(&0, delta)
    }
}

/// Attributes on the cluster under a name — each of its own type — shared by every process of
/// the namespace on any machine.
///
/// ```no_run
/// let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "sims").unwrap();
/// let config = cluster.namespace_object("config").unwrap();
/// config.set("steps", &1000u32).unwrap();
/// config.set("label", &"run 7".to_string()).unwrap();
/// assert_eq!(config.get::<u32>("steps").unwrap(), Some(1000));
/// ```
/// Python counterpart: `manager.Namespace()`.
#[derive(Clone)]
pub struct Namespace {
    cluster: Cluster,
    name: String,
    attributes: Dict<String, ByteBuf>,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("cluster::Namespace").field("name", &self.name).finish()
    }
}

travels_by_name!(Namespace, |n| [0, 0], |cluster, name, x| Ok::<_, Error>(Namespace::named(cluster, name)));

impl Namespace {
    fn named(cluster: Cluster, name: String) -> Namespace {
        let attributes = Dict::named(cluster.clone(), name.clone());
        Namespace { cluster, name, attributes }
    }
}

impl Cluster {
    /// The namespace object named `name` (a manager's `Namespace`; "namespace" alone is this
    /// handle's own scope, see [`Cluster::namespace`]).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a bad name.
    ///
    /// ```no_run
    /// let cluster = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "sims").unwrap();
    /// let shared = cluster.namespace_object("shared").unwrap();
    /// ```
    /// Python counterpart: `manager.Namespace()` registered under a name.
    pub fn namespace_object(&self, name: &str) -> Result<Namespace> {
        super::check_name(name)?;
        Ok(Namespace::named(self.clone(), name.to_owned()))
    }
}

impl Namespace {
    /// Attribute `attr`, if set.
    ///
    /// # Errors
    /// [`ErrorKind::Decode`] if it is not a `T`; the server's errors.
    ///
    /// ```no_run
    /// # let ns = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "s").unwrap().namespace_object("n").unwrap();
    /// assert_eq!(ns.get::<u8>("missing").unwrap(), None);
    /// ```
    /// Python counterpart: `ns.attr` (which raises `AttributeError` when unset).
    pub fn get<T: DeserializeOwned>(&self, attr: &str) -> Result<Option<T>> {
        let Some(bytes) = self.attributes.get(attr)? else { return Ok(None) };
        super::decode(&bytes, &format!("attribute {attr:?} of a cluster namespace")).map(Some)
    }

    /// Sets attribute `attr`.
    ///
    /// # Errors
    /// [`ErrorKind::Encode`] if it cannot be encoded; the server's errors.
    ///
    /// ```no_run
    /// # let ns = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "s").unwrap().namespace_object("n").unwrap();
    /// ns.set("ready", &true).unwrap();
    /// ```
    /// Python counterpart: `ns.attr = value`.
    pub fn set<T: Serialize>(&self, attr: &str, value: &T) -> Result<()> {
        let bytes = crate::handle::encode_bytes_only(value, "a cluster namespace")?;
        self.attributes.insert(attr.to_owned(), ByteBuf::from(bytes)).map(drop)
    }

    /// Removes attribute `attr`; whether it was set.
    ///
    /// # Errors
    /// The server's errors.
    ///
    /// ```no_run
    /// # let ns = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "s").unwrap().namespace_object("n").unwrap();
    /// assert!(!ns.remove("missing").unwrap());
    /// ```
    /// Python counterpart: `del ns.attr`.
    pub fn remove(&self, attr: &str) -> Result<bool> {
        Ok(self.attributes.remove(attr)?.is_some())
    }

    /// The names of the attributes set.
    ///
    /// # Errors
    /// The server's errors.
    ///
    /// ```no_run
    /// # let ns = multiproc::cluster::Cluster::connect("redis://127.0.0.1", "s").unwrap().namespace_object("n").unwrap();
    /// ns.set("a", &1u8).unwrap();
    /// assert_eq!(ns.attributes().unwrap(), ["a"]);
    /// ```
    /// Python counterpart: `vars(ns)`.
    pub fn attributes(&self) -> Result<Vec<String>> {
        Ok(self.attributes.items()?.into_iter().map(|(name, _)| name).collect())
    }
}
