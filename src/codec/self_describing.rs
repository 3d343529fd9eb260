//! [`SelfDescribing`]: a value sent as MessagePack inside the postcard wire.

use std::fmt;
use std::ops::{Deref, DerefMut};

use serde::de::{DeserializeOwned, Error as _};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value that travels with a self-describing codec (MessagePack, with field names), for types
/// that postcard cannot carry: fields with `#[serde(skip_serializing_if)]`, `#[serde(flatten)]`,
/// `#[serde(untagged)]` and internally tagged enums, `serde_json::Value` (see the
/// [module docs](crate::codec)). Wrap the value where it is sent — an argument, a result, a queue
/// item, a message — and unwrap it where it arrives. Handles inside it travel as anywhere else.
///
/// It costs more than postcard, in bytes and time: field names are written out, and the value is
/// encoded into a buffer first (the benchmarks' "self-describing" queue row measures it).
///
/// ```
/// use multiproc::{Process, codec::SelfDescribing};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, Debug, PartialEq)]
/// struct Page {
///     url: String,
///     #[serde(skip_serializing_if = "Option::is_none")]
///     title: Option<String>,
///     meta: serde_json::Value,
/// }
///
/// fn fetch(url: String) -> SelfDescribing<Page> {
///     SelfDescribing(Page { title: None, meta: serde_json::json!({ "status": 200 }), url })
/// }
///
/// let mut p = Process::spawn(fetch, ("https://example.com".to_string(),)).unwrap();
/// let page = p.join().unwrap().into_inner();
/// assert_eq!(page.title, None);
/// assert_eq!(page.meta["status"], 200);
/// ```
/// Python counterpart: none (pickle describes itself).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SelfDescribing<T>(pub T);

impl<T> SelfDescribing<T> {
    /// The value.
    ///
    /// ```
    /// assert_eq!(multiproc::codec::SelfDescribing(5).into_inner(), 5);
    /// ```
    /// Python counterpart: none.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for SelfDescribing<T> {
    fn from(value: T) -> SelfDescribing<T> {
        SelfDescribing(value)
    }
}

impl<T> Deref for SelfDescribing<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for SelfDescribing<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: fmt::Debug> fmt::Debug for SelfDescribing<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<T: Serialize> Serialize for SelfDescribing<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let bytes = rmp_serde::to_vec_named(&self.0)
            .map_err(|e| S::Error::custom(format!("{} (self-describing): {e}", std::any::type_name::<T>())))?;
        serializer.serialize_bytes(&bytes)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for SelfDescribing<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SelfDescribing<T>, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(deserializer)?;
        rmp_serde::from_slice(&bytes)
            .map(SelfDescribing)
            .map_err(|e| D::Error::custom(format!("{} (self-describing): {e}", std::any::type_name::<T>())))
    }
}
