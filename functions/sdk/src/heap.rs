//! The guest's global allocator: free lists of small blocks in front of the
//! standard one.
//!
//! Why: under ledge's interpreter the standard wasm32 allocator (dlmalloc)
//! costs about 1,800 fuel per malloc/free pair, measured with `ledge invoke`
//! on a module that only allocates and frees one 31-byte buffer (a bump
//! allocator doing the same costs 54). A function that parses a reading and
//! republishes it allocates three or four times per event (the payload, the
//! body it writes, the topic), so the allocator was about a third of the
//! whole call. Here a small allocation is a pop from, and a free a push onto,
//! the list of its size class: a few dozen instructions.
//!
//! - Sizes up to [`LARGEST_SMALL`] bytes (alignment up to [`ALIGN`]) round up
//!   to a power of two from 16; blocks are cut from 64 KiB pieces taken from
//!   the standard allocator and, once freed, are kept on their class's list
//!   for reuse: memory given to small blocks of one size is not returned for
//!   other sizes. A function's peak memory is what it holds at its busiest,
//!   rounded up per block to the next power of two.
//! - Anything larger, or more aligned, goes to the standard allocator as
//!   before.
//! - A reallocation within one class keeps the block (a growing `Vec` of
//!   up to 16 bytes does not move while it stays in its class).
//!
//! wasm32 guests are single-threaded (the host runs one call at a time per
//! instance and the module has no threads), so the lists need no lock.
//! Turn it off with `default-features = false` (keeping `json` if wanted),
//! for example to install an allocator of your own.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr;
use std::alloc::System;

/// Largest size served from the free lists.
pub(crate) const LARGEST_SMALL: usize = 4096;
/// Every block is aligned to this; more strictly aligned requests go to the
/// standard allocator.
pub(crate) const ALIGN: usize = 16;
/// Smallest class: 16 bytes (2^4).
const SMALLEST_SHIFT: u32 = 4;
/// 16, 32, ... 4096.
const CLASSES: usize = (LARGEST_SMALL.trailing_zeros() - SMALLEST_SHIFT + 1) as usize;
/// What the lists take from the standard allocator at a time.
const PIECE: usize = 64 * 1024;

/// The allocator the SDK installs on wasm32 (feature `fast-alloc`).
pub(crate) struct SizeClasses {
    state: UnsafeCell<State>,
}

struct State {
    /// Head of each class's list of free blocks; a free block's first word
    /// points at the next.
    free: [*mut u8; CLASSES],
    /// The unused rest of the current piece.
    next: *mut u8,
    end: *mut u8,
}

// SAFETY: wasm32 guests run on one thread (see the module doc); on other
// targets the allocator is not installed, only tested from one thread.
unsafe impl Sync for SizeClasses {}

impl SizeClasses {
    pub(crate) const fn new() -> SizeClasses {
        SizeClasses {
            state: UnsafeCell::new(State {
                free: [ptr::null_mut(); CLASSES],
                next: ptr::null_mut(),
                end: ptr::null_mut(),
            }),
        }
    }
}

/// The class index of a small request, or `None` for the standard allocator.
#[inline]
fn class_of(layout: Layout) -> Option<usize> {
    if layout.size() > LARGEST_SMALL || layout.align() > ALIGN {
        return None;
    }
    let rounded = layout.size().max(1 << SMALLEST_SHIFT).next_power_of_two();
    Some((rounded.trailing_zeros() - SMALLEST_SHIFT) as usize)
}

#[inline]
fn class_size(class: usize) -> usize {
    1 << (class as u32 + SMALLEST_SHIFT)
}

