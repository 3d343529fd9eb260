//! Shared dicts: [`Manager::dict`] and [`DictProxy`], with atomic updates in the server.

use std::borrow::Borrow;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Manager;
use super::hosted::apply_entry_offset;
use super::protocol::{self, DictOp, Kind, New, Reply, Request};
use super::proxy::{Address, call, call_done, decode, encode, proxy_type, unexpected};
use crate::error::{Error, ErrorKind, Result};

impl Manager {
    /// A new, empty shared dict.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] if the server is gone.
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// let counts = manager.dict::<String, u64>().unwrap();
    /// assert!(counts.is_empty().unwrap());
    /// ```
    /// Python counterpart: `manager.dict()`.
    pub fn dict<K, V>(&self) -> Result<DictProxy<K, V>> {
        self.new_object(New::Dict)
    }

    /// A new shared dict holding `items` (encoded first: nothing is made if one cannot be).
    ///
    /// # Errors
    /// [`ErrorKind::Encode`]; [`ErrorKind::Disconnected`] if the server is gone.
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// let d = manager.dict_from([("count".to_string(), 100i64)]).unwrap();
    /// assert_eq!(d.get(&"count".to_string()).unwrap(), Some(100));
    /// ```
    /// Python counterpart: `manager.dict({"count": 100})`.
    pub fn dict_from<K, V>(&self, items: impl IntoIterator<Item = (K, V)>) -> Result<DictProxy<K, V>>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        let items = encode_items(items)?;
        let dict: DictProxy<K, V> = self.new_object(New::Dict)?;
        call_done(&dict.address, &Request::Dict { id: dict.id, op: DictOp::Update(items) })?;
        Ok(dict)
    }

    /// The dict registered under `name` in the manager, made empty if there is none yet: how
    /// programs that share nothing but the address and the key find the same object.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if `name` is registered as another kind of object;
    /// [`ErrorKind::Disconnected`]; [`ErrorKind::Authentication`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// m.dict_named::<u8, u8>("config").unwrap().insert(1, 2).unwrap();
    /// assert_eq!(m.dict_named::<u8, u8>("config").unwrap().get(&1).unwrap(), Some(2));
    /// ```
    /// Python counterpart: `BaseManager.register("get_dict", callable=lambda: shared_dict)`.
    pub fn dict_named<K, V>(&self, name: &str) -> Result<DictProxy<K, V>> {
        self.named(name, New::Dict)
    }
}

proxy_type!(
    /// A shared dict living in a [`Manager`]: keys `K` and values `V` travel encoded.
    ///
    /// Every method is one round trip to the server. Reads give copies: changing a value you got
    /// does not change the dict (put it back with [`insert`](Self::insert), or change it in
    /// place with [`apply`](Self::apply) or [`add`](Self::add)).
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// let d = manager.dict::<String, Vec<u32>>().unwrap();
    /// d.insert("primes".into(), vec![2, 3]).unwrap();
    /// fn push_five(v: Option<Vec<u32>>) -> Vec<u32> {
    ///     let mut v = v.unwrap_or_default();
    ///     v.push(5);
    ///     v
    /// }
    /// d.apply(&"primes".to_string(), push_five).unwrap();
    /// assert_eq!(d.get(&"primes".to_string()).unwrap(), Some(vec![2, 3, 5]));
    /// ```
    /// Python counterpart: the `DictProxy` of `manager.dict()`.
    DictProxy<K, V> = Kind::Dict(std::any::type_name::<K>().into(), std::any::type_name::<V>().into()), fn(K) -> V
);

/// Numbers that [`DictProxy::add`] adds in the server, as the dict's value type: a sum that does
/// not fit is refused, never wrapped.
///
/// ```
/// fn addable<N: multiproc::manager::Number>() {}
/// addable::<i64>();
/// addable::<u8>();
/// addable::<f32>();
/// ```
/// Python counterpart: none (`d[k] += n` under a Lock).
pub trait Number: Serialize + DeserializeOwned + Copy + sealed::Sealed {}

