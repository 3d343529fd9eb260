//! [`Value`] and [`Array`]: plain data in shared memory, behind a robust lock — and their
//! lock-free forms [`RawValue`] and [`RawArray`].

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ErrorKind, Result};
use crate::shm::{Shared, SharedState, type_hash};
use crate::sync::raw::{Acquired, RawMutex};
use crate::sync::{LockResult, OwnerDied};

/// Types that may live in a [`Value`] or an [`Array`]: plain data, copied bit for bit between
/// processes.
///
/// Implemented for the integer and floating-point types and arrays of them.
///
/// ```
/// fn shareable<T: multiproc::shm::ShmSafe>() {}
/// shareable::<f64>();
/// shareable::<[u32; 4]>();
/// ```
/// Python counterpart: the `ctypes` type codes `Value` and `Array` accept (`'i'`, `'d'`, …).
///
/// # Safety
/// The type must be `Copy`, hold no pointers, references or descriptors (another process
/// would see addresses and descriptor numbers that mean nothing there), need no destructor, and
/// be valid for every bit pattern (another process may be halfway through writing it when a
/// lock holder dies). A `#[repr(C)]` struct of such fields qualifies.
pub unsafe trait ShmSafe: Copy + Send + Sync + 'static {}

macro_rules! shm_safe {
    ($($t:ty),*) => { $(
        // SAFETY: a primitive number: Copy, no pointers, every bit pattern valid.
        unsafe impl ShmSafe for $t {}
    )* };
}
shm_safe!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64);

// SAFETY: an array of ShmSafe elements is itself ShmSafe (no padding between elements adds
// invalid patterns, and the elements are valid for every pattern).
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {}

/// The header of a block: its lock and what it holds. The elements follow in the tail.
#[repr(C)]
pub(crate) struct BlockHeader {
    lock: RawMutex,
    /// Identifies the element type (a hash of its name), checked when a handle is received.
    type_hash: AtomicU64,
    len: AtomicU64,
}

// SAFETY: repr(C), a robust mutex and atomics; no destructor.
unsafe impl SharedState for BlockHeader {
    const KIND: u32 = 9;
    const NAME: &'static str = "Value/Array";
}

/// `len` elements of `T` in one shared segment, with a lock beside them.
struct Block<T> {
    shared: Shared<BlockHeader>,
    _type: PhantomData<T>,
}

impl<T> Clone for Block<T> {
    fn clone(&self) -> Block<T> {
        Block { shared: self.shared.clone(), _type: PhantomData }
    }
}

impl<T: ShmSafe> Block<T> {
    fn new(len: usize, init: impl Fn(usize) -> T) -> Result<Block<T>> {
        const { assert!(align_of::<T>() <= 64, "shared values are aligned to at most 64 bytes") };
        let bytes = len
            .checked_mul(size_of::<T>())
            .ok_or_else(|| Error::new(ErrorKind::InvalidInput, format!("an array of {len} elements is too large")))?;
        // Every element is written now (as Python zero-fills its Array): an array larger than
        // the machine's memory would get this process killed by the OOM killer, not refused.
        let memory = crate::sys::shm::physical_memory();
        if memory > 0 && bytes as u64 > memory {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "an array of {len} elements ({bytes} bytes) is larger than this machine's memory ({memory} bytes)"
                ),
            ));
        }
        let header = BlockHeader {
            lock: RawMutex::new(),
            type_hash: AtomicU64::new(type_hash::<T>()),
            len: AtomicU64::new(len as u64),
        };
        let block: Block<T> = Block { shared: Shared::with_tail(header, bytes.max(1))?, _type: PhantomData };
        for i in 0..len {
            // SAFETY: the segment is fresh and not yet shared; `i < len`.
            unsafe { block.ptr(i).write(init(i)) };
        }
        Ok(block)
    }

    fn len(&self) -> usize {
        self.shared.len.load(Ordering::Relaxed) as usize
    }

    /// Element `i`'s place. Callers keep `i < len`.
    fn ptr(&self, i: usize) -> *mut T {
        debug_assert!(i < self.len());
        // SAFETY: the tail holds `len` elements of `T`, 64-byte aligned (so aligned for `T`,
        // asserted in `new`), and `i < len`.
        unsafe { self.shared.tail().0.as_ptr().cast::<T>().add(i) }
    }

    fn slice_ptr(&self) -> *mut T {
        self.shared.tail().0.as_ptr().cast::<T>()
    }

    /// Takes the lock; `Err` carries the pid of a holder that died with it.
    fn lock(&self) -> std::result::Result<(), u32> {
        match self.shared.lock.lock(None) {
            Ok(Acquired::Clean) => Ok(()),
            Ok(Acquired::OwnerDied(pid)) => Err(pid),
            Err(_) => unreachable!("no deadline"),
        }
    }

    fn check(self) -> std::result::Result<Block<T>, String> {
        if self.shared.type_hash.load(Ordering::Relaxed) != type_hash::<T>() {
            return Err(format!("the shared block does not hold {}", std::any::type_name::<T>()));
        }
        let fits = self.len().checked_mul(size_of::<T>()).is_some_and(|bytes| bytes <= self.shared.tail().1);
        if !fits {
            return Err("the shared block is smaller than its length says".into());
        }
        Ok(self)
    }
}

