//! Settings: every key can come from the YAML file given with `--config`, from an environment
//! variable `SPANFLOW_<KEY>`, or from a flag `--<key>`; a flag beats the environment, which beats
//! the file, which beats the default. No key is required.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use serde::Deserialize;

use crate::auth::{Secret, TenantTokens, Tokens};

/// Defines the settings struct once, so that flags, environment variables, YAML keys and the
/// merge all come from the same list.
macro_rules! settings {
    ($( $(#[doc = $doc:expr])* $field:ident : $type:ty = $env:literal ),* $(,)?) => {
        #[derive(clap::Args, Deserialize, Debug, Clone, Default)]
        #[serde(deny_unknown_fields)]
        pub struct Settings {
            $(
                $(#[doc = $doc])*
                #[arg(long, env = $env)]
                pub $field: Option<$type>,
            )*
        }

        impl Settings {
            /// Fills every unset key from `other`.
            pub fn or(self, other: Settings) -> Settings {
                Settings { $( $field: self.$field.or(other.$field), )* }
            }
        }
    };
}

settings! {
    /// Agent: address of the DeepFlow-compatible OTLP/HTTP port, with /healthz and /metrics.
    agent_http_listen: SocketAddr = "SPANFLOW_AGENT_HTTP_LISTEN",
    /// Agent: address of the standard OTLP/HTTP port.
    agent_otlp_http_listen: SocketAddr = "SPANFLOW_AGENT_OTLP_HTTP_LISTEN",
    /// Agent: address of the OTLP/gRPC port.
    agent_otlp_grpc_listen: SocketAddr = "SPANFLOW_AGENT_OTLP_GRPC_LISTEN",
    /// Agent: base URL of the server's ingest port, or several, comma-separated: a batch a
    /// server fails goes to the next.
    server_url: String = "SPANFLOW_SERVER_URL",
    /// Agent: the name this agent reports (default: the host name).
    agent_id: String = "SPANFLOW_AGENT_ID",
    /// Agent: cap on a request body after decompression, in bytes.
    max_body_bytes: usize = "SPANFLOW_MAX_BODY_BYTES",
    /// Agent: how long an HTTP client may take to send a request body; a slower one gets 408.
    body_timeout_ms: u64 = "SPANFLOW_BODY_TIMEOUT_MS",
    /// Agent: cap on bytes waiting for the server (compressed, as queued); past it, clients are
    /// told to retry later.
    max_queue_bytes: usize = "SPANFLOW_MAX_QUEUE_BYTES",
    /// Agent: where accepted payloads wait on disk until a server acknowledges them, so that
    /// neither a restart nor a long outage loses them (default: `<data_dir>/spool`).
    spool_dir: PathBuf = "SPANFLOW_SPOOL_DIR",
    /// Agent: cap on the spool's bytes on disk; past it, clients are told to retry later.
    /// 0 turns the spool off: payloads then wait in memory only, bounded by max_queue_bytes.
    spool_max_bytes: u64 = "SPANFLOW_SPOOL_MAX_BYTES",
    /// Agent: a batch is sent once this many (compressed) bytes are waiting.
    batch_max_bytes: usize = "SPANFLOW_BATCH_MAX_BYTES",
    /// Agent: a batch is sent once its oldest payload has waited this long.
    flush_interval_ms: u64 = "SPANFLOW_FLUSH_INTERVAL_MS",
    /// Agent: bearer tokens (comma-separated) the OTLP receivers accept, sent by clients as
    /// `Authorization: Bearer <token>`; without it the receivers take any client.
    receiver_tokens: Secret = "SPANFLOW_RECEIVER_TOKENS",
    /// Agent: the bearer token sent to the server (`spanflow up`: the first ingest token).
    server_token: Secret = "SPANFLOW_SERVER_TOKEN",
    /// Server: bearer tokens (comma-separated) the ingest port accepts from agents.
    ingest_tokens: Secret = "SPANFLOW_INGEST_TOKENS",
    /// Server: bearer tokens (comma-separated) the query API accepts (`/healthz` stays open).
    query_tokens: Secret = "SPANFLOW_QUERY_TOKENS",
    /// Agent: a PEM file of the certificate authorities that sign the servers' TLS
    /// certificates (for `https://` server URLs), trusted beside the public roots.
    server_ca_file: PathBuf = "SPANFLOW_SERVER_CA_FILE",
    /// Server: a PEM certificate chain; with tls_key_file, the ingest port and the query API
    /// serve TLS only.
    tls_cert_file: PathBuf = "SPANFLOW_TLS_CERT_FILE",
    /// Server: the PEM private key of tls_cert_file.
    tls_key_file: PathBuf = "SPANFLOW_TLS_KEY_FILE",
    /// Every port: connections open at once; past it a new connection is answered 503.
    max_connections: usize = "SPANFLOW_MAX_CONNECTIONS",
    /// Every port: how long a client may take to send a request's headers, and how long a
    /// keep-alive connection may sit idle.
    header_read_timeout_ms: u64 = "SPANFLOW_HEADER_READ_TIMEOUT_MS",
    /// Server: tenants (orgs named by `X-Org-Id`) kept apart, each in its own store, at most.
    max_tenants: usize = "SPANFLOW_MAX_TENANTS",
    /// Agent receivers and query API: tokens bound to a tenant, as comma-separated
    /// `<org>=<token>` pairs. A request with one of them is that tenant's, whatever its
    /// `X-Org-Id`; with any set, every receiver and the query API want a token.
    tenant_tokens: Secret = "SPANFLOW_TENANT_TOKENS",
    /// Server: attributes a span (and each of its events and links) keeps at most; the rest
    /// are dropped and counted in the row's dropped_attributes_count.
    max_span_attributes: usize = "SPANFLOW_MAX_SPAN_ATTRIBUTES",
    /// Agent: tag spans with Kubernetes metadata (pods of its node, services, its node):
    /// `auto` (when running in a pod, the default), `on` or `off`.
    kubernetes: KubernetesMode = "SPANFLOW_KUBERNETES",
    /// Agent: a kubeconfig to reach the Kubernetes API with (default: the pod's service
    /// account, else `KUBECONFIG` or `~/.kube/config`).
    kubeconfig: PathBuf = "SPANFLOW_KUBECONFIG",
    /// Agent: the Kubernetes node the agent runs on; only that node's pods are watched (set
    /// it from the downward API's `spec.nodeName`; default: the host name).
    node_name: String = "SPANFLOW_NODE_NAME",
    /// Agent: the cluster's name, for the `pod_cluster` tags (Kubernetes does not know it).
    cluster_name: String = "SPANFLOW_CLUSTER_NAME",
    /// Agent: pod and node label keys to tag spans with, comma-separated (e.g. `app,version`).
    k8s_labels: String = "SPANFLOW_K8S_LABELS",
    /// Server: a YAML file naming hosts by IP and CIDR, with region, zone and labels, for
    /// spans from outside Kubernetes; read again when it changes.
    host_inventory_file: PathBuf = "SPANFLOW_HOST_INVENTORY_FILE",
    /// Server: events a span keeps at most (the rest counted in dropped_events_count).
    max_span_events: usize = "SPANFLOW_MAX_SPAN_EVENTS",
    /// Server: links a span keeps at most (the rest counted in dropped_links_count).
    max_span_links: usize = "SPANFLOW_MAX_SPAN_LINKS",
    /// Server: bytes of any one string of a span (attribute key or value, name, URL,
    /// message); a longer one is cut and named in the span's `spanflow.truncated` attribute.
    max_string_bytes: usize = "SPANFLOW_MAX_STRING_BYTES",
    /// Server: address of the ingest port agents send to.
    ingest_listen: SocketAddr = "SPANFLOW_INGEST_LISTEN",
    /// Server: address of the query API, with /healthz and /metrics.
    query_listen: SocketAddr = "SPANFLOW_QUERY_LISTEN",
    /// Server: where stores keep their files.
    data_dir: PathBuf = "SPANFLOW_DATA_DIR",
    /// Server: the store backend: `embedded` (default), `clickhouse` or `memory`.
    store: StoreKind = "SPANFLOW_STORE",
    /// ClickHouse store: HTTP URL of the server, or a comma-separated list: reads and writes
    /// go to the first that answers; with a cluster, name a node of every shard.
    clickhouse_url: String = "SPANFLOW_CLICKHOUSE_URL",
    /// ClickHouse store: user name (default: ClickHouse's `default`).
    clickhouse_user: String = "SPANFLOW_CLICKHOUSE_USER",
    /// ClickHouse store: password.
    clickhouse_password: String = "SPANFLOW_CLICKHOUSE_PASSWORD",
    /// ClickHouse store: database, created if missing.
    clickhouse_database: String = "SPANFLOW_CLICKHOUSE_DATABASE",
    /// ClickHouse store: a cluster of the servers' `remote_servers`: rows live in
    /// `<table>_local` on each shard behind `Distributed` tables, sharded by trace id.
    clickhouse_cluster: String = "SPANFLOW_CLICKHOUSE_CLUSTER",
    /// ClickHouse store: an insert starts once this many spans wait (default 200,000)...
    clickhouse_batch_rows: usize = "SPANFLOW_CLICKHOUSE_BATCH_ROWS",
    /// ClickHouse store: ...or once the oldest has waited this long (default 1,000 ms), or once
    /// a quarter of an insert waits and no write has come for 50 ms. Each insert makes a part
    /// of every table, which ClickHouse merges later.
    clickhouse_batch_wait_ms: u64 = "SPANFLOW_CLICKHOUSE_BATCH_WAIT_MS",
    /// Stores: spans that ended longer ago than this are dropped (embedded and ClickHouse).
    retention_hours: u64 = "SPANFLOW_RETENTION_HOURS",
    /// Embedded store: past this many bytes on disk, the oldest partitions are dropped.
    max_disk_bytes: u64 = "SPANFLOW_MAX_DISK_BYTES",
    /// Embedded store: width of a time partition.
    partition_seconds: i64 = "SPANFLOW_PARTITION_SECONDS",
    /// Embedded store: spans buffered in memory (and the WAL) before a Parquet file is written.
    flush_rows: usize = "SPANFLOW_FLUSH_ROWS",
    /// Embedded store: the longest spans wait in the buffer before a Parquet file is written.
    store_flush_interval_ms: u64 = "SPANFLOW_STORE_FLUSH_INTERVAL_MS",
    /// Embedded store: memory the store's queries may hold together; past it a query spills
    /// to disk where it can, or fails with an error saying so.
    query_memory_bytes: usize = "SPANFLOW_QUERY_MEMORY_BYTES",
    /// Server: the most spans the memory store holds; the oldest are dropped past it.
    memory_max_spans: usize = "SPANFLOW_MEMORY_MAX_SPANS",
    /// Query API: spans a trace view returns at most; a bigger trace is cut to its upper
    /// levels and marked `truncated`.
    trace_max_spans: usize = "SPANFLOW_TRACE_MAX_SPANS",
    /// Query API: rows one SQL query may return; more is an error that asks for a LIMIT.
    sql_max_rows: usize = "SPANFLOW_SQL_MAX_ROWS",
    /// Query API: how long one SQL query may run.
    sql_timeout_ms: u64 = "SPANFLOW_SQL_TIMEOUT_MS",
    /// Log filter, e.g. `info` or `spanflow_agent=debug,info` (RUST_LOG also works).
    log: String = "SPANFLOW_LOG",
}

#[derive(clap::ValueEnum, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KubernetesMode {
    /// On when the agent runs in a pod (`KUBERNETES_SERVICE_HOST` is set).
    Auto,
    On,
    Off,
}

#[derive(clap::ValueEnum, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// A write-ahead log and Parquet files under `data_dir`; survives restarts and crashes.
    Embedded,
    /// ClickHouse at `clickhouse_url`: one server or a cluster, any number of spanflow
    /// servers writing to it.
    Clickhouse,
    /// Spans in memory, bounded by `memory_max_spans`; nothing survives a restart.
    Memory,
}

/// Settings with every key decided.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub agent_http_listen: SocketAddr,
    pub agent_otlp_http_listen: SocketAddr,
    pub agent_otlp_grpc_listen: SocketAddr,
    pub server_url: Option<String>,
    pub receiver_tokens: Tokens,
    pub server_token: Option<Secret>,
    pub ingest_tokens: Tokens,
    pub query_tokens: Tokens,
    pub agent_id: String,
    pub max_body_bytes: usize,
    pub body_timeout_ms: u64,
    pub max_queue_bytes: usize,
    /// The agent's spool directory, unless the spool is off.
    pub spool_dir: Option<PathBuf>,
    pub spool_max_bytes: u64,
    pub batch_max_bytes: usize,
    pub flush_interval_ms: u64,
    pub server_ca_file: Option<PathBuf>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub max_connections: usize,
    pub header_read_timeout_ms: u64,
    pub max_tenants: usize,
    pub tenant_tokens: TenantTokens,
    pub span_limits: spanflow_otlp::limits::SpanLimits,
    /// Whether the agent watches Kubernetes, decided.
    pub kubernetes: bool,
    pub kubeconfig: Option<PathBuf>,
    pub node_name: String,
    pub cluster_name: String,
    pub k8s_labels: Vec<String>,
    pub host_inventory_file: Option<PathBuf>,
    pub ingest_listen: SocketAddr,
    pub query_listen: SocketAddr,
    pub data_dir: PathBuf,
    pub store: StoreKind,
    pub clickhouse_urls: Vec<String>,
    pub clickhouse_user: Option<String>,
    pub clickhouse_password: Option<String>,
    pub clickhouse_database: String,
    pub clickhouse_cluster: Option<String>,
    pub clickhouse_batch_rows: usize,
    pub clickhouse_batch_wait_ms: u64,
    pub retention_hours: u64,
    pub max_disk_bytes: Option<u64>,
    pub partition_seconds: i64,
    pub flush_rows: usize,
    pub store_flush_interval_ms: u64,
    pub query_memory_bytes: usize,
    pub memory_max_spans: usize,
    pub trace_max_spans: usize,
    pub sql_max_rows: usize,
    pub sql_timeout_ms: u64,
    pub log: String,
}

