//! The forward queue: payloads accepted from clients wait here until a server acknowledges
//! them. It is bounded in bytes, counting both waiting payloads and the batch in flight, so the
//! agent's memory stays bounded whatever the server does; when it is full, receivers answer
//! "try again later" (503 / UNAVAILABLE) instead of accepting data they might lose.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use spanflow_model::metric_names;
use spanflow_transport::Payload;

pub struct ForwardQueue {
    max_bytes: usize,
    state: Mutex<State>,
    notify: tokio::sync::Notify,
}

#[derive(Default)]
struct State {
    waiting: VecDeque<Payload>,
    waiting_bytes: usize,
    in_flight_bytes: usize,
    /// When the oldest waiting payload arrived.
    oldest_at: Option<Instant>,
}

/// The queue had no room for the payload.
#[derive(Debug, PartialEq, Eq)]
pub struct QueueFull {
    pub queued_bytes: usize,
}

impl ForwardQueue {
    pub fn new(max_bytes: usize) -> ForwardQueue {
        ForwardQueue {
            max_bytes,
            state: Mutex::new(State::default()),
            notify: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a payload of at least `n_bytes` would be refused now: checked before the work
    /// of decompressing and walking a body that could not be queued anyway. `push` decides.
    pub fn has_no_room_for(&self, n_bytes: usize) -> Option<QueueFull> {
        let state = self.lock();
        let queued_bytes = state.waiting_bytes + state.in_flight_bytes;
        (queued_bytes > 0 && queued_bytes + n_bytes > self.max_bytes)
            .then_some(QueueFull { queued_bytes })
    }

    /// Queues a payload, or refuses it when it would take the queue past its bound. A payload
    /// larger than the whole bound is still taken when the queue is empty, so that a bound set
    /// below the body cap cannot refuse a request forever.
    pub fn push(&self, payload: Payload) -> Result<(), QueueFull> {
        let n_bytes = payload.otlp.len();
        let mut state = self.lock();
        let queued_bytes = state.waiting_bytes + state.in_flight_bytes;
        if queued_bytes > 0 && queued_bytes + n_bytes > self.max_bytes {
            return Err(QueueFull { queued_bytes });
        }
        state.waiting_bytes += n_bytes;
        state.oldest_at.get_or_insert_with(Instant::now);
        state.waiting.push_back(payload);
        let queued_bytes = state.waiting_bytes + state.in_flight_bytes;
        drop(state);
        metrics::gauge!(metric_names::AGENT_QUEUE_BYTES).set(queued_bytes as f64);
        self.notify.notify_one();
        Ok(())
    }

    /// Waits for the next batch: as soon as `max_batch_bytes` are waiting, or when the oldest
    /// waiting payload has waited `flush_interval`. The batch's bytes count as in flight until
    /// [`ForwardQueue::release`].
    pub async fn next_batch(
        &self,
        max_batch_bytes: usize,
        flush_interval: Duration,
    ) -> Vec<Payload> {
        loop {
            let notified = self.notify.notified();
            let wait = {
                let mut state = self.lock();
                match state.oldest_at {
                    None => None,
                    Some(oldest_at) => {
                        let due = oldest_at + flush_interval;
                        if state.waiting_bytes >= max_batch_bytes || Instant::now() >= due {
                            return Self::cut(&mut state, max_batch_bytes);
                        }
                        Some(due)
                    }
                }
            };
            match wait {
                None => notified.await,
                Some(due) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(due.into()) => {}
                    }
                }
            }
        }
    }

    /// Takes whatever is waiting, for a last send at shutdown.
    pub fn take_all(&self) -> Vec<Payload> {
        let mut state = self.lock();
        Self::cut(&mut state, usize::MAX)
    }

    fn cut(state: &mut State, max_batch_bytes: usize) -> Vec<Payload> {
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        while let Some(payload) = state.waiting.front() {
            let n_bytes = payload.otlp.len();
            if !batch.is_empty() && batch_bytes + n_bytes > max_batch_bytes {
                break;
            }
            batch_bytes += n_bytes;
            batch.extend(state.waiting.pop_front());
        }
        state.waiting_bytes -= batch_bytes;
        state.in_flight_bytes += batch_bytes;
        state.oldest_at = if state.waiting.is_empty() {
            None
        } else {
            // What is left is due at once: it has waited at least as long as what was cut.
            state.oldest_at
        };
        batch
    }

    /// Frees the room a batch took, once a server acknowledged or refused it.
    pub fn release(&self, n_bytes: usize) {
        let mut state = self.lock();
        state.in_flight_bytes = state.in_flight_bytes.saturating_sub(n_bytes);
        let queued_bytes = state.waiting_bytes + state.in_flight_bytes;
        drop(state);
        metrics::gauge!(metric_names::AGENT_QUEUE_BYTES).set(queued_bytes as f64);
    }

    /// Bytes waiting plus bytes in flight.
    pub fn queued_bytes(&self) -> usize {
        let state = self.lock();
        state.waiting_bytes + state.in_flight_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(n_bytes: usize) -> Payload {
        Payload {
            otlp: vec![0u8; n_bytes].into(),
            n_spans: 1,
            ..Default::default()
        }
    }

    #[test]
    fn a_full_queue_refuses_and_frees_room_on_release() {
        let queue = ForwardQueue::new(100);
        queue.push(payload(60)).unwrap();
        assert_eq!(queue.push(payload(60)), Err(QueueFull { queued_bytes: 60 }));
        let batch = queue.take_all();
        assert_eq!(batch.len(), 1);
        // In flight still counts against the bound.
        assert!(queue.push(payload(60)).is_err());
        queue.release(60);
        queue.push(payload(60)).unwrap();
    }

    #[test]
    fn room_is_judged_before_the_work_as_push_would_judge_it() {
        let queue = ForwardQueue::new(100);
        assert_eq!(
            queue.has_no_room_for(500),
            None,
            "an empty queue takes anything"
        );
        queue.push(payload(60)).unwrap();
        assert_eq!(queue.has_no_room_for(40), None);
        assert_eq!(
            queue.has_no_room_for(41),
            Some(QueueFull { queued_bytes: 60 })
        );
        queue.take_all();
        queue.release(60);
        assert_eq!(queue.has_no_room_for(41), None);
    }

    #[test]
    fn an_oversized_payload_is_taken_into_an_empty_queue() {
        let queue = ForwardQueue::new(10);
        queue.push(payload(50)).unwrap();
        assert!(queue.push(payload(1)).is_err());
    }

    #[tokio::test]
    async fn batches_are_cut_by_size_at_once_and_by_time_otherwise() {
        let queue = ForwardQueue::new(1 << 20);
        for _ in 0..5 {
            queue.push(payload(100)).unwrap();
        }
        let started = Instant::now();
        let batch = queue.next_batch(250, Duration::from_secs(60)).await;
        assert_eq!(batch.len(), 2, "cut at the size bound");
        assert!(started.elapsed() < Duration::from_secs(5));
        let batch = queue.next_batch(1 << 20, Duration::from_millis(50)).await;
        assert_eq!(batch.len(), 3, "the rest after the flush interval");
        assert_eq!(queue.queued_bytes(), 500);
    }
}
