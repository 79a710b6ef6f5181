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
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Some("this port needs an `Authorization: Bearer <token>` header");
        };
        let token = value
            .as_bytes()
            .strip_prefix(b"Bearer ")
            .or_else(|| value.as_bytes().strip_prefix(b"bearer "));
        match token {
            Some(token) if self.accepts(token) => None,
            Some(_) => Some("the bearer token is not one this port accepts"),
            None => Some("the Authorization header is not `Bearer <token>`"),
        }
    }
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{} tokens, redacted]", self.0.len())
    }
}

struct Guard {
    tokens: Tokens,
    port: &'static str,
}

/// `router` behind the tokens, except `/healthz`, which load balancers call without one.
pub fn protect(router: Router, tokens: Tokens, port: &'static str) -> Router {
    if tokens.is_open() {
        return router;
    }
    let guard = Arc::new(Guard { tokens, port });
    router.layer(axum::middleware::from_fn_with_state(guard, check))
}

async fn check(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    if request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    match guard.tokens.refusal(request.headers()) {
        None => next.run(request).await,
        Some(reason) => {
            metrics::counter!(metric_names::AUTH_REFUSED, "port" => guard.port).increment(1);
            tracing::debug!(port = guard.port, reason, "request refused");
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                axum::Json(serde_json::json!({ "error": reason })),
            )
                .into_response()
        }
    }
}

/// A tonic interceptor: UNAUTHENTICATED without one of the tokens.
pub fn grpc_check(
    tokens: Tokens,
    port: &'static str,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |request: tonic::Request<()>| {
        let headers = request.metadata().clone().into_headers();
        match tokens.refusal(&headers) {
            None => Ok(request),
            Some(reason) => {
                metrics::counter!(metric_names::AUTH_REFUSED, "port" => port).increment(1);
                Err(tonic::Status::unauthenticated(reason))
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
