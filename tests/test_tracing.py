"""OpenTelemetry traces (issue 14): the gateway, with OTEL_EXPORTER_OTLP_ENDPOINT set, exports over real
OTLP/HTTP to a receiver this test runs (http.server decoding the protobuf with opentelemetry-proto): a
span per request with GenAI attributes, a child span per attempt."""

from __future__ import annotations

import gzip
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest, ExportTraceServiceResponse,
)  # fmt: skip

from mlxgw import tracing
from mlxgw.server import ServerConfig
from tests.fault_harness import ask, cloud_config
from tests.gateway_harness import apply_config, running_gateway, wait_for_rows
from tests.upstream import Reply, upstream, upstream_server  # noqa: F401


class Receiver:
    """An OTLP/HTTP trace receiver: POST /v1/traces, protobuf in, protobuf out."""

    def __init__(self):
        self.spans: list[tuple[dict, object]] = []  # (resource attributes, Span)
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.paths.append((self.path, self.headers.get("content-type")))
                req = ExportTraceServiceRequest.FromString(body)
                for rs in req.resource_spans:
                    res = {a.key: _value(a.value) for a in rs.resource.attributes}
                    for ss in rs.scope_spans:
                        receiver.spans.extend((res, s) for s in ss.spans)
                out = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, n: int, timeout: float = 15) -> list:
        deadline = time.monotonic() + timeout
        while len(self.spans) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.spans


def _value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def attrs(span) -> dict:
    return {a.key: _value(a.value) for a in span.attributes}


@pytest.fixture
def receiver(monkeypatch):
    r = Receiver()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", r.endpoint)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "mlxgw-test")
    yield r
    r.server.shutdown()


def test_spans_with_genai_attributes_and_one_child_per_attempt(home, cli, tmp_path, upstream, receiver):  # noqa: F811
    apply_config(cli, tmp_path, cloud_config(upstream.base_url))
    with running_gateway(ServerConfig()) as gw:
        assert gw.app.gateway.tracer is not None
        failed_over = ask(gw, "anthropic", "refused", stream=True)  # dead/x refuses, backup/b answers
        upstream.script(Reply.error(400), model="p")
        refused = ask(gw, "openai", "solo")
        assert (failed_over.status, refused.status) == (200, 400)
        rows = {r["id"]: r for r in wait_for_rows(gw, 2)}
        spans = receiver.wait_for(5)
    assert len(spans) == 5  # 2 requests + 3 attempts
    assert {p for p, _ in receiver.paths} == {"/v1/traces"}
    assert {t for _, t in receiver.paths} == {"application/x-protobuf"}
    assert all(res["service.name"] == "mlxgw-test" for res, _ in spans)
    by_id = {s.span_id: s for _, s in spans}
    requests = {attrs(s)["mlxgw.request_id"]: s for s in by_id.values() if "mlxgw.request_id" in attrs(s)}
    assert set(requests) == {failed_over.request_id, refused.request_id}

    span = requests[failed_over.request_id]
    row = rows[failed_over.request_id]
    a = attrs(span)
    assert span.name == "chat refused" and span.kind == span.SPAN_KIND_SERVER
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "refused"
    assert a["gen_ai.provider.name"] == "backup" and a["gen_ai.response.model"] == "b"
    assert a["gen_ai.usage.input_tokens"] == row["input_tokens"] > 0
    assert a["gen_ai.usage.output_tokens"] == row["output_tokens"] > 0
    assert a["http.response.status_code"] == 200 and a["mlxgw.client_api"] == "anthropic"
    assert a["mlxgw.stream"] is True and a["mlxgw.failovers"] == 1 and a["mlxgw.route"] == "refused"
    assert abs((span.end_time_unix_nano - span.start_time_unix_nano) / 1e6 - row["duration_ms"]) < 1
    children = sorted((s for s in by_id.values() if s.parent_span_id == span.span_id),
                      key=lambda s: s.start_time_unix_nano)
    assert [(attrs(c)["mlxgw.attempt.target"], attrs(c)["mlxgw.attempt.outcome"]) for c in children] == [
        ("dead/x", "unreachable"), ("backup/b", "ok")]
    assert all(c.trace_id == span.trace_id and c.kind == c.SPAN_KIND_CLIENT for c in children)
    assert attrs(children[0])["error.type"] == "unreachable" and children[0].status.code == children[0].status.STATUS_CODE_ERROR
    assert "error.type" not in attrs(children[1])
    assert all(span.start_time_unix_nano <= c.start_time_unix_nano <= c.end_time_unix_nano <= span.end_time_unix_nano
               for c in children)

    span = requests[refused.request_id]
    a = attrs(span)
    assert a["http.response.status_code"] == 400 and a["error.type"] == "400" and "gen_ai.usage.input_tokens" not in a
    (child,) = [s for s in by_id.values() if s.parent_span_id == span.span_id]
    assert attrs(child)["mlxgw.attempt.outcome"] == "http_400" and attrs(child)["http.response.status_code"] == 400


def test_no_endpoint_no_tracer(monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert tracing.from_env() is None
