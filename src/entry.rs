//! Code named by offset: how one process names a function of this program to another.
//!
//! A child runs a task, a pool worker a batch, a manager server a user's update function or
//! constructor, a barrier its action — each known to the other side only by an `i64`: the
//! function's address minus the address of a fixed anchor function of this crate. In one build
//! the offset is the same whatever address-space randomisation did; in another build it means
//! nothing, so an offset is turned back into a function only after the sender proved it runs
//! this very build (the build fingerprint checked at a child's start, [`TreeClient`] on a
//! manager's wire, a barrier's memory shared only within one program).
//!
//! This module knows nothing of what the functions are: `process::task`, `pool::batch` and
//! `manager::hosted` each define their entry kinds next to the code that runs them. It sits below
//! all three.

/// The fixed point that offsets are measured from. Never inlined, and its body differs from
/// every other function's, so the linker cannot fold it into another.
#[inline(never)]
fn anchor() -> u64 {
    std::hint::black_box(0x6d75_6c74_6970_726f)
}

fn anchor_address() -> i64 {
    anchor as *const () as usize as i64
}

/// The offset of the function at `address` from the anchor: the same in every run of one build.
pub(crate) fn offset(address: *const ()) -> i64 {
    (address as usize as i64).wrapping_sub(anchor_address())
}

/// Turns an offset back into the function pointer of type `F` it came from.
///
/// # Safety
/// `F` must be a function pointer type, and `offset` must have come from [`offset`] of a function
/// of exactly that type, in a process running this very build.
pub(crate) unsafe fn resolve<F: Copy>(offset: i64) -> F {
    const { assert!(size_of::<F>() == size_of::<usize>(), "only function pointers are named by offset") };
    let address = anchor_address().wrapping_add(offset) as usize;
    // SAFETY: by the caller's contract `address` is a function of type `F` in this build, and a
    // function pointer has the size of a `usize` (asserted above).
    unsafe { std::mem::transmute_copy::<usize, F>(&address) }
}

/// The value of a zero-sized callable type `F` — a `fn` item, or a closure that captures
/// nothing — which is how a trampoline named by offset gets the function it runs, knowing only
/// its type.
pub(crate) fn summon<F: Copy + Send + Sync + 'static>() -> F {
    const { assert!(size_of::<F>() == 0, "a task must be a fn item or a closure that captures nothing") };
    // SAFETY: `F` has no bytes (asserted above). The callers' `F`s are `Fn` types (tasks, update
    // functions), which user code cannot implement by hand: fn items and closures, which with no
    // bytes captured nothing and have no validity invariant, so a value is the same however made.
    unsafe { std::mem::zeroed() }
}

/// The offset of a plain function, for naming it in shared memory (a
/// [`Barrier`](crate::Barrier)'s action): valid in every process of this build.
pub(crate) fn plain_fn_offset(f: fn()) -> i64 {
    offset(f as *const ())
}

/// Turns an offset from [`plain_fn_offset`] back into the function.
///
/// # Safety
/// `offset` must have come from `plain_fn_offset` in a process running this very build.
pub(crate) unsafe fn plain_fn_from_offset(offset: i64) -> fn() {
    // SAFETY: by the caller's contract, a `fn()` of this build.
    unsafe { resolve(offset) }
}

/// A manager client of this very process tree: it proved it holds the tree's key (which never
/// leaves the tree: see `manager::proxy`) and says it runs this build. Such a client is one of
/// this program's own processes, and sends only offsets that this program made — the same trust
/// a child places in the entry offset its parent sends. The only way to name functions by
/// offset from a manager's wire.
pub(crate) struct TreeClient(());

impl TreeClient {
    /// The witness for a client that proved it holds `key` and said it runs build `build`, if
    /// that is `tree_key` (this process tree's) and this build.
    pub(crate) fn check(key: &[u8; 32], build: &[u8], tree_key: &[u8; 32]) -> Option<TreeClient> {
        (key == tree_key && build == crate::sys::build_id::fingerprint()).then_some(TreeClient(()))
    }

    /// The function of type `F` at `offset`, which this client sent where its request names a
    /// function of type `F` (an update function, a constructor). Safe to call, unlike
    /// [`resolve`], because the client is this very program and build (see [`check`]) and made
    /// the offset from such a function; the caller's part is only to ask for the type that
    /// place of the request names (the manager's `hosted` module is the only caller).
    ///
    /// [`check`]: Self::check
    pub(crate) fn resolve<F: Copy>(&self, offset: i64) -> F {
        // SAFETY: this build (checked in `check`); the type is the one the request names there,
        // which this program's clients fill only with offsets of functions of that type.
        unsafe { resolve(offset) }
    }
}

#[cfg(test)]
mod tests {
    fn forty_two() -> u32 {
        42
    }

    #[test]
    fn an_offset_comes_back_as_the_same_function() {
        let f: fn() -> u32 = forty_two;
        let offset = super::offset(f as *const ());
        // SAFETY: the offset of a `fn() -> u32` of this build, resolved as one.
        let back: fn() -> u32 = unsafe { super::resolve(offset) };
        assert_eq!(back(), 42);
    }
}
