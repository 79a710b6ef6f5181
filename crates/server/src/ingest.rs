//! `POST /ingest/v1/batch`: decode -> map -> write -> acknowledge.

use std::net::IpAddr;
use std::sync::Arc;

use crate::places::PlaceMap;
use crate::tenants::Tenants;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use http_body_util::BodyExt;
use spanflow_model::{metric_names, SpanRow};
use spanflow_otlp::decompress::{decompress, DecompressError, Encoding};
use spanflow_otlp::limits::{Checked, SpanLimits};
use spanflow_otlp::map::Sender;
use spanflow_otlp::places::Places;
use spanflow_otlp::record::{RecordBuilder, RecordingPlaces};
use spanflow_otlp::wire::{map_payload, RowPool};
use spanflow_store::{PreparedWrite, RowEncoder, SpanStore, StoreError};
use spanflow_transport::{AgentBatch, TransportError, INGEST_PATH};

#[derive(Clone, Debug)]
pub struct IngestConfig {
    /// Cap on a batch body, and on its payloads after decompression, together.
    pub max_batch_bytes: usize,
    /// What one span may hold; past it, dropped and counted, or shortened and marked.
    pub span_limits: SpanLimits,
    /// Where addresses are: fed by the agents' batches and by spans, read to tag both ends of
    /// every span.
    pub places: Arc<PlaceMap>,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_batch_bytes: 256 << 20,
            span_limits: SpanLimits::default(),
            places: Arc::new(PlaceMap::new()),
        }
    }
}

struct Ingest {
    tenants: Arc<Tenants>,
    config: IngestConfig,
}

/// The router agents post batches to; each payload's rows go to its tenant's store.
pub fn ingest_router(tenants: Arc<Tenants>, config: IngestConfig) -> Router {
    Router::new()
        .route(INGEST_PATH, post(receive_batch))
        .with_state(Arc::new(Ingest { tenants, config }))
}

/// What one batch came to.
#[derive(Debug, Default, PartialEq, Eq)]
struct Outcome {
    n_spans_stored: usize,
    n_spans_rejected: usize,
    n_payloads_rejected: usize,
    /// Spans that went past a span limit (stored with what was past it dropped or cut).
    n_spans_limited: usize,
}

