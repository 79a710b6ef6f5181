//! Binding the listeners and running the agent, the server, or both in one process.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use spanflow_agent::places::{host_report, PlaceBook};
use spanflow_agent::{Agent, AgentConfig, AgentIdentity, ForwardConfig, SpoolConfig, TraceService};
use spanflow_store::{MemoryStore, SpanStore};
use spanflow_store_clickhouse::{ClickHouseConfig, ClickHouseStore};
use spanflow_store_embedded::{EmbeddedConfig, EmbeddedStore};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::auth;
use crate::listen::{self, PortLimits};
use crate::settings::{Resolved, StoreKind};
use crate::tenants;

/// How often the host inventory file is checked for changes.
const INVENTORY_CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// Which parts run in this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Agent,
    Server,
    Both,
}

/// A running spanflow: the addresses it listens on, and a way to stop it.
pub struct Running {
    pub agent_http: Option<SocketAddr>,
    pub agent_otlp_http: Option<SocketAddr>,
    pub agent_otlp_grpc: Option<SocketAddr>,
    pub server_ingest: Option<SocketAddr>,
    pub server_query: Option<SocketAddr>,
    shutdown: CancellationToken,
    tasks: JoinSet<anyhow::Result<()>>,
}

impl Running {
    /// Stops listening, lets the agent send what it holds, and waits for every task.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until every task ends (after a stop, or when one fails).
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        while let Some(joined) = self.tasks.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    self.shutdown.cancel();
                    return Err(error);
                }
                Err(join_error) => {
                    self.shutdown.cancel();
                    return Err(join_error.into());
                }
            }
        }
        Ok(())
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed, in which case ours stays empty.
            let _ = metrics::set_global_recorder(recorder);
            for (name, kind, help) in spanflow_model::metric_names::ALL {
                // Registered at zero, so every series is there from the first scrape.
                match kind {
                    spanflow_model::metric_names::MetricKind::Counter => {
                        metrics::describe_counter!(*name, *help);
                        metrics::counter!(*name).increment(0);
                    }
                    spanflow_model::metric_names::MetricKind::Gauge => {
                        metrics::describe_gauge!(*name, *help);
                        metrics::gauge!(*name).set(0.0);
                    }
                }
            }
            handle
        })
        .clone()
}

/// The query API's limits from the settings.
fn api_config(settings: &Resolved) -> spanflow_api::ApiConfig {
    spanflow_api::ApiConfig {
        max_trace_spans: settings.trace_max_spans,
        sql: spanflow_store::sql::SqlLimits {
            max_rows: settings.sql_max_rows,
            timeout: Duration::from_millis(settings.sql_timeout_ms),
            max_memory_bytes: settings.query_memory_bytes as u64,
        },
        ..spanflow_api::ApiConfig::default()
    }
}

/// `/healthz` and `/metrics`, on the agent's main port and the server's query port.
fn ops_router(role: &'static str, store: Option<&'static str>) -> Router {
    let handle = metrics_handle();
    Router::new()
        .route(
            "/healthz",
            get(move || async move {
                axum::Json(serde_json::json!({ "status": "ok", "role": role, "store": store }))
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        handle.render(),
                    )
                }
            }),
        )
}

async fn bind(address: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("binding the {what} port {address}"))
}

/// Serves `router` on `listener` until `shutdown`, then lets the requests in flight finish;
/// `open` is held until then (see the agent's receivers in [`start`]).
fn spawn_http(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    listener: TcpListener,
    router: Router,
    limits: &PortLimits,
    shutdown: &CancellationToken,
    what: &'static str,
    open: Option<ReceiverOpen>,
) {
    let (shutdown, limits) = (shutdown.clone(), limits.clone());
    tasks.spawn(async move {
        let served = listen::serve(listener, router, limits, shutdown, what)
            .await
            .with_context(|| format!("serving the {what} port"));
        drop(open);
        served
    });
}

/// Held by each of the agent's receivers while it serves: the agent's final delivery starts
/// once every one is dropped, so that no request answered 200 is queued after it.
type ReceiverOpen = tokio::sync::mpsc::Sender<()>;

