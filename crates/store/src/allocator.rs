//! How spanflow's processes hold memory: those that run a store keep what they free for a
//! while, and every process keeps off transparent huge pages.
//!
//! A store's write path frees and allocates buffers of megabytes at every batch and flush, on
//! whichever of the runtime's threads runs it. mimalloc returns a thread's free pages to the
//! system one second after they fall idle (its default), so a flush on another thread a moment
//! later faults the same amount in again, and the kernel zeroes every page: an eighth of all
//! the samples in a profile of the embedded store's benchmark (BENCHMARKS.md). Holding free pages for ten
//! seconds lets the next batches reuse them, for a resident size that stays at the last ten
//! seconds' peak.

/// mimalloc as the global allocator, called by its plain entry points wherever they give the
/// alignment asked for.
///
/// The `mimalloc` crate's `MiMalloc` passes every allocation to `mi_malloc_aligned`, whose fast
/// path covers blocks of up to 1 KiB; a larger block, such as a row vector, a column builder or
/// a log entry, goes through its generic aligned path, which over-allocates unless the size is
/// a power of two. `mi_malloc` hands
/// out blocks aligned to 16 bytes at least and to their size below that (a block of 8 bytes at
/// 8), so a layout of such an alignment, no larger than its size (every Rust type's), needs
/// nothing more. Mapping a payload's spans to rows runs 2.4% fewer instructions this way, a
/// write's encodings 0.9% (BENCHMARKS.md).
pub struct Allocator;

/// The alignment `mi_malloc` guarantees for a block at least this large (`MI_MAX_ALIGN_SIZE`).
const PLAIN_ALIGN: usize = 16;

fn plain(align: usize, size: usize) -> bool {
    align <= PLAIN_ALIGN && align <= size
}

