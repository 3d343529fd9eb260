//! Who this process is: its name, identity and daemon flag, its parent, and its own pidfd.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::process::registry::lock;
use crate::sys;

/// This process's parent, as known to multiproc.
#[derive(Clone)]
pub(crate) struct Parent {
    pub(crate) pid: u32,
    pub(crate) name: String,
    /// A pidfd for the parent, readable once it has exited.
    pub(crate) pidfd: Arc<OwnedFd>,
}

/// Everything a child inherits about itself from its parent.
pub(crate) struct State {
    /// `None` in the main process.
    pub(crate) name: Option<String>,
    /// The path of child numbers from the main process down to us (Python's `_identity`).
    pub(crate) identity: Vec<u32>,
    pub(crate) daemon: bool,
    /// How many children we have started (the last element of their identity).
    pub(crate) started: u32,
    pub(crate) parent: Option<Parent>,
    /// Our own pidfd, handed to each child so that it can watch us; opened on first need.
    own_pidfd: Option<(u32, Arc<OwnedFd>)>,
    /// The secret of this process tree (Python's `current_process().authkey`): made at random
    /// in the main process on first need, inherited by every child, and the key of every
    /// private manager the tree starts.
    authkey: Option<[u8; 32]>,
}

static STATE: Mutex<State> = Mutex::new(State {
    name: None,
    identity: Vec::new(),
    daemon: false,
    started: 0,
    parent: None,
    own_pidfd: None,
    authkey: None,
});

/// Locks this process's state (held across `fork` by the fork start method).
pub(crate) fn hold() -> MutexGuard<'static, State> {
    lock(&STATE)
}

/// The name Python gives the main process.
pub(crate) const MAIN_NAME: &str = "MainProcess";

impl State {
    /// Our name.
    pub(crate) fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| MAIN_NAME.to_owned())
    }

    /// The identity and default name of the next child we start (Python's `Process-1:2`).
    pub(crate) fn next_child(&mut self) -> (Vec<u32>, String) {
        self.started += 1;
        let mut identity = self.identity.clone();
        identity.push(self.started);
        let numbers: Vec<String> = identity.iter().map(u32::to_string).collect();
        (identity, format!("Process-{}", numbers.join(":")))
    }

    /// Our own pidfd, for children to watch us through.
    pub(crate) fn own_pidfd(&mut self) -> std::io::Result<Arc<OwnedFd>> {
        let me = sys::process::getpid();
        match &self.own_pidfd {
            Some((pid, fd)) if *pid == me => Ok(fd.clone()),
            _ => {
                let fd = Arc::new(sys::process::pidfd_open(me)?);
                self.own_pidfd = Some((me, fd.clone()));
                Ok(fd)
            }
        }
    }

    /// This process tree's secret, made now if this is the main process and nobody asked yet.
    pub(crate) fn authkey(&mut self) -> std::io::Result<[u8; 32]> {
        if let Some(key) = self.authkey {
            return Ok(key);
        }
        let key = sys::random::bytes32()?;
        self.authkey = Some(key);
        Ok(key)
    }

    /// Becomes the child described here: called once, first thing in a new child.
    pub(crate) fn become_child(&mut self, child: Child) {
        self.name = Some(child.name);
        self.identity = child.identity;
        self.daemon = child.daemon;
        self.started = 0;
        self.parent = child.parent;
        self.own_pidfd = None;
        self.authkey = Some(child.authkey);
    }
}

/// Who a new child is, as its parent made it.
pub(crate) struct Child {
    pub(crate) name: String,
    pub(crate) identity: Vec<u32>,
    pub(crate) daemon: bool,
    pub(crate) parent: Option<Parent>,
    pub(crate) authkey: [u8; 32],
}