/// Adds `delta` to an encoded number of its type (absent: zero), as a manager's dict does in its
/// server: for the cluster's dict, which adds in the client.
#[cfg(feature = "cluster")]
pub(crate) fn add_encoded<V: Number>(old: Option<&[u8]>, delta: V) -> std::result::Result<Vec<u8>, String> {
    super::server::add(old, sealed::Sealed::to_wire(delta))
}

mod sealed {
    /// How a number travels to the server, and what keeps `Number` closed to other types: the
    /// server must know how each is encoded.
    pub trait Sealed {
        fn to_wire(self) -> crate::manager::protocol::Number;
    }
}

macro_rules! number {
    ($($t:ty => $variant:ident as $as:ty),* $(,)?) => { $(
        impl sealed::Sealed for $t {
            #[allow(clippy::unnecessary_cast)]
            fn to_wire(self) -> protocol::Number {
                protocol::Number::$variant(self as $as)
            }
        }
        impl Number for $t {}
    )* };
}
// `isize` and `usize` are encoded as 64-bit numbers.
number!(
    i8 => I8 as i8, i16 => I16 as i16, i32 => I32 as i32, i64 => I64 as i64, isize => I64 as i64,
    u8 => U8 as u8, u16 => U16 as u16, u32 => U32 as u32, u64 => U64 as u64, usize => U64 as u64,
    f32 => F32 as f32, f64 => F64 as f64,
);

fn encode_items<K: Serialize, V: Serialize>(
    items: impl IntoIterator<Item = (K, V)>,
) -> Result<Vec<(serde_bytes::ByteBuf, serde_bytes::ByteBuf)>> {
    items.into_iter().map(|(k, v)| Ok((encode(&k)?, encode(&v)?))).collect()
}