impl<T> Block<T> {
    fn unlock(&self) {
        self.shared.lock.unlock();
    }
}

impl<T> Serialize for Block<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.shared.serialize(serializer)
    }
}

impl<'de, T: ShmSafe> Deserialize<'de> for Block<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Block<T>, D::Error> {
        Block { shared: Shared::deserialize(deserializer)?, _type: PhantomData }.check().map_err(D::Error::custom)
    }
}

/// A `T` in shared memory with a lock: [`get`](Self::get) and [`set`](Self::set) take the lock
/// for one copy; [`lock`](Self::lock) holds it for a read-modify-write. Clone it into the
/// arguments of the processes that share it.
///
/// ```
/// use multiproc::{Process, shm::Value};
///
/// fn deposit(balance: Value<i64>, times: u32) {
///     for _ in 0..times {
///         *balance.lock().unwrap() += 10; // read-modify-write under the lock
///     }
/// }
///
/// let balance = Value::new(0i64).unwrap();
/// let mut clerks: Vec<_> = (0..4).map(|_| Process::spawn(deposit, (balance.clone(), 100)).unwrap()).collect();
/// for clerk in &mut clerks {
///     clerk.join().unwrap();
/// }
/// assert_eq!(balance.get(), 4 * 100 * 10);
/// ```
/// Python counterpart: `multiprocessing.Value(typecode, value)` (with its default lock).
pub struct Value<T> {
    block: Block<T>,
}

impl<T> Clone for Value<T> {
    fn clone(&self) -> Value<T> {
        Value { block: self.block.clone() }
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Value").field(&self.get()).finish()
    }
}

impl<T> Serialize for Value<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.block.serialize(serializer)
    }
}

impl<'de, T: ShmSafe> Deserialize<'de> for Value<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Value<T>, D::Error> {
        Ok(Value { block: Block::deserialize(deserializer)? })
    }
}

/// Holds a [`Value`]'s lock; derefs to the value.
///
/// ```
/// let v = multiproc::shm::Value::new(1u32).unwrap();
/// let mut guard = v.lock().unwrap();
/// *guard *= 5;
/// drop(guard);
/// assert_eq!(v.get(), 5);
/// ```
/// Python counterpart: `with v.get_lock(): v.value ...`.
pub struct ValueGuard<'a, T> {
    block: &'a Block<T>,
}

impl<T: ShmSafe> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the lock is held, so no other process touches the element; it is valid for
        // every bit pattern (`ShmSafe`).
        unsafe { &*self.block.ptr(0) }
    }
}