unsafe impl GlobalAlloc for SizeClasses {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class_of(layout) else {
            return unsafe { System.alloc(layout) };
        };
        // SAFETY: one thread, and no call below re-enters this allocator
        // while the borrow is live (System is a different allocator).
        let state = unsafe { &mut *self.state.get() };
        let head = state.free[class];
        if !head.is_null() {
            // SAFETY: `head` is a free block of this class; its first word
            // was written by `dealloc`.
            state.free[class] = unsafe { head.cast::<*mut u8>().read() };
            return head;
        }
        let size = class_size(class);
        if (state.end as usize) - (state.next as usize) < size {
            // SAFETY: PIECE and ALIGN make a valid, non-zero layout.
            let piece = unsafe { System.alloc(Layout::from_size_align_unchecked(PIECE, ALIGN)) };
            if piece.is_null() {
                return piece;
            }
            // The rest of the old piece is abandoned: at most 4 KiB - 16.
            state.next = piece;
            state.end = piece.wrapping_add(PIECE);
        }
        let block = state.next;
        state.next = block.wrapping_add(size);
        block
    }

    #[inline]
    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(class) = class_of(layout) else {
            return unsafe { System.dealloc(block, layout) };
        };
        // SAFETY: as in `alloc`.
        let state = unsafe { &mut *self.state.get() };
        // SAFETY: the block is ours, at least 16 bytes and 16-aligned.
        unsafe { block.cast::<*mut u8>().write(state.free[class]) };
        state.free[class] = block;
    }

    #[inline]
    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with this alignment is a
        // valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class_of(layout), class_of(new_layout)) {
            (Some(old), Some(new)) if old == new => block,
            (None, None) => unsafe { System.realloc(block, layout, new_size) },
            _ => {
                let moved = unsafe { self.alloc(new_layout) };
                if !moved.is_null() {
                    // SAFETY: both blocks hold at least the smaller size and
                    // are distinct allocations.
                    unsafe {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                }
                moved
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn sizes_round_up_to_their_power_of_two_class() {
        assert_eq!(class_of(layout(1, 1)), Some(0));
        assert_eq!(class_of(layout(16, 8)), Some(0));
        assert_eq!(class_of(layout(17, 8)), Some(1));
        assert_eq!(class_of(layout(4096, 16)), Some(CLASSES - 1));
        assert_eq!(class_of(layout(4097, 1)), None);
        assert_eq!(class_of(layout(8, 32)), None);
    }

    #[test]
    fn freed_blocks_are_reused_and_live_blocks_never_overlap() {
        let heap = SizeClasses::new();
        unsafe {
            let mut live: Vec<(*mut u8, Layout)> = Vec::new();
            // A deterministic mix of sizes, frees and reallocations; each
            // block is filled with its own byte and checked before it goes.
            let mut seed = 0x2545_f491_u32;
            for round in 0..20_000u32 {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let size = 1 + (seed as usize % 6000);
                if seed % 3 == 0 && !live.is_empty() {
                    let (block, l) = live.swap_remove(seed as usize % live.len());
                    let mark = block.read();
                    assert!((0..l.size()).all(|i| block.add(i).read() == mark));
                    if seed % 2 == 0 {
                        heap.dealloc(block, l);
                    } else {
                        let grown = heap.realloc(block, l, size);
                        assert!(!grown.is_null());
                        assert!((0..l.size().min(size)).all(|i| grown.add(i).read() == mark));
                        let nl = layout(size, l.align());
                        grown.write_bytes(mark, size);
                        live.push((grown, nl));
                    }
                } else {
                    let l = layout(size, if seed % 5 == 0 { 16 } else { 8 });
                    let block = heap.alloc(l);
                    assert!(!block.is_null());
                    assert_eq!(block as usize % l.align(), 0);
                    block.write_bytes(round as u8, size);
                    live.push((block, l));
                }
            }
            for (block, l) in live {
                let mark = block.read();
                assert!((0..l.size()).all(|i| block.add(i).read() == mark));
                heap.dealloc(block, l);
            }
        }
    }

    #[test]
    fn a_block_freed_is_the_next_one_given_in_its_class() {
        let heap = SizeClasses::new();
        unsafe {
            let a = heap.alloc(layout(24, 8));
            let b = heap.alloc(layout(30, 8));
            assert_ne!(a, b);
            heap.dealloc(a, layout(24, 8));
            assert_eq!(heap.alloc(layout(32, 8)), a);
            // Growing within the class keeps the block; past it, it moves.
            assert_eq!(heap.realloc(b, layout(30, 8), 32), b);
            let moved = heap.realloc(b, layout(32, 8), 33);
            assert_ne!(moved, b);
            assert_eq!(heap.alloc(layout(20, 4)), b);
        }
    }
}