async fn receive_batch(
    State(ingest): State<Arc<Ingest>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let compressed_cap = ingest.config.max_batch_bytes;
    let body = match http_body_util::Limited::new(body, compressed_cap)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return refuse(StatusCode::PAYLOAD_TOO_LARGE, "batch body over the cap");
            }
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!("reading batch body: {error}"),
            );
        }
    };
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_string();
    let (max_batch_bytes, limits) = (ingest.config.max_batch_bytes, ingest.config.span_limits);
    let places = ingest.config.places.clone();
    let tenants = ingest.tenants.clone();
    // Each tenant's rows are prepared for its store on the thread that built them (see
    // `SpanStore::prepare`). A tenant whose store is not open yet gets its rows written as
    // they are once it is: opening a store takes the blocking pool too.
    let decoded = tokio::task::spawn_blocking(move || {
        let open = |org: &str| tenants.open_store(Some(org));
        let (groups, outcome) = decode_batch(body, max_batch_bytes, &limits, &places, open)?;
        let ready = groups
            .into_iter()
            .map(|(org, sink)| match sink.finish() {
                Ok(ready) => Ok((org, ready)),
                Err(error) => Err((org, error)),
            })
            .collect::<Result<Vec<_>, _>>();
        Ok::<_, TransportError>((ready, outcome))
    })
    .await;
    let (prepared, outcome) = match decoded {
        Ok(Ok(decoded)) => decoded,
        Ok(Err(error)) => {
            metrics::counter!(metric_names::SERVER_BATCHES, "outcome" => "malformed").increment(1);
            tracing::warn!(%error, agent, "batch refused");
            let status = match error {
                TransportError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::BAD_REQUEST,
            };
            return refuse(status, &error.to_string());
        }
        Err(join_error) => {
            tracing::error!(%join_error, "batch decoding panicked");
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, "batch decoding failed");
        }
    };
    // A batch is acknowledged once every tenant's rows are stored; a resend after a failure
    // halfway stores the first tenants' rows again, which the stores absorb.
    let written = match prepared {
        Ok(ready) => write_all(&ingest.tenants, ready).await,
        Err(failed) => Err(failed),
    };
    if let Err((org, error)) = written {
        metrics::counter!(metric_names::SERVER_BATCHES, "outcome" => "store_error").increment(1);
        tracing::warn!(%error, kind = ?error.kind, org, "store write failed; the agent will resend");
        let status = StatusCode::from_u16(error.kind.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return refuse(status, &error.to_string());
    }
    metrics::counter!(metric_names::SERVER_BATCHES, "outcome" => "stored").increment(1);
    metrics::counter!(metric_names::SERVER_SPANS_STORED).increment(outcome.n_spans_stored as u64);
    if outcome.n_spans_rejected > 0 {
        metrics::counter!(metric_names::SERVER_SPANS_REJECTED)
            .increment(outcome.n_spans_rejected as u64);
    }
    if outcome.n_spans_limited > 0 {
        metrics::counter!(metric_names::SERVER_SPANS_LIMITED)
            .increment(outcome.n_spans_limited as u64);
    }
    if outcome.n_payloads_rejected > 0 {
        metrics::counter!(metric_names::SERVER_PAYLOADS_REJECTED)
            .increment(outcome.n_payloads_rejected as u64);
    }
    let body = serde_json::json!({
        "n_spans_stored": outcome.n_spans_stored,
        "n_spans_rejected": outcome.n_spans_rejected,
        "n_payloads_rejected": outcome.n_payloads_rejected,
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// A tenant's rows, prepared for its store, or as they are when its store was not open.
enum Ready {
    Prepared(Arc<dyn SpanStore>, PreparedWrite),
    Rows(Vec<SpanRow>),
}

/// Writes each tenant's rows to its store, in turn, opening the stores not open yet; the
/// first failure stops it.
async fn write_all(
    tenants: &Tenants,
    ready: Vec<(String, Ready)>,
) -> Result<(), (String, StoreError)> {
    for (org, rows) in ready {
        let written = match rows {
            Ready::Prepared(store, prepared) => store.write_prepared(prepared).await,
            Ready::Rows(rows) => match tenants.store(Some(&org)).await {
                Ok(store) => store.write(rows).await,
                Err(error) => Err(error),
            },
        };
        written.map_err(|error| (org, error))?;
    }
    Ok(())
}

fn refuse(status: StatusCode, message: &str) -> Response {
    let mut response =
        (status, axum::Json(serde_json::json!({ "error": message }))).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    response
}

/// Where a tenant's rows go as its payloads are mapped.
enum Sink {
    /// Into its store's write, a row at a time ([`SpanStore::encoder`]), with the record of the
    /// payloads they were mapped from and of the place lookups their mapping made
    /// ([`RowEncoder::mapped_from`]).
    Encoder {
        store: Arc<dyn SpanStore>,
        encoder: Box<dyn RowEncoder>,
        /// `None` for a write that takes no record ([`RowEncoder::takes_record`]).
        record: Option<RecordBuilder>,
        lookups: Arc<RecordingPlaces>,
    },
    /// Held whole, for a store that takes them so, or for one not open yet (`None`).
    Rows(Option<Arc<dyn SpanStore>>, Vec<SpanRow>),
}

impl Sink {
    /// A sink for about `n_rows` rows bound for `store`, whose payloads are mapped with the
    /// place lookups `lookups` records.
    fn new(
        store: Option<Arc<dyn SpanStore>>,
        n_rows: usize,
        record: RecordBuilder,
        lookups: Arc<RecordingPlaces>,
    ) -> Sink {
        match store {
            Some(store) => match store.encoder(n_rows) {
                Some(encoder) => Sink::Encoder {
                    store,
                    record: encoder.takes_record().then_some(record),
                    encoder,
                    lookups,
                },
                None => Sink::Rows(Some(store), Vec::with_capacity(n_rows)),
            },
            None => Sink::Rows(None, Vec::with_capacity(n_rows)),
        }
    }

    /// Takes the rows a payload was mapped into; `recorded` adds the payload to the record,
    /// given the number of its rows.
    fn extend(&mut self, pool: &mut RowPool, recorded: impl FnOnce(&mut RecordBuilder, usize)) {
        match self {
            Sink::Encoder {
                encoder, record, ..
            } => {
                for row in pool.rows() {
                    encoder.append(row);
                }
                if let Some(record) = record {
                    recorded(record, pool.rows().len());
                }
            }
            Sink::Rows(_, rows) => rows.extend(pool.take()),
        }
    }

    /// The tenant's write, prepared for its store, or its rows when the store was not open.
    fn finish(self) -> Result<Ready, StoreError> {
        Ok(match self {
            Sink::Encoder {
                store,
                mut encoder,
                record,
                lookups,
            } => {
                if let Some(record) = record {
                    encoder.mapped_from(record.finish(Some(&lookups)));
                }
                Ready::Prepared(store, encoder.finish()?)
            }
            Sink::Rows(Some(store), rows) => {
                let prepared = store.prepare(rows)?;
                Ready::Prepared(store, prepared)
            }
            Sink::Rows(None, rows) => Ready::Rows(rows),
        })
    }
}

/// Decodes a batch and maps its spans, each tenant's into a sink for its store (`open` gives
/// the store, or `None` when it is not open yet), grouped in the order tenants first appear. A
/// payload that is not valid OTLP is skipped and counted (an agent validates payloads before
/// it accepts them, so this means a bug or a foreign sender); the rest of the batch is kept.
/// The payloads together may not inflate past `max_batch_bytes`.
fn decode_batch(
    body: bytes::Bytes,
    max_batch_bytes: usize,
    limits: &SpanLimits,
    places: &Arc<PlaceMap>,
    open: impl Fn(&str) -> Option<Arc<dyn SpanStore>>,
) -> Result<(Vec<(String, Sink)>, Outcome), TransportError> {
    let batch = AgentBatch::decode_body(body, max_batch_bytes)?;
    places.apply_agent(
        &batch.agent_id,
        &batch.places,
        batch.places_full,
        batch.host.as_ref(),
    );
    let places: Arc<dyn Places> = places.clone();
    let mut groups: Vec<(String, Sink)> = Vec::new();
    // Each tenant's place lookups, recorded for the record of its write.
    let mut lookups: Vec<(String, Arc<RecordingPlaces>)> = Vec::new();
    let mut outcome = Outcome::default();
    let mut budget = max_batch_bytes;
    // Each payload's rows are mapped into the buffers the payload before left.
    let mut pool = RowPool::default();
    let mut checked = Checked::default();
    for (i, payload) in batch.payloads.iter().enumerate() {
        let encoding = match payload.checked_encoding()? {
            spanflow_transport::Encoding::Identity => Encoding::Identity,
            spanflow_transport::Encoding::Gzip => Encoding::Gzip,
            spanflow_transport::Encoding::Zstd => Encoding::Zstd,
        };
        let otlp = match decompress(payload.otlp.clone(), encoding, budget) {
            Ok(otlp) => otlp,
            Err(DecompressError::TooLarge { .. }) => {
                return Err(TransportError::TooLarge {
                    max_bytes: max_batch_bytes,
                })
            }
            Err(error) => {
                outcome.n_payloads_rejected += 1;
                tracing::error!(%error, agent_id = batch.agent_id, "payload in batch does not decompress; skipped");
                continue;
            }
        };
        budget -= otlp.len();
        let recording = match lookups.iter().find(|(org, _)| *org == payload.org_id) {
            Some((_, recording)) => recording.clone(),
            None => {
                let recording = Arc::new(RecordingPlaces::new(places.clone()));
                lookups.push((payload.org_id.clone(), recording.clone()));
                recording
            }
        };
        let sender = Sender {
            peer_ip: payload.peer_ip.parse::<IpAddr>().ok(),
            agent_id: batch.agent_id.clone(),
            places: Some(recording.clone()),
        };
        let rejected = match map_payload(&otlp, &sender, &mut pool) {
            Ok(rejected) => rejected,
            Err(error) => {
                outcome.n_payloads_rejected += 1;
                tracing::error!(%error, agent_id = batch.agent_id, "payload in batch is not valid OTLP; skipped");
                continue;
            }
        };
        for row in pool.rows_mut() {
            if limits.apply_checked(row, &mut checked) {
                outcome.n_spans_limited += 1;
            }
        }
        outcome.n_spans_rejected += rejected.n_rejected;
        outcome.n_spans_stored += pool.rows().len();
        let group = match groups.iter().position(|(org, _)| *org == payload.org_id) {
            Some(group) => group,
            None => {
                // Room for as many spans again in each payload left: the payloads of one
                // batch are alike, and rows moved through doublings cost a copy of each.
                let guess = pool.rows().len() * (batch.payloads.len() - i);
                // Room for every payload left, with the few bytes each adds.
                let n_bytes = batch.payloads[i..]
                    .iter()
                    .map(|payload| payload.otlp.len() + 32)
                    .sum();
                let record = RecordBuilder::new(&batch.agent_id, *limits, n_bytes);
                let sink = Sink::new(open(&payload.org_id), guess, record, recording);
                groups.push((payload.org_id.clone(), sink));
                groups.len() - 1
            }
        };
        groups[group].1.extend(&mut pool, |record, n_rows| {
            record.payload(sender.peer_ip, encoding, &payload.otlp, otlp.len(), n_rows)
        });
    }
    Ok((groups, outcome))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use prost::Message;
    use spanflow_otlp::ExportTraceServiceRequest;

    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use spanflow_transport::{Encoding as PayloadEncoding, Payload, VERSION};

    use super::*;

    /// A request of spans 1 to `n_spans`, each in the trace of its number.
    fn otlp(n_spans: u8) -> Vec<u8> {
        otlp_in(n_spans, |n| n)
    }

    /// A request of spans 1 to `n_spans`, span `n` in the trace `trace_of(n)` spells.
    fn otlp_in(n_spans: u8, trace_of: impl Fn(u8) -> u8) -> Vec<u8> {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: (1..=n_spans)
                        .map(|n| Span {
                            trace_id: vec![trace_of(n); 16],
                            span_id: vec![n; 8],
                            name: format!("span {n}"),
                            start_time_unix_nano: 1_700_000_000_000_000_000,
                            end_time_unix_nano: 1_700_000_000_001_000_000,
                            ..Span::default()
                        })
                        .collect(),
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        }
        .encode_to_vec()
    }

    fn payload(otlp: Vec<u8>, encoding: PayloadEncoding, n_spans: u32) -> Payload {
        Payload {
            peer_ip: "10.1.2.3".into(),
            n_spans,
            otlp: otlp.into(),
            encoding: encoding as i32,
            org_id: String::new(),
        }
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn batch(version: u32, payloads: Vec<Payload>) -> AgentBatch {
        AgentBatch {
            version,
            agent_id: "node-a".into(),
            payloads,
            ..AgentBatch::default()
        }
    }

    /// A batch's rows, every tenant's together, as they come with no store open.
    fn decode(
        body: Vec<u8>,
        max_batch_bytes: usize,
    ) -> Result<(Vec<SpanRow>, Outcome), TransportError> {
        decode_with(body, max_batch_bytes, &Arc::new(PlaceMap::new()))
    }

    /// [`decode`], with `places` where addresses are.
    fn decode_with(
        body: Vec<u8>,
        max_batch_bytes: usize,
        places: &Arc<PlaceMap>,
    ) -> Result<(Vec<SpanRow>, Outcome), TransportError> {
        let limits = SpanLimits::default();
        let (groups, outcome) =
            decode_batch(body.into(), max_batch_bytes, &limits, places, |_| None)?;
        let rows = groups
            .into_iter()
            .flat_map(|(_, sink)| match sink {
                Sink::Rows(None, rows) => rows,
                _ => panic!("a sink for a store when none is open"),
            })
            .collect();
        Ok((rows, outcome))
    }

    /// The rows a store built a row at a time holds are the rows mapped whole, and so are the
    /// rows it maps again from its log after a crash, with the places they had when they came:
    /// one batch of two tenants, with a payload that is not OTLP and a span past the limits,
    /// decoded once into the embedded store's encoder for the default tenant and once into
    /// rows.
    #[test]
    fn a_write_built_row_by_row_stores_the_rows_mapped_whole() {
        use spanflow_store::SpanQuery;
        use spanflow_store_embedded::{EmbeddedConfig, EmbeddedStore};

        let mut request = ExportTraceServiceRequest::decode(&otlp_in(2, |n| n + 10)[..]).unwrap();
        request.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(100_000);
        let long = payload(request.encode_to_vec(), PayloadEncoding::Identity, 2);
        let mut acme = payload(otlp_in(2, |n| n + 20), PayloadEncoding::Identity, 2);
        acme.org_id = "acme".into();
        let body = batch(
            VERSION,
            vec![
                payload(gzip(&otlp(3)), PayloadEncoding::Gzip, 3),
                acme,
                payload(b"\xff\xff".to_vec(), PayloadEncoding::Identity, 1),
                long,
            ],
        )
        .encode_body();
        // The senders' address is a pod's, as the place map knows it while the batch comes.
        let places = || {
            let places = Arc::new(PlaceMap::new());
            let pod = spanflow_model::Place {
                pod: "web-0".into(),
                pod_ns: "shop".into(),
                ..Default::default()
            };
            places.learn("10.1.2.3".parse().unwrap(), &pod, 0);
            places
        };
        let (mut expected, _) = decode_with(body.clone(), 1 << 20, &places()).unwrap();
        assert!(expected.iter().all(|row| row.place_1.pod == "web-0"));
        // The default tenant's: traces 1 to 3 and 11 and 12 (acme's are 21 and 22).
        expected.retain(|row| row.trace_id.as_bytes()[0] < 20);
        assert_eq!(expected.len(), 5);

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store: Arc<dyn SpanStore> = Arc::new(
                EmbeddedStore::open(EmbeddedConfig::new(dir.path()))
                    .await
                    .unwrap(),
            );
            let open = |org: &str| org.is_empty().then(|| store.clone());
            let (groups, outcome) = decode_batch(
                body.into(),
                1 << 20,
                &SpanLimits::default(),
                &places(),
                open,
            )
            .unwrap();
            assert_eq!(
                (
                    outcome.n_spans_stored,
                    outcome.n_payloads_rejected,
                    outcome.n_spans_limited
                ),
                (7, 1, 1)
            );
            let mut groups = groups.into_iter();
            let (org, sink) = groups.next().unwrap();
            assert!(org.is_empty() && matches!(sink, Sink::Encoder { .. }));
            let Ok(Ready::Prepared(store, prepared)) = sink.finish() else {
                panic!("the default tenant's write is prepared");
            };
            assert_eq!(prepared.n_rows(), 5);
            store.write_prepared(prepared).await.unwrap();
            let (org, sink) = groups.next().unwrap();
            assert_eq!(org, "acme");
            assert!(matches!(&sink, Sink::Rows(None, rows) if rows.len() == 2));

            let query = SpanQuery {
                limit: 100,
                ..SpanQuery::default()
            };
            let mut stored = store.search(&query).await.unwrap();
            stored.sort_by_key(|row| row.trace_id);
            expected.sort_by_key(|row| row.trace_id);
            assert_eq!(stored, expected);
            assert!(stored
                .iter()
                .any(|row| row.endpoint.len() < 100_000 && row.endpoint.starts_with("xxx")));

            // Stopped without a flush, as by a crash, and opened again: the log's record of
            // the payloads is mapped again, with the place lookups as they were answered then,
            // though no place map knows the pod now.
            drop(store);
            let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path()))
                .await
                .unwrap();
            assert_eq!(
                store.files().len(),
                0,
                "nothing was flushed before the stop"
            );
            let mut replayed = store.search(&query).await.unwrap();
            replayed.sort_by_key(|row| row.trace_id);
            assert_eq!(replayed, expected);
        });
    }

    #[test]
    fn payloads_of_every_encoding_become_rows() {
        let body = batch(
            VERSION,
            vec![
                payload(otlp(1), PayloadEncoding::Identity, 1),
                payload(gzip(&otlp(2)), PayloadEncoding::Gzip, 2),
                payload(
                    zstd::bulk::compress(&otlp(3), 1).unwrap(),
                    PayloadEncoding::Zstd,
                    3,
                ),
            ],
        )
        .encode_body();
        let (rows, outcome) = decode(body, 1 << 20).unwrap();
        assert_eq!(outcome.n_spans_stored, 6);
        assert_eq!(outcome.n_payloads_rejected, 0);
        assert_eq!(rows.len(), 6);
        assert!(rows.iter().all(|row| row.agent_id == "node-a"));
        assert_eq!(rows[5].endpoint, "span 3");
    }

    /// Opening a tenant's store takes the blocking pool, as the embedded store's does; a full
    /// pool of tasks decoding that tenant's first batches must not wait for it.
    #[test]
    fn first_batches_of_a_new_tenant_at_once_on_a_small_blocking_pool_are_all_stored() {
        use spanflow_store::{MemoryStore, SpanQuery};
        use tower::ServiceExt;

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let open: crate::tenants::OpenStore = Arc::new(|_org| {
                Box::pin(async {
                    tokio::task::spawn_blocking(|| {
                        std::thread::sleep(std::time::Duration::from_millis(50))
                    })
                    .await
                    .unwrap();
                    Ok(Arc::new(MemoryStore::new(1_000)) as Arc<dyn SpanStore>)
                })
            });
            let tenants = Tenants::new(Arc::new(MemoryStore::new(1_000)), open, 4);
            let router = ingest_router(tenants.clone(), IngestConfig::default());
            let requests = (1..=6u8).map(|n| {
                let mut payload = payload(otlp_in(3, |_| n), PayloadEncoding::Identity, 3);
                payload.org_id = "acme".into();
                let body = batch(VERSION, vec![payload]).encode_body();
                let router = router.clone();
                tokio::spawn(async move {
                    let request = axum::http::Request::post(INGEST_PATH)
                        .body(Body::from(body))
                        .unwrap();
                    router.oneshot(request).await.unwrap().status()
                })
            });
            let statuses = tokio::time::timeout(
                std::time::Duration::from_secs(30),
                futures::future::join_all(requests),
            )
            .await
            .expect("the batches are answered");
            for status in statuses {
                assert_eq!(status.unwrap(), StatusCode::OK);
            }
            let store = tenants.store(Some("acme")).await.unwrap();
            let query = SpanQuery {
                limit: 100,
                ..SpanQuery::default()
            };
            assert_eq!(store.search(&query).await.unwrap().len(), 18);
            let default = tenants.store(None).await.unwrap();
            assert!(default.search(&query).await.unwrap().is_empty());
        });
    }

    #[test]
    fn a_version_1_body_from_an_older_agent_is_stored() {
        let body = batch(1, vec![payload(otlp(2), PayloadEncoding::Identity, 2)]).encode_v1_body(1);
        let (rows, outcome) = decode(body, 1 << 20).unwrap();
        assert_eq!((rows.len(), outcome.n_spans_stored), (2, 2));
    }

    #[test]
    fn a_corrupt_payload_is_skipped_and_a_bomb_refuses_the_batch() {
        let body = batch(
            VERSION,
            vec![
                payload(b"not gzip".to_vec(), PayloadEncoding::Gzip, 1),
                payload(otlp(1), PayloadEncoding::Identity, 1),
            ],
        )
        .encode_body();
        let (rows, outcome) = decode(body, 1 << 20).unwrap();
        assert_eq!((rows.len(), outcome.n_payloads_rejected), (1, 1));

        // Two payloads of 600 KB once inflated, under a 1 MB cap for the batch.
        let big = gzip(&vec![0u8; 600_000]);
        let body = batch(
            VERSION,
            vec![
                payload(big.clone(), PayloadEncoding::Gzip, 1),
                payload(big, PayloadEncoding::Gzip, 1),
            ],
        )
        .encode_body();
        assert!(matches!(
            decode(body, 1_000_000),
            Err(TransportError::TooLarge { .. })
        ));
    }
}
