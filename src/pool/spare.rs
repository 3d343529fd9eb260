//! Byte buffers of finished chunks, kept for the next chunks.
//!
//! A `map` moves its items through buffers of a chunk each: the arguments the parent packs, the
//! values a report brings back. Handed back to the allocator when a map ends, the megabytes of
//! them go back to the kernel too (the allocator trims the top of its heap), and the next map
//! pays a page fault for every page again — more than the rest of a small item's trip costs.
//! So finished buffers wait here, a few megabytes at most, for the next chunk of this process.
//!
//! The list is taken with `try_lock` only: a thread of a process forked while another held the
//! lock (the `fork` start method) finds it held forever, and then simply allocates.

use std::sync::Mutex;

/// At most this many bytes of buffers wait here, and at most this many buffers.
const MAX_BYTES: usize = 8 << 20;
const MAX_BUFFERS: usize = 64;

/// A buffer bigger than this is not kept: it is not a chunk of small items, and would take
/// the room of many.
const MAX_KEPT: usize = 1 << 20;

static SPARE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// An empty buffer with room for at least `capacity` bytes: a spare one if one is big enough.
pub(crate) fn take(capacity: usize) -> Vec<u8> {
    if let Ok(mut spare) = SPARE.try_lock() {
        // The smallest that fits, so that big ones stay for big chunks.
        let best = spare.iter().enumerate().filter(|(_, b)| b.capacity() >= capacity).min_by_key(|(_, b)| b.capacity());
        if let Some((i, _)) = best {
            return spare.swap_remove(i);
        }
    }
    Vec::with_capacity(capacity)
}

/// Keeps `buffer` for a later chunk, if there is room; otherwise frees it.
pub(crate) fn give(mut buffer: Vec<u8>) {
    if buffer.capacity() == 0 || buffer.capacity() > MAX_KEPT {
        return;
    }
    if let Ok(mut spare) = SPARE.try_lock() {
        let held: usize = spare.iter().map(Vec::capacity).sum();
        if spare.len() < MAX_BUFFERS && held + buffer.capacity() <= MAX_BYTES {
            buffer.clear();
            spare.push(buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_given_buffer_is_taken_again_and_comes_back_empty() {
        let mut buffer = super::take(40_000);
        buffer.extend_from_slice(&[7; 40_000]);
        let at = buffer.as_ptr();
        super::give(buffer);
        // Other tests of this process may take it first; then a fresh one comes, as big.
        let again = super::take(30_000);
        assert!(again.is_empty() && again.capacity() >= 30_000);
        if again.as_ptr() == at {
            assert!(again.capacity() >= 40_000);
        }
    }
}
