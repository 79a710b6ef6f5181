//! Every metric spanflow exports, named in one place: `spanflow_<name>_<unit>_total` for
//! counters. Crates record with these constants; the binary describes them from [`ALL`].

/// Counter: OTLP requests received by the agent, by `transport` and `outcome`.
pub const AGENT_REQUESTS: &str = "spanflow_agent_requests_total";
/// Counter: spans the agent accepted (answered with success) and queued for the server.
pub const AGENT_SPANS_ACCEPTED: &str = "spanflow_agent_spans_accepted_total";
/// Counter: spans the agent rejected one by one (partial success), by `reason`.
pub const AGENT_SPANS_REJECTED: &str = "spanflow_agent_spans_rejected_total";
/// Counter: request body bytes received by the agent, before decompression.
pub const AGENT_RECEIVED_BYTES: &str = "spanflow_agent_received_bytes_total";
/// Counter: requests refused because the forward queue was full (answered 503/UNAVAILABLE).
pub const AGENT_REQUESTS_THROTTLED: &str = "spanflow_agent_requests_throttled_total";
/// Gauge: bytes of OTLP payloads waiting in the agent for a server acknowledgement.
pub const AGENT_QUEUE_BYTES: &str = "spanflow_agent_queue_bytes";
/// Gauge: bytes of payloads in the agent's spool on disk, waiting for a server
/// acknowledgement.
pub const AGENT_SPOOL_BYTES: &str = "spanflow_agent_spool_bytes";
/// Counter: payloads found in the spool at start (accepted before a restart, not yet
/// acknowledged) and sent again.
pub const AGENT_SPOOL_RECOVERED: &str = "spanflow_agent_spool_recovered_payloads_total";
/// Counter: spool records found damaged (a torn write, a bad checksum) and skipped.
pub const AGENT_SPOOL_DAMAGED: &str = "spanflow_agent_spool_damaged_records_total";
/// Counter: batches the agent sent and a server acknowledged.
pub const AGENT_BATCHES_ACKED: &str = "spanflow_agent_batches_acked_total";
/// Counter: spans a server acknowledged as stored.
pub const AGENT_SPANS_FORWARDED: &str = "spanflow_agent_spans_forwarded_total";
/// Counter: failed attempts to send a batch (the batch is kept and sent again).
pub const AGENT_FORWARD_RETRIES: &str = "spanflow_agent_forward_retries_total";
/// Counter: batches a server refused as malformed; they cannot succeed on a resend.
pub const AGENT_BATCHES_REFUSED: &str = "spanflow_agent_batches_refused_total";
/// Counter: spans lost inside a batch a server refused as malformed.
pub const AGENT_SPANS_REFUSED: &str = "spanflow_agent_spans_refused_total";

/// Counter: batches the server received from agents, by `outcome`.
pub const SERVER_BATCHES: &str = "spanflow_server_batches_total";
/// Counter: spans the server mapped to rows and stored.
pub const SERVER_SPANS_STORED: &str = "spanflow_server_spans_stored_total";
/// Counter: spans the server could not map (bad ids that slipped past an agent).
pub const SERVER_SPANS_REJECTED: &str = "spanflow_server_spans_rejected_total";
/// Counter: spans stored with attributes, events or links past a limit dropped (and counted
/// in the row), or strings past a limit shortened (and named in `spanflow.truncated`).
pub const SERVER_SPANS_LIMITED: &str = "spanflow_server_spans_limited_total";
/// Counter, by `kind`: Kubernetes watch events the agent applied (pods, services, nodes,
/// replicasets, jobs).
pub const AGENT_K8S_EVENTS: &str = "spanflow_agent_k8s_events_total";
/// Counter, by `kind`: Kubernetes watch errors (a 410 Gone that forces a relist included);
/// the watch retries with backoff.
pub const AGENT_K8S_WATCH_ERRORS: &str = "spanflow_agent_k8s_watch_errors_total";
/// Gauge: entries of the server's address-to-place map (pods, services, nodes, hosts).
pub const SERVER_PLACES: &str = "spanflow_server_places";
/// Counter: place records refused: an address that does not parse, or the map is full.
pub const SERVER_PLACES_REFUSED: &str = "spanflow_server_places_refused_total";
/// Counter: payloads inside a batch that were not decodable OTLP.
pub const SERVER_PAYLOADS_REJECTED: &str = "spanflow_server_payloads_rejected_total";

