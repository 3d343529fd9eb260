//! Shared lists: [`Manager::list`] and [`ListProxy`].

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Manager;
use super::hosted::{apply_entry_offset, sort_entry_offset};
use super::protocol::{Kind, ListOp, New, Reply, Request};
use super::proxy::{call, call_done, decode, encode, proxy_type, unexpected};
use crate::error::{Error, ErrorKind, Result};

impl Manager {
    /// A new, empty shared list.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] if the server is gone.
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// let l = manager.list::<String>().unwrap();
    /// l.push("first".into()).unwrap();
    /// assert_eq!(l.len().unwrap(), 1);
    /// ```
    /// Python counterpart: `manager.list()`.
    pub fn list<T>(&self) -> Result<ListProxy<T>> {
        self.new_object(New::List)
    }

    /// A new shared list holding `items` (encoded first: nothing is made if one cannot be).
    ///
    /// # Errors
    /// [`ErrorKind::Encode`]; [`ErrorKind::Disconnected`] if the server is gone.
    ///
    /// ```
    /// let manager = multiproc::Manager::start().unwrap();
    /// let l = manager.list_from([1u8, 2, 3]).unwrap();
    /// assert_eq!(l.to_vec().unwrap(), [1, 2, 3]);
    /// ```
    /// Python counterpart: `manager.list([1, 2, 3])`.
    pub fn list_from<T: Serialize + DeserializeOwned>(
        &self,
        items: impl IntoIterator<Item = T>,
    ) -> Result<ListProxy<T>> {
        let items = items.into_iter().map(|v| encode(&v)).collect::<Result<Vec<_>>>()?;
        let list: ListProxy<T> = self.new_object(New::List)?;
        call_done(&list.address, &Request::List { id: list.id, op: ListOp::Extend(items) })?;
        Ok(list)
    }

    /// As [`dict_named`](Self::dict_named), for a list.
    ///
    /// # Errors
    /// As [`dict_named`](Self::dict_named).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// m.list_named::<u8>("log").unwrap().push(1).unwrap();
    /// assert_eq!(m.list_named::<u8>("log").unwrap().len().unwrap(), 1);
    /// ```
    /// Python counterpart: `BaseManager.register("get_list", ...)`.
    pub fn list_named<T>(&self, name: &str) -> Result<ListProxy<T>> {
        self.named(name, New::List)
    }
}