/// The tenants' stores: the default one, and one per org id beside it, each in its own
/// directory (`<data_dir>/tenants/<org>`) or ClickHouse database (`<org>_<database>`). The
/// embedded store's tenants found on disk are opened at once, so that their retention runs.
async fn open_tenants(
    settings: &Resolved,
    default: Arc<dyn SpanStore>,
) -> anyhow::Result<Arc<spanflow_server::Tenants>> {
    let for_tenants = settings.clone();
    let open: spanflow_server::OpenStore = Arc::new(move |org: String| {
        let settings = for_tenants.clone();
        Box::pin(async move {
            open_store(&tenant_settings(&settings, &org))
                .await
                .map_err(|error| {
                    spanflow_store::StoreError::new(
                        spanflow_store::ErrorKind::Unavailable,
                        format!("opening the store of tenant {org}: {error:#}"),
                    )
                })
        })
    });
    let tenants = spanflow_server::Tenants::new(default, open, settings.max_tenants);
    if settings.store == StoreKind::Embedded {
        if let Ok(entries) = std::fs::read_dir(settings.data_dir.join("tenants")) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Ok(Some(org)) = spanflow_model::tenant::parse_org(name.as_bytes()) {
                    tenants
                        .store(Some(&org))
                        .await
                        .map_err(|error| anyhow::anyhow!(error.to_string()))?;
                }
            }
        }
    }
    Ok(tenants)
}

/// The settings of a tenant's store.
fn tenant_settings(settings: &Resolved, org: &str) -> Resolved {
    let mut settings = settings.clone();
    settings.data_dir = settings.data_dir.join("tenants").join(org);
    settings.clickhouse_database = format!("{org}_{}", settings.clickhouse_database);
    settings
}

async fn open_store(settings: &Resolved) -> anyhow::Result<Arc<dyn SpanStore>> {
    Ok(match settings.store {
        StoreKind::Memory => Arc::new(MemoryStore::new(settings.memory_max_spans)),
        StoreKind::Embedded => {
            let config = EmbeddedConfig {
                partition_seconds: settings.partition_seconds,
                flush_rows: settings.flush_rows,
                flush_interval: Duration::from_millis(settings.store_flush_interval_ms),
                retention: Duration::from_secs(settings.retention_hours.saturating_mul(3600)),
                max_disk_bytes: settings.max_disk_bytes,
                query_memory_bytes: settings.query_memory_bytes,
                ..EmbeddedConfig::new(&settings.data_dir)
            };
            let store = EmbeddedStore::open(config).await.with_context(|| {
                format!(
                    "opening the embedded store in {}",
                    settings.data_dir.display()
                )
            })?;
            Arc::new(store)
        }
        StoreKind::Clickhouse => {
            let config = ClickHouseConfig {
                urls: settings.clickhouse_urls.clone(),
                user: settings.clickhouse_user.clone(),
                password: settings.clickhouse_password.clone(),
                database: settings.clickhouse_database.clone(),
                cluster: settings.clickhouse_cluster.clone(),
                batch_rows: settings.clickhouse_batch_rows,
                batch_wait: Duration::from_millis(settings.clickhouse_batch_wait_ms),
                retention: Duration::from_secs(settings.retention_hours.saturating_mul(3600)),
                ..ClickHouseConfig::new("")
            };
            let store = ClickHouseStore::open(config).await.with_context(|| {
                format!(
                    "opening the ClickHouse store at {}",
                    settings.clickhouse_urls.join(", ")
                )
            })?;
            Arc::new(store)
        }
    })
}