/// Counter: spans the store dropped to stay within its bounds (oldest first).
pub const STORE_SPANS_EVICTED: &str = "spanflow_store_spans_evicted_total";
/// Counter: rows the embedded store moved from its buffer into Parquet files.
pub const STORE_ROWS_FLUSHED: &str = "spanflow_store_rows_flushed_total";
/// Counter: rows dropped because their partition passed the retention age.
pub const STORE_ROWS_EXPIRED: &str = "spanflow_store_rows_expired_total";
/// Counter: writes the embedded store refused because its buffer was full (answered 503).
pub const STORE_WRITES_THROTTLED: &str = "spanflow_store_writes_throttled_total";
/// Gauge: spans the store holds.
pub const STORE_SPANS: &str = "spanflow_store_spans";
/// Counter: bytes the embedded store's write-ahead log wrote and fsynced.
pub const STORE_WAL_BYTES: &str = "spanflow_store_wal_bytes_total";
/// Counter: the write-ahead log's fsyncs (one per group commit of waiting writes).
pub const STORE_WAL_SYNCS: &str = "spanflow_store_wal_syncs_total";

/// Counter: span rows ClickHouse accepted.
pub const CLICKHOUSE_ROWS_INSERTED: &str = "spanflow_clickhouse_rows_inserted_total";
/// Counter: inserts ClickHouse did not accept; each is tried again.
pub const CLICKHOUSE_INSERT_FAILURES: &str = "spanflow_clickhouse_insert_failures_total";
/// Gauge: encoded bytes waiting for ClickHouse to accept them.
pub const CLICKHOUSE_BUFFER_BYTES: &str = "spanflow_clickhouse_buffer_bytes";
/// Counter: writes answered as retryable because ClickHouse had not accepted them in time.
pub const CLICKHOUSE_WRITES_TIMED_OUT: &str = "spanflow_clickhouse_writes_timed_out_total";
/// Counter: inserts given up because every write in them had timed out (their senders resend).
pub const CLICKHOUSE_INSERTS_ABANDONED: &str = "spanflow_clickhouse_inserts_abandoned_total";

/// Counter: query API requests, by `route` and `status`.
pub const API_REQUESTS: &str = "spanflow_api_requests_total";

/// Counter: requests refused for a missing or wrong bearer token, by `port`.
pub const AUTH_REFUSED: &str = "spanflow_auth_refused_total";

/// Counter: connections refused because a port had its most open connections, by `port`.
pub const CONNECTIONS_REFUSED: &str = "spanflow_connections_refused_total";

/// How a metric is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