impl Settings {
    /// Reads a YAML settings file.
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<Settings> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        if text.trim().is_empty() {
            return Ok(Settings::default());
        }
        serde_yaml::from_str(&text)
            .with_context(|| format!("parsing config file {}", path.display()))
    }

    pub fn resolve(self) -> Resolved {
        let address = |text: &str| text.parse().expect("default addresses parse");
        Resolved {
            agent_http_listen: self
                .agent_http_listen
                .unwrap_or_else(|| address("0.0.0.0:38086")),
            agent_otlp_http_listen: self
                .agent_otlp_http_listen
                .unwrap_or_else(|| address("0.0.0.0:4318")),
            agent_otlp_grpc_listen: self
                .agent_otlp_grpc_listen
                .unwrap_or_else(|| address("0.0.0.0:4317")),
            server_url: self.server_url,
            receiver_tokens: Tokens::parse(self.receiver_tokens.as_ref()),
            server_token: self
                .server_token
                .filter(|token| !token.expose().trim().is_empty()),
            ingest_tokens: Tokens::parse(self.ingest_tokens.as_ref()),
            query_tokens: Tokens::parse(self.query_tokens.as_ref()),
            agent_id: self
                .agent_id
                .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned()),
            max_body_bytes: self.max_body_bytes.unwrap_or(64 << 20),
            body_timeout_ms: self.body_timeout_ms.unwrap_or(30_000).max(1),
            max_queue_bytes: self.max_queue_bytes.unwrap_or(128 << 20),
            spool_dir: match self.spool_max_bytes {
                Some(0) => None,
                _ => Some(self.spool_dir.clone().unwrap_or_else(|| {
                    self.data_dir
                        .clone()
                        .unwrap_or_else(|| PathBuf::from("./spanflow-data"))
                        .join("spool")
                })),
            },
            spool_max_bytes: self.spool_max_bytes.unwrap_or(1 << 30),
            batch_max_bytes: self.batch_max_bytes.unwrap_or(1 << 20),
            flush_interval_ms: self.flush_interval_ms.unwrap_or(200),
            server_ca_file: self.server_ca_file,
            tls_cert_file: self.tls_cert_file,
            tls_key_file: self.tls_key_file,
            max_connections: self.max_connections.unwrap_or(4096).max(1),
            header_read_timeout_ms: self.header_read_timeout_ms.unwrap_or(30_000).max(1),
            max_tenants: self.max_tenants.unwrap_or(100),
            tenant_tokens: TenantTokens::parse(self.tenant_tokens.as_ref()),
            span_limits: {
                let defaults = spanflow_otlp::limits::SpanLimits::default();
                spanflow_otlp::limits::SpanLimits {
                    max_attributes: self.max_span_attributes.unwrap_or(defaults.max_attributes),
                    max_events: self.max_span_events.unwrap_or(defaults.max_events),
                    max_links: self.max_span_links.unwrap_or(defaults.max_links),
                    max_string_bytes: self
                        .max_string_bytes
                        .unwrap_or(defaults.max_string_bytes)
                        .max(1),
                }
            },
            kubernetes: match self.kubernetes.unwrap_or(KubernetesMode::Auto) {
                KubernetesMode::On => true,
                KubernetesMode::Off => false,
                KubernetesMode::Auto => std::env::var_os("KUBERNETES_SERVICE_HOST").is_some(),
            },
            kubeconfig: self.kubeconfig,
            node_name: self
                .node_name
                .filter(|name| !name.trim().is_empty())
                .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned()),
            cluster_name: self.cluster_name.unwrap_or_default(),
            k8s_labels: self
                .k8s_labels
                .as_deref()
                .unwrap_or_default()
                .split(',')
                .map(|key| key.trim().to_string())
                .filter(|key| !key.is_empty())
                .collect(),
            host_inventory_file: self.host_inventory_file,
            ingest_listen: self
                .ingest_listen
                .unwrap_or_else(|| address("0.0.0.0:30033")),
            query_listen: self
                .query_listen
                .unwrap_or_else(|| address("0.0.0.0:20416")),
            data_dir: self
                .data_dir
                .unwrap_or_else(|| PathBuf::from("./spanflow-data")),
            store: self.store.unwrap_or(StoreKind::Embedded),
            clickhouse_urls: self
                .clickhouse_url
                .as_deref()
                .unwrap_or("http://127.0.0.1:8123")
                .split(',')
                .map(|url| url.trim().to_string())
                .filter(|url| !url.is_empty())
                .collect(),
            clickhouse_user: self.clickhouse_user,
            clickhouse_password: self.clickhouse_password,
            clickhouse_database: self
                .clickhouse_database
                .unwrap_or_else(|| "flow_log".to_string()),
            clickhouse_cluster: self.clickhouse_cluster.filter(|name| !name.is_empty()),
            clickhouse_batch_rows: self.clickhouse_batch_rows.unwrap_or(200_000).max(1),
            clickhouse_batch_wait_ms: self.clickhouse_batch_wait_ms.unwrap_or(1_000),
            retention_hours: self.retention_hours.unwrap_or(72),
            max_disk_bytes: self.max_disk_bytes,
            partition_seconds: self.partition_seconds.unwrap_or(3600).max(1),
            flush_rows: self.flush_rows.unwrap_or(64 * 1024).max(1),
            store_flush_interval_ms: self.store_flush_interval_ms.unwrap_or(30_000),
            query_memory_bytes: self.query_memory_bytes.unwrap_or(512 << 20),
            memory_max_spans: self.memory_max_spans.unwrap_or(1_000_000),
            trace_max_spans: self.trace_max_spans.unwrap_or(50_000).max(1),
            sql_max_rows: self.sql_max_rows.unwrap_or(10_000).max(1),
            sql_timeout_ms: self.sql_timeout_ms.unwrap_or(30_000).max(1),
            log: self.log.unwrap_or_else(|| "info".to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }

    #[test]
    fn a_flag_beats_the_file_and_the_file_beats_the_default() {
        let file: Settings =
            serde_yaml::from_str("query_listen: 127.0.0.1:1\nmemory_max_spans: 5\n").unwrap();
        let flags = Cli::parse_from(["spanflow", "--memory-max-spans", "7"]).settings;
        let resolved = flags.or(file).resolve();
        assert_eq!(resolved.memory_max_spans, 7);
        assert_eq!(resolved.query_listen, "127.0.0.1:1".parse().unwrap());
        assert_eq!(resolved.ingest_listen, "0.0.0.0:30033".parse().unwrap());
        assert_eq!(resolved.agent_http_listen.port(), 38086);
        assert_eq!(resolved.agent_otlp_http_listen.port(), 4318);
        assert_eq!(resolved.agent_otlp_grpc_listen.port(), 4317);
    }

    #[test]
    fn clickhouse_inserts_are_sized_by_flag_file_or_default() {
        let defaults = Cli::parse_from(["spanflow"]).settings.resolve();
        assert_eq!(defaults.clickhouse_batch_rows, 200_000);
        assert_eq!(defaults.clickhouse_batch_wait_ms, 1_000);
        let file: Settings = serde_yaml::from_str("clickhouse_batch_wait_ms: 2000\n").unwrap();
        let flags = Cli::parse_from(["spanflow", "--clickhouse-batch-rows", "200000"]).settings;
        let resolved = flags.or(file).resolve();
        assert_eq!(resolved.clickhouse_batch_rows, 200_000);
        assert_eq!(resolved.clickhouse_batch_wait_ms, 2_000);
    }

    #[test]
    fn unknown_file_keys_are_errors() {
        let error = serde_yaml::from_str::<Settings>("query_lisen: 127.0.0.1:1\n").unwrap_err();
        assert!(
            error.to_string().contains("unknown field `query_lisen`"),
            "{error}"
        );
    }
}
