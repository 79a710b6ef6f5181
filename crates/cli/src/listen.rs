//! Serving a router on a listener with the limits every port needs: a cap on open
//! connections (past it a connection is answered 503 and closed), a deadline for a request's
//! headers (which also closes idle keep-alive connections), and TLS when configured. One
//! accept loop for every port, HTTP/1.1 and HTTP/2 (gRPC included) alike.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use spanflow_model::metric_names;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// What a port allows its clients.
#[derive(Clone)]
pub struct PortLimits {
    /// Connections open at once; past it a new one is answered 503 and closed.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, and how long a keep-alive
    /// connection may sit idle.
    pub header_read_timeout: Duration,
    /// TLS, when the port serves it.
    pub tls: Option<TlsAcceptor>,
}

/// How long connections in flight get to finish once the port stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The answer to a connection over the limit: HTTP/1.1 clients read it and retry later.
const OVER_LIMIT: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\n\
content-type: text/plain\r\ncontent-length: 39\r\nconnection: close\r\n\r\n\
too many connections; retry in a second";

/// A TLS acceptor from a PEM certificate chain and a PEM private key.
pub fn tls_acceptor(cert_file: &Path, key_file: &Path) -> anyhow::Result<TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the TLS certificates in {}", cert_file.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "no certificate in {}",
        cert_file.display()
    );
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("reading the TLS private key in {}", key_file.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("the TLS certificate and key do not make a pair")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `router` on `listener` until `shutdown`, then lets the connections in flight finish
/// (for up to 30 s). `port` names the port in metrics and logs.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: PortLimits,
    shutdown: CancellationToken,
    port: &'static str,
) -> anyhow::Result<()> {
    let room = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.header_read_timeout))
        .keep_alive_timeout(limits.header_read_timeout);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    tracing::warn!(%error, port, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Ok(permit) = room.clone().try_acquire_owned() else {
            metrics::counter!(metric_names::CONNECTIONS_REFUSED, "port" => port).increment(1);
            tracing::debug!(%peer, port, "connection over the limit refused");
            if limits.tls.is_none() {
                tokio::spawn(refuse(stream));
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().ok();
        let service = router.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = limits.tls.clone();
        let handshake_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut request: http::Request<_>| {
                // The peer as axum handlers and tonic services each look for it.
                request.extensions_mut().insert(ConnectInfo(peer));
                request
                    .extensions_mut()
                    .insert(tonic::transport::server::TcpConnectInfo {
                        local_addr: local,
                        remote_addr: Some(peer),
                    });
                service.clone().oneshot(request)
            });
            let served = match tls {
                None => {
                    let connection = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    watcher.watch(connection).await
                }
                Some(tls) => {
                    let stream =
                        match tokio::time::timeout(handshake_timeout, tls.accept(stream)).await {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(error)) => {
                                tracing::debug!(%error, %peer, port, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, port, "TLS handshake timed out");
                                return;
                            }
                        };
                    let connection = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    watcher.watch(connection).await
                }
            };
            if let Err(error) = served {
                tracing::debug!(%error, %peer, port, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            port,
            "connections still open after the drain timeout; closed"
        );
    }
    Ok(())
}

async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(OVER_LIMIT)).await;
    let _ = stream.shutdown().await;
}