/// Binds every listener of `role` and starts serving; returns once all ports are bound.
pub async fn start(role: Role, settings: Resolved) -> anyhow::Result<Running> {
    // Before anything records: what opening a store or a spool finds is counted too.
    metrics_handle();
    let port_limits = PortLimits {
        max_connections: settings.max_connections,
        header_read_timeout: Duration::from_millis(settings.header_read_timeout_ms),
        tls: None,
    };
    let shutdown = CancellationToken::new();
    // In one process the server stops only once the agent has delivered what it holds: the
    // agent's last batches go to this server, and a server that stopped first would lose them.
    let server_shutdown = match role {
        Role::Both => CancellationToken::new(),
        Role::Agent | Role::Server => shutdown.clone(),
    };
    let mut tasks = JoinSet::new();
    let mut running_server_ingest = None;
    let mut running_server_query = None;

    if matches!(role, Role::Server | Role::Both) {
        let store = open_store(&settings).await?;
        let ingest = bind(settings.ingest_listen, "server ingest").await?;
        let query = bind(settings.query_listen, "query API").await?;
        running_server_ingest = Some(ingest.local_addr()?);
        running_server_query = Some(query.local_addr()?);
        tracing::info!(
            ingest = %ingest.local_addr()?,
            query = %query.local_addr()?,
            store = store.backend(),
            "server listening"
        );
        let server_limits = PortLimits {
            tls: match (&settings.tls_cert_file, &settings.tls_key_file) {
                (Some(cert), Some(key)) => Some(listen::tls_acceptor(cert, key)?),
                (None, None) => None,
                _ => anyhow::bail!("TLS needs both tls_cert_file and tls_key_file"),
            },
            ..port_limits.clone()
        };
        let tenants = open_tenants(&settings, store.clone()).await?;
        let places = Arc::new(spanflow_server::PlaceMap::new());
        if let Some(path) = &settings.host_inventory_file {
            let watching = spanflow_server::places::watch_inventory(
                places.clone(),
                path.clone(),
                INVENTORY_CHECK_INTERVAL,
            )
            .map_err(|error| anyhow::anyhow!("host inventory: {error}"))?;
            let stop = server_shutdown.clone();
            tasks.spawn(async move {
                stop.cancelled().await;
                watching.abort();
                Ok(())
            });
        }
        let ingest_router = auth::protect(
            spanflow_server::ingest_router(
                tenants.clone(),
                spanflow_server::IngestConfig {
                    span_limits: settings.span_limits,
                    places,
                    ..Default::default()
                },
            ),
            settings.ingest_tokens.clone(),
            "ingest",
        );
        spawn_http(
            &mut tasks,
            ingest,
            ingest_router,
            &server_limits,
            &server_shutdown,
            "server ingest",
            None,
        );
        let query_router = auth::protect_tenants(
            tenants::dispatch(
                spanflow_api::api_router(store.clone(), api_config(&settings))
                    .merge(ops_router("server", Some(store.backend()))),
                tenants,
                api_config(&settings),
            ),
            settings.query_tokens.clone(),
            settings.tenant_tokens.clone(),
            "query",
        )
        // The web UI's pages and assets hold no data, so they sit outside the token check (a
        // browser cannot send a bearer token for a page load; the UI sends it with its API
        // calls) and outside the tenant dispatch. Its routes are its own paths only, with no
        // fallback, so every other path still reaches the API.
        .merge(spanflow_ui::router());
        spawn_http(
            &mut tasks,
            query,
            query_router,
            &server_limits,
            &server_shutdown,
            "query API",
            None,
        );
    }

    let mut running_agent = (None, None, None);
    if matches!(role, Role::Agent | Role::Both) {
        let server_url = match (&settings.server_url, running_server_ingest) {
            (Some(url), _) => url.clone(),
            (None, Some(ingest)) => format!("http://127.0.0.1:{}", ingest.port()),
            (None, None) => "http://127.0.0.1:30033".to_string(),
        };
        let agent = Agent::open(&AgentConfig {
            max_body_bytes: settings.max_body_bytes,
            max_queue_bytes: settings.max_queue_bytes,
            body_timeout: Duration::from_millis(settings.body_timeout_ms),
            spool: settings
                .spool_dir
                .as_ref()
                .map(|dir| SpoolConfig::new(dir, settings.spool_max_bytes)),
        })
        .with_context(|| match &settings.spool_dir {
            Some(dir) => format!("opening the agent's spool in {}", dir.display()),
            None => "starting the agent".to_string(),
        })?;
        let http = bind(settings.agent_http_listen, "agent OTLP/HTTP (DeepFlow)").await?;
        let otlp_http = bind(settings.agent_otlp_http_listen, "agent OTLP/HTTP").await?;
        let grpc = bind(settings.agent_otlp_grpc_listen, "agent OTLP/gRPC").await?;
        running_agent = (
            Some(http.local_addr()?),
            Some(otlp_http.local_addr()?),
            Some(grpc.local_addr()?),
        );
        tracing::info!(
            http = %http.local_addr()?,
            otlp_http = %otlp_http.local_addr()?,
            otlp_grpc = %grpc.local_addr()?,
            "agent listening"
        );
        let identity = AgentIdentity {
            agent_id: settings.agent_id.clone(),
            host_name: gethostname::gethostname().to_string_lossy().into_owned(),
            host_ip: local_ip_towards(server_url.split(',').next().unwrap_or_default().trim())
                .unwrap_or_default(),
        };
        let forward_config =
            ForwardConfig {
                server_url,
                max_batch_bytes: settings.batch_max_bytes,
                flush_interval: Duration::from_millis(settings.flush_interval_ms),
                // In one process the agent knows the server's tokens.
                token: settings
                    .server_token
                    .as_ref()
                    .map(|token| token.expose().trim().to_string())
                    .or_else(|| {
                        matches!(role, Role::Both)
                            .then(|| settings.ingest_tokens.first())
                            .flatten()
                    }),
                ca_pem: match &settings.server_ca_file {
                    Some(path) => Some(std::fs::read(path).with_context(|| {
                        format!("reading the server CA file {}", path.display())
                    })?),
                    None => None,
                },
                ..ForwardConfig::default()
            };
        let book = Arc::new(PlaceBook::new());
        // A pod's own addresses are not its host's; in Kubernetes the node's record says
        // where the host is.
        let host = (!settings.kubernetes).then(|| host_report(&identity.host_name));
        if settings.kubernetes {
            let client = spanflow_k8s::client(settings.kubeconfig.as_deref())
                .await
                .context(
                    "connecting to the Kubernetes API (set kubernetes: off to run without it)",
                )?;
            let watching = spanflow_k8s::spawn(
                client,
                spanflow_k8s::K8sConfig {
                    node_name: settings.node_name.clone(),
                    cluster_name: settings.cluster_name.clone(),
                    labels: settings.k8s_labels.clone(),
                },
                book.clone(),
                shutdown.clone(),
            );
            tasks.spawn(async move {
                let _ = watching.await;
                Ok(())
            });
        }
        let forwarder = agent
            .forwarder(forward_config, identity)
            .context("reading the server CA certificates")?
            .with_places(book, host);
        // The forwarder's final delivery starts once every receiver has stopped and answered
        // the requests it had in flight.
        let (open, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
        let forwarder_shutdown = CancellationToken::new();
        {
            let (shutdown, forwarder_shutdown) = (shutdown.clone(), forwarder_shutdown.clone());
            tasks.spawn(async move {
                shutdown.cancelled().await;
                while all_closed.recv().await.is_some() {}
                forwarder_shutdown.cancel();
                Ok(())
            });
        }
        let server_after_agent = matches!(role, Role::Both).then(|| server_shutdown.clone());
        tasks.spawn(async move {
            forwarder.run(forwarder_shutdown).await;
            if let Some(server) = server_after_agent {
                server.cancel();
            }
            Ok(())
        });
        let deepflow = auth::protect_tenants(
            spanflow_agent::deepflow_router(agent.receiver.clone())
                .merge(ops_router("agent", None)),
            settings.receiver_tokens.clone(),
            settings.tenant_tokens.clone(),
            "agent-http",
        );
        spawn_http(
            &mut tasks,
            http,
            deepflow,
            &port_limits,
            &shutdown,
            "agent OTLP/HTTP (DeepFlow)",
            Some(open.clone()),
        );
        spawn_http(
            &mut tasks,
            otlp_http,
            auth::protect_tenants(
                spanflow_agent::otlp_router(agent.receiver.clone()),
                settings.receiver_tokens.clone(),
                settings.tenant_tokens.clone(),
                "agent-otlp-http",
            ),
            &port_limits,
            &shutdown,
            "agent OTLP/HTTP",
            Some(open.clone()),
        );
        let grpc_service = tonic::service::interceptor::InterceptedService::new(
            TraceService::new(agent.receiver.clone()),
            auth::grpc_check(
                settings.receiver_tokens.clone(),
                settings.tenant_tokens.clone(),
                "agent-otlp-grpc",
            ),
        );
        spawn_http(
            &mut tasks,
            grpc,
            tonic::service::Routes::new(grpc_service).into_axum_router(),
            &port_limits,
            &shutdown,
            "agent OTLP/gRPC",
            Some(open),
        );
    }

    Ok(Running {
        agent_http: running_agent.0,
        agent_otlp_http: running_agent.1,
        agent_otlp_grpc: running_agent.2,
        server_ingest: running_server_ingest,
        server_query: running_server_query,
        shutdown,
        tasks,
    })
}

/// The local address this host would use to reach the server: the agent's host IP as the
/// server sees it. Connecting a UDP socket sends nothing.
fn local_ip_towards(server_url: &str) -> Option<String> {
    let authority = server_url.split("://").nth(1)?.split('/').next()?;
    let target = std::net::ToSocketAddrs::to_socket_addrs(authority)
        .ok()?
        .next()?;
    let bind_address: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let socket = std::net::UdpSocket::bind(bind_address).ok()?;
    socket.connect(target).ok()?;
    Some(socket.local_addr().ok()?.ip().to_string())
}