impl<T: ShmSafe> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above, and the guard is borrowed mutably, so this is the only reference.
        unsafe { &mut *self.block.ptr(0) }
    }
}

impl<T> Drop for ValueGuard<'_, T> {
    fn drop(&mut self) {
        self.block.unlock();
    }
}

impl<T: ShmSafe> Value<T> {
    /// A new shared value.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if no shared memory can be had.
    ///
    /// ```
    /// let v = multiproc::shm::Value::new(3.5f64).unwrap();
    /// assert_eq!(v.get(), 3.5);
    /// ```
    /// Python counterpart: `Value('d', 3.5)`.
    pub fn new(value: T) -> Result<Value<T>> {
        Ok(Value { block: Block::new(1, |_| value)? })
    }

    /// Takes the lock for a read-modify-write; the guard derefs to the value.
    ///
    /// # Errors
    /// [`OwnerDied`] if a process died holding the lock: the guard inside is live (the value may
    /// be half-updated by the dead process; check it).
    ///
    /// ```
    /// let hits = multiproc::shm::Value::new(0u64).unwrap();
    /// *hits.lock().unwrap() += 1;
    /// assert_eq!(hits.get(), 1);
    /// ```
    /// Python counterpart: `with v.get_lock(): v.value += 1`.
    pub fn lock(&self) -> LockResult<ValueGuard<'_, T>> {
        match self.block.lock() {
            Ok(()) => Ok(ValueGuard { block: &self.block }),
            Err(pid) => Err(OwnerDied::new(ValueGuard { block: &self.block }, pid)),
        }
    }

    /// Reads the value (under the lock, so never a torn copy).
    ///
    /// ```
    /// assert_eq!(multiproc::shm::Value::new(7i8).unwrap().get(), 7);
    /// ```
    /// Python counterpart: `v.value`.
    pub fn get(&self) -> T {
        *self.lock().unwrap_or_else(OwnerDied::into_guard)
    }

    /// Writes the value (under the lock).
    ///
    /// ```
    /// let v = multiproc::shm::Value::new(0u16).unwrap();
    /// v.set(9);
    /// assert_eq!(v.get(), 9);
    /// ```
    /// Python counterpart: `v.value = x`.
    pub fn set(&self, value: T) {
        *self.lock().unwrap_or_else(OwnerDied::into_guard) = value;
    }
}

/// A `T` in shared memory without a lock: each [`get`](Self::get) and [`set`](Self::set) is one
/// unsynchronized copy, so a value wider than the machine word may be read half-written. Use it
/// for data written once or guarded by your own lock.
///
/// ```
/// let flag = multiproc::shm::RawValue::new(0u8).unwrap();
/// flag.set(1);
/// assert_eq!(flag.get(), 1);
/// ```
/// Python counterpart: `multiprocessing.RawValue(typecode, value)`.
pub struct RawValue<T> {
    block: Block<T>,
}

impl<T> Clone for RawValue<T> {
    fn clone(&self) -> RawValue<T> {
        RawValue { block: self.block.clone() }
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawValue").field(&self.get()).finish()
    }
}

impl<T> Serialize for RawValue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.block.serialize(serializer)
    }
}

impl<'de, T: ShmSafe> Deserialize<'de> for RawValue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<RawValue<T>, D::Error> {
        Ok(RawValue { block: Block::deserialize(deserializer)? })
    }
}

impl<T: ShmSafe> RawValue<T> {
    /// A new shared value.
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if no shared memory can be had.
    ///
    /// ```
    /// let v = multiproc::shm::RawValue::new(1i32).unwrap();
    /// # assert_eq!(v.get(), 1);
    /// ```
    /// Python counterpart: `RawValue('i', 1)`.
    pub fn new(value: T) -> Result<RawValue<T>> {
        Ok(RawValue { block: Block::new(1, |_| value)? })
    }

