"""Traces: one edit is one trace across the gateway and edit-transform processes.

The services export OTLP/HTTP (protobuf) to a small receiver in this test, configured
only by the standard ``OTEL_*`` variables.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from collab_client.connection import CollabClient


class Receiver(ThreadingHTTPServer):
    """Collects the spans posted to ``/v1/traces``, with their service names."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.spans: list[tuple[str, Span]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path != "/v1/traces":
            self.send_error(404)
            return
        request = ExportTraceServiceRequest.FromString(body)
        with self.server.lock:
            for resource_spans in request.resource_spans:
                attributes = resource_spans.resource.attributes
                service = next(a.value.string_value for a in attributes if a.key == "service.name")
                for scope_spans in resource_spans.scope_spans:
                    self.server.spans.extend((service, span) for span in scope_spans.spans)
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def attributes(span: Span) -> dict[str, str]:
    return {a.key: a.value.string_value for a in span.attributes}


async def test_one_edit_is_one_trace_across_the_services(stack_factory, receiver) -> None:
    stack = stack_factory(
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    async with CollabClient(stack.ws_url("traced"), stack.token("ada")) as client:
        await client.synced()
        client.insert(0, "hello")
        await client.synced()

    # The last span, the fan-out, ends after the ack was queued.
    deadline = time.monotonic() + 10
    while True:
        with receiver.lock:
            spans = {span.name: (service, span) for service, span in receiver.spans}
        # Each process exports on its own schedule: wait until all five spans are in.
        if len(spans) >= 5 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)

    [ingress] = [name.split()[1] for name in spans if name.startswith("send ")]
    chain = [
        ("receive op", "collab-gateway", Span.SpanKind.SPAN_KIND_SERVER),
        (f"send {ingress}", "collab-gateway", Span.SpanKind.SPAN_KIND_PRODUCER),
        (f"process {ingress}", "collab-transform", Span.SpanKind.SPAN_KIND_CONSUMER),
        ("commit", "collab-transform", Span.SpanKind.SPAN_KIND_INTERNAL),
        ("process collab:{d:*}:log", "collab-gateway", Span.SpanKind.SPAN_KIND_CONSUMER),
    ]
    assert sorted(spans) == sorted(name for name, _, _ in chain), (sorted(spans), stack.logs())
    parent = b""
    trace_id = spans["receive op"][1].trace_id
    for name, service, kind in chain:
        found_service, span = spans[name]
        assert found_service == service, name
        assert span.kind == kind, name
        assert span.trace_id == trace_id, name
        assert span.parent_span_id == parent, name
        parent = span.span_id

    sent = attributes(spans[f"send {ingress}"][1])
    assert sent["messaging.system"] == "redis"
    assert sent["messaging.operation.type"] == "send"
    assert sent["messaging.destination.name"] == ingress
    processed = attributes(spans[f"process {ingress}"][1])
    assert processed["messaging.operation.type"] == "process"
    assert processed["messaging.destination.name"] == ingress
    assert processed["messaging.consumer.group.name"] == "edit-transform"
    assert processed["messaging.message.id"]
    fanned_out = attributes(spans["process collab:{d:*}:log"][1])
    assert fanned_out["messaging.destination.name"] == "collab:{d:traced}:log"
    assert fanned_out["messaging.message.id"] == "1-0"
