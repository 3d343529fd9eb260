//! [`SharedMemoryManager`]: named shared-memory blocks that outlive the processes that made them,
//! until the manager shuts down. Its server is a [`Manager`] hosting one [`Keeper`], as Python's
//! is a `BaseManager`.

use std::fmt;
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::manager::{Manager, ObjectProxy, SharedObject};
use crate::shm::{ShareableList, SharedMemory};
use crate::sys;

/// The manager's hosted object: the names of the blocks it keeps, registered with the cleaner
/// as the server's, so that they go if the server is killed.
#[derive(Default)]
pub(crate) struct Keeper {
    names: Vec<String>,
}

/// What a handle asks of the [`Keeper`].
#[derive(Serialize, Deserialize)]
pub(crate) enum Order {
    /// A block was made through the manager: keep it until shutdown.
    Keep(String),
    /// Unlink every block kept.
    UnlinkAll,
}

impl SharedObject for Keeper {
    type Request = Order;
    type Response = ();

    fn handle(&mut self, order: Order) {
        match order {
            Order::Keep(name) => {
                sys::tracker::register(&name);
                self.names.push(name);
            }
            Order::UnlinkAll => {
                for name in self.names.drain(..) {
                    // A block its user unlinked already is simply gone.
                    let _ = sys::shm::unlink_named(&name);
                    sys::tracker::unregister(&name);
                }
            }
        }
    }
}

/// A manager that keeps the named [`SharedMemory`] blocks made through it and unlinks them all
/// when it shuts down — whichever process made them, even one that has ended since.
///
/// A plain named block is unlinked by the cleaner once the process that made it ends; a block
/// made with [`shared_memory`](Self::shared_memory) belongs to the manager's server instead, so a
/// worker can make one, return its name and exit. The [`keeper`](Self::keeper) handle travels
/// in arguments, so children make blocks through the same manager. [`shutdown`](Self::shutdown),
/// or dropping the manager, unlinks them; if the program is killed, the server dies with it and
/// the cleaner unlinks them.
///
/// ```
/// use multiproc::{Process, shm::{BlockKeeper, SharedMemory, SharedMemoryManager}};
///
/// fn make(keeper: BlockKeeper) -> String {
///     let block = keeper.shared_memory(64).unwrap();
///     block.write_at(0, b"made by a child").unwrap();
///     block.name().unwrap().to_string() // the child exits; the block stays
/// }
///
/// let smm = SharedMemoryManager::start().unwrap();
/// let name = Process::spawn(make, (smm.keeper(),)).unwrap().join().unwrap();
/// let mut text = [0u8; 15];
/// SharedMemory::attach(&name).unwrap().read_at(0, &mut text).unwrap();
/// assert_eq!(&text, b"made by a child");
/// smm.shutdown().unwrap();
/// assert!(SharedMemory::attach(&name).is_err()); // unlinked
/// ```
/// Python counterpart: `multiprocessing.managers.SharedMemoryManager`.
pub struct SharedMemoryManager {
    keeper: BlockKeeper,
    manager: Mutex<Option<Manager>>,
}

impl fmt::Debug for SharedMemoryManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemoryManager").finish_non_exhaustive()
    }
}

/// A handle to a [`SharedMemoryManager`] for other processes: makes blocks it keeps. `Clone`,
/// and travels in a process's arguments.
///
/// ```
/// let smm = multiproc::shm::SharedMemoryManager::start().unwrap();
/// let keeper = smm.keeper();
/// assert_eq!(keeper.shared_memory(16).unwrap().len(), 16);
/// ```
/// Python counterpart: a `SharedMemoryManager` proxy passed to a child.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlockKeeper {
    proxy: ObjectProxy<Keeper>,
}

