//! How the processes that run a store hold memory they free.
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

/// How long mimalloc keeps freed pages now, in milliseconds.
pub fn freed_memory_hold_ms() -> i64 {
    // SAFETY: reads a process-wide integer option.
    unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) as i64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_set_is_mimallocs_purge_delay() {
        // mimalloc's default purge delay is one second; no other option defaults to 1000, so
        // this fails if the option's number moves in another mimalloc.
        assert_eq!(freed_memory_hold_ms(), 1000);
        hold_freed_memory();
        assert_eq!(freed_memory_hold_ms(), HOLD_FREED_MS);
    }
}
