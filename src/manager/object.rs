//! User types hosted by a manager: [`SharedObject`] and [`ObjectProxy`] (Python's
//! `BaseManager.register`).

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Manager;
use super::hosted::new_object_offset;
use super::protocol::{Kind, New, Reply, Request};
use super::proxy::{call, decode, encode, proxy_type, unexpected};
use crate::error::Result;

/// A user type that a [`Manager`] can host: it lives in the server, and every process with an
/// [`ObjectProxy`] sends it typed requests, handled one at a time under the object's lock. The
/// server decodes a request with the type's own serde code and calls [`handle`](Self::handle);
/// that is all a client can make it run.
///
/// The manager's own program may make any such type; other programs (of the same build) only
/// the types registered with [`ManagerBuilder::register`](super::ManagerBuilder::register), and
/// they may call any object they can find by name.
///
/// ```
/// use multiproc::manager::SharedObject;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Default)]
/// struct Tally { counts: std::collections::HashMap<String, u64> }
///
/// #[derive(Serialize, Deserialize)]
/// enum TallyRequest { Vote(String), Count(String) }
///
/// impl SharedObject for Tally {
///     type Request = TallyRequest;
///     type Response = u64;
///     fn handle(&mut self, request: TallyRequest) -> u64 {
///         match request {
///             TallyRequest::Vote(who) => { *self.counts.entry(who.clone()).or_default() += 1; self.counts[&who] }
///             TallyRequest::Count(who) => self.counts.get(&who).copied().unwrap_or(0),
///         }
///     }
/// }
///
/// let manager = multiproc::Manager::start().unwrap();
/// let tally = manager.object::<Tally>().unwrap();
/// tally.call(TallyRequest::Vote("rust".into())).unwrap();
/// assert_eq!(tally.call(TallyRequest::Count("rust".into())).unwrap(), 1);
/// ```
/// Python counterpart: `BaseManager.register(typeid, callable)` with a class whose methods the
/// proxy exposes.
pub trait SharedObject: Default + Send + 'static {
    /// What clients send.
    type Request: Serialize + DeserializeOwned;
    /// What the object answers.
    type Response: Serialize + DeserializeOwned;
    /// Handles one request (in the server, under the object's lock).
    fn handle(&mut self, request: Self::Request) -> Self::Response;
}

impl Manager {
    /// Hosts a new `T` (made with `T::default()`) in the server.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) if `T::default()` panicked, or
    /// the manager is another program's and `T` was not registered there (or this is another
    /// build); [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected).
    ///
    /// ```
    /// # use multiproc::manager::SharedObject;
    /// #[derive(Default)]
    /// struct Echo;
    /// impl SharedObject for Echo {
    ///     type Request = String;
    ///     type Response = String;
    ///     fn handle(&mut self, r: String) -> String { r }
    /// }
    /// let m = multiproc::Manager::start().unwrap();
    /// assert_eq!(m.object::<Echo>().unwrap().call("hi".into()).unwrap(), "hi");
    /// ```
    /// Python counterpart: calling a type registered with `BaseManager.register`.
    pub fn object<T: SharedObject>(&self) -> Result<ObjectProxy<T>> {
        self.new_object(New::Object { entry: new_object_offset::<T>() })
    }
}

proxy_type!(
    /// A proxy for a user type hosted by a [`Manager`] (see [`SharedObject`]).
    ///
    /// ```
    /// # use multiproc::{Manager, Process, manager::{ObjectProxy, SharedObject}};
    /// #[derive(Default)]
    /// struct Sum(u64);
    /// impl SharedObject for Sum {
    ///     type Request = u64;
    ///     type Response = u64;
    ///     fn handle(&mut self, n: u64) -> u64 { self.0 += n; self.0 }
    /// }
    /// fn add_ten(sum: ObjectProxy<Sum>) { sum.call(10).unwrap(); }
    /// let m = Manager::start().unwrap();
    /// let sum = m.object::<Sum>().unwrap();
    /// let mut ps: Vec<_> = (0..3).map(|_| Process::spawn(add_ten, (sum.clone(),)).unwrap()).collect();
    /// ps.iter_mut().for_each(|p| p.join().unwrap());
    /// assert_eq!(sum.call(0).unwrap(), 30);
    /// ```
    /// Python counterpart: the proxy `BaseManager.register` makes.
    ObjectProxy<T> = Kind::Object(std::any::type_name::<T>().into()), fn() -> T
);

impl<T: SharedObject> ObjectProxy<T> {
    /// Sends `request` to the hosted object; returns its response.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) if the object panicked
    /// handling it (the object stays as the panic left it);
    /// [`ErrorKind::Encode`](crate::ErrorKind::Encode)/[`ErrorKind::Decode`](crate::ErrorKind::Decode);
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected).
    ///
    /// ```
    /// # use multiproc::manager::SharedObject;
    /// #[derive(Default)]
    /// struct Last(Option<String>);
    /// impl SharedObject for Last {
    ///     type Request = String;
    ///     type Response = Option<String>;
    ///     fn handle(&mut self, r: String) -> Option<String> { self.0.replace(r) }
    /// }
    /// let m = multiproc::Manager::start().unwrap();
    /// let last = m.object::<Last>().unwrap();
    /// assert_eq!(last.call("a".into()).unwrap(), None);
    /// assert_eq!(last.call("b".into()).unwrap().as_deref(), Some("a"));
    /// ```
    /// Python counterpart: `proxy.method(args)`.
    pub fn call(&self, request: T::Request) -> Result<T::Response> {
        match call(&self.address, &Request::Object { id: self.id, request: encode(&request)? })? {
            Reply::Value(Some(bytes)) => decode(&bytes),
            other => Err(unexpected(other)),
        }
    }
}