proxy_type!(
    /// A shared list living in a [`Manager`]. Every method is one round trip; reads give copies.
    ///
    /// ```
    /// use multiproc::{Manager, Process, manager::ListProxy};
    /// fn sign(guests: ListProxy<u32>, me: u32) { guests.push(me).unwrap() }
    /// let manager = Manager::start().unwrap();
    /// let guests = manager.list().unwrap();
    /// let mut ps: Vec<_> = (0..4).map(|i| Process::spawn(sign, (guests.clone(), i)).unwrap()).collect();
    /// ps.iter_mut().for_each(|p| p.join().unwrap());
    /// let mut signed = guests.to_vec().unwrap();
    /// signed.sort();
    /// assert_eq!(signed, [0, 1, 2, 3]);
    /// ```
    /// Python counterpart: the `ListProxy` of `manager.list()`.
    ListProxy<T> = Kind::List(std::any::type_name::<T>().into()), fn(T) -> T
);

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    fn ask(&self, op: ListOp) -> Result<Reply> {
        call(&self.address, &Request::List { id: self.id, op })
    }

    fn value(&self, op: ListOp) -> Result<Option<T>> {
        match self.ask(op)? {
            Reply::Value(v) => v.map(|b| decode(&b)).transpose(),
            other => Err(unexpected(other)),
        }
    }

    fn done(&self, op: ListOp) -> Result<()> {
        call_done(&self.address, &Request::List { id: self.id, op })
    }

    /// Appends `value`.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] if the server is gone; [`ErrorKind::Encode`].
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list().unwrap();
    /// l.push(1u8).unwrap();
    /// # assert_eq!(l.len().unwrap(), 1);
    /// ```
    /// Python counterpart: `l.append(value)`.
    #[doc(alias = "append")]
    pub fn push(&self, value: T) -> Result<()> {
        self.done(ListOp::Push(encode(&value)?))
    }

    /// Removes and returns the last element.
    ///
    /// # Errors
    /// As [`push`](Self::push); [`ErrorKind::Decode`] if it is not a `T`.
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list().unwrap();
    /// l.push(1u8).unwrap();
    /// assert_eq!(l.pop().unwrap(), Some(1));
    /// assert_eq!(l.pop().unwrap(), None);
    /// ```
    /// Python counterpart: `l.pop()` (which raises on an empty list).
    pub fn pop(&self) -> Result<Option<T>> {
        self.value(ListOp::Pop)
    }

    /// A copy of element `index`, if there is one.
    ///
    /// # Errors
    /// As [`pop`](Self::pop).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list().unwrap();
    /// l.push('a').unwrap();
    /// assert_eq!(l.get(0).unwrap(), Some('a'));
    /// assert_eq!(l.get(1).unwrap(), None);
    /// ```
    /// Python counterpart: `l[index]`.
    pub fn get(&self, index: usize) -> Result<Option<T>> {
        self.value(ListOp::Get(index as u64))
    }

    /// Replaces element `index`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if there is no such element (nothing changes); as
    /// [`push`](Self::push).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list().unwrap();
    /// l.push(1u8).unwrap();
    /// l.set(0, 2).unwrap();
    /// assert_eq!(l.get(0).unwrap(), Some(2));
    /// assert!(l.set(5, 0).is_err());
    /// ```
    /// Python counterpart: `l[index] = value`.
    pub fn set(&self, index: usize, value: T) -> Result<()> {
        self.done(ListOp::Set(index as u64, encode(&value)?))
    }

    /// The number of elements.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] if the server is gone.
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// assert_eq!(m.list::<u8>().unwrap().len().unwrap(), 0);
    /// ```
    /// Python counterpart: `len(l)`.
    pub fn len(&self) -> Result<usize> {
        match self.ask(ListOp::Len)? {
            Reply::Len(n) => Ok(n as usize),
            other => Err(unexpected(other)),
        }
    }

    /// Whether the list is empty.
    ///
    /// # Errors
    /// As [`len`](Self::len).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// assert!(m.list::<u8>().unwrap().is_empty().unwrap());
    /// ```
    /// Python counterpart: `not l`.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Appends every element of `values`, in one round trip.
    ///
    /// # Errors
    /// As [`push`](Self::push); nothing is appended if any element cannot be encoded.
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list().unwrap();
    /// l.extend([1u8, 2, 3]).unwrap();
    /// assert_eq!(l.to_vec().unwrap(), [1, 2, 3]);
    /// ```
    /// Python counterpart: `l.extend(values)`.
    pub fn extend(&self, values: impl IntoIterator<Item = T>) -> Result<()> {
        let values = values.into_iter().map(|v| encode(&v)).collect::<Result<Vec<_>>>()?;
        self.done(ListOp::Extend(values))
    }

    /// Removes the first element equal to `value` (compared as encoded bytes); whether there
    /// was one.
    ///
    /// # Errors
    /// As [`push`](Self::push).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list().unwrap();
    /// l.extend([1u8, 2, 1]).unwrap();
    /// assert!(l.remove(&1).unwrap());
    /// assert_eq!(l.to_vec().unwrap(), [2, 1]);
    /// assert!(!l.remove(&7).unwrap());
    /// ```
    /// Python counterpart: `l.remove(value)` (which raises when it is absent).
    pub fn remove(&self, value: &T) -> Result<bool> {
        match self.ask(ListOp::Remove(encode(value)?))? {
            Reply::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    /// Inserts `value` before element `index` (at the end if `index` is past it).
    ///
    /// # Errors
    /// As [`push`](Self::push).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list().unwrap();
    /// l.extend([1u8, 3]).unwrap();
    /// l.insert(1, 2).unwrap();
    /// l.insert(99, 4).unwrap();
    /// assert_eq!(l.to_vec().unwrap(), [1, 2, 3, 4]);
    /// ```
    /// Python counterpart: `l.insert(index, value)`.
    pub fn insert(&self, index: usize, value: T) -> Result<()> {
        self.done(ListOp::Insert(index as u64, encode(&value)?))
    }

    /// Removes and returns element `index`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if there is no such element (nothing changes); as
    /// [`pop`](Self::pop).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list().unwrap();
    /// l.extend(['a', 'b', 'c']).unwrap();
    /// assert_eq!(l.pop_at(1).unwrap(), 'b');
    /// assert!(l.pop_at(5).is_err());
    /// assert_eq!(l.to_vec().unwrap(), ['a', 'c']);
    /// ```
    /// Python counterpart: `l.pop(index)`.
    pub fn pop_at(&self, index: usize) -> Result<T> {
        self.value(ListOp::PopAt(index as u64))?
            .ok_or_else(|| Error::new(ErrorKind::Decode, "the manager returned no element"))
    }

    /// The index of the first element equal to `value` (equal as encoded bytes), if any.
    ///
    /// # Errors
    /// As [`push`](Self::push).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list().unwrap();
    /// l.extend([5u8, 6, 5]).unwrap();
    /// assert_eq!(l.index(&6).unwrap(), Some(1));
    /// assert_eq!(l.index(&7).unwrap(), None);
    /// ```
    /// Python counterpart: `l.index(value)` (which raises when it is absent).
    pub fn index(&self, value: &T) -> Result<Option<usize>> {
        match self.ask(ListOp::Index(encode(value)?))? {
            Reply::Len(u64::MAX) => Ok(None),
            Reply::Len(i) => Ok(Some(i as usize)),
            other => Err(unexpected(other)),
        }
    }

    /// How many elements are equal to `value` (equal as encoded bytes).
    ///
    /// # Errors
    /// As [`push`](Self::push).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list().unwrap();
    /// l.extend([5u8, 6, 5]).unwrap();
    /// assert_eq!(l.count(&5).unwrap(), 2);
    /// ```
    /// Python counterpart: `l.count(value)`.
    pub fn count(&self, value: &T) -> Result<usize> {
        match self.ask(ListOp::Count(encode(value)?))? {
            Reply::Len(n) => Ok(n as usize),
            other => Err(unexpected(other)),
        }
    }

    /// Reverses the elements in place.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] if the server is gone.
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list().unwrap();
    /// l.extend([1u8, 2, 3]).unwrap();
    /// l.reverse().unwrap();
    /// assert_eq!(l.to_vec().unwrap(), [3, 2, 1]);
    /// ```
    /// Python counterpart: `l.reverse()`.
    pub fn reverse(&self) -> Result<()> {
        self.done(ListOp::Reverse)
    }

    /// Sorts the elements by `T`'s order, in the server, under the list's lock (a stable sort).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if an element is not a `T`, `T`'s `Ord` panicked (the list
    /// stays as it was), or the manager runs no code its clients name — one served to other
    /// programs sorts only for its own program's processes, as for
    /// [`DictProxy::apply`](super::DictProxy::apply).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list().unwrap();
    /// l.extend(["pear", "apple", "fig"].map(String::from)).unwrap();
    /// l.sort().unwrap();
    /// assert_eq!(l.to_vec().unwrap(), ["apple", "fig", "pear"]);
    /// ```
    /// Python counterpart: `l.sort()`.
    pub fn sort(&self) -> Result<()>
    where
        T: Ord + 'static,
    {
        self.done(ListOp::Sort { entry: sort_entry_offset::<T>() })
    }

    /// Removes every element.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] if the server is gone.
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list().unwrap();
    /// l.extend([1u8, 2]).unwrap();
    /// l.clear().unwrap();
    /// assert!(l.is_empty().unwrap());
    /// ```
    /// Python counterpart: `l.clear()`.
    pub fn clear(&self) -> Result<()> {
        self.done(ListOp::Clear)
    }

    /// A snapshot of every element, in order.
    ///
    /// # Errors
    /// As [`pop`](Self::pop).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list().unwrap();
    /// l.push("x".to_string()).unwrap();
    /// for item in l.to_vec().unwrap() {
    ///     assert_eq!(item, "x");
    /// }
    /// ```
    /// Python counterpart: `l[:]`, `list(l)`, `for x in l`.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        match self.ask(ListOp::Items)? {
            Reply::Elements(items) => items.iter().map(|b| decode(b)).collect(),
            other => Err(unexpected(other)),
        }
    }

    /// Replaces element `index` by `f(element)`, in the server, under the list's lock; returns
    /// the new element. `f` gets `Some` (the element exists), and is a plain function of this
    /// program, as for [`DictProxy::apply`](super::DictProxy::apply).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if there is no such element, `f` panicked, or the manager runs
    /// no code its clients name (as for [`DictProxy::apply`](super::DictProxy::apply)); as
    /// [`pop`](Self::pop).
    ///
    /// ```
    /// let m = multiproc::Manager::start().unwrap();
    /// let l = m.list().unwrap();
    /// l.push(10u64).unwrap();
    /// assert_eq!(l.apply(0, |n: Option<u64>| n.unwrap_or(0) + 1).unwrap(), 11);
    /// ```
    /// Python counterpart: none (`with lock: l[i] = f(l[i])`).
    pub fn apply<F>(&self, index: usize, _f: F) -> Result<T>
    where
        F: Fn(Option<T>) -> T + Copy + Send + Sync + 'static,
    {
        self.value(ListOp::Apply { index: index as u64, entry: apply_entry_offset::<F, T>() })?
            .ok_or_else(|| Error::new(ErrorKind::Decode, "the manager returned no element"))
    }
}