    /// Reads the value (one unsynchronized copy).
    ///
    /// ```
    /// assert_eq!(multiproc::shm::RawValue::new(2u64).unwrap().get(), 2);
    /// ```
    /// Python counterpart: `v.value`.
    pub fn get(&self) -> T {
        // SAFETY: the element is in bounds and valid for every bit pattern (`ShmSafe`); a
        // volatile read because other processes change it behind the compiler's back.
        unsafe { self.block.ptr(0).read_volatile() }
    }

    /// Writes the value (one unsynchronized copy).
    ///
    /// ```
    /// let v = multiproc::shm::RawValue::new(0u64).unwrap();
    /// v.set(5);
    /// # assert_eq!(v.get(), 5);
    /// ```
    /// Python counterpart: `v.value = x`.
    pub fn set(&self, value: T) {
        // SAFETY: as for `get`.
        unsafe { self.block.ptr(0).write_volatile(value) }
    }
}

/// A fixed-length array of `T` in shared memory with a lock: element access takes the lock for
/// one copy; [`lock`](Self::lock) holds it and gives a slice.
///
/// ```
/// use multiproc::{Process, shm::Array};
///
/// fn fill(squares: Array<u64>, start: usize, step: usize) {
///     for i in (start..squares.len()).step_by(step) {
///         squares.set(i, (i * i) as u64);
///     }
/// }
///
/// let squares = Array::new(10).unwrap();
/// let mut workers: Vec<_> = (0..3).map(|w| Process::spawn(fill, (squares.clone(), w, 3)).unwrap()).collect();
/// for w in &mut workers {
///     w.join().unwrap();
/// }
/// assert_eq!(squares.to_vec(), [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
/// ```
/// Python counterpart: `multiprocessing.Array(typecode, size_or_initializer)`.
pub struct Array<T> {
    block: Block<T>,
}

impl<T> Clone for Array<T> {
    fn clone(&self) -> Array<T> {
        Array { block: self.block.clone() }
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Array").field(&self.to_vec()).finish()
    }
}

impl<T> Serialize for Array<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.block.serialize(serializer)
    }
}

impl<'de, T: ShmSafe> Deserialize<'de> for Array<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Array<T>, D::Error> {
        Ok(Array { block: Block::deserialize(deserializer)? })
    }
}

/// Holds an [`Array`]'s lock; derefs to the elements as a slice.
///
/// ```
/// let a = multiproc::shm::Array::from_slice(&[3u8, 1, 2]).unwrap();
/// a.lock().unwrap().sort();
/// assert_eq!(a.to_vec(), [1, 2, 3]);
/// ```
/// Python counterpart: `with arr.get_lock(): ...`.
pub struct ArrayGuard<'a, T> {
    block: &'a Block<T>,
}

impl<T: ShmSafe> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the lock is held; the tail holds `len` valid elements (`ShmSafe`).
        unsafe { std::slice::from_raw_parts(self.block.slice_ptr(), self.block.len()) }
    }
}

impl<T: ShmSafe> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as above, and the guard is borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.block.slice_ptr(), self.block.len()) }
    }
}

impl<T> Drop for ArrayGuard<'_, T> {
    fn drop(&mut self) {
        self.block.unlock();
    }
}

fn out_of_bounds(index: usize, len: usize) -> ! {
    panic!("index {index} out of bounds for a shared array of length {len}")
}

impl<T: ShmSafe> Array<T> {
    /// An array of `len` elements, all zero bits (`0` for numbers).
    ///
    /// # Errors
    /// [`ErrorKind::Os`] if no shared memory can be had; [`ErrorKind::InvalidInput`] if `len`
    /// elements do not fit in memory.
    ///
    /// ```
    /// let a = multiproc::shm::Array::<f32>::new(4).unwrap();
    /// assert_eq!(a.to_vec(), [0.0; 4]);
    /// ```
    /// Python counterpart: `Array('f', 4)`.
    pub fn new(len: usize) -> Result<Array<T>> {
        // SAFETY: `ShmSafe` types are valid for every bit pattern, all zeros included.
        Ok(Array { block: Block::new(len, |_| unsafe { std::mem::zeroed() })? })
    }

