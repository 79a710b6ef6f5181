//! The OTLP/gRPC receiver's status codes, with a raw client that can send any bytes.

use crate::common;

use bytes::{Buf, BufMut, Bytes};
use common::*;
use prost::Message;
use spanflow_cli::serve::Role;
use spanflow_otlp::ExportTraceServiceResponse;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};

#[derive(Default)]
struct BytesCodec;

struct BytesEncoder;
struct ResponseDecoder;

impl Codec for BytesCodec {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = BytesEncoder;
    type Decoder = ResponseDecoder;
    fn encoder(&mut self) -> BytesEncoder {
        BytesEncoder
    }
    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, buffer: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        buffer.put(item);
        Ok(())
    }
}

impl Decoder for ResponseDecoder {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;
    fn decode(&mut self, buffer: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, tonic::Status> {
        let bytes = buffer.copy_to_bytes(buffer.remaining());
        ExportTraceServiceResponse::decode(bytes)
            .map(Some)
            .map_err(|error| tonic::Status::internal(error.to_string()))
    }
}

async fn export(
    address: std::net::SocketAddr,
    body: Vec<u8>,
    compression: Option<CompressionEncoding>,
) -> Result<ExportTraceServiceResponse, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .expect("gRPC port answers");
    let mut client = tonic::client::Grpc::new(channel).max_encoding_message_size(usize::MAX);
    if let Some(encoding) = compression {
        client = client.send_compressed(encoding);
    }
    client.ready().await.unwrap();
    let path = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        .parse()
        .unwrap();
    client
        .unary(tonic::Request::new(Bytes::from(body)), path, BytesCodec)
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn grpc_answers_with_the_matching_codes() {
    let mut settings = test_settings();
    settings.max_body_bytes = Some(1 << 20);
    let running = start(Role::Both, settings).await;
    let grpc = running.agent_otlp_grpc.unwrap();

    let status = export(grpc, b"\x0a\xff\xff\xff".to_vec(), None)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("undecodable"), "{status:?}");

    let bomb = vec![0u8; 8 << 20];
    let status = export(grpc, bomb, Some(CompressionEncoding::Gzip))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");

    let trace_id = unique_trace_id(7);
    let mut bad = server_span(trace_id, [0; 8], "zero span id");
    bad.span_id = vec![0; 8];
    let body = request(
        vec![],
        vec![bad, server_span(trace_id, [5; 8], "grpc zstd")],
    )
    .encode_to_vec();
    let response = export(grpc, body, Some(CompressionEncoding::Zstd))
        .await
        .unwrap();
    let partial = response.partial_success.expect("partial success");
    assert_eq!(partial.rejected_spans, 1);
    let trace = fetch_trace(running.server_query.unwrap(), &hex::encode(trace_id), 1).await;
    span(&trace, "grpc zstd");

    let response = export(grpc, Vec::new(), None).await.unwrap();
    assert_eq!(response.partial_success, None, "an empty request succeeds");
    running.stop().await.unwrap();
}

#[tokio::test]
async fn grpc_backpressure_is_unavailable() {
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = reserved.local_addr().unwrap().port();
    drop(reserved);
    let mut settings = test_settings();
    settings.server_url = Some(format!("http://127.0.0.1:{port}"));
    settings.max_queue_bytes = Some(1);
    // In memory only: with a spool the agent would hold far more.
    settings.spool_max_bytes = Some(0);
    let running = start(Role::Agent, settings).await;
    let grpc = running.agent_otlp_grpc.unwrap();
    let trace_id = unique_trace_id(8);
    let body = request(vec![], vec![server_span(trace_id, [1; 8], "a")]).encode_to_vec();
    export(grpc, body.clone(), None).await.unwrap();
    let status = export(grpc, body, None).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    running.stop().await.unwrap();
}
