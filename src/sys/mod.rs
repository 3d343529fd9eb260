//! The platform layer: every system call multiproc makes lives below this module.
//!
//! Feature first, platform second (after std's `sys/`): each file is one small contract that the
//! rest of the crate uses without naming Linux. Only Linux is implemented today; the contracts are
//! what another platform would have to provide.

pub(crate) mod build_id;
pub(crate) mod futex;
pub(crate) mod poll;
pub(crate) mod process;
pub(crate) mod random;
pub(crate) mod shm;
pub(crate) mod socket;
pub(crate) mod tracker;
