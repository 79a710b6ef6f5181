//! Tenants on the query API: a request naming an org (`X-Org-Id`) is answered by that org's
//! own API over that org's own store; a request naming none, by the default store.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use spanflow_api::ApiConfig;
use spanflow_model::tenant::{parse_org, ORG_HEADER};
use spanflow_server::Tenants;
use tower::ServiceExt;

struct TenantApis {
    tenants: Arc<Tenants>,
    config: ApiConfig,
    routers: tokio::sync::Mutex<HashMap<String, Router>>,
}

/// `router` (the default tenant's API) in front of which each org's requests go to the org's
/// own API. `/healthz` and `/metrics` belong to the process, not to a tenant.
pub fn dispatch(router: Router, tenants: Arc<Tenants>, config: ApiConfig) -> Router {
    let apis = Arc::new(TenantApis {
        tenants,
        config,
        routers: Default::default(),
    });
    // In front of the routing, not inside it: a route's path parameters must be matched once,
    // by the router that answers.
    let service = tower::ServiceBuilder::new()
        .layer(axum::middleware::from_fn_with_state(apis, to_tenant))
        .service(router);
    Router::new().fallback_service(service)
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

async fn to_tenant(State(apis): State<Arc<TenantApis>>, request: Request, next: Next) -> Response {
    let org = match request.headers().get(ORG_HEADER) {
        None => None,
        Some(value) => match parse_org(value.as_bytes()) {
            Ok(org) => org,
            Err(error) => return refuse(StatusCode::BAD_REQUEST, &error),
        },
    };
    let path = request.uri().path();
    let Some(org) = org.filter(|_| path != "/healthz" && path != "/metrics") else {
        return next.run(request).await;
    };
    let router = {
        let mut routers = apis.routers.lock().await;
        match routers.get(&org) {
            Some(router) => router.clone(),
            None => match apis.tenants.store(Some(&org)).await {
                Ok(store) => {
                    let router = spanflow_api::api_router(store, apis.config.clone());
                    routers.insert(org.clone(), router.clone());
                    router
                }
                Err(error) => {
                    let status = StatusCode::from_u16(error.kind.http_status())
                        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    return refuse(status, &error.to_string());
                }
            },
        }
    };
    match router.oneshot(request).await {
        Ok(response) => response,
        Err(infallible) => match infallible {},
    }
}