    /// An array holding a copy of `items`.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    ///
    /// ```
    /// let a = multiproc::shm::Array::from_slice(&[1i64, 2, 3]).unwrap();
    /// assert_eq!(a.len(), 3);
    /// ```
    /// Python counterpart: `Array('q', [1, 2, 3])`.
    pub fn from_slice(items: &[T]) -> Result<Array<T>> {
        Ok(Array { block: Block::new(items.len(), |i| items[i])? })
    }

    /// The number of elements.
    ///
    /// ```
    /// assert_eq!(multiproc::shm::Array::<u8>::new(5).unwrap().len(), 5);
    /// ```
    /// Python counterpart: `len(arr)`.
    pub fn len(&self) -> usize {
        self.block.len()
    }

    /// Whether the array has no elements.
    ///
    /// ```
    /// assert!(multiproc::shm::Array::<u8>::new(0).unwrap().is_empty());
    /// ```
    /// Python counterpart: `len(arr) == 0`.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the lock; the guard derefs to a mutable slice of all the elements.
    ///
    /// # Errors
    /// [`OwnerDied`] if a process died holding the lock (the guard inside is live).
    ///
    /// ```
    /// let a = multiproc::shm::Array::from_slice(&[1u32, 2, 3]).unwrap();
    /// for x in a.lock().unwrap().iter_mut() {
    ///     *x *= 10;
    /// }
    /// assert_eq!(a.to_vec(), [10, 20, 30]);
    /// ```
    /// Python counterpart: `with arr.get_lock(): arr[:] = ...`.
    pub fn lock(&self) -> LockResult<ArrayGuard<'_, T>> {
        match self.block.lock() {
            Ok(()) => Ok(ArrayGuard { block: &self.block }),
            Err(pid) => Err(OwnerDied::new(ArrayGuard { block: &self.block }, pid)),
        }
    }

    /// Element `index` (under the lock).
    ///
    /// # Panics
    /// If `index >= len()`, as slice indexing does.
    ///
    /// ```
    /// assert_eq!(multiproc::shm::Array::from_slice(&[4u8, 5]).unwrap().get(1), 5);
    /// ```
    /// Python counterpart: `arr[i]`.
    pub fn get(&self, index: usize) -> T {
        let guard = self.lock().unwrap_or_else(OwnerDied::into_guard);
        *guard.get(index).unwrap_or_else(|| out_of_bounds(index, guard.len()))
    }

    /// Sets element `index` (under the lock).
    ///
    /// # Panics
    /// If `index >= len()`.
    ///
    /// ```
    /// let a = multiproc::shm::Array::<u8>::new(2).unwrap();
    /// a.set(0, 9);
    /// assert_eq!(a.to_vec(), [9, 0]);
    /// ```
    /// Python counterpart: `arr[i] = x`.
    pub fn set(&self, index: usize, value: T) {
        let mut guard = self.lock().unwrap_or_else(OwnerDied::into_guard);
        let len = guard.len();
        *guard.get_mut(index).unwrap_or_else(|| out_of_bounds(index, len)) = value;
    }

    /// A copy of every element (under the lock).
    ///
    /// ```
    /// assert_eq!(multiproc::shm::Array::from_slice(&[1u8, 2]).unwrap().to_vec(), [1, 2]);
    /// ```
    /// Python counterpart: `arr[:]`.
    pub fn to_vec(&self) -> Vec<T> {
        self.lock().unwrap_or_else(OwnerDied::into_guard).to_vec()
    }
}

/// A fixed-length array of `T` in shared memory without a lock: each access is one
/// unsynchronized copy of one element.
///
/// ```
/// let a = multiproc::shm::RawArray::<u32>::new(3).unwrap();
/// a.set(2, 7);
/// assert_eq!(a.to_vec(), [0, 0, 7]);
/// ```
/// Python counterpart: `multiprocessing.RawArray(typecode, size_or_initializer)`.
pub struct RawArray<T> {
    block: Block<T>,
}

