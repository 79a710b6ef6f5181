#!/usr/bin/env python3
"""Send one known trace to an OTLP endpoint with the real OpenTelemetry Python SDK.

Used by spanflow's end-to-end tests. Run it with the interpreter of the venv
that holds the chosen exporter (see scripts/setup-python):

  .venv/otel-proto/bin/python send_traces.py --exporter http-proto \\
      --endpoint http://127.0.0.1:38086/api/v1/otel/trace
  .venv/otel-proto/bin/python send_traces.py --exporter grpc \\
      --endpoint http://127.0.0.1:4317
  .venv/otel-json/bin/python send_traces.py --exporter http-json \\
      --endpoint http://127.0.0.1:4318/v1/traces --compression gzip

The trace has three spans with fixed names, attributes and timestamps
(relative to the current second):

  GET /api/orders/{id}   SERVER    0 ms .. 250 ms, status OK, event "cache miss"
  ├─ SELECT orders       CLIENT   10 ms ..  50 ms, status ERROR, exception event
  └─ render              INTERNAL 60 ms ..  65 ms, linked to "SELECT orders"

On success prints one JSON line on stdout:

  {"trace_id": "<32 hex>", "spans": {"<name>": "<16 hex>", ...},
   "start_time_unix_nano": <root start>}

and exits 0. If any export call did not return SUCCESS, or did not happen,
prints why on stderr and exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

EXPORTERS = ("http-proto", "grpc", "http-json")
MS = 1_000_000  # nanoseconds in a millisecond

ROOT_NAME = "GET /api/orders/{id}"
CLIENT_NAME = "SELECT orders"
INTERNAL_NAME = "render"
SPAN_COUNT = 3


class RecordingExporter(SpanExporter):
    """Delegates to a real exporter and records the result of every export call."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.results: list[tuple[SpanExportResult, int, str]] = []
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        detail = ""
        try:
            result = self.inner.export(spans)
        except Exception as error:  # the processor would only log it
            result = SpanExportResult.FAILURE
            detail = f"{type(error).__name__}: {error}"
        with self._lock:
            self.results.append((result, len(spans), detail))
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


def make_exporter(kind: str, endpoint: str, gzip: bool, timeout: float) -> SpanExporter:
    """Builds the real SDK exporter; imports lazily since each lives in its own venv."""
    if kind == "http-proto":
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )

        return OTLPSpanExporter(
            endpoint=endpoint,
            timeout=timeout,
            compression=Compression.Gzip if gzip else Compression.NoCompression,
        )
    if kind == "grpc":
        import grpc
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter,
        )

        return OTLPSpanExporter(
            endpoint=endpoint,
            insecure=True,
            timeout=timeout,
            compression=grpc.Compression.Gzip if gzip else grpc.Compression.NoCompression,
        )
    if kind == "http-json":
        from opentelemetry.exporter.otlp.common.http import Compression
        from opentelemetry.exporter.otlp.json.http.trace_exporter import (
            OTLPSpanExporter,
        )

        return OTLPSpanExporter(
            endpoint=endpoint,
            timeout=timeout,
            compression=Compression.GZIP if gzip else Compression.NONE,
        )
    raise ValueError(f"unknown exporter {kind!r}")


def make_resource(service: str) -> Resource:
    return Resource.create(
        {
            "service.name": service,
            "service.instance.id": "checkout-1",
            "service.version": "1.4.2",
            "k8s.namespace.name": "shop",
            "k8s.pod.name": "checkout-7d9f8-abcde",
            "k8s.node.name": "node-a",
            "k8s.deployment.name": "checkout",
            "host.name": "host-a",
        }
    )


