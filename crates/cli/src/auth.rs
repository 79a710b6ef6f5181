//! Optional bearer tokens on every port: the agent's receivers (clients send
//! `Authorization: Bearer <token>`, as the collector's `headers` option does), the server's
//! ingest port (the agent sends its `server_token`), and the query API. Tokens are compared in
//! constant time and never printed: settings hold them as [`Secret`].

use std::convert::Infallible;
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::Deserialize;
use spanflow_model::metric_names;
use subtle::ConstantTimeEq;

/// Text from the settings that must not reach a log: its `Debug` is `[redacted]`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Secret {
    type Err = Infallible;

    fn from_str(text: &str) -> Result<Secret, Infallible> {
        Ok(Secret(text.to_string()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The bearer tokens a port accepts; none means the port is open.
#[derive(Clone, Default)]
pub struct Tokens(Arc<Vec<Vec<u8>>>);

impl Tokens {
    /// Tokens from a comma-separated secret; blanks are ignored.
    pub fn parse(secret: Option<&Secret>) -> Tokens {
        let tokens = secret
            .map(|secret| {
                secret
                    .expose()
                    .split(',')
                    .map(str::trim)
                    .filter(|token| !token.is_empty())
                    .map(|token| token.as_bytes().to_vec())
                    .collect()
            })
            .unwrap_or_default();
        Tokens(Arc::new(tokens))
    }

    pub fn is_open(&self) -> bool {
        self.0.is_empty()
    }

    /// The first token, for a client of a port this process also serves.
    pub fn first(&self) -> Option<String> {
        self.0
            .first()
            .map(|token| String::from_utf8_lossy(token).into_owned())
    }

    /// Whether `presented` is one of the tokens. Every token is compared, each in constant
    /// time, so the time taken says nothing about which or how much matched.
    pub fn accepts(&self, presented: &[u8]) -> bool {
        let mut accepted = subtle::Choice::from(0);
        for token in self.0.iter() {
            accepted |= token.as_slice().ct_eq(presented);
        }
        accepted.into()
    }

    /// Why `headers` do not pass, or `None` when they do.
    pub fn refusal(&self, headers: &HeaderMap) -> Option<&'static str> {
        if self.is_open() {
            return None;
        }
        match bearer(headers) {
            Ok(token) if self.accepts(token) => None,
            Ok(_) => Some("the bearer token is not one this port accepts"),
            Err(reason) => Some(reason),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header, or why there is none.
fn bearer(headers: &HeaderMap) -> Result<&[u8], &'static str> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or("this port needs an `Authorization: Bearer <token>` header")?;
    value
        .as_bytes()
        .strip_prefix(b"Bearer ")
        .or_else(|| value.as_bytes().strip_prefix(b"bearer "))
        .ok_or("the Authorization header is not `Bearer <token>`")
}

/// Tokens bound to a tenant: a request with one is that tenant's alone.
#[derive(Clone, Default)]
pub struct TenantTokens(Arc<Vec<(String, Vec<u8>)>>);

impl TenantTokens {
    /// `<org>=<token>` pairs, comma-separated; a pair without a valid org id is skipped with
    /// an error in the log (its token then opens nothing).
    pub fn parse(secret: Option<&Secret>) -> TenantTokens {
        let mut pairs = Vec::new();
        for pair in secret
            .map(|secret| secret.expose().split(',').collect::<Vec<_>>())
            .unwrap_or_default()
        {
            let pair = pair.trim();
            if pair.is_empty() {
                continue;
            }
            match pair.split_once('=') {
                Some((org, token)) if !token.trim().is_empty() => {
                    match spanflow_model::tenant::parse_org(org.as_bytes()) {
                        Ok(Some(org)) => pairs.push((org, token.trim().as_bytes().to_vec())),
                        _ => tracing::error!(org, "tenant_tokens: not a valid org id; skipped"),
                    }
                }
                _ => tracing::error!("tenant_tokens: an entry is not <org>=<token>; skipped"),
            }
        }
        TenantTokens(Arc::new(pairs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The org whose token `presented` is. Every token is compared in constant time.
    fn org_of(&self, presented: &[u8]) -> Option<&str> {
        let mut found = None;
        for (org, token) in self.0.iter() {
            if bool::from(token.as_slice().ct_eq(presented)) {
                found = Some(org.as_str());
            }
        }
        found
    }
}

impl std::fmt::Debug for TenantTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{} tenant tokens, redacted]", self.0.len())
    }
}

/// Whether a request passes a port's tokens and tenant tokens; a tenant token sets the
/// request's `X-Org-Id` to its tenant. The refusal's status and reason otherwise.
pub fn admit(
    tokens: &Tokens,
    tenants: &TenantTokens,
    headers: &mut HeaderMap,
) -> Result<(), (StatusCode, &'static str)> {
    if tenants.is_empty() {
        return match tokens.refusal(headers) {
            None => Ok(()),
            Some(reason) => Err((StatusCode::UNAUTHORIZED, reason)),
        };
    }
    let presented = bearer(headers)
        .map_err(|reason| (StatusCode::UNAUTHORIZED, reason))?
        .to_vec();
    if let Some(org) = tenants.org_of(&presented) {
        let named = headers
            .get(spanflow_model::tenant::ORG_HEADER)
            .map(|value| spanflow_model::tenant::parse_org(value.as_bytes()));
        match named {
            None | Some(Ok(None)) => {}
            Some(Ok(Some(named))) if named == org => {}
            Some(_) => {
                return Err((
                    StatusCode::FORBIDDEN,
                    "this token belongs to another tenant than the X-Org-Id named",
                ))
            }
        }
        let org = header::HeaderValue::from_str(org).expect("org ids are header-safe");
        headers.insert(spanflow_model::tenant::ORG_HEADER, org);
        return Ok(());
    }
    if tokens.accepts(&presented) {
        Ok(())
    } else {
        Err((
            StatusCode::UNAUTHORIZED,
            "the bearer token is not one this port accepts",
        ))
    }
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{} tokens, redacted]", self.0.len())
    }
}

struct Guard {
    tokens: Tokens,
    tenants: TenantTokens,
    port: &'static str,
}

/// `router` behind the tokens, except `/healthz`, which load balancers call without one.
pub fn protect(router: Router, tokens: Tokens, port: &'static str) -> Router {
    protect_tenants(router, tokens, TenantTokens::default(), port)
}

/// `router` behind the tokens and the tenant tokens (see [`admit`]).
pub fn protect_tenants(
    router: Router,
    tokens: Tokens,
    tenants: TenantTokens,
    port: &'static str,
) -> Router {
    if tokens.is_open() && tenants.is_empty() {
        return router;
    }
    let guard = Arc::new(Guard {
        tokens,
        tenants,
        port,
    });
    router.layer(axum::middleware::from_fn_with_state(guard, check))
}

async fn check(State(guard): State<Arc<Guard>>, mut request: Request, next: Next) -> Response {
    if request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    match admit(&guard.tokens, &guard.tenants, request.headers_mut()) {
        Ok(()) => next.run(request).await,
        Err((status, reason)) => {
            metrics::counter!(metric_names::AUTH_REFUSED, "port" => guard.port).increment(1);
            tracing::debug!(port = guard.port, reason, "request refused");
            (
                status,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                axum::Json(serde_json::json!({ "error": reason })),
            )
                .into_response()
        }
    }
}

/// A tonic interceptor: UNAUTHENTICATED without one of the tokens, PERMISSION_DENIED for a
/// tenant token naming another tenant.
pub fn grpc_check(
    tokens: Tokens,
    tenants: TenantTokens,
    port: &'static str,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |mut request: tonic::Request<()>| {
        if tokens.is_open() && tenants.is_empty() {
            return Ok(request);
        }
        let mut headers = request.metadata().clone().into_headers();
        match admit(&tokens, &tenants, &mut headers) {
            Ok(()) => {
                if let Some(org) = headers.get(spanflow_model::tenant::ORG_HEADER) {
                    if let Ok(org) = org.to_str().unwrap_or_default().parse() {
                        request
                            .metadata_mut()
                            .insert(spanflow_model::tenant::ORG_HEADER, org);
                    }
                }
                Ok(request)
            }
            Err((status, reason)) => {
                metrics::counter!(metric_names::AUTH_REFUSED, "port" => port).increment(1);
                Err(if status == StatusCode::FORBIDDEN {
                    tonic::Status::permission_denied(reason)
                } else {
                    tonic::Status::unauthenticated(reason)
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn tokens_are_checked_and_never_printed() {
        let secret = Secret::new(" alpha, beta ,,");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        let tokens = Tokens::parse(Some(&secret));
        assert_eq!(format!("{tokens:?}"), "[2 tokens, redacted]");
        assert_eq!(tokens.refusal(&headers("Bearer alpha")), None);
        assert_eq!(tokens.refusal(&headers("Bearer beta")), None);
        assert!(tokens
            .refusal(&headers("Bearer alph"))
            .unwrap()
            .contains("not one"));
        assert!(tokens
            .refusal(&headers("Bearer alphaa"))
            .unwrap()
            .contains("not one"));
        assert!(tokens
            .refusal(&headers("Basic alpha"))
            .unwrap()
            .contains("not `Bearer"));
        assert!(tokens.refusal(&HeaderMap::new()).unwrap().contains("needs"));
        let open = Tokens::parse(None);
        assert!(open.is_open());
        assert_eq!(open.refusal(&HeaderMap::new()), None);
    }
}
