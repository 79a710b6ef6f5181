//! The forward queue: payloads accepted from clients wait here until a server acknowledges
//! them. Without a spool it lives in memory, bounded in bytes (waiting payloads and the batch
//! in flight together), and when it is full receivers answer "try again later" (503 /
//! UNAVAILABLE) instead of accepting data they might lose. With a spool, every payload is on
//! disk before it is accepted; memory then holds only what fits in its bound (the rest is
//! read back from the spool when its turn comes), and the spool's byte bound decides when
//! clients are told to wait.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use spanflow_model::metric_names;
use spanflow_transport::Payload;

use crate::spool::{self, Location, Spool, SpoolConfig};

pub struct ForwardQueue {
    /// Bound on payload bytes held in memory.
    max_bytes: usize,
    /// Where spooled records are read back from, when there is a spool.
    spool_dir: Option<PathBuf>,
    state: Mutex<State>,
    notify: tokio::sync::Notify,
}

/// One accepted payload: in memory, on disk, or both.
struct Entry {
    payload: Option<Payload>,
    spooled: Option<Location>,
}

impl Entry {
    /// Bytes of OTLP, as batch sizes count them.
    fn n_bytes(&self) -> usize {
        match (&self.payload, &self.spooled) {
            (Some(payload), _) => payload.otlp.len(),
            (None, Some(location)) => location.len as usize,
            (None, None) => 0,
        }
    }

    /// Bytes this entry holds in memory.
    fn memory_bytes(&self) -> usize {
        self.payload
            .as_ref()
            .map_or(0, |payload| payload.otlp.len())
    }
}

#[derive(Default)]
struct State {
    waiting: VecDeque<Entry>,
    /// Bytes of OTLP waiting, as batch sizes count them.
    waiting_bytes: usize,
    /// Bytes of payloads in memory, waiting or in flight.
    memory_bytes: usize,
    /// When the oldest waiting payload arrived.
    oldest_at: Option<Instant>,
    spool: Option<Spool>,
}

/// Why the queue refused a payload; receivers tell the client to retry later.
#[derive(Debug, PartialEq, Eq)]
pub enum QueueFull {
    /// The bound is reached: memory, or the spool's bytes on disk.
    Full { queued_bytes: u64, spooled: bool },
    /// The spool could not write (a full or failing disk).
    SpoolFailed(String),
}

impl std::fmt::Display for QueueFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueFull::Full {
                queued_bytes,
                spooled: false,
            } => write!(
                f,
                "the agent's forward queue is full ({queued_bytes} bytes waiting for the server); retry later"
            ),
            QueueFull::Full {
                queued_bytes,
                spooled: true,
            } => write!(
                f,
                "the agent's spool is full ({queued_bytes} bytes waiting for the server); retry later"
            ),
            QueueFull::SpoolFailed(error) => {
                write!(f, "the agent could not write its spool ({error}); retry later")
            }
        }
    }
}

/// A batch cut from the queue, and what to free once a server has taken it.
pub struct Batch {
    pub payloads: Vec<Payload>,
    pub receipt: Receipt,
}

/// What a batch holds of the queue's bounds.
#[derive(Debug, Default)]
pub struct Receipt {
    memory_bytes: usize,
    /// The batch's last spooled record, and the spool bytes of all its records.
    spooled: Option<(Location, u64)>,
}

impl ForwardQueue {
    /// A queue in memory, bounded at `max_bytes`.
    pub fn new(max_bytes: usize) -> ForwardQueue {
        ForwardQueue {
            max_bytes,
            spool_dir: None,
            state: Mutex::new(State::default()),
            notify: tokio::sync::Notify::new(),
        }
    }