def record_trace(tracer: trace.Tracer, base: int) -> tuple[dict[str, str], str]:
    """Records the three spans; returns (span name -> span id, trace id) in hex."""
    root = tracer.start_span(
        ROOT_NAME,
        kind=SpanKind.SERVER,
        start_time=base,
        attributes={
            "http.request.method": "GET",
            "url.path": "/api/orders/42",
            "url.scheme": "http",
            "server.address": "shop.example.com",
            "server.port": 8080,
            "http.response.status_code": 200,
            "client.address": "10.1.2.3",
            "http.route": "/api/orders/{id}",
            "order.count": 3,
            "order.total": 12.5,
            "order.paid": True,
            "order.tags": ["a", "b"],
        },
    )
    root.add_event("cache miss", {"cache.key": "order:42"}, timestamp=base + 5 * MS)
    parent = trace.set_span_in_context(root)

    client = tracer.start_span(
        CLIENT_NAME,
        context=parent,
        kind=SpanKind.CLIENT,
        start_time=base + 10 * MS,
        attributes={
            "db.system.name": "postgresql",
            "db.operation.name": "SELECT",
            "db.query.text": "SELECT * FROM orders WHERE id = $1",
            "db.namespace": "shop",
            "server.address": "10.9.8.7",
            "server.port": 5432,
            "network.peer.address": "10.9.8.7",
        },
    )
    try:
        raise RuntimeError("connection reset")
    except RuntimeError as error:  # raised so the event carries a real stack trace
        client.record_exception(error, timestamp=base + 45 * MS)
    client.set_status(Status(StatusCode.ERROR, "connection reset"))
    client.end(end_time=base + 50 * MS)

    internal = tracer.start_span(
        INTERNAL_NAME,
        context=parent,
        kind=SpanKind.INTERNAL,
        start_time=base + 60 * MS,
        links=[Link(client.get_span_context())],
        attributes={"template": "order.html"},
    )
    internal.end(end_time=base + 65 * MS)

    root.set_status(Status(StatusCode.OK))
    root.end(end_time=base + 250 * MS)

    span_ids = {
        ROOT_NAME: format(root.get_span_context().span_id, "016x"),
        CLIENT_NAME: format(client.get_span_context().span_id, "016x"),
        INTERNAL_NAME: format(internal.get_span_context().span_id, "016x"),
    }
    return span_ids, format(root.get_span_context().trace_id, "032x")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Send one known three-span trace with the OpenTelemetry Python SDK.",
    )
    parser.add_argument("--exporter", required=True, choices=EXPORTERS, help="which SDK exporter to use")
    parser.add_argument(
        "--endpoint",
        required=True,
        help="full traces URL for the HTTP exporters (http://127.0.0.1:4318/v1/traces), "
        "host URL for grpc (http://127.0.0.1:4317)",
    )
    parser.add_argument("--compression", choices=("gzip", "none"), default="none", help="default: none")
    parser.add_argument("--service", default="checkout", help="service.name (default: checkout)")
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="export timeout in seconds, retries included (default: 10)"
    )
    args = parser.parse_args(argv)

    try:
        inner = make_exporter(args.exporter, args.endpoint, args.compression == "gzip", args.timeout)
    except ImportError as error:
        print(
            f"send_traces.py: exporter {args.exporter} is not installed in {sys.executable}: {error}",
            file=sys.stderr,
        )
        return 1
    exporter = RecordingExporter(inner)

    provider = TracerProvider(resource=make_resource(args.service), shutdown_on_exit=False)
    # One batch for all three spans, sent when force_flush() is called.
    processor = BatchSpanProcessor(exporter, schedule_delay_millis=60_000, max_export_batch_size=512)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("spanflow-e2e-sender", "0.1.0")

    base = int(time.time()) * 1_000_000_000  # whole second, in ns
    span_ids, trace_id = record_trace(tracer, base)

    flushed = provider.force_flush(timeout_millis=int((args.timeout + 5) * 1000))
    provider.shutdown()

    failures = [
        f"export of {count} span(s) returned {result.name}" + (f" ({detail})" if detail else "")
        for result, count, detail in exporter.results
        if result is not SpanExportResult.SUCCESS
    ]
    exported = sum(count for result, count, _ in exporter.results if result is SpanExportResult.SUCCESS)
    if not flushed:
        failures.append("force_flush() timed out")
    if exported != SPAN_COUNT:
        failures.append(f"{exported} of {SPAN_COUNT} spans were exported successfully")
    if failures:
        print(
            f"send_traces.py: {args.exporter} export to {args.endpoint} failed: " + "; ".join(failures),
            file=sys.stderr,
        )
        return 1

    print(json.dumps({"trace_id": trace_id, "spans": span_ids, "start_time_unix_nano": base}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
