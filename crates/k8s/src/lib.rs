//! What the agent learns from Kubernetes: the pods on its own node, the services' cluster IPs
//! and its node, written into the agent's [`PlaceBook`] for the server to tag spans by IP.
//!
//! `watch` runs kube-rs watchers (list, then watch; relists after a 410 Gone; backoff on
//! errors) and feeds their events to `apply`, which keeps what the records are built from
//! (workload owners, service selectors, the node's topology) and writes the records through
//! `records`, the pure part.

mod apply;
mod records;
mod watch;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};
use spanflow_agent::places::PlaceBook;
use tokio_util::sync::CancellationToken;

/// What the agent watches, and how it names what it finds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct K8sConfig {
    /// The node this agent runs on: only pods on it are watched (field selector spec.nodeName).
    pub node_name: String,
    /// The cluster's name, as configured (Kubernetes does not know its own name).
    pub cluster_name: String,
    /// Label keys copied from pods (and from nodes) into the records' labels, e.g. `app`,
    /// `app.kubernetes.io/name`, `version`.
    pub labels: Vec<String>,
}

/// Starts the watches on `client` and keeps `book` up to date until `shutdown` is cancelled;
/// returns the task. Errors of the API server are logged and retried after a backoff, never
/// fatal.
pub fn spawn(
    client: kube::Client,
    config: K8sConfig,
    book: Arc<PlaceBook>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(watch::run(client, config, book, shutdown))
}

/// A client from a kubeconfig file if given, else as `kube::Client::try_default` makes one:
/// from `KUBECONFIG` or `~/.kube/config` when there is one, else from the pod's service account.
pub async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Client> {
    // kube's TLS takes the process's default crypto provider; spanflow uses ring throughout.
    // An error only says that a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("bad kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no in-cluster kubernetes config and no kubeconfig")?,
    };
    kube::Client::try_from(config).context("cannot build kubernetes client")
}