impl<T> Clone for RawArray<T> {
    fn clone(&self) -> RawArray<T> {
        RawArray { block: self.block.clone() }
    }
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawArray").field(&self.to_vec()).finish()
    }
}

impl<T> Serialize for RawArray<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.block.serialize(serializer)
    }
}

impl<'de, T: ShmSafe> Deserialize<'de> for RawArray<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<RawArray<T>, D::Error> {
        Ok(RawArray { block: Block::deserialize(deserializer)? })
    }
}

impl<T: ShmSafe> RawArray<T> {
    /// An array of `len` zeroed elements.
    ///
    /// # Errors
    /// As [`Array::new`].
    ///
    /// ```
    /// assert_eq!(multiproc::shm::RawArray::<i16>::new(2).unwrap().len(), 2);
    /// ```
    /// Python counterpart: `RawArray('h', 2)`.
    pub fn new(len: usize) -> Result<RawArray<T>> {
        // SAFETY: `ShmSafe` types are valid for every bit pattern, all zeros included.
        Ok(RawArray { block: Block::new(len, |_| unsafe { std::mem::zeroed() })? })
    }

    /// An array holding a copy of `items`.
    ///
    /// # Errors
    /// As [`Array::new`].
    ///
    /// ```
    /// let a = multiproc::shm::RawArray::from_slice(&[1.5f64, 2.5]).unwrap();
    /// assert_eq!(a.get(1), 2.5);
    /// ```
    /// Python counterpart: `RawArray('d', [1.5, 2.5])`.
    pub fn from_slice(items: &[T]) -> Result<RawArray<T>> {
        Ok(RawArray { block: Block::new(items.len(), |i| items[i])? })
    }

    /// The number of elements.
    ///
    /// ```
    /// assert_eq!(multiproc::shm::RawArray::<u8>::new(3).unwrap().len(), 3);
    /// ```
    /// Python counterpart: `len(arr)`.
    pub fn len(&self) -> usize {
        self.block.len()
    }

    /// Whether the array has no elements.
    ///
    /// ```
    /// assert!(!multiproc::shm::RawArray::<u8>::new(1).unwrap().is_empty());
    /// ```
    /// Python counterpart: `len(arr) == 0`.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `index` (one unsynchronized copy).
    ///
    /// # Panics
    /// If `index >= len()`.
    ///
    /// ```
    /// assert_eq!(multiproc::shm::RawArray::from_slice(&[8u8]).unwrap().get(0), 8);
    /// ```
    /// Python counterpart: `arr[i]`.
    pub fn get(&self, index: usize) -> T {
        let len = self.len();
        if index >= len {
            out_of_bounds(index, len);
        }
        // SAFETY: in bounds (checked); valid for every bit pattern; volatile because other
        // processes change it.
        unsafe { self.block.ptr(index).read_volatile() }
    }

    /// Sets element `index` (one unsynchronized copy).
    ///
    /// # Panics
    /// If `index >= len()`.
    ///
    /// ```
    /// let a = multiproc::shm::RawArray::<u8>::new(1).unwrap();
    /// a.set(0, 3);
    /// # assert_eq!(a.get(0), 3);
    /// ```
    /// Python counterpart: `arr[i] = x`.
    pub fn set(&self, index: usize, value: T) {
        let len = self.len();
        if index >= len {
            out_of_bounds(index, len);
        }
        // SAFETY: as for `get`.
        unsafe { self.block.ptr(index).write_volatile(value) }
    }

    /// A copy of every element (element by element, unsynchronized).
    ///
    /// ```
    /// assert_eq!(multiproc::shm::RawArray::from_slice(&[1u8, 2]).unwrap().to_vec(), [1, 2]);
    /// ```
    /// Python counterpart: `arr[:]`.
    pub fn to_vec(&self) -> Vec<T> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }
}
