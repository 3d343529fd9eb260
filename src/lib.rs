//! Python's `multiprocessing`, in Rust.
//!
//! (The tour is filled in below.)

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod error;
pub mod handle;
pub mod process;
mod sys;

pub use error::{Error, ErrorKind, Result};
pub use handle::Fd;
pub use process::{
    ChildProcess, Context, CurrentProcess, ExitStatus, JoinError, ParentProcess, Process, ProcessBuilder, Run,
    Signal, StartMethod, Task, UnknownStartMethod, active_children, cpu_count, current_process, get_start_method,
    parent_process, set_start_method,
};
