"""Traces across stream entries (collab_core.tracing), with an in-memory exporter."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from collab_core import tracing

OTEL_VARIABLES = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Tracing on, into memory; the process-wide provider is left alone."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "enabled", True)
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("test"))
    monkeypatch.setattr(tracing, "_propagator", TraceContextTextMapPropagator())
    yield exporter
    provider.shutdown()


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in exporter.get_finished_spans()}


def test_off_without_an_exporter(clean_env: pytest.MonkeyPatch) -> None:
    assert not tracing.configure("collab-test")
    assert not tracing.enabled
    with tracing.send("collab:{ingress:0}:ops") as traceparent:
        assert traceparent == ""
    with tracing.process("s", "00-" + "1" * 32 + "-" + "2" * 16 + "-01", message_id="1-0") as tp:
        assert tp == ""
    assert tracing.inject() == ""
    assert tracing.extract("00-" + "1" * 32 + "-" + "2" * 16 + "-01") is None


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"},
        {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"},
    ],
)
def test_off_when_disabled(clean_env: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        clean_env.setenv(name, value)
    assert not tracing.configure("collab-test")
    assert not tracing.enabled


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
    ],
)
def test_unsupported_settings_stop_the_start(
    clean_env: pytest.MonkeyPatch, env: dict[str, str], variable: str
) -> None:
    for name, value in env.items():
        clean_env.setenv(name, value)
    with pytest.raises(ValueError, match=variable):
        tracing.configure("collab-test")
    assert not tracing.enabled


def test_one_edit_is_one_trace_across_stream_entries(spans: InMemorySpanExporter) -> None:
    ingress = "collab:{ingress:1}:ops"
    received = time.time() - 0.01
    # Gateway: receive the op, write the ingress entry with the producer's context. The
    # op starts its own trace, whatever span is current (the connection's, say).
    with (
        tracing.span("connection"),
        tracing.receive("receive op", received),
        tracing.send(ingress) as entry_tp,
    ):
        pass
    # edit-transform, in another process: only the entry's field links it.
    with (
        tracing.process(ingress, entry_tp, message_id=b"17-0", group="edit-transform"),
        tracing.span("commit") as log_tp,
    ):
        pass
    # A gateway fanning the committed entry out.
    with tracing.process(
        "collab:{d:notes}:log", log_tp, message_id="5-0", template="collab:{d:*}:log"
    ):
        pass

    found = by_name(spans)
    receive = found["receive op"]
    send = found[f"send {ingress}"]
    process = found[f"process {ingress}"]
    commit = found["commit"]
    fan_out = found["process collab:{d:*}:log"]
    assert found["connection"].context.trace_id != receive.context.trace_id
    del found["connection"]
    assert {s.context.trace_id for s in found.values()} == {receive.context.trace_id}
    assert receive.parent is None
    assert send.parent is not None
    assert send.parent.span_id == receive.context.span_id
    assert process.parent is not None
    assert process.parent.span_id == send.context.span_id
    assert commit.parent is not None
    assert commit.parent.span_id == process.context.span_id
    assert fan_out.parent is not None
    assert fan_out.parent.span_id == commit.context.span_id
    assert [receive.kind, send.kind, process.kind, commit.kind, fan_out.kind] == [
        SpanKind.SERVER,
        SpanKind.PRODUCER,
        SpanKind.CONSUMER,
        SpanKind.INTERNAL,
        SpanKind.CONSUMER,
    ]
    assert receive.start_time == int(received * 1e9)
    assert entry_tp.split("-")[1:3] == [
        f"{send.context.trace_id:032x}",
        f"{send.context.span_id:016x}",
    ]
    assert dict(send.attributes or {}) == {
        "messaging.system": "redis",
        "messaging.operation.type": "send",
        "messaging.operation.name": "xadd",
        "messaging.destination.name": ingress,
    }
    assert dict(process.attributes or {}) == {
        "messaging.system": "redis",
        "messaging.operation.type": "process",
        "messaging.destination.name": ingress,
        "messaging.message.id": "17-0",
        "messaging.consumer.group.name": "edit-transform",
    }
    assert (fan_out.attributes or {})["messaging.destination.name"] == "collab:{d:notes}:log"


@pytest.mark.parametrize("traceparent", ["", "not-a-traceparent"])
def test_an_entry_without_a_valid_context_starts_a_trace(
    spans: InMemorySpanExporter, traceparent: str
) -> None:
    with (
        tracing.receive("receive op", time.time()),
        tracing.process("s", traceparent, message_id="1-0"),
    ):
        pass
    found = by_name(spans)
    assert found["process s"].parent is None
    assert found["process s"].context.trace_id != found["receive op"].context.trace_id
