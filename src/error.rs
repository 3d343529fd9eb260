//! The one opaque error type for open-ended failures.
//!
//! Expected outcomes of an operation (a timeout, a child that panicked) are small per-operation
//! enums next to the operation, such as [`JoinError`](crate::JoinError). What is left — the OS
//! refused, a value would not encode, a child is a different build — is an [`Error`] with a
//! [`kind`](Error::kind), a [`source`](std::error::Error::source) and, for OS failures, the
//! [`raw_os_error`](Error::raw_os_error).

use std::fmt;
use std::io;

/// What went wrong, broadly. New kinds may be added, so match with a wildcard arm.
///
/// Python raises `OSError`, `ValueError`, `pickle.PicklingError` and friends for these.
///
/// ```
/// let err = multiproc::Queue::<u8>::with_capacity(0, usize::MAX).unwrap_err();
/// assert_eq!(err.kind(), multiproc::ErrorKind::InvalidInput);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The operating system refused a call; see [`Error::raw_os_error`].
    Os,
    /// A value (task arguments, a result) could not be encoded.
    Encode,
    /// Received bytes could not be decoded as the expected type.
    Decode,
    /// Two processes that must be the same build are not: a child of its parent (it refused to
    /// run the task), or a program and the cluster namespace another build made.
    BuildMismatch,
    /// A daemon process tried to start a child (Python: "daemonic processes are not allowed to
    /// have children").
    DaemonChild,
    /// The process-wide start method was already set.
    StartMethodAlreadySet,
    /// The process was already joined, so its result has been taken.
    AlreadyJoined,
    /// A handle was serialized outside of a transfer that can carry descriptors.
    HandleOutsideTransfer,
    /// More descriptors in one transfer than the kernel can pass at once.
    TooManyHandles,
    /// The fork server could not be reached or could not fork.
    ForkServer,
    /// The child failed before it could run the task (bad bootstrap, lost channel).
    ChildStartup,
    /// The other side is gone (a manager that was shut down or died).
    Disconnected,
    /// The peer did not prove it knows the authkey (or we could not prove it to the peer).
    Authentication,
    /// An argument is out of range (Python's `ValueError`), such as a barrier for no parties, or
    /// a request the other side refused.
    InvalidInput,
    /// The other side speaks another version of the wire protocol (a manager or a listener of
    /// another release of this crate).
    Protocol,
    /// The cluster server lost the data it held (it restarted without persistence, or was
    /// flushed): what was queued or held there before is gone.
    StateLost,
}

impl ErrorKind {
    fn describe(self) -> &'static str {
        match self {
            ErrorKind::Os => "operating system error",
            ErrorKind::Encode => "value could not be encoded",
            ErrorKind::Decode => "bytes could not be decoded",
            ErrorKind::BuildMismatch => "a different build of the program",
            ErrorKind::DaemonChild => "daemonic processes are not allowed to have children",
            ErrorKind::StartMethodAlreadySet => "the start method has already been set",
            ErrorKind::AlreadyJoined => "the process was already joined",
            ErrorKind::HandleOutsideTransfer => {
                "a handle can only be serialized by multiproc when it sends it to a process"
            }
            ErrorKind::TooManyHandles => "too many handles in one transfer",
            ErrorKind::ForkServer => "fork server failure",
            ErrorKind::ChildStartup => "child failed to start",
            ErrorKind::Disconnected => "the other side is gone",
            ErrorKind::Authentication => "authentication failed",
            ErrorKind::InvalidInput => "invalid argument",
            ErrorKind::Protocol => "the other side speaks another protocol version",
            ErrorKind::StateLost => "the cluster server lost its data",
        }
    }
}

/// An open-ended failure: the OS, a codec, a child that could not start.
///
/// # Example
/// ```
/// use multiproc::{Error, ErrorKind};
/// let err = Error::from(std::io::Error::from_raw_os_error(libc::EMFILE));
/// assert_eq!(err.kind(), ErrorKind::Os);
/// assert_eq!(err.raw_os_error(), Some(libc::EMFILE));
/// ```
/// Python counterpart: the `OSError`/`ValueError`/`PicklingError` a call would raise.
pub struct Error {
    kind: ErrorKind,
    detail: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// An error of `kind` with a sentence of detail.
    pub(crate) fn new(kind: ErrorKind, detail: impl Into<String>) -> Error {
        Error { kind, detail: Some(detail.into()), source: None }
    }

    /// An error of `kind` caused by `source`.
    pub(crate) fn with_source(
        kind: ErrorKind,
        detail: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Error {
        Error { kind, detail: Some(detail.into()), source: Some(source.into()) }
    }

    /// An OS error with a word about what we were doing.
    pub(crate) fn os(context: &str, err: io::Error) -> Error {
        Error::with_source(ErrorKind::Os, context, err)
    }

    /// What went wrong, broadly.
    ///
    /// ```
    /// let err = multiproc::shm::SharedMemory::attach("no-such-segment").unwrap_err();
    /// assert_eq!(err.kind(), multiproc::ErrorKind::Os);
    /// ```
    /// Python counterpart: `type(exc)`: the exception's class.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The OS error number, when the operating system refused a call.
    ///
    /// ```
    /// let err = multiproc::shm::SharedMemory::attach("no-such-segment").unwrap_err();
    /// assert_eq!(err.raw_os_error(), Some(2)); // ENOENT
    /// ```
    /// Python counterpart: `OSError.errno`.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.source.as_ref()?.downcast_ref::<io::Error>()?.raw_os_error()
    }
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Error {
        Error { kind: ErrorKind::Os, detail: None, source: Some(Box::new(err)) }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.detail {
            Some(detail) => write!(f, "{}: {detail}", self.kind.describe())?,
            None => f.write_str(self.kind.describe())?,
        }
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("detail", &self.detail)
            .field("source", &self.source)
            .finish()
    }
}

/// `Display` already says the cause (`…: No such file or directory`), so `source()` is `None`:
/// an error report that walks the chain (anyhow's, say) says each cause once, and the OS error
/// stays reachable through [`Error::raw_os_error`].
impl std::error::Error for Error {}

/// `T`'s name for messages, without module paths: `Vec<String>`, not
/// `alloc::vec::Vec<alloc::string::String>`.
pub(crate) fn type_name<T: ?Sized>() -> String {
    short_type_name(std::any::type_name::<T>())
}

/// A type's full name without its module paths.
pub(crate) fn short_type_name(full: &str) -> String {
    let mut out = String::with_capacity(full.len());
    // Where the path being read began in `out`: a `::` drops what came since.
    let mut path_start = 0;
    let mut chars = full.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            out.truncate(path_start);
        } else {
            out.push(c);
            if !(c.is_alphanumeric() || c == '_') {
                path_start = out.len();
            }
        }
    }
    out
}

/// `Result` with this crate's [`Error`].
///
/// ```
/// fn make_lock() -> multiproc::Result<multiproc::Lock> {
///     multiproc::Lock::new()
/// }
/// assert!(make_lock().is_ok());
/// ```
/// Python counterpart: none (Python raises exceptions).
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    #[test]
    fn type_names_lose_their_paths() {
        assert_eq!(super::type_name::<Vec<String>>(), "Vec<String>");
        assert_eq!(super::type_name::<(u8, Option<std::path::PathBuf>)>(), "(u8, Option<PathBuf>)");
        assert_eq!(super::short_type_name("my_crate::Tally"), "Tally");
    }
}
