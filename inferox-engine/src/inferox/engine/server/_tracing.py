"""OpenTelemetry tracing of the data plane: optional (the ``[otel]`` extra), configured by the
standard ``OTEL_*`` environment variables, free when off.

Tracing turns on when ``OTEL_TRACES_EXPORTER`` names ``otlp`` (or ``console``), or when an OTLP
endpoint is set (``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), unless
``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``. The exporter is the SDK's OTLP/HTTP
one (``opentelemetry-exporter-otlp-proto-http``), which reads its endpoint, headers, timeout and
compression from the same variables; ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` name the
service and ``OTEL_TRACES_SAMPLER`` samples, as in every OpenTelemetry SDK. A tracer provider the
application installed itself (``opentelemetry-instrument``) is used as it is.

Every request is a ``SERVER`` span whose parent is the caller's W3C ``traceparent`` (an HTTP
header, or gRPC metadata); inside it: ``tokenize`` (text → ids), one ``queue`` and one ``forward``
span per forward pass the request took (``inferox.batch_size``, ``inferox.tokens``) and ``encode``
(the response). The trace id goes into the access log line.

Without the extra the data plane still reads ``traceparent`` and logs its trace id, so logs join a
caller's trace either way.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping
from typing import Any

__all__ = ["Tracing", "parse_traceparent", "tracing_from_env"]

log = logging.getLogger("inferox.server")

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def parse_traceparent(value: str | None) -> str | None:
    """The trace id of a W3C ``traceparent`` header (``None`` when absent or malformed)."""
    if not value or len(value) > 512:
        return None
    m = _TRACEPARENT.fullmatch(value.strip().lower()[:55])
    if m is None or m.group(1) == "ff" or m.group(2) == "0" * 32 or m.group(3) == "0" * 16:
        return None
    return m.group(2)


def _wanted(env: Mapping[str, str]) -> bool:
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = {e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "").split(",") if e.strip()}
    if "none" in exporters:
        return False
    return bool(exporters & {"otlp", "console"}) or bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


class Tracing:
    """The data plane's tracer: spans for requests and their stages (see the module doc)."""

    def __init__(self, tracer: Any, provider: Any = None) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.tracer = tracer
        self.provider = provider
        self._trace = trace
        self._context = context
        self._propagator = TraceContextTextMapPropagator()
        self._server_kind = trace.SpanKind.SERVER

    def start_request(self, name: str, *, traceparent: str | None, tracestate: str | None, attributes: Mapping[str, Any]) -> Any:
        """The request's ``SERVER`` span, child of the caller's ``traceparent`` when it sent one."""
        parent = None
        if traceparent:
            carrier = {"traceparent": traceparent}
            if tracestate:
                carrier["tracestate"] = tracestate
            parent = self._propagator.extract(carrier)
        return self.tracer.start_span(name, context=parent, kind=self._server_kind, attributes=dict(attributes))

    def child(self, parent: Any, name: str, *, start_ns: int | None = None, attributes: Mapping[str, Any] | None = None) -> Any:
        """A span under ``parent`` (``start_ns``: when it began, for stages timed elsewhere)."""
        ctx = self._trace.set_span_in_context(parent)
        return self.tracer.start_span(name, context=ctx, start_time=start_ns, attributes=dict(attributes or {}))

    @staticmethod
    def trace_id(span: Any) -> str | None:
        ctx = span.get_span_context()
        return f"{ctx.trace_id:032x}" if ctx.trace_id else None

    def flush(self) -> None:
        """Export the spans still buffered (a server stopping calls it; the exporter stays)."""
        provider = self.provider
        if provider is not None:
            try:
                provider.force_flush()
            except Exception:
                log.warning("OpenTelemetry spans could not be flushed", exc_info=True)

    def shutdown(self) -> None:
        """Flush and stop the exporter this module set up (a provider installed by the application is left alone)."""
        if self.provider is not None:
            try:
                self.provider.shutdown()
            except Exception:
                log.warning("OpenTelemetry exporter did not shut down cleanly", exc_info=True)


_lock = threading.Lock()
_configured: Tracing | None = None


def tracing_from_env(env: Mapping[str, str] | None = None) -> Tracing | None:
    """The process's :class:`Tracing` as ``OTEL_*`` configure it (``None``: tracing is off).

    Configured once per process; a missing ``[otel]`` extra while the variables ask for tracing is
    logged (once) with the fix, and tracing stays off.
    """
    global _configured
    env = os.environ if env is None else env
    if not _wanted(env):
        return None
    with _lock:
        if _configured is not None:
            return _configured
        try:
            from opentelemetry import trace
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
        except ImportError as exc:
            log.warning("OTEL_* asks for tracing but OpenTelemetry is not installed (%s): pip install 'inferox-engine[otel]'", exc.name)
            return None
        current = trace.get_tracer_provider()
        provider = None
        if isinstance(current, TracerProvider):  # the application configured tracing itself
            tracer_provider: Any = current
        else:
            exporters = {e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if e.strip()} or {"otlp"}
            provider = tracer_provider = TracerProvider(resource=Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or "inferox"}))
            if "console" in exporters:
                provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
            if "otlp" in exporters or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
                try:
                    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
                except ImportError as exc:
                    log.warning("OTLP export needs opentelemetry-exporter-otlp-proto-http (%s): pip install 'inferox-engine[otel]'", exc.name)
                    return None
                provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        from importlib.metadata import version

        try:
            ours = version("inferox-engine")
        except Exception:  # noqa: BLE001 - a source tree
            ours = None
        _configured = Tracing(tracer_provider.get_tracer("inferox.engine.server", ours), provider)
        log.info("OpenTelemetry tracing on (%s)", env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "default endpoint")
        return _configured


def reset_tracing() -> None:
    """Forget the process's tracing set-up (shutting its exporter down): tests, and a server that stops."""
    global _configured
    with _lock:
        if _configured is not None:
            _configured.shutdown()
        _configured = None