    /// A queue backed by a spool: what the spool holds from before (accepted, never
    /// acknowledged) is queued first, oldest first.
    pub fn with_spool(
        max_memory_bytes: usize,
        config: &SpoolConfig,
    ) -> std::io::Result<ForwardQueue> {
        let (spool, recovered) = Spool::open(config)?;
        if recovered.damaged > 0 {
            metrics::counter!(metric_names::AGENT_SPOOL_DAMAGED).increment(recovered.damaged);
        }
        if !recovered.records.is_empty() {
            metrics::counter!(metric_names::AGENT_SPOOL_RECOVERED)
                .increment(recovered.records.len() as u64);
            tracing::info!(
                payloads = recovered.records.len(),
                bytes = spool.held_bytes(),
                spool = %config.dir.display(),
                "payloads accepted before the last stop are in the spool; sending them first"
            );
        }
        let state = State {
            oldest_at: (!recovered.records.is_empty()).then(Instant::now),
            waiting_bytes: recovered
                .records
                .iter()
                .map(|location| location.len as usize)
                .sum(),
            waiting: recovered
                .records
                .into_iter()
                .map(|location| Entry {
                    payload: None,
                    spooled: Some(location),
                })
                .collect(),
            memory_bytes: 0,
            spool: Some(spool),
        };
        Ok(ForwardQueue {
            max_bytes: max_memory_bytes,
            spool_dir: Some(config.dir.clone()),
            state: Mutex::new(state),
            notify: tokio::sync::Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn full(state: &State, max_bytes: usize, n_bytes: usize) -> Option<QueueFull> {
        match &state.spool {
            Some(spool) => spool.is_full_for(n_bytes as u64).then(|| QueueFull::Full {
                queued_bytes: spool.held_bytes(),
                spooled: true,
            }),
            None => (state.memory_bytes > 0 && state.memory_bytes + n_bytes > max_bytes).then_some(
                QueueFull::Full {
                    queued_bytes: state.memory_bytes as u64,
                    spooled: false,
                },
            ),
        }
    }

    /// Whether a payload of at least `n_bytes` would be refused now: checked before the work
    /// of decompressing and walking a body that could not be queued anyway. `push` decides.
    pub fn has_no_room_for(&self, n_bytes: usize) -> Option<QueueFull> {
        Self::full(&self.lock(), self.max_bytes, n_bytes)
    }

    /// Queues a payload (on disk first, with a spool), or refuses it when it would take the
    /// queue past its bound. A payload larger than the whole bound is still taken when the
    /// queue is empty, so that a bound set below the body cap cannot refuse a request forever.
    pub fn push(&self, payload: Payload) -> Result<(), QueueFull> {
        let n_bytes = payload.otlp.len();
        let mut state = self.lock();
        if let Some(full) = Self::full(&state, self.max_bytes, n_bytes) {
            return Err(full);
        }
        let entry = match &mut state.spool {
            None => Entry {
                payload: Some(payload),
                spooled: None,
            },
            Some(spool) => {
                let location = spool
                    .append(&payload)
                    .map_err(|error| QueueFull::SpoolFailed(error.to_string()))?;
                // What memory cannot hold waits on disk alone.
                let in_memory =
                    state.memory_bytes == 0 || state.memory_bytes + n_bytes <= self.max_bytes;
                Entry {
                    payload: in_memory.then_some(payload),
                    spooled: Some(location),
                }
            }
        };
        state.memory_bytes += entry.memory_bytes();
        state.oldest_at.get_or_insert_with(Instant::now);
        state.waiting_bytes += entry.n_bytes();
        state.waiting.push_back(entry);
        let memory_bytes = state.memory_bytes;
        drop(state);
        metrics::gauge!(metric_names::AGENT_QUEUE_BYTES).set(memory_bytes as f64);
        self.notify.notify_one();
        Ok(())
    }

    /// Waits for the next batch: as soon as `max_batch_bytes` are waiting, or when the oldest
    /// waiting payload has waited `flush_interval`. The batch holds its room in the queue
    /// until [`ForwardQueue::release`].
    pub async fn next_batch(&self, max_batch_bytes: usize, flush_interval: Duration) -> Batch {
        loop {
            let notified = self.notify.notified();
            let wait = {
                let mut state = self.lock();
                match state.oldest_at {
                    None => Err(None),
                    Some(oldest_at) => {
                        let due = oldest_at + flush_interval;
                        if state.waiting_bytes >= max_batch_bytes || Instant::now() >= due {
                            Ok(Self::cut(&mut state, max_batch_bytes))
                        } else {
                            Err(Some(due))
                        }
                    }
                }
            };
            match wait {
                Ok(entries) => return self.load(entries).await,
                Err(None) => notified.await,
                Err(Some(due)) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(due.into()) => {}
                    }
                }
            }
        }
    }

    /// Takes whatever is waiting, for a last send at shutdown.
    pub async fn take_all(&self) -> Batch {
        let entries = {
            let mut state = self.lock();
            Self::cut(&mut state, usize::MAX)
        };
        self.load(entries).await
    }

    fn cut(state: &mut State, max_batch_bytes: usize) -> Vec<Entry> {
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        while let Some(entry) = state.waiting.front() {
            let n_bytes = entry.n_bytes();
            if !batch.is_empty() && batch_bytes + n_bytes > max_batch_bytes {
                break;
            }
            batch_bytes += n_bytes;
            batch.extend(state.waiting.pop_front());
        }
        state.waiting_bytes -= batch_bytes;
        state.oldest_at = if state.waiting.is_empty() {
            None
        } else {
            // What is left is due at once: it has waited at least as long as what was cut.
            state.oldest_at
        };
        batch
    }

    /// Reads back the payloads that wait on disk alone.
    async fn load(&self, entries: Vec<Entry>) -> Batch {
        let mut receipt = Receipt::default();
        for entry in &entries {
            receipt.memory_bytes += entry.memory_bytes();
            if let Some(location) = entry.spooled {
                let spooled_bytes = receipt.spooled.map_or(0, |(_, n_bytes)| n_bytes);
                receipt.spooled = Some((location, spooled_bytes + location.record_bytes()));
            }
        }
        let on_disk = entries.iter().any(|entry| entry.payload.is_none());
        let payloads = match (&self.spool_dir, on_disk) {
            (Some(dir), true) => {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || Self::read_back(&dir, entries))
                    .await
                    .unwrap_or_default()
            }
            _ => entries
                .into_iter()
                .filter_map(|entry| entry.payload)
                .collect(),
        };
        Batch { payloads, receipt }
    }

