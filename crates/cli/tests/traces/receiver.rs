//! An OTLP trace receiver on 127.0.0.1, speaking both transports on one
//! port: `POST /v1/traces` with a protobuf body (http/protobuf), and
//! gRPC's `TraceService/Export` (HTTP/2 without TLS). It keeps every span
//! it receives, with the transport that brought it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;

/// How a span reached the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    HttpProtobuf,
    Grpc,
}

/// A span as received, ids in hex.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub name: String,
    pub kind: SpanKind,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub attributes: BTreeMap<String, String>,
    /// The resource's attributes (`service.name`, …).
    pub resource: BTreeMap<String, String>,
    pub transport: Transport,
}

impl ReceivedSpan {
    pub fn attribute(&self, key: &str) -> &str {
        self.attributes
            .get(key)
            .unwrap_or_else(|| panic!("span {} has no {key}: {self:#?}", self.name))
    }
}

#[derive(Clone, Default)]
struct Collected(Arc<Mutex<Vec<ReceivedSpan>>>);

impl Collected {
    fn add(&self, request: ExportTraceServiceRequest, transport: Transport) {
        let mut spans = self.0.lock().unwrap();
        for resource_spans in request.resource_spans {
            let resource = resource_spans
                .resource
                .map(|resource| attributes(&resource.attributes))
                .unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                for span in scope_spans.spans {
                    spans.push(ReceivedSpan {
                        kind: SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified),
                        name: span.name,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        attributes: attributes(&span.attributes),
                        resource: resource.clone(),
                        transport,
                    });
                }
            }
        }
    }
}

#[tonic::async_trait]
impl TraceService for Collected {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.add(request.into_inner(), Transport::Grpc);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// The receiver, serving until the test's runtime ends.
pub struct OtlpReceiver {
    addr: SocketAddr,
    collected: Collected,
}

impl OtlpReceiver {
    pub async fn start() -> Self {
        let collected = Collected::default();
        let http = collected.clone();
        let app = tonic::service::Routes::new(TraceServiceServer::new(collected.clone()))
            .into_axum_router()
            .route(
                "/v1/traces",
                post(move |body: Bytes| {
                    let http = http.clone();
                    async move { export_http(&http, &body) }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, collected }
    }

    /// The value of `OTEL_EXPORTER_OTLP_ENDPOINT` for either transport.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.collected.0.lock().unwrap().clone()
    }

    /// The spans received once `done` says they are all there, polling
    /// for at most `within`; panics with what came otherwise.
    pub async fn wait_for(
        &self,
        within: Duration,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the spans did not all arrive within {within:?}; received: {spans:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn export_http(collected: &Collected, body: &[u8]) -> Response {
    match ExportTraceServiceRequest::decode(body) {
        Ok(request) => {
            collected.add(request, Transport::HttpProtobuf);
            (
                [(header::CONTENT_TYPE, "application/x-protobuf")],
                ExportTraceServiceResponse::default().encode_to_vec(),
            )
                .into_response()
        }
        Err(error) => (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    }
}

fn attributes(pairs: &[KeyValue]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|pair| (pair.key.clone(), text(pair.value.as_ref())))
        .collect()
}

/// An attribute's value as text (the tests compare text).
fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|value| value.value.as_ref()) {
        Some(Value::StringValue(text)) => text.clone(),
        Some(Value::BoolValue(flag)) => flag.to_string(),
        Some(Value::IntValue(number)) => number.to_string(),
        Some(Value::DoubleValue(number)) => number.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
