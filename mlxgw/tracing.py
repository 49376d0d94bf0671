"""OpenTelemetry traces (optional extra `mlxgw[otel]`), on when OTEL_EXPORTER_OTLP_ENDPOINT is set.

Like the metrics, a trace is derived from the request's finished audit row (an observer of the audit
writer), so no endpoint carries tracing code: one span per request, named `chat {model}` after the GenAI
semantic conventions (`gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.request.model`,
`gen_ai.response.model`, `gen_ai.usage.*`), plus one child span per attempt (`mlxgw.attempt.target`,
`mlxgw.attempt.outcome`). The request span starts at now - duration; attempt spans are laid end to end
from the request's start by their measured durations (the row keeps how long each took, not when it
began, so backoff pauses between retries show as the gap before the last attempt's end).

The SDK's own environment variables apply (OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_HEADERS,
OTEL_BSP_SCHEDULE_DELAY...). Spans are exported over OTLP/HTTP (protobuf) by the SDK's batch processor,
in its own thread; the request path only builds the spans.
"""

from __future__ import annotations

import logging
import os
import time

log = logging.getLogger("mlxgw.tracing")
OPERATION = "chat"


class Tracer:
    def __init__(self, provider):
        self._provider = provider
        self._tracer = provider.get_tracer("mlxgw")
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self._trace, self._kind, self._status, self._code = trace, SpanKind, Status, StatusCode

    def observe(self, row: dict) -> None:
        """One finished request's spans, from its audit row."""
        end = time.time_ns()
        start = end - int(row["duration_ms"] * 1e6)
        model = row["requested_model"] or ""
        attrs = {"gen_ai.operation.name": OPERATION, "gen_ai.request.model": model,
                 "http.response.status_code": row["status"], "mlxgw.request_id": row["id"],
                 "mlxgw.client_api": row["client_api"] or "", "mlxgw.stream": bool(row["stream"]),
                 "mlxgw.failovers": row["failovers"] or 0, "mlxgw.attempts": row["attempts"] or 0}
        for key, col in (("gen_ai.provider.name", "provider"), ("gen_ai.response.model", "backend_model"),
                         ("mlxgw.route", "route"), ("mlxgw.backend_api", "backend_api"),
                         ("gen_ai.usage.input_tokens", "input_tokens"), ("gen_ai.usage.output_tokens", "output_tokens"),
                         ("gen_ai.usage.cache_read.input_tokens", "cached_tokens")):
            if row[col] is not None:
                attrs[key] = row[col]
        if row["ttfb_ms"] is not None:
            attrs["mlxgw.time_to_first_byte_ms"] = row["ttfb_ms"]
        if row["status"] >= 400:
            attrs["error.type"] = str(row["status"])
        span = self._tracer.start_span(f"{OPERATION} {model}".strip(), kind=self._kind.SERVER, attributes=attrs,
                                       start_time=start)
        if row["status"] >= 500 or (row["status"] < 400 and row["error"]):
            span.set_status(self._status(self._code.ERROR, row["error"] or ""))
        ctx = self._trace.set_span_in_context(span)
        at = start
        for a in row["attempts_detail"] or ():
            a_end = min(end, at + int((a.get("ms") or 0.0) * 1e6))
            target = a.get("target") or ""
            a_attrs = {"mlxgw.attempt.target": target, "mlxgw.attempt.outcome": a.get("outcome") or "",
                       "gen_ai.operation.name": OPERATION, "gen_ai.provider.name": target.split("/", 1)[0]}
            if a.get("status") is not None:
                a_attrs["http.response.status_code"] = a["status"]
            if a.get("outcome") != "ok":
                a_attrs["error.type"] = a.get("outcome") or "unknown"
            child = self._tracer.start_span(f"attempt {target}", context=ctx, kind=self._kind.CLIENT,
                                            attributes=a_attrs, start_time=at)
            if a.get("outcome") != "ok":
                child.set_status(self._status(self._code.ERROR, (a.get("error") or "")[:500]))
            child.end(end_time=a_end)
            at = a_end
        span.end(end_time=end)

    def shutdown(self) -> None:
        """Export what is pending and stop the exporter (blocking: call it off the event loop)."""
        self._provider.shutdown()


def from_env(environ=os.environ) -> Tracer | None:
    """A Tracer exporting to OTEL_EXPORTER_OTLP_ENDPOINT, or None when it is unset (or the extra is not
    installed, which is logged)."""
    if not (environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed: "
                    "pip install 'mlxgw[otel]' to export traces")
        return None
    from mlxgw import __version__

    resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME") or "mlxgw",
                                "service.version": __version__})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return Tracer(provider)