    fn read_back(dir: &std::path::Path, entries: Vec<Entry>) -> Vec<Payload> {
        entries
            .into_iter()
            .filter_map(|entry| match (entry.payload, entry.spooled) {
                (Some(payload), _) => Some(payload),
                (None, Some(location)) => match spool::read(dir, location) {
                    Ok(payload) => Some(payload),
                    Err(error) => {
                        metrics::counter!(metric_names::AGENT_SPOOL_DAMAGED).increment(1);
                        tracing::error!(%error, "a spooled payload cannot be read back; it is lost");
                        None
                    }
                },
                (None, None) => None,
            })
            .collect()
    }

    /// Frees the room a batch took, once a server acknowledged or refused it.
    pub fn release(&self, receipt: Receipt) {
        let mut state = self.lock();
        state.memory_bytes = state.memory_bytes.saturating_sub(receipt.memory_bytes);
        let memory_bytes = state.memory_bytes;
        if let (Some(spool), Some((last, n_bytes))) = (&mut state.spool, receipt.spooled) {
            spool.acknowledge(last, n_bytes);
        }
        drop(state);
        metrics::gauge!(metric_names::AGENT_QUEUE_BYTES).set(memory_bytes as f64);
    }

    /// Fsyncs what the spool appended since the last call, records what was acknowledged and
    /// deletes the segments that frees, on the blocking pool (without holding the queue).
    pub async fn sync_spool(&self) {
        let upkeep = match self.lock().spool.as_mut().map(Spool::take_upkeep) {
            None => return,
            Some(Ok(upkeep)) => upkeep,
            Some(Err(error)) => {
                tracing::warn!(%error, "cannot fsync the spool");
                return;
            }
        };
        if upkeep.is_empty() {
            return;
        }
        let done = tokio::task::spawn_blocking(move || upkeep.run()).await;
        if let Ok(Err(error)) = done {
            // What was acknowledged is delivered; at worst it is sent again after a restart.
            tracing::warn!(%error, "spool upkeep (fsync, acknowledged mark, deletions) failed");
        }
    }

    /// Whether payloads are spooled to disk.
    pub fn is_spooled(&self) -> bool {
        self.spool_dir.is_some()
    }

    /// Bytes of payloads held in memory, waiting or in flight.
    pub fn queued_bytes(&self) -> usize {
        self.lock().memory_bytes
    }

    /// Bytes of spool records not yet acknowledged.
    pub fn spooled_bytes(&self) -> u64 {
        self.lock().spool.as_ref().map_or(0, Spool::held_bytes)
    }

