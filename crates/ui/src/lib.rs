//! The web UI, served on the query port: `ui/dist` (Vite's build of `ui/`, committed to git)
//! embedded in the binary by `build.rs`, so the one `spanflow` binary is all a user needs and
//! nothing is fetched from the network at run time.
//!
//! [`router`] answers the UI's own pages (`/`, `/search`, `/trace/{id}`, `/map`) with
//! `index.html`, which draws them in the browser from the query API, and serves the assets:
//! files under `/assets/` have content hashes in their names and are cached for good,
//! `index.html` is revalidated on every load.
//!
//! Invariant: the UI owns only the paths in [`PAGES`], `/assets/` and the few files at the
//! top of `ui/dist`; it has no fallback, so it can never answer for the query API
//! (`/api/`, `/jaeger/`, `/tempo/`, `/v1/`), `/healthz` or `/metrics`.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// One embedded file of `ui/dist`.
struct Asset {
    /// The URL path it is served at.
    path: &'static str,
    content_type: &'static str,
    /// A quoted hash of the contents.
    etag: &'static str,
    bytes: &'static [u8],
}

/// What `/` shows when the UI was not built before the binary was.
#[allow(dead_code)]
const PLACEHOLDER: &str = "<!doctype html><meta charset=utf-8><title>spanflow</title>\
<p>The web UI was not built into this binary: run <code>npm ci &amp;&amp; npm run build</code> \
in <code>ui/</code> (<code>scripts/test</code> does), then build spanflow again. The query API \
is at <a href=\"/api/v1/services\">/api/v1/services</a>.";

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// The UI's client-side routes; each is answered with `index.html`.
pub const PAGES: &[&str] = &["/", "/search", "/trace/{trace_id}", "/map"];

/// Hashed file names: safe to keep for a year.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Everything else is revalidated (cheaply: ETag and 304).
const REVALIDATE: &str = "no-cache";
/// Scripts and styles from this server only; the API on the same origin; no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
style-src 'self' 'unsafe-inline'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
frame-ancestors 'none'";

fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.path == path)
}

/// The routes of the UI, to merge into the query port's router.
pub fn router() -> Router {
    let mut router = Router::new();
    for &page in PAGES {
        router = router.route(page, get(index));
    }
    router = router.route("/assets/{*file}", get(hashed_asset));
    for asset in ASSETS {
        if asset.path == "/index.html" || asset.path.starts_with("/assets/") {
            continue;
        }
        router = router.route(
            asset.path,
            get(move |headers: HeaderMap| async move { respond(asset, &headers, REVALIDATE) }),
        );
    }
    router
}

async fn index(headers: HeaderMap) -> Response {
    match find("/index.html") {
        Some(asset) => respond(asset, &headers, REVALIDATE),
        None => not_found(),
    }
}

async fn hashed_asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match find(&format!("/assets/{file}")) {
        Some(asset) => respond(asset, &headers, IMMUTABLE),
        None => not_found(),
    }
}

