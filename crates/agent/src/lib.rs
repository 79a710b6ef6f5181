//! The spanflow agent, one per node: OTLP receivers (HTTP on 38086 and 4318, gRPC on 4317)
//! -> a forward queue bounded in bytes -> a forwarder that hands batches to a server and keeps
//! them until the server says they are stored.
//!
//! Invariant: the agent knows no store and does not decode protobuf payloads fully; it walks
//! them to validate and count spans, and the server does the one decode.

mod forward;
mod queue;
mod receive;
mod receive_grpc;
mod receive_http;

use std::sync::Arc;

pub use forward::{AgentIdentity, ForwardConfig, Forwarder};
pub use queue::ForwardQueue;
pub use receive::{
    Accepted, ContentKind, ReceiveError, ReceiveErrorKind, Receiver, DEFAULT_BODY_TIMEOUT,
};
pub use receive_grpc::TraceService;
pub use receive_http::{
    deepflow_router, otlp_router, DEEPFLOW_TRACES_PATH, MISTAKEN_TRACES_PATH, OTLP_TRACES_PATH,
};

/// The receiving half of an agent and the queue it fills; the caller binds the listeners and
/// runs the [`Forwarder`].
pub struct Agent {
    pub receiver: Arc<Receiver>,
    pub queue: Arc<ForwardQueue>,
}

impl Agent {
    pub fn new(max_body_bytes: usize, max_queue_bytes: usize) -> Agent {
        Agent::with_body_timeout(max_body_bytes, max_queue_bytes, DEFAULT_BODY_TIMEOUT)
    }

    /// An agent whose HTTP receivers give a client `body_timeout` to send its body.
    pub fn with_body_timeout(
        max_body_bytes: usize,
        max_queue_bytes: usize,
        body_timeout: std::time::Duration,
    ) -> Agent {
        let queue = Arc::new(ForwardQueue::new(max_queue_bytes));
        let receiver =
            Arc::new(Receiver::new(queue.clone(), max_body_bytes).with_body_timeout(body_timeout));
        Agent { receiver, queue }
    }

    pub fn forwarder(&self, config: ForwardConfig, identity: AgentIdentity) -> Forwarder {
        Forwarder::new(self.queue.clone(), config, identity)
    }
}
