//! The stores of the tenants: the default one, opened at start, and one per org id, opened
//! the first time the org writes or reads, up to a bound. Each tenant's spans live in its own
//! store (a directory, a ClickHouse database), so no query of one can see another's.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use spanflow_store::{ErrorKind, SpanStore, StoreError};

/// Opens the store of an org id.
pub type OpenStore =
    Arc<dyn Fn(String) -> BoxFuture<'static, Result<Arc<dyn SpanStore>, StoreError>> + Send + Sync>;

pub struct Tenants {
    default: Arc<dyn SpanStore>,
    open: Option<OpenStore>,
    max_tenants: usize,
    stores: tokio::sync::Mutex<HashMap<String, Arc<dyn SpanStore>>>,
}

impl Tenants {
    /// One store for everything: a named org is refused.
    pub fn single(store: Arc<dyn SpanStore>) -> Arc<Tenants> {
        Arc::new(Tenants {
            default: store,
            open: None,
            max_tenants: 0,
            stores: Default::default(),
        })
    }

    /// The default store, and up to `max_tenants` more opened by `open`.
    pub fn new(default: Arc<dyn SpanStore>, open: OpenStore, max_tenants: usize) -> Arc<Tenants> {
        Arc::new(Tenants {
            default,
            open: Some(open),
            max_tenants,
            stores: Default::default(),
        })
    }

    pub fn default_store(&self) -> &Arc<dyn SpanStore> {
        &self.default
    }

    /// The store of `org` (the default store for none) if it is open, without waiting: `None`
    /// when it is not open yet, or while another caller holds the tenants' lock (opening one).
    /// For threads that must not block on the runtime: the blocking pool runs the stores'
    /// opening, so a blocking task that waited for an opening could wait for itself.
    pub fn open_store(&self, org: Option<&str>) -> Option<Arc<dyn SpanStore>> {
        let Some(org) = org.filter(|org| !org.is_empty()) else {
            return Some(self.default.clone());
        };
        self.stores.try_lock().ok()?.get(org).cloned()
    }

    /// The store of `org` (the default store for none), opened if it is not yet.
    pub async fn store(&self, org: Option<&str>) -> Result<Arc<dyn SpanStore>, StoreError> {
        let Some(org) = org.filter(|org| !org.is_empty()) else {
            return Ok(self.default.clone());
        };
        let Some(open) = &self.open else {
            return Err(StoreError::new(
                ErrorKind::BadRequest,
                "this server keeps no tenants apart; send no X-Org-Id",
            ));
        };
        let mut stores = self.stores.lock().await;
        if let Some(store) = stores.get(org) {
            return Ok(store.clone());
        }
        if stores.len() >= self.max_tenants {
            return Err(StoreError::new(
                ErrorKind::BadRequest,
                format!(
                    "this server keeps at most {} tenants apart (max_tenants) and has them all",
                    self.max_tenants
                ),
            ));
        }
        // Opened under the lock: two first requests of one org must not open it twice.
        let store = open(org.to_string()).await?;
        tracing::info!(org, backend = store.backend(), "opened a tenant's store");
        stores.insert(org.to_string(), store.clone());
        Ok(store)
    }

    /// The org ids with a store open.
    pub async fn open_orgs(&self) -> Vec<String> {
        let mut orgs: Vec<String> = self.stores.lock().await.keys().cloned().collect();
        orgs.sort();
        orgs
    }
}