fn respond(asset: &'static Asset, request: &HeaderMap, cache_control: &'static str) -> Response {
    let fresh = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == asset.etag || tag == "*"
        });
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.bytes,
        )
            .into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.content_type.starts_with("text/html") {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
    }
    response
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CACHE_CONTROL, REVALIDATE)],
        "not found",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    struct Answer {
        status: StatusCode,
        headers: HeaderMap,
        body: Vec<u8>,
    }

    async fn get(router: Router, path: &str, if_none_match: Option<&str>) -> Answer {
        let mut request = Request::get(path);
        if let Some(tag) = if_none_match {
            request = request.header(header::IF_NONE_MATCH, tag);
        }
        let response = router
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: body.to_vec(),
        }
    }

    fn header_of(answer: &Answer, name: header::HeaderName) -> &str {
        answer
            .headers
            .get(&name)
            .map(|value| value.to_str().unwrap())
            .unwrap_or("")
    }

    #[tokio::test]
    async fn every_page_is_index_html_revalidated() {
        let index = find("/index.html").expect("index.html is embedded");
        for path in [
            "/",
            "/search",
            "/trace/5b8efff798038103d269b633813fc60c",
            "/map",
        ] {
            let answer = get(router(), path, None).await;
            assert_eq!(answer.status, StatusCode::OK, "{path}");
            assert_eq!(answer.body, index.bytes, "{path}");
            assert_eq!(
                header_of(&answer, header::CONTENT_TYPE),
                "text/html; charset=utf-8"
            );
            assert_eq!(header_of(&answer, header::CACHE_CONTROL), "no-cache");
            assert!(
                header_of(&answer, header::CONTENT_SECURITY_POLICY).contains("default-src 'self'")
            );
        }
    }

    #[tokio::test]
    async fn assets_have_their_type_and_hashed_ones_are_immutable() {
        assert!(
            ASSETS.iter().any(|asset| asset.path.ends_with(".js"))
                || ASSETS.iter().all(|asset| asset.etag == "\"placeholder\""),
            "a built UI has a script"
        );
        for asset in ASSETS.iter().filter(|asset| asset.path != "/index.html") {
            let answer = get(router(), asset.path, None).await;
            assert_eq!(answer.status, StatusCode::OK, "{}", asset.path);
            assert_eq!(answer.body, asset.bytes);
            assert_eq!(header_of(&answer, header::CONTENT_TYPE), asset.content_type);
            let expected = if asset.path.starts_with("/assets/") {
                IMMUTABLE
            } else {
                REVALIDATE
            };
            assert_eq!(header_of(&answer, header::CACHE_CONTROL), expected);
            assert_eq!(
                header_of(&answer, header::X_CONTENT_TYPE_OPTIONS),
                "nosniff"
            );
        }
    }

    #[tokio::test]
    async fn a_known_etag_gets_304() {
        let index = find("/index.html").unwrap();
        let answer = get(router(), "/", Some(index.etag)).await;
        assert_eq!(answer.status, StatusCode::NOT_MODIFIED);
        assert!(answer.body.is_empty());
        assert_eq!(header_of(&answer, header::ETAG), index.etag);
        let answer = get(router(), "/", Some("\"something else\"")).await;
        assert_eq!(answer.status, StatusCode::OK);
    }

    #[tokio::test]
    async fn unknown_assets_are_404() {
        let answer = get(router(), "/assets/missing-0000.js", None).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_ui_owns_no_path_of_the_api() {
        let reserved = [
            "/api", "/jaeger", "/tempo", "/v1", "/healthz", "/metrics", "/ingest",
        ];
        let owned = PAGES
            .iter()
            .copied()
            .chain(ASSETS.iter().map(|asset| asset.path));
        for path in owned {
            assert!(
                !reserved.iter().any(|prefix| path.starts_with(prefix)),
                "{path} is the API's"
            );
        }
    }

    /// As the query port composes it: the API behind a fallback, the UI's routes merged in.
    #[tokio::test]
    async fn merged_beside_a_fallback_the_api_keeps_its_paths() {
        let api = Router::new()
            .route(
                "/api/v1/services",
                axum::routing::get(|| async { "services" }),
            )
            .fallback(|| async { (StatusCode::NOT_FOUND, "api 404") });
        let port = Router::new().fallback_service(api).merge(router());
        let answer = get(port.clone(), "/api/v1/services", None).await;
        assert_eq!(answer.body, b"services");
        let answer = get(port.clone(), "/api/v1/nothing", None).await;
        assert_eq!(
            (answer.status, answer.body.as_slice()),
            (StatusCode::NOT_FOUND, &b"api 404"[..])
        );
        let answer = get(port.clone(), "/healthz", None).await;
        assert_eq!(answer.body, b"api 404");
        let answer = get(port, "/", None).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(
            header_of(&answer, header::CONTENT_TYPE),
            "text/html; charset=utf-8"
        );
    }
}