pub(super) fn dict_op(address: &Address, id: u64, op: DictOp) -> Result<Reply> {
    call(address, &Request::Dict { id, op })
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> DictProxy<K, V> {
    fn value(&self, op: DictOp) -> Result<Option<V>> {
        match dict_op(&self.address, self.id, op)? {
            Reply::Value(v) => v.map(|b| decode(&b)).transpose(),
            other => Err(unexpected(other)),
        }
    }

    /// A value the server must have returned.
    fn new_value(&self, op: DictOp) -> Result<V> {
        self.value(op)?.ok_or_else(|| Error::new(ErrorKind::Decode, "the manager returned no value"))
    }

    /// The value for `key`, if any. The key may be given in any borrowed form of `K` (a `&str`
    /// for a `String` key), as with `HashMap::get`: it is compared by its encoding, which serde
    /// makes the same for a type and its borrowed forms (`String`/`str`, `Vec<T>`/`[T]`,
    /// `Box<T>`/`T`).
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] if the server is gone; [`ErrorKind::Decode`] if the stored
    /// value is not a `V`.
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let d = m.dict::<u8, u8>().unwrap();
    /// assert_eq!(d.get(&1).unwrap(), None);
    /// ```
    /// Python counterpart: `d.get(key)`.
    pub fn get<Q>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        self.value(DictOp::Get(encode(key)?))
    }

    /// Sets `key` to `value`; returns the old value.
    ///
    /// # Errors
    /// As [`get`](Self::get); [`ErrorKind::Encode`] if the key or value cannot be encoded.
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let d = m.dict::<u8, u8>().unwrap();
    /// assert_eq!(d.insert(1, 2).unwrap(), None);
    /// assert_eq!(d.insert(1, 3).unwrap(), Some(2));
    /// ```
    /// Python counterpart: `d[key] = value`.
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>> {
        self.value(DictOp::Insert(encode(&key)?, encode(&value)?))
    }

    /// The value at `key`, inserting `default` first if the key is absent (one step on the
    /// server: no other client comes in between).
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let d = m.dict::<String, u32>().unwrap();
    /// assert_eq!(d.setdefault("hits".into(), 0).unwrap(), 0);
    /// d.insert("hits".into(), 5).unwrap();
    /// assert_eq!(d.setdefault("hits".into(), 0).unwrap(), 5);
    /// ```
    /// Python counterpart: `d.setdefault(key, default)`.
    pub fn setdefault(&self, key: K, default: V) -> Result<V> {
        self.value(DictOp::SetDefault(encode(&key)?, encode(&default)?))?
            .ok_or_else(|| Error::new(ErrorKind::Decode, "the manager returned no value"))
    }

    /// Removes `key`; returns its value.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let d = m.dict::<u8, u8>().unwrap();
    /// d.insert(1, 2).unwrap();
    /// assert_eq!(d.remove(&1).unwrap(), Some(2));
    /// ```
    /// Python counterpart: `d.pop(key, None)`.
    #[doc(alias = "pop")]
    pub fn remove<Q>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        self.value(DictOp::Remove(encode(key)?))
    }

    /// Removes and returns the entry inserted last; `None` if the dict is empty (Python raises
    /// `KeyError`).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let d = m.dict::<String, u8>().unwrap();
    /// d.insert("first".into(), 1).unwrap();
    /// d.insert("last".into(), 2).unwrap();
    /// assert_eq!(d.popitem().unwrap(), Some(("last".to_string(), 2)));
    /// assert_eq!(d.popitem().unwrap(), Some(("first".to_string(), 1)));
    /// assert_eq!(d.popitem().unwrap(), None);
    /// ```
    /// Python counterpart: `d.popitem()`.
    pub fn popitem(&self) -> Result<Option<(K, V)>> {
        match dict_op(&self.address, self.id, DictOp::PopItem)? {
            Reply::Items(items) => items.first().map(|(k, v)| Ok((decode(k)?, decode(v)?))).transpose(),
            other => Err(unexpected(other)),
        }
    }

    /// Whether `key` is present.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let d = m.dict::<u8, u8>().unwrap();
    /// d.insert(1, 2).unwrap();
    /// assert!(d.contains_key(&1).unwrap());
    /// ```
    /// Python counterpart: `key in d`.
    pub fn contains_key<Q>(&self, key: &Q) -> Result<bool>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        match dict_op(&self.address, self.id, DictOp::Contains(encode(key)?))? {
            Reply::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    /// The number of entries.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] if the server is gone.
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// assert_eq!(m.dict::<u8, u8>().unwrap().len().unwrap(), 0);
    /// ```
    /// Python counterpart: `len(d)`.
    pub fn len(&self) -> Result<usize> {
        match dict_op(&self.address, self.id, DictOp::Len)? {
            Reply::Len(n) => Ok(n as usize),
            other => Err(unexpected(other)),
        }
    }

    /// Whether the dict is empty.
    ///
    /// # Errors
    /// As [`len`](Self::len).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// assert!(m.dict::<u8, u8>().unwrap().is_empty().unwrap());
    /// ```
    /// Python counterpart: `not d`.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// A snapshot of every entry, in the order they were first inserted (as in Python).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let d = m.dict::<u8, u8>().unwrap();
    /// d.insert(1, 2).unwrap();
    /// assert_eq!(d.items().unwrap(), [(1, 2)]);
    /// ```
    /// Python counterpart: `d.items()`.
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        match dict_op(&self.address, self.id, DictOp::Items)? {
            Reply::Items(items) => items.iter().map(|(k, v)| Ok((decode(k)?, decode(v)?))).collect(),
            other => Err(unexpected(other)),
        }
    }

    /// A snapshot of the keys.
    ///
    /// # Errors
    /// As [`items`](Self::items).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let d = m.dict::<u8, u8>().unwrap();
    /// d.insert(7, 0).unwrap();
    /// assert_eq!(d.keys().unwrap(), [7]);
    /// ```
    /// Python counterpart: `d.keys()`.
    pub fn keys(&self) -> Result<Vec<K>> {
        Ok(self.items()?.into_iter().map(|(k, _)| k).collect())
    }

    /// A snapshot of the values.
    ///
    /// # Errors
    /// As [`items`](Self::items).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let d = m.dict::<u8, u8>().unwrap();
    /// d.insert(7, 9).unwrap();
    /// assert_eq!(d.values().unwrap(), [9]);
    /// ```
    /// Python counterpart: `d.values()`.
    pub fn values(&self) -> Result<Vec<V>> {
        Ok(self.items()?.into_iter().map(|(_, v)| v).collect())
    }

    /// Inserts every pair of `items`, in one round trip.
    ///
    /// # Errors
    /// As [`insert`](Self::insert); nothing is inserted if any pair cannot be encoded.
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let d = m.dict::<u8, u8>().unwrap();
    /// d.update([(1, 1), (2, 4)]).unwrap();
    /// assert_eq!(d.len().unwrap(), 2);
    /// ```
    /// Python counterpart: `d.update(items)`.
    pub fn update(&self, items: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        let items = encode_items(items)?;
        call_done(&self.address, &Request::Dict { id: self.id, op: DictOp::Update(items) })
    }

    /// Removes every entry.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] if the server is gone.
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let d = m.dict::<u8, u8>().unwrap();
    /// d.insert(1, 1).unwrap();
    /// d.clear().unwrap();
    /// assert!(d.is_empty().unwrap());
    /// ```
    /// Python counterpart: `d.clear()`.
    pub fn clear(&self) -> Result<()> {
        call_done(&self.address, &Request::Dict { id: self.id, op: DictOp::Clear })
    }

    /// Replaces the value for `key` by `f(old value)`, in the server, under the dict's lock: no
    /// other update of the dict can come in between. Returns the new value. `f` is a plain
    /// function (or a closure that captures nothing) of this program.
    ///
    /// # Errors
    /// As [`get`](Self::get); [`ErrorKind::InvalidInput`] if `f` panicked (the entry is left as
    /// it was), or the manager is another program's (it runs no code that other programs name:
    /// use [`add`](Self::add), or a [`SharedObject`](super::SharedObject) its owner registered).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let d = m.dict::<String, u32>().unwrap();
    /// fn double_or_one(v: Option<u32>) -> u32 { v.map_or(1, |v| v * 2) }
    /// let key = "n".to_string();
    /// d.apply(&key, double_or_one).unwrap();
    /// assert_eq!(d.apply(&key, double_or_one).unwrap(), 2);
    /// ```
    /// Python counterpart: none (`with lock: d[k] = f(d.get(k))`).
    pub fn apply<Q, F>(&self, key: &Q, _f: F) -> Result<V>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
        F: Fn(Option<V>) -> V + Copy + Send + Sync + 'static,
    {
        self.new_value(DictOp::Apply { key: encode(key)?, entry: apply_entry_offset::<F, V>() })
    }
}

impl<K: Serialize + DeserializeOwned, V: Number> DictProxy<K, V> {
    /// Adds `delta` to the number at `key` (absent counts as zero), in the server, under the
    /// dict's lock; returns the new value. Many processes can add to one key at once and no
    /// update is lost — no Lock needed.
    ///
    /// # Errors
    /// As [`get`](Self::get); [`ErrorKind::InvalidInput`] if the sum does not fit in `V` (the
    /// entry is left as it was).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let d = m.dict::<String, i64>().unwrap();
    /// d.add("hits", 5).unwrap();
    /// assert_eq!(d.add("hits", -2).unwrap(), 3);
    /// ```
    /// Python counterpart: none (`with lock: d[k] += n`).
    pub fn add<Q>(&self, key: &Q, delta: V) -> Result<V>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        self.new_value(DictOp::Add { key: encode(key)?, delta: sealed::Sealed::to_wire(delta) })
    }
}