impl BlockKeeper {
    /// A new named block of `size` bytes that lives until the manager shuts down.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) once the manager has shut down (no block is left behind);
    /// otherwise as [`SharedMemory::create`].
    ///
    /// ```
    /// let smm = multiproc::shm::SharedMemoryManager::start().unwrap();
    /// let block = smm.keeper().shared_memory(4096).unwrap();
    /// assert_eq!(block.len(), 4096);
    /// ```
    /// Python counterpart: `smm.SharedMemory(size)`.
    pub fn shared_memory(&self, size: usize) -> Result<SharedMemory> {
        let block = SharedMemory::create(None, size)?;
        let name = block.name().expect("a created block has a name").to_string();
        if let Err(e) = self.proxy.call(Order::Keep(name.clone())) {
            let _ = block.unlink();
            return Err(e);
        }
        // The server holds it now (with the cleaner, under its own pid): this process lets go.
        // The cleaner forgets the first registration of the name, which is ours.
        sys::tracker::unregister(&name);
        Ok(block)
    }
}

impl SharedMemoryManager {
    /// Starts the manager's server.
    ///
    /// # Errors
    /// As [`Manager::start`].
    ///
    /// ```
    /// let smm = multiproc::shm::SharedMemoryManager::start().unwrap();
    /// smm.shutdown().unwrap();
    /// ```
    /// Python counterpart: `SharedMemoryManager()` then `smm.start()`.
    pub fn start() -> Result<SharedMemoryManager> {
        let manager = Manager::start()?;
        let keeper = BlockKeeper { proxy: manager.object::<Keeper>()? };
        Ok(SharedMemoryManager { keeper, manager: Mutex::new(Some(manager)) })
    }

    /// A handle for other processes to make blocks through this manager.
    ///
    /// ```
    /// let smm = multiproc::shm::SharedMemoryManager::start().unwrap();
    /// let _for_a_child = smm.keeper();
    /// ```
    /// Python counterpart: passing the manager to a child.
    pub fn keeper(&self) -> BlockKeeper {
        self.keeper.clone()
    }

    /// A new named block of `size` bytes that lives until the manager shuts down.
    ///
    /// # Errors
    /// As [`BlockKeeper::shared_memory`].
    ///
    /// ```
    /// let smm = multiproc::shm::SharedMemoryManager::start().unwrap();
    /// let block = smm.shared_memory(4096).unwrap();
    /// assert_eq!(block.len(), 4096);
    /// ```
    /// Python counterpart: `smm.SharedMemory(size)`.
    pub fn shared_memory(&self, size: usize) -> Result<SharedMemory> {
        self.keeper.shared_memory(size)
    }

    /// A new [`ShareableList`] of `items`. Its memory has no name and goes with the last process
    /// holding it, so the manager keeps nothing for it.
    ///
    /// # Errors
    /// As [`ShareableList::new`].
    ///
    /// ```
    /// let smm = multiproc::shm::SharedMemoryManager::start().unwrap();
    /// let list = smm.shareable_list([1, 2, 3]).unwrap();
    /// assert_eq!(list.get(2).unwrap(), 3);
    /// ```
    /// Python counterpart: `smm.ShareableList(sequence)`.
    pub fn shareable_list<T: Serialize + DeserializeOwned>(
        &self,
        items: impl IntoIterator<Item = T>,
    ) -> Result<ShareableList<T>> {
        ShareableList::new(items)
    }

    /// Unlinks every block made through the manager and stops its server; later
    /// `shared_memory` calls fail. Processes that have a block mapped keep their mapping. A
    /// second shutdown does nothing.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) if the server was already gone (its blocks then go with it,
    /// through the cleaner).
    ///
    /// ```
    /// let smm = multiproc::shm::SharedMemoryManager::start().unwrap();
    /// let name = smm.shared_memory(8).unwrap().name().unwrap().to_string();
    /// smm.shutdown().unwrap();
    /// assert!(multiproc::shm::SharedMemory::attach(&name).is_err());
    /// ```
    /// Python counterpart: `smm.shutdown()`.
    pub fn shutdown(&self) -> Result<()> {
        let mut manager = self.manager.lock().unwrap_or_else(|p| p.into_inner());
        if manager.is_none() {
            return Ok(());
        }
        let unlinked = self.keeper.proxy.call(Order::UnlinkAll);
        *manager = None;
        unlinked
    }
}

/// Dropping the manager shuts it down, as leaving Python's `with` block does.
impl Drop for SharedMemoryManager {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