/// Every metric with its kind and help text.
pub const ALL: &[(&str, MetricKind, &str)] = &[
    (
        AGENT_K8S_EVENTS,
        MetricKind::Counter,
        "Kubernetes watch events the agent applied to its place book, by kind",
    ),
    (
        AGENT_K8S_WATCH_ERRORS,
        MetricKind::Counter,
        "Kubernetes watch errors, by kind; the watch retries with backoff",
    ),
    (
        SERVER_PLACES,
        MetricKind::Gauge,
        "entries of the address-to-place map: pods, services, nodes and hosts by IP",
    ),
    (
        SERVER_PLACES_REFUSED,
        MetricKind::Counter,
        "place records refused: an address that does not parse, or the map is full",
    ),
    (
        SERVER_SPANS_LIMITED,
        MetricKind::Counter,
        "spans stored with what went past a span limit dropped and counted, or shortened and marked",
    ),
    (
        AGENT_SPOOL_BYTES,
        MetricKind::Gauge,
        "Bytes of payloads in the agent's spool on disk, waiting for a server acknowledgement",
    ),
    (
        AGENT_SPOOL_RECOVERED,
        MetricKind::Counter,
        "Payloads found in the spool at start and sent again",
    ),
    (
        AGENT_SPOOL_DAMAGED,
        MetricKind::Counter,
        "Spool records found damaged and skipped",
    ),
    (
        AGENT_REQUESTS,
        MetricKind::Counter,
        "OTLP requests received by the agent, by transport and outcome",
    ),
    (
        AGENT_SPANS_ACCEPTED,
        MetricKind::Counter,
        "spans the agent accepted and queued for the server",
    ),
    (
        AGENT_SPANS_REJECTED,
        MetricKind::Counter,
        "spans the agent rejected one by one (partial success)",
    ),
    (
        AGENT_RECEIVED_BYTES,
        MetricKind::Counter,
        "request body bytes received by the agent before decompression",
    ),
    (
        AGENT_REQUESTS_THROTTLED,
        MetricKind::Counter,
        "requests refused because the forward queue was full",
    ),
    (
        AGENT_QUEUE_BYTES,
        MetricKind::Gauge,
        "bytes waiting in the agent for a server acknowledgement",
    ),
    (
        AGENT_BATCHES_ACKED,
        MetricKind::Counter,
        "batches a server acknowledged as stored",
    ),
    (
        AGENT_SPANS_FORWARDED,
        MetricKind::Counter,
        "spans a server acknowledged as stored",
    ),
    (
        AGENT_FORWARD_RETRIES,
        MetricKind::Counter,
        "failed attempts to send a batch; the batch is sent again",
    ),
    (
        AGENT_BATCHES_REFUSED,
        MetricKind::Counter,
        "batches a server refused as malformed",
    ),
    (
        AGENT_SPANS_REFUSED,
        MetricKind::Counter,
        "spans lost in batches a server refused as malformed",
    ),
    (
        SERVER_BATCHES,
        MetricKind::Counter,
        "batches the server received from agents, by outcome",
    ),
    (
        SERVER_SPANS_STORED,
        MetricKind::Counter,
        "spans the server stored",
    ),
    (
        SERVER_SPANS_REJECTED,
        MetricKind::Counter,
        "spans the server could not map to rows",
    ),
    (
        SERVER_PAYLOADS_REJECTED,
        MetricKind::Counter,
        "payloads in agent batches that were not decodable OTLP",
    ),
    (
        STORE_SPANS_EVICTED,
        MetricKind::Counter,
        "spans the store dropped to stay within its bounds",
    ),
    (
        STORE_ROWS_FLUSHED,
        MetricKind::Counter,
        "rows moved from the buffer into Parquet files",
    ),
    (
        STORE_ROWS_EXPIRED,
        MetricKind::Counter,
        "rows dropped because their partition passed the retention age",
    ),
    (
        STORE_WRITES_THROTTLED,
        MetricKind::Counter,
        "writes refused because the store's buffer was full",
    ),
    (STORE_SPANS, MetricKind::Gauge, "spans the store holds"),
    (
        STORE_WAL_BYTES,
        MetricKind::Counter,
        "bytes the write-ahead log wrote and fsynced",
    ),
    (
        STORE_WAL_SYNCS,
        MetricKind::Counter,
        "fsyncs of the write-ahead log, one per group commit",
    ),
    (
        CLICKHOUSE_ROWS_INSERTED,
        MetricKind::Counter,
        "span rows ClickHouse accepted",
    ),
    (
        CLICKHOUSE_INSERT_FAILURES,
        MetricKind::Counter,
        "inserts ClickHouse did not accept; each is tried again",
    ),
    (
        CLICKHOUSE_BUFFER_BYTES,
        MetricKind::Gauge,
        "encoded bytes waiting for ClickHouse to accept them",
    ),
    (
        CLICKHOUSE_WRITES_TIMED_OUT,
        MetricKind::Counter,
        "writes answered as retryable because ClickHouse had not accepted them in time",
    ),
    (
        CLICKHOUSE_INSERTS_ABANDONED,
        MetricKind::Counter,
        "inserts given up because every write in them had timed out; their senders resend",
    ),
    (
        API_REQUESTS,
        MetricKind::Counter,
        "query API requests, by route and status",
    ),
    (
        CONNECTIONS_REFUSED,
        MetricKind::Counter,
        "connections refused because a port had its most open connections, by port",
    ),
    (
        AUTH_REFUSED,
        MetricKind::Counter,
        "requests refused for a missing or wrong bearer token, by port",
    ),
];
