//! The spanflow agent, one per node: OTLP receivers (HTTP on 38086 and 4318, gRPC on 4317)
//! -> a forward queue bounded in bytes -> a forwarder that hands batches to a server and keeps
//! them until the server says they are stored.
//!
//! Invariant: the agent knows no store and does not decode protobuf payloads fully; it walks
//! them to validate and count spans, and the server does the one decode.

mod forward;
pub mod places;
mod queue;
mod receive;
mod receive_grpc;
mod receive_http;
mod spool;

use std::sync::Arc;

pub use forward::{AgentIdentity, ForwardConfig, Forwarder};
pub use queue::{Batch, ForwardQueue, QueueFull, Receipt};
pub use receive::{
    Accepted, ContentKind, ReceiveError, ReceiveErrorKind, Receiver, Sender, DEFAULT_BODY_TIMEOUT,
};
pub use receive_grpc::TraceService;
pub use receive_http::{
    deepflow_router, otlp_router, DEEPFLOW_TRACES_PATH, MISTAKEN_TRACES_PATH, OTLP_TRACES_PATH,
};
pub use spool::SpoolConfig;

/// The receiving half of an agent and the queue it fills; the caller binds the listeners and
/// runs the [`Forwarder`].
pub struct Agent {
    pub receiver: Arc<Receiver>,
    pub queue: Arc<ForwardQueue>,
}

/// How an agent receives and holds what it accepts.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Cap on a request body after decompression.
    pub max_body_bytes: usize,
    /// Bound on payload bytes held in memory (without a spool: on everything held).
    pub max_queue_bytes: usize,
    /// How long an HTTP client may take to send its body.
    pub body_timeout: std::time::Duration,
    /// Where accepted payloads are kept until a server acknowledges them, if anywhere.
    pub spool: Option<SpoolConfig>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            max_body_bytes: 64 << 20,
            max_queue_bytes: 128 << 20,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            spool: None,
        }
    }
}

impl Agent {
    /// An agent that holds what it accepts in memory only.
    pub fn new(max_body_bytes: usize, max_queue_bytes: usize) -> Agent {
        Agent::open(&AgentConfig {
            max_body_bytes,
            max_queue_bytes,
            ..AgentConfig::default()
        })
        .expect("an agent without a spool opens nothing")
    }

    /// An agent as configured; with a spool, what it holds from before is queued first.
    pub fn open(config: &AgentConfig) -> std::io::Result<Agent> {
        let queue = Arc::new(match &config.spool {
            None => ForwardQueue::new(config.max_queue_bytes),
            Some(spool) => ForwardQueue::with_spool(config.max_queue_bytes, spool)?,
        });
        let receiver = Arc::new(
            Receiver::new(queue.clone(), config.max_body_bytes)
                .with_body_timeout(config.body_timeout),
        );
        Ok(Agent { receiver, queue })
    }

    /// The forwarder of this agent's queue; fails only on unreadable CA certificates.
    pub fn forwarder(
        &self,
        config: ForwardConfig,
        identity: AgentIdentity,
    ) -> Result<Forwarder, reqwest::Error> {
        Forwarder::new(self.queue.clone(), config, identity)
    }
}
