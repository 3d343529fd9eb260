//! Where a pool's batches run: worker processes on this machine ([`Core`](super::core::Core)), or
//! nodes of a cluster (`cluster::pool`, feature `cluster`). [`Pool`](super::Pool),
//! [`ProcessPoolExecutor`](super::ProcessPoolExecutor) and their results are written against
//! this one surface, so the same methods and result types serve both.

use std::sync::Arc;

use super::WorkerStats;
use super::core::{Batch, Core, Phase};
use super::result::{Collector, TaskError};
use crate::error::Result;
use crate::process::Signal;

/// What a pool needs of whatever runs its batches.
pub(crate) trait Backend: Send + Sync {
    /// Queues batches; returns the id the first one got (ids are consecutive).
    fn submit(&self, batches: Vec<Batch>) -> std::result::Result<u64, TaskError>;
    /// Whether the pool still takes submissions.
    fn is_open(&self) -> bool;
    /// Stops taking submissions; what is in hand still runs.
    fn close(&self);
    /// After `close`: waits for the work in hand, then ends.
    fn join(&self);
    /// Whether `join` or `terminate` has ended the pool.
    fn is_finished(&self) -> bool;
    /// Fails everything unfinished with [`TaskError::Terminated`] and ends, now.
    fn terminate(&self, signal: Signal);
    fn resize(&self, processes: usize) -> Result<()>;
    /// How many processes run the pool's tasks (what chunk sizes are computed for).
    fn size(&self) -> usize;
    fn stats(&self) -> Vec<WorkerStats>;
    /// Cancels batch `id` if it has not finished; returns whether it was cancelled.
    fn cancel(&self, id: u64) -> bool;
    /// Cancels every unfinished batch of one submission; returns how many items.
    fn cancel_submission(&self, sink: &Arc<Collector>, running: bool) -> usize;
    /// Cancels every batch not handed out yet.
    fn cancel_pending(&self);
    /// Whether batch `id` is being run right now.
    fn is_running(&self, id: u64) -> bool;
    /// The most items a default chunk holds (see `default_chunksize`): none by default — a
    /// cluster's chunk costs a round trip to its server, and Python's four chunks per process
    /// suit it.
    fn max_default_chunk(&self) -> usize {
        usize::MAX
    }
}

impl Backend for Core {
    fn submit(&self, batches: Vec<Batch>) -> std::result::Result<u64, TaskError> {
        let mut st = self.lock();
        let id = Core::next_batch_id(&st);
        Core::submit(self, &mut st, batches)?;
        Ok(id)
    }

    fn is_open(&self) -> bool {
        self.lock().phase == Phase::Running
    }

    fn close(&self) {
        Core::close(self)
    }

    fn join(&self) {
        Core::join(self)
    }

    fn is_finished(&self) -> bool {
        Core::is_finished(self)
    }

    fn terminate(&self, signal: Signal) {
        Core::terminate(self, signal)
    }

    fn resize(&self, processes: usize) -> Result<()> {
        Core::resize(self, processes)
    }

    fn size(&self) -> usize {
        Core::size(self)
    }

    fn stats(&self) -> Vec<WorkerStats> {
        Core::stats(self)
    }

    fn cancel(&self, id: u64) -> bool {
        Core::cancel(self, id)
    }

    fn cancel_submission(&self, sink: &Arc<Collector>, running: bool) -> usize {
        Core::cancel_submission(self, sink, running)
    }

    fn cancel_pending(&self) {
        Core::cancel_pending(self)
    }

    fn max_default_chunk(&self) -> usize {
        super::MAX_DEFAULT_CHUNK
    }

    fn is_running(&self, id: u64) -> bool {
        Core::is_running(self, id)
    }
}
