//! Namespaces and single values in a manager: [`NamespaceProxy`], [`ValueProxy`]. Both are
//! dicts in the server — a namespace of attribute names, a value of one entry.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;

use super::Manager;
use super::dict::dict_op;
use super::hosted::apply_entry_offset;
use super::protocol::{DictOp, Kind, New, Reply};
use super::proxy::{decode, encode, proxy_type, unexpected};
use crate::error::{Error, ErrorKind, Result};

impl Manager {
    /// A new, empty namespace: named attributes of any serde type.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] if the server is gone.
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// let ns = manager.namespace().unwrap();
    /// ns.set("x", &5u32).unwrap();
    /// ns.set("label", &"five".to_string()).unwrap();
    /// assert_eq!(ns.get::<u32>("x").unwrap(), Some(5));
    /// ```
    /// Python counterpart: `manager.Namespace()`.
    pub fn namespace(&self) -> Result<NamespaceProxy> {
        self.new_object(New::Namespace)
    }

    /// A shared value, starting at `value`.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] if the server is gone; [`ErrorKind::Encode`].
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// let v = manager.value(1.5f64).unwrap();
    /// v.set(2.5).unwrap();
    /// assert_eq!(v.get().unwrap(), 2.5);
    /// ```
    /// Python counterpart: `manager.Value(typecode, value)`.
    pub fn value<T: Serialize + DeserializeOwned>(&self, value: T) -> Result<ValueProxy<T>> {
        self.new_object(New::Value(encode(&value)?))
    }
}

proxy_type!(
    /// Named attributes of any serde type, in a [`Manager`].
    ///
    /// ```
    /// use multiproc::{Manager, Process, manager::NamespaceProxy};
    /// fn report(ns: NamespaceProxy) { ns.set("done_by", &std::process::id()).unwrap() }
    /// let manager = Manager::start().unwrap();
    /// let ns = manager.namespace().unwrap();
    /// let mut p = Process::spawn(report, (ns.clone(),)).unwrap();
    /// p.join().unwrap();
    /// assert_eq!(ns.get::<u32>("done_by").unwrap(), Some(p.pid()));
    /// ```
    /// Python counterpart: the proxy of `manager.Namespace()` (`ns.x = 5`, `ns.x`).
    NamespaceProxy<> = Kind::Namespace, ()
);

impl NamespaceProxy {
    /// Attribute `name`, decoded as a `T`, if it is set.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] if the server is gone; [`ErrorKind::Decode`] if it is not a `T`.
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let ns = m.namespace().unwrap();
    /// assert_eq!(ns.get::<u8>("missing").unwrap(), None);
    /// ```
    /// Python counterpart: `ns.name` (which raises `AttributeError` when unset).
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        match dict_op(&self.address, self.id, DictOp::Get(encode(name)?))? {
            Reply::Value(v) => v.map(|b| decode(&b)).transpose(),
            other => Err(unexpected(other)),
        }
    }

    /// Sets attribute `name`.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`]; [`ErrorKind::Encode`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let ns = m.namespace().unwrap();
    /// ns.set("flag", &true).unwrap();
    /// # assert_eq!(ns.get::<bool>("flag").unwrap(), Some(true));
    /// ```
    /// Python counterpart: `ns.name = value`.
    pub fn set<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<()> {
        match dict_op(&self.address, self.id, DictOp::Insert(encode(name)?, encode(value)?))? {
            Reply::Value(_) => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Removes attribute `name`; whether it was set.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let ns = m.namespace().unwrap();
    /// ns.set("x", &1).unwrap();
    /// assert!(ns.remove("x").unwrap());
    /// ```
    /// Python counterpart: `del ns.name`.
    pub fn remove(&self, name: &str) -> Result<bool> {
        match dict_op(&self.address, self.id, DictOp::Remove(encode(name)?))? {
            Reply::Value(v) => Ok(v.is_some()),
            other => Err(unexpected(other)),
        }
    }

    /// The names of the attributes that are set.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let ns = m.namespace().unwrap();
    /// ns.set("a", &1).unwrap();
    /// assert_eq!(ns.names().unwrap(), ["a"]);
    /// ```
    /// Python counterpart: `vars(ns)`.
    #[doc(alias = "vars")]
    pub fn names(&self) -> Result<Vec<String>> {
        match dict_op(&self.address, self.id, DictOp::Items)? {
            Reply::Items(items) => items.iter().map(|(k, _)| decode(k)).collect(),
            other => Err(unexpected(other)),
        }
    }
}

proxy_type!(
    /// One shared value of any serde type, in a [`Manager`].
    ///
    /// ```
    /// use multiproc::{Manager, Process, manager::ValueProxy};
    /// fn grow(v: ValueProxy<Vec<u8>>) {
    ///     v.apply(|old: Option<Vec<u8>>| { let mut v = old.unwrap_or_default(); v.push(1); v }).unwrap();
    /// }
    /// let manager = Manager::start().unwrap();
    /// let v = manager.value(Vec::<u8>::new()).unwrap();
    /// let mut ps: Vec<_> = (0..3).map(|_| Process::spawn(grow, (v.clone(),)).unwrap()).collect();
    /// ps.iter_mut().for_each(|p| p.join().unwrap());
    /// assert_eq!(v.get().unwrap(), [1, 1, 1]);
    /// ```
    /// Python counterpart: the proxy of `manager.Value(typecode, value)`.
    ValueProxy<T> = Kind::Value(std::any::type_name::<T>().into()), fn(T) -> T
);

/// The one key of a value's dict: `()` encodes as no bytes at all.
fn the_key() -> ByteBuf {
    ByteBuf::new()
}

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    fn value(&self, op: DictOp) -> Result<T> {
        match dict_op(&self.address, self.id, op)? {
            Reply::Value(Some(bytes)) => decode(&bytes),
            Reply::Value(None) => Err(Error::new(ErrorKind::Decode, "the shared value is missing")),
            other => Err(unexpected(other)),
        }
    }

    /// The value.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`]; [`ErrorKind::Decode`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// assert_eq!(m.value(3i8).unwrap().get().unwrap(), 3);
    /// ```
    /// Python counterpart: `v.value`.
    pub fn get(&self) -> Result<T> {
        self.value(DictOp::Get(the_key()))
    }

    /// Replaces the value.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`]; [`ErrorKind::Encode`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let v = m.value(0u8).unwrap();
    /// v.set(4).unwrap();
    /// # assert_eq!(v.get().unwrap(), 4);
    /// ```
    /// Python counterpart: `v.value = x`.
    pub fn set(&self, value: T) -> Result<()> {
        self.value(DictOp::Insert(the_key(), encode(&value)?)).map(drop)
    }

    /// Replaces the value by `f(value)` in the server, atomically; returns the new value.
    ///
    /// # Errors
    /// As [`DictProxy::apply`](super::DictProxy::apply).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let v = m.value(2u32).unwrap();
    /// assert_eq!(v.apply(|x: Option<u32>| x.unwrap_or(0) * 10).unwrap(), 20);
    /// ```
    /// Python counterpart: none (`with lock: v.value = f(v.value)`).
    pub fn apply<F>(&self, _f: F) -> Result<T>
    where
        F: Fn(Option<T>) -> T + Copy + Send + Sync + 'static,
    {
        self.value(DictOp::Apply { key: the_key(), entry: apply_entry_offset::<F, T>() })
    }
}
