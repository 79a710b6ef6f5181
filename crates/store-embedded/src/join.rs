//! Two pieces of blocking work at once: one on the calling thread, the other on one of a few
//! long-lived helper threads.
//!
//! A trace lookup reads its columns in two halves. Starting a thread per lookup for the second
//! half cost more than the thread: a new thread's allocations come from a fresh allocator heap,
//! whose pages the kernel faults in and zeroes. Helpers live as long as the process and keep
//! theirs warm. The helper's piece never waits on anything, and the caller runs it itself when
//! no helper has started it by the time its own piece is done, so a busy pool only costs the
//! parallelism, never a wait behind other lookups.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, LazyLock, Mutex};

type Task = Box<dyn FnOnce() + Send>;

const HELPER_THREADS: usize = 2;

static HELPERS: LazyLock<Sender<Task>> = LazyLock::new(|| {
    let (sender, receiver) = channel::<Task>();
    let receiver = Arc::new(Mutex::new(receiver));
    for index in 0..HELPER_THREADS {
        let receiver = receiver.clone();
        // Without helpers, every piece runs on its caller's thread.
        let _ = std::thread::Builder::new()
            .name(format!("spanflow-lookup-{index}"))
            .spawn(move || serve(&receiver));
    }
    sender
});

fn serve(receiver: &Mutex<Receiver<Task>>) {
    loop {
        let task = match receiver.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        match task {
            // A task catches its own panics; see `join`.
            Ok(task) => task(),
            Err(_) => return,
        }
    }
}

/// The other piece's state: the piece until someone starts it, then its outcome.
struct Slot<B> {
    piece: Mutex<Option<Box<dyn FnOnce() -> B + Send>>>,
    outcome: Mutex<Option<std::thread::Result<B>>>,
    done: Condvar,
}

/// Runs `here` on this thread and `other` on a helper thread (or on this one, after `here`, if
/// no helper got to it first), and returns both results. A panic in `other` comes back as
/// `Err`, as from a joined thread.
pub fn join<A, B: Send + 'static>(
    here: impl FnOnce() -> A,
    other: impl FnOnce() -> B + Send + 'static,
) -> (A, std::thread::Result<B>) {
    let slot = Arc::new(Slot {
        piece: Mutex::new(Some(Box::new(other))),
        outcome: Mutex::new(None),
        done: Condvar::new(),
    });
    let task: Task = {
        let slot = slot.clone();
        Box::new(move || {
            let piece = slot.piece.lock().ok().and_then(|mut piece| piece.take());
            if let Some(piece) = piece {
                let outcome = std::panic::catch_unwind(AssertUnwindSafe(piece));
                if let Ok(mut slot_outcome) = slot.outcome.lock() {
                    *slot_outcome = Some(outcome);
                }
                slot.done.notify_one();
            }
        })
    };
    // A send fails only when no helper thread could be started.
    let _ = HELPERS.send(task);
    let a = here();
    let unstarted = slot.piece.lock().ok().and_then(|mut piece| piece.take());
    let b = match unstarted {
        Some(piece) => std::panic::catch_unwind(AssertUnwindSafe(piece)),
        None => wait(&slot),
    };
    (a, b)
}

fn wait<B>(slot: &Slot<B>) -> std::thread::Result<B> {
    let poisoned =
        || -> std::thread::Result<B> { Err(Box::new("a lookup helper's lock was poisoned")) };
    let Ok(mut outcome) = slot.outcome.lock() else {
        return poisoned();
    };
    loop {
        if let Some(outcome) = outcome.take() {
            return outcome;
        }
        outcome = match slot.done.wait(outcome) {
            Ok(outcome) => outcome,
            Err(_) => return poisoned(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_pieces_run_and_a_panic_comes_back_as_an_error() {
        let (a, b) = join(|| 1 + 1, || "other".to_string());
        assert_eq!((a, b.unwrap()), (2, "other".to_string()));
        let (a, b) = join(|| 3, || -> u8 { panic!("a piece that fails") });
        assert_eq!(a, 3);
        assert!(b.is_err());
        // The helpers outlive a panicking piece.
        let (_, b) = join(|| (), || std::thread::current().name().map(String::from));
        assert!(b.is_ok());
    }

    #[test]
    fn many_callers_at_once_all_finish() {
        let threads: Vec<_> = (0..16)
            .map(|n| {
                std::thread::spawn(move || {
                    let (a, b) = join(
                        move || n * 2,
                        move || {
                            std::thread::sleep(std::time::Duration::from_millis(5));
                            n * 3
                        },
                    );
                    (a, b.unwrap())
                })
            })
            .collect();
        for (n, thread) in threads.into_iter().enumerate() {
            assert_eq!(thread.join().unwrap(), (n * 2, n * 3));
        }
    }
}
