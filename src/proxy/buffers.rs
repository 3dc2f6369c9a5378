//! The shard's read buffers: a lane holds one only while it has bytes to move, and hands it back
//! here when it goes idle, so an idle connection costs no buffer at all.
//!
//! Why a pool: a 256 KiB buffer per direction per connection made 2,000 connections cost about
//! a gigabyte once the allocator reused freed memory (zeroing a reused buffer touches every
//! page). Lanes now borrow a buffer for a burst of traffic and return it; the pool keeps a few for
//! the next burst, already zeroed, and frees the rest. It is per thread, and so per shard: no
//! lock, no sharing between cores.

use std::cell::RefCell;

/// The size of a lane's read buffer; a lane grows its own past it only to gather a frame that
/// must be seen whole, and such a buffer is dropped, not pooled.
pub const BUFFER_SIZE: usize = 256 * 1024;

/// Buffers a shard keeps for reuse: enough for the lanes busy at one instant on a loaded shard,
/// few enough (16 MiB) that a burst of connections leaves little behind.
const KEPT: usize = 64;

thread_local! {
    static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of `BUFFER_SIZE` bytes, reused when one is free.
pub fn take() -> Vec<u8> {
    FREE.try_with(|free| free.borrow_mut().pop()).ok().flatten().unwrap_or_else(|| vec![0; BUFFER_SIZE])
}

/// Returns a buffer for reuse; one of another size, or one past what the shard keeps, is freed.
pub fn give(buffer: Vec<u8>) {
    if buffer.len() != BUFFER_SIZE {
        return;
    }
    // A lane dropped while its thread exits finds the pool gone: its buffer is simply freed.
    let _ = FREE.try_with(|free| {
        let mut free = free.borrow_mut();
        if free.len() < KEPT {
            free.push(buffer);
        }
    });
}

/// How many buffers this shard keeps for reuse now.
pub fn kept() -> usize {
    FREE.with(|free| free.borrow().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_up_to_a_bound_and_odd_sizes_are_dropped() {
        let taken: Vec<_> = (0..KEPT + 5).map(|_| take()).collect();
        assert!(taken.iter().all(|buffer| buffer.len() == BUFFER_SIZE));
        assert_eq!(kept(), 0);
        for buffer in taken {
            give(buffer);
        }
        assert_eq!(kept(), KEPT, "the rest is freed");
        give(vec![0; BUFFER_SIZE + 1]);
        assert_eq!(kept(), KEPT);
        let reused = take();
        assert_eq!((reused.len(), kept()), (BUFFER_SIZE, KEPT - 1));
    }
}