    /// Payloads waiting (not in flight).
    pub fn n_waiting(&self) -> usize {
        self.lock().waiting.len()
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

    fn full(queued_bytes: u64) -> Option<QueueFull> {
        Some(QueueFull::Full {
            queued_bytes,
            spooled: false,
        })
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_frees_room_on_release() {
        let queue = ForwardQueue::new(100);
        queue.push(payload(60)).unwrap();
        assert_eq!(queue.push(payload(60)).err(), full(60));
        let batch = queue.take_all().await;
        assert_eq!(batch.payloads.len(), 1);
        // In flight still counts against the bound.
        assert!(queue.push(payload(60)).is_err());
        queue.release(batch.receipt);
        queue.push(payload(60)).unwrap();
    }

    #[tokio::test]
    async fn room_is_judged_before_the_work_as_push_would_judge_it() {
        let queue = ForwardQueue::new(100);
        assert_eq!(
            queue.has_no_room_for(500),
            None,
            "an empty queue takes anything"
        );
        queue.push(payload(60)).unwrap();
        assert_eq!(queue.has_no_room_for(40), None);
        assert_eq!(queue.has_no_room_for(41), full(60));
        let batch = queue.take_all().await;
        queue.release(batch.receipt);
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
        assert_eq!(batch.payloads.len(), 2, "cut at the size bound");
        assert!(started.elapsed() < Duration::from_secs(5));
        let batch = queue.next_batch(1 << 20, Duration::from_millis(50)).await;
        assert_eq!(batch.payloads.len(), 3, "the rest after the flush interval");
        assert_eq!(queue.queued_bytes(), 500);
    }

    fn numbered(n: u8) -> Payload {
        Payload {
            otlp: vec![n; 100].into(),
            n_spans: u32::from(n),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_spooled_queue_holds_past_memory_on_disk_and_keeps_the_order() {
        let dir = tempfile::tempdir().unwrap();
        let config = SpoolConfig::new(dir.path(), 1_150);
        let queue = ForwardQueue::with_spool(250, &config).unwrap();
        for n in 1..=10 {
            queue.push(numbered(n)).unwrap();
        }
        assert_eq!(queue.queued_bytes(), 200, "memory holds only its bound");
        assert!(
            matches!(
                queue.push(numbered(11)),
                Err(QueueFull::Full { spooled: true, .. })
            ),
            "past the spool's bound clients are told to wait"
        );
        let batch = queue.next_batch(450, Duration::ZERO).await;
        let order: Vec<u32> = batch.payloads.iter().map(|p| p.n_spans).collect();
        assert_eq!(
            order,
            vec![1, 2, 3, 4],
            "memory first, then read back from disk"
        );
        assert_eq!(batch.payloads[3], numbered(4));
        queue.release(batch.receipt);
        assert_eq!(queue.queued_bytes(), 0);
        queue.push(numbered(11)).unwrap();
    }

    #[tokio::test]
    async fn what_was_accepted_and_not_acknowledged_comes_back_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let config = SpoolConfig::new(dir.path(), 1 << 20);
        {
            let queue = ForwardQueue::with_spool(1 << 20, &config).unwrap();
            for n in 1..=5 {
                queue.push(numbered(n)).unwrap();
            }
            let acknowledged = queue.next_batch(250, Duration::ZERO).await;
            assert_eq!(acknowledged.payloads.len(), 2);
            queue.release(acknowledged.receipt);
            // The mark is written by the spool's upkeep (every second, and at a stop).
            queue.sync_spool().await;
            // In flight when the agent stops: not acknowledged, so sent again.
            let _in_flight = queue.next_batch(100, Duration::ZERO).await;
        }
        let queue = ForwardQueue::with_spool(1 << 20, &config).unwrap();
        assert_eq!(queue.n_waiting(), 3);
        let batch = queue.take_all().await;
        let order: Vec<u32> = batch.payloads.iter().map(|p| p.n_spans).collect();
        assert_eq!(order, vec![3, 4, 5]);
        queue.release(batch.receipt);
        drop(queue);
        // Killed before the upkeep wrote the mark: acknowledged, and sent again, which the
        // server stores once.
        let queue = ForwardQueue::with_spool(1 << 20, &config).unwrap();
        assert_eq!(queue.n_waiting(), 3);
        let batch = queue.take_all().await;
        queue.release(batch.receipt);
        queue.sync_spool().await;
        drop(queue);
        let queue = ForwardQueue::with_spool(1 << 20, &config).unwrap();
        assert_eq!(
            queue.n_waiting(),
            0,
            "acknowledged payloads are gone for good"
        );
    }
}
