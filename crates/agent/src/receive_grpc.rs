//! The OTLP/gRPC receiver: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.
//!
//! tonic's generated server decodes every request into structs; the agent wants the request's
//! bytes, so this service is the generated one with a codec that hands the message over raw.
//! tonic still does the framing, gzip/zstd and the size cap (which it applies after
//! decompression, answering RESOURCE_EXHAUSTED).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use prost::Message;
use spanflow_model::metric_names;
use spanflow_otlp::{ExportTracePartialSuccess, ExportTraceServiceResponse};
use tonic::codec::{
    Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings, EncodeBuf, Encoder,
};
use tonic::codegen::{http, Body, BoxFuture, StdError};
use tonic::server::{NamedService, UnaryService};

use crate::receive::{cpu_work, ContentKind, Receiver, Sender};

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// The TraceService, ready to hand to `tonic::transport::Server::add_service`.
#[derive(Clone)]
pub struct TraceService {
    receiver: Arc<Receiver>,
}

impl TraceService {
    pub fn new(receiver: Arc<Receiver>) -> TraceService {
        TraceService { receiver }
    }
}

impl NamedService for TraceService {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl<B> tonic::codegen::Service<http::Request<B>> for TraceService
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != EXPORT_PATH {
            return Box::pin(async move {
                let mut response = http::Response::new(tonic::body::Body::default());
                let headers = response.headers_mut();
                headers.insert(
                    tonic::Status::GRPC_STATUS,
                    (tonic::Code::Unimplemented as i32).into(),
                );
                headers.insert(
                    http::header::CONTENT_TYPE,
                    tonic::metadata::GRPC_CONTENT_TYPE,
                );
                Ok(response)
            });
        }
        let receiver = self.receiver.clone();
        Box::pin(async move {
            let mut encodings = EnabledCompressionEncodings::default();
            encodings.enable(CompressionEncoding::Gzip);
            encodings.enable(CompressionEncoding::Zstd);
            let max_body_bytes = receiver.max_body_bytes();
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .apply_compression_config(encodings, encodings)
                .apply_max_message_size_config(Some(max_body_bytes), None);
            Ok(grpc.unary(Export { receiver }, request).await)
        })
    }
}

struct Export {
    receiver: Arc<Receiver>,
}

impl UnaryService<Bytes> for Export {
    type Response = ExportTraceServiceResponse;
    type Future = BoxFuture<tonic::Response<Self::Response>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let receiver = self.receiver.clone();
        Box::pin(async move {
            let Some(peer) = request.remote_addr() else {
                count("internal_error");
                return Err(tonic::Status::internal(
                    "the connection's peer address is unknown",
                ));
            };
            let sender = match Sender::new(
                peer.ip(),
                request
                    .metadata()
                    .get(spanflow_model::tenant::ORG_HEADER)
                    .map(|value| value.as_bytes()),
            ) {
                Ok(sender) => sender,
                Err(error) => {
                    count(error.outcome());
                    return Err(tonic::Status::new(error.grpc_code(), error.message));
                }
            };
            let body = request.into_inner();
            metrics::counter!(metric_names::AGENT_RECEIVED_BYTES).increment(body.len() as u64);
            if let Err(error) = receiver.check_room(body.len()) {
                count(error.outcome());
                return Err(tonic::Status::new(error.grpc_code(), error.message));
            }
            let outcome = cpu_work(body.len(), move || {
                receiver.accept(ContentKind::Protobuf, body, &sender, None)
            })
            .await
            .map_err(|_| tonic::Status::internal("request handling failed"))?;
            match outcome {
                Ok(accepted) => {
                    count("ok");
                    Ok(tonic::Response::new(ExportTraceServiceResponse {
                        partial_success: accepted.rejected_message.map(|message| {
                            ExportTracePartialSuccess {
                                rejected_spans: accepted.n_rejected as i64,
                                error_message: message,
                            }
                        }),
                    }))
                }
                Err(error) => {
                    count(error.outcome());
                    Err(tonic::Status::new(error.grpc_code(), error.message))
                }
            }
        })
    }
}

fn count(outcome: &'static str) {
    metrics::counter!(metric_names::AGENT_REQUESTS, "transport" => "grpc", "outcome" => outcome)
        .increment(1);
}

/// Decodes a request to its bytes; encodes responses with prost.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = Bytes;
    type Encoder = ResponseEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ResponseEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

struct ResponseEncoder;

impl Encoder for ResponseEncoder {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;

    fn encode(&mut self, item: Self::Item, buffer: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        item.encode(buffer)
            .map_err(|error| tonic::Status::internal(format!("encoding the response: {error}")))
    }
}

struct RawDecoder;

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, buffer: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        Ok(Some(buffer.copy_to_bytes(buffer.remaining())))
    }
}
