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
