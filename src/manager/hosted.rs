//! What a manager server runs by offset for its own program's clients: update functions on
//! stored values, and user types it hosts (see [`entry`](crate::entry) and [`TreeClient`]).

use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::entry::TreeClient;
use crate::process::task::panic_message;

/// The type-erased form of an update function run by a manager server on one stored value:
/// the old value's encoding (if any) in, the new value's encoding out.
pub(crate) type ApplyEntry = fn(Option<&[u8]>) -> Result<Vec<u8>, String>;

/// The offset of update function `F`'s trampoline (see [`entry`](crate::entry)).
pub(crate) fn apply_entry_offset<F, V>() -> i64
where
    F: Fn(Option<V>) -> V + Copy + Send + Sync + 'static,
    V: Serialize + DeserializeOwned,
{
    const { assert!(size_of::<F>() == 0, "an update must be a fn item or a closure that captures nothing") };
    let entry: ApplyEntry = apply_trampoline::<F, V>;
    crate::entry::offset(entry as *const ())
}

/// Decodes the whole of `bytes` as a `T`: a longer encoding is another type, not a `T` with
/// leftovers.
fn decode_whole<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    crate::handle::decode_exact(bytes).map_err(|e| format!("not a {}: {e}", crate::error::type_name::<T>()))
}

fn apply_trampoline<F, V>(old: Option<&[u8]>) -> Result<Vec<u8>, String>
where
    F: Fn(Option<V>) -> V + Copy + Send + Sync + 'static,
    V: Serialize + DeserializeOwned,
{
    let old: Option<V> = old.map(decode_whole).transpose().map_err(|e| format!("the stored value is {e}"))?;
    let f: F = crate::entry::summon();
    let new = catch_unwind(AssertUnwindSafe(|| f(old)))
        .map_err(|p| format!("the update panicked: {}", panic_message(p.as_ref())))?;
    postcard::to_stdvec(&new).map_err(|e| format!("the new value could not be encoded: {e}"))
}

/// A user type living in a manager server, driven by encoded requests (see
/// `manager::SharedObject`).
pub(crate) trait CustomObject: Send {
    /// Decodes a request, handles it, encodes the response.
    fn call(&mut self, request: &[u8]) -> Result<Vec<u8>, String>;
    /// The user type's name (what named look-ups compare).
    fn type_name(&self) -> &'static str;
}

/// Makes a new custom object: what a manager server calls, by offset, to host a user type.
pub(crate) type NewObject = fn() -> Box<dyn CustomObject>;

/// The offset of the constructor of hosted type `T` (see [`entry`](crate::entry)).
pub(crate) fn new_object_offset<T: super::SharedObject>() -> i64 {
    let entry: NewObject = new_object::<T>;
    crate::entry::offset(entry as *const ())
}

struct Hosted<T>(T);

impl<T: super::SharedObject> CustomObject for Hosted<T> {
    fn call(&mut self, request: &[u8]) -> Result<Vec<u8>, String> {
        // The user's serde code and `handle` alike may panic: the server thread must go on.
        catch_unwind(AssertUnwindSafe(|| {
            let request: T::Request = decode_whole(request).map_err(|e| format!("the request is {e}"))?;
            let response = self.0.handle(request);
            postcard::to_stdvec(&response).map_err(|e| format!("the response could not be encoded: {e}"))
        }))
        .map_err(|p| format!("the shared object panicked: {}", panic_message(p.as_ref())))?
    }

    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }
}

fn new_object<T: super::SharedObject>() -> Box<dyn CustomObject> {
    Box::new(Hosted(T::default()))
}

/// Makes a `T` for a manager server, catching a panic in the user's `Default`.
pub(crate) fn construct(new: NewObject) -> Result<Box<dyn CustomObject>, String> {
    catch_unwind(new).map_err(|p| format!("making the shared object panicked: {}", panic_message(p.as_ref())))
}

/// The update function at `offset`, which a client of this tree sent for an update.
pub(crate) fn update_fn(client: &TreeClient, offset: i64) -> ApplyEntry {
    // A client of this tree and build names update functions only by offsets from
    // `apply_entry_offset`, which are `ApplyEntry` trampolines.
    client.resolve(offset)
}

/// The constructor at `offset`, which a client of this tree sent to host a type.
pub(crate) fn constructor(client: &TreeClient, offset: i64) -> NewObject {
    // As in `update_fn`, for offsets from `new_object_offset`.
    client.resolve(offset)
}

/// The type-erased form of a sort of a list's elements by their type's order: the encoded
/// elements in, sorted in place.
pub(crate) type SortEntry = fn(&mut Vec<Vec<u8>>) -> Result<(), String>;

/// The offset of the sort trampoline for elements of type `T` (see [`entry`](crate::entry)).
pub(crate) fn sort_entry_offset<T: Ord + Serialize + DeserializeOwned + 'static>() -> i64 {
    let entry: SortEntry = sort_trampoline::<T>;
    crate::entry::offset(entry as *const ())
}

fn sort_trampoline<T: Ord + Serialize + DeserializeOwned + 'static>(items: &mut Vec<Vec<u8>>) -> Result<(), String> {
    let mut values: Vec<T> = items
        .iter()
        .map(|bytes| decode_whole::<T>(bytes))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("an element is {e}"))?;
    // A user's `Ord` may panic: the server thread must go on, and the list stays as it was.
    catch_unwind(AssertUnwindSafe(|| values.sort()))
        .map_err(|p| format!("the sort panicked: {}", panic_message(p.as_ref())))?;
    let encoded = values
        .iter()
        .map(postcard::to_stdvec)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("a sorted element could not be encoded: {e}"))?;
    *items = encoded;
    Ok(())
}

/// The sort at `offset`, which a client of this tree sent.
pub(crate) fn sort_fn(client: &TreeClient, offset: i64) -> SortEntry {
    // A client of this tree and build names sorts only by offsets from `sort_entry_offset`.
    client.resolve(offset)
}
