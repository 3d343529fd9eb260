//! The `fork` start method: the child continues from a copy of the parent.
//!
//! Between `fork` and the end of the child we run ordinary Rust code (the task), as Python does
//! under its `fork` method. That is sound only while no lock the child needs was held by another
//! parent thread at the moment of the fork, so the locks multiproc itself uses in a child — its
//! registry, its process state, stdout and stderr — are taken before forking and released on
//! both sides after it. Locks in user code and other libraries are the user's to reason about;
//! that is why the default start method is the fork server.

use crate::process::Signal;
use std::io::Write;
use std::os::fd::OwnedFd;

use crate::error::{Error, Result};
use crate::process::child::{self, Start};
use crate::process::hooks;
use crate::process::identity::{self, Parent};
use crate::process::registry::{self, Exit};
use crate::process::start::{Job, Started, forkserver};
use crate::sys;
use crate::sys::process::Forked;

pub(crate) fn start(job: &Job<'_>) -> Result<Started> {
    let (ours, theirs) = sys::socket::stream_pair().map_err(|e| Error::os("socketpair", e))?;
    let parent_pid = sys::process::getpid();
    let from_main_thread = sys::process::is_main_thread();

    // Buffered output would otherwise be written twice, once by each process.
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let stdout = std::io::stdout().lock();
    let stderr = std::io::stderr().lock();
    let children = registry::hold();
    let state = identity::hold();
    let servers = forkserver::hold();
    // The layers above (the manager's connections) hold their state still across the fork.
    let prepared = hooks::prepare_fork();

    // SAFETY: see the module docs: every lock the child's own path takes is held by this thread
    // across the fork, and the child releases them before running the task; allocation is safe
    // because glibc's malloc resets its locks in the child.
    let forked = unsafe { sys::process::fork() };
    let (servers, prepared) = match forked {
        Ok(Forked::Child) => (Some(servers), Some(prepared)),
        _ => {
            drop(prepared);
            drop(servers);
            (None, None)
        }
    };
    drop(state);
    drop(children);
    drop(stderr);
    drop(stdout);

    match forked.map_err(|e| Error::os("fork", e))? {
        Forked::Child => {
            drop(ours);
            if let Some(servers) = servers {
                forkserver::forget_after_fork(servers);
            }
            // The layers above put their copies in order (the manager closes its connections).
            if let Some(prepared) = prepared {
                prepared.in_child();
            }
            // PR_SET_PDEATHSIG follows the forking *thread*; from any other thread than main,
            // a watcher thread on the parent's pidfd keeps the promise instead.
            let watch_parent = job.die_with_parent && !from_main_thread;
            if job.die_with_parent && from_main_thread && !sys::process::die_with_parent(parent_pid) {
                sys::process::exit_now(1);
            }
            // Duplicates, not adoptions: the values that own these descriptors were copied into
            // this process by the fork too, and must keep theirs.
            let fds = match job.handles.iter().map(|fd| fd.try_clone_to_owned()).collect::<std::io::Result<Vec<_>>>() {
                Ok(fds) => fds,
                Err(_) => sys::process::exit_now(1),
            };
            let parent = Parent { pid: parent_pid, name: job.parent_name.clone(), pidfd: job.parent_pidfd.clone() };
            child::run(Start {
                channel: theirs,
                entry: job.entry,
                args: job.args.to_vec(),
                fds,
                name: job.name.clone(),
                identity: job.identity.clone(),
                daemon: job.daemon,
                parent: Some(parent),
                watch_parent,
                authkey: job.authkey,
                start_method: job.start_method,
                ignore_interrupts: job.ignore_interrupts,
            })
        }
        Forked::Parent(pid) => {
            drop(theirs);
            let pidfd: OwnedFd = match sys::process::pidfd_open(pid) {
                Ok(pidfd) => pidfd,
                Err(err) => {
                    // Unwatchable: end it now rather than leave an orphan nobody reaps.
                    let _ = sys::process::kill(pid, Signal::KILL.as_raw());
                    let _ = sys::process::reap(pid);
                    return Err(Error::os("pidfd_open", err));
                }
            };
            Ok(Started { pid, pidfd, channel: ours, exit: Exit::Direct })
        }
    }
}
