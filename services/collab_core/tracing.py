"""Traces: OpenTelemetry set up from the standard ``OTEL_*`` variables, and the W3C trace
context carried inside stream entries.

One edit is one trace. The gateway opens a SERVER span when it receives the op and a
PRODUCER span ``send <stream>`` around the XADD, whose context goes into the entry's
``tp`` field; edit-transform opens a CONSUMER span ``process <stream>`` under that
context and a ``commit`` span whose context the log entry keeps in its own ``tp``; every
gateway opens a CONSUMER span per log entry it fans out. OpenTelemetry's Redis
instrumentation only makes client spans and carries no context through stream entries,
hence these helpers. Attributes follow the messaging semantic conventions
(``messaging.system`` is ``redis``, which the conventions do not list).

Tracing is off unless ``OTEL_TRACES_EXPORTER`` or an OTLP endpoint is set, and off with
``OTEL_SDK_DISABLED=true``: then nothing of OpenTelemetry is imported and every helper
returns one shared no-op context manager that yields ``""``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

#: True once :func:`configure` set up an exporter. Hot paths may test it before
#: preparing a span's arguments.
enabled = False
_tracer: Tracer | None = None
_propagator: TraceContextTextMapPropagator | None = None
_NOOP: AbstractContextManager[str] = contextlib.nullcontext("")

Attributes = Mapping[str, str]
Kind = Literal["SERVER", "PRODUCER", "CONSUMER", "INTERNAL"]


def configure(service: str) -> bool:
    """Set tracing up from the environment, once, at service start. True if it is on.

    ``service`` is the ``service.name`` unless ``OTEL_SERVICE_NAME`` or
    ``OTEL_RESOURCE_ATTRIBUTES`` names one. The SDK itself reads the sampler
    (``OTEL_TRACES_SAMPLER``), the batch processor (``OTEL_BSP_*``) and the OTLP exporter
    (``OTEL_EXPORTER_OTLP_*``) settings.
    """
    global enabled, _tracer, _propagator
    env = os.environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    setting = env.get("OTEL_TRACES_EXPORTER")
    if setting is None:
        # An endpoint alone asks for OTLP, the specification's default exporter.
        endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        )
        setting = "otlp" if endpoint else "none"
    names = [n.strip() for n in setting.lower().split(",") if n.strip() not in ("", "none")]
    if not names:
        return False
    exporters = [_exporter(name) for name in names]

    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service}))
    # The provider flushes its batch processors at exit (atexit), after uvicorn stops.
    provider = TracerProvider(resource=resource)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    # Not installed as the global provider: FastAPI would then trace every health probe,
    # metrics scrape and WebSocket connection by itself.
    _tracer = provider.get_tracer("collab")
    # Entries carry only ``traceparent``, whatever OTEL_PROPAGATORS says.
    _propagator = TraceContextTextMapPropagator()
    enabled = True
    return True


def _exporter(name: str) -> SpanExporter:
    if name == "otlp":
        protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
        )
        if protocol != "http/protobuf":
            raise ValueError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not supported; use http/protobuf"
            )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    raise ValueError(f"OTEL_TRACES_EXPORTER: {name!r} is not supported; use otlp, console or none")


# -- spans ---------------------------------------------------------------------------


def receive(name: str, started: float) -> AbstractContextManager[str]:
    """A SERVER span for a client message received at ``started`` (``time.time()``).

    It starts a trace: a message is not part of whatever else is current.
    """
    if _tracer is None:
        return _NOOP
    return _span(name, "SERVER", context=extract(""), start_time=int(started * 1e9))


def send(stream: str) -> AbstractContextManager[str]:
    """A PRODUCER span ``send <stream>`` around an XADD.

    Yields the traceparent to write into the entry's ``tp`` field.
    """
    if _tracer is None:
        return _NOOP
    attributes = {
        "messaging.system": "redis",
        "messaging.operation.type": "send",
        "messaging.operation.name": "xadd",
        "messaging.destination.name": stream,
    }
    return _span(f"send {stream}", "PRODUCER", attributes=attributes)


def process(
    stream: str | bytes,
    traceparent: str,
    *,
    message_id: str | bytes,
    group: str | None = None,
    template: str | None = None,
) -> AbstractContextManager[str]:
    """A CONSUMER span ``process <stream>`` for one stream entry, a child of the context
    in its ``tp`` field (a new trace when it has none).

    ``template`` names the stream in the span name when the name holds an id
    (a document's log): span names must stay few.
    """
    if _tracer is None:
        return _NOOP
    name = _text(stream)
    attributes = {
        "messaging.system": "redis",
        "messaging.operation.type": "process",
        "messaging.destination.name": name,
        "messaging.message.id": _text(message_id),
    }
    if group is not None:
        attributes["messaging.consumer.group.name"] = group
    if template is not None:
        attributes["messaging.destination.template"] = template
    return _span(
        f"process {template or name}",
        "CONSUMER",
        context=extract(traceparent),
        attributes=attributes,
    )


def span(name: str, attributes: Attributes | None = None) -> AbstractContextManager[str]:
    """An INTERNAL child of the current span. Yields its traceparent."""
    if _tracer is None:
        return _NOOP
    return _span(name, "INTERNAL", attributes=attributes)


# -- propagation ---------------------------------------------------------------------


def inject() -> str:
    """The W3C ``traceparent`` of the current span, or ``""``."""
    if _propagator is None:
        return ""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent", "")


def extract(traceparent: str) -> Context | None:
    """The context a ``traceparent`` names, or an empty one (a new trace) for ``""`` or a
    malformed value; None when tracing is off."""
    if _propagator is None:
        return None
    from opentelemetry.context import Context

    # An explicit empty context: without a parent the span starts a trace rather than
    # joining whatever span happens to be current.
    return _propagator.extract({"traceparent": traceparent} if traceparent else {}, Context())


@contextlib.contextmanager
def _span(
    name: str,
    kind: Kind,
    *,
    context: Context | None = None,
    attributes: Attributes | None = None,
    start_time: int | None = None,
) -> Iterator[str]:
    from opentelemetry.trace import SpanKind

    assert _tracer is not None
    with _tracer.start_as_current_span(
        name, context=context, kind=SpanKind[kind], attributes=attributes, start_time=start_time
    ):
        yield inject()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