// SAFETY: every block comes from mimalloc and goes back to it; `plain` layouts get mimalloc's
// natural alignment, which meets theirs, and every other layout its aligned entry points.
unsafe impl std::alloc::GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: mimalloc's allocation functions take any size and power-of-two alignment.
        unsafe {
            if plain(layout.align(), layout.size()) {
                libmimalloc_sys::mi_malloc(layout.size()).cast()
            } else {
                libmimalloc_sys::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        unsafe {
            if plain(layout.align(), layout.size()) {
                libmimalloc_sys::mi_zalloc(layout.size()).cast()
            } else {
                libmimalloc_sys::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from this allocator, so from mimalloc, whose `mi_free` frees
        // blocks of either kind.
        unsafe { libmimalloc_sys::mi_free(ptr.cast()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout`; the new block keeps its
        // alignment as `alloc` gives it.
        unsafe {
            if plain(layout.align(), new_size) {
                libmimalloc_sys::mi_realloc(ptr.cast(), new_size).cast()
            } else {
                libmimalloc_sys::mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
            }
        }
    }
}

/// mimalloc's `mi_option_purge_delay` (its `mimalloc.h` lists the options in this order).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long mimalloc keeps pages freed by a store's work before it returns them to the system.
pub const HOLD_FREED_MS: i64 = 10_000;

/// Has mimalloc keep freed pages for [`HOLD_FREED_MS`]. For a process that runs a store with
/// mimalloc as its allocator; without it, this sets an option nothing reads.
pub fn hold_freed_memory() {
    // SAFETY: sets a process-wide integer option, which mimalloc reads atomically.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, HOLD_FREED_MS as _) }
}

/// mimalloc's `mi_option_allow_thp` (its version 3's `mimalloc.h`, counted as for
/// [`PURGE_DELAY`]).
const ALLOW_THP: libmimalloc_sys::mi_option_t = 43;

/// Keeps the process off transparent huge pages from its first allocation on: tells mimalloc
/// not to ask for them and the kernel not to give the process any ([`no_huge_pages`]). Call it
/// before anything allocates (the `spanflow` binary calls it from an `.init_array`
/// constructor): the 6 MiB of huge pages mimalloc mapped for an agent's first allocations
/// stayed resident when huge pages were turned off only in `main`. Allocates nothing. Returns
/// whether the kernel took the flag.
///
/// Huge pages cost both roles. The agent's memory is a few small buffers, and its arenas
/// faulted in 2 MiB at a time made up a quarter of its resident size. The server's batches and
/// flushes free and fault in megabytes every second, and the kernel zeroes a whole 2 MiB page
/// at each fault into memory mimalloc had purged: `clear_page_erms` took 7.5% of a profile of
/// the embedded store's server at 40,000 spans/s, and the server spent about 4% less CPU per
/// span without huge pages (BENCHMARKS.md).
pub fn no_huge_pages_from_start() -> bool {
    // SAFETY: sets a process-wide integer option before or after mimalloc's start; mimalloc
    // reads its options atomically and keeps a value set before it starts.
    unsafe { libmimalloc_sys::mi_option_set(ALLOW_THP, 0) };
    no_huge_pages()
}

/// Keeps the process off transparent huge pages from now on (`prctl(PR_SET_THP_DISABLE)`, which
/// the kernel checks at every fault). Returns whether the kernel took it.
fn no_huge_pages() -> bool {
    // SAFETY: sets a flag of the calling process; no memory is passed.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0 }
}

/// Whether the process is kept off transparent huge pages.
pub fn huge_pages_disabled() -> bool {
    // SAFETY: reads a flag of the calling process; no memory is passed.
    unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1 }
}

/// How long mimalloc keeps freed pages now, in milliseconds.
pub fn freed_memory_hold_ms() -> i64 {
    // SAFETY: reads a process-wide integer option.
    unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) as i64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_have_their_alignment_and_keep_their_bytes_as_they_grow() {
        use std::alloc::{GlobalAlloc, Layout};
        let allocator = Allocator;
        for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
            for size in [align, 3 * align, 24, 100, 1000, 1025, 5000, 70_000, 1 << 21] {
                let Ok(layout) = Layout::from_size_align(size.max(align), align) else {
                    continue;
                };
                // SAFETY: a layout of non-zero size; every block is freed with its layout.
                unsafe {
                    let block = allocator.alloc(layout);
                    assert!(!block.is_null());
                    assert_eq!(block as usize % align, 0, "{layout:?}");
                    for index in 0..layout.size() {
                        *block.add(index) = index as u8;
                    }
                    let grown = allocator.realloc(block, layout, layout.size() * 3 + 7);
                    assert_eq!(grown as usize % align, 0, "{layout:?} grown");
                    for index in 0..layout.size() {
                        assert_eq!(*grown.add(index), index as u8, "{layout:?} byte {index}");
                    }
                    let grown_layout =
                        Layout::from_size_align(layout.size() * 3 + 7, align).unwrap();
                    allocator.dealloc(grown, grown_layout);
                    let zeroed = allocator.alloc_zeroed(layout);
                    assert_eq!(zeroed as usize % align, 0, "{layout:?} zeroed");
                    assert!((0..layout.size()).all(|index| *zeroed.add(index) == 0));
                    allocator.dealloc(zeroed, layout);
                }
            }
        }
    }

    #[test]
    fn the_kernel_can_keep_a_process_off_huge_pages() {
        // A test process of its own under nextest, so the flag touches no other test.
        assert!(no_huge_pages(), "the kernel refused PR_SET_THP_DISABLE");
        assert!(huge_pages_disabled());
    }

    #[test]
    fn the_option_set_for_huge_pages_is_mimallocs_allow_thp() {
        // A test process of its own. mimalloc allows huge pages by default on Linux, and the
        // options around this one default to other values, so this fails if the number moves.
        // SAFETY: reads a process-wide integer option.
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(ALLOW_THP) }, 1);
        assert!(
            no_huge_pages_from_start(),
            "the kernel refused PR_SET_THP_DISABLE"
        );
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(ALLOW_THP) }, 0);
        assert!(huge_pages_disabled());
    }

    #[test]
    fn the_option_set_is_mimallocs_purge_delay() {
        // mimalloc's default purge delay is one second; no other option defaults to 1000, so
        // this fails if the option's number moves in another mimalloc.
        assert_eq!(freed_memory_hold_ms(), 1000);
        hold_freed_memory();
        assert_eq!(freed_memory_hold_ms(), HOLD_FREED_MS);
    }
}
