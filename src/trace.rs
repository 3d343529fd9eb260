//! Events for the `tracing` feature: what happens to processes, workers, servers and strangers,
//! told to whatever `tracing` subscriber the program installed (target `multiproc`). Without the
//! feature every event compiles to nothing.
//!
//! | event | level |
//! |---|---|
//! | a child started (pid, name, start method), a child's exit status was seen | debug |
//! | a pool worker ended unexpectedly and was replaced | warn |
//! | the fork server was launched, or found gone | info / warn |
//! | a connection failed its handshake, or was pushed out by newer strangers | debug |
//! | at exit: daemonic children terminated, others joined | info |
//! | the `/dev/shm` cleaner was (re)started | info |

/// Emits a `tracing` event at `$level` (target `multiproc`) when the feature is on.
macro_rules! event {
    ($level:ident, $($arg:tt)+) => {{
        #[cfg(feature = "tracing")]
        ::tracing::$level!(target: "multiproc", $($arg)+);
    }};
}

pub(crate) use event;
