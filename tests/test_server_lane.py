"""The inference routes' lane (mlxgw/server/lane.py) answers as Falcon does: the same requests, sent as raw
bytes over a real socket to one running gateway, once through the lane and once with the lane switched
off (every request through Falcon), give the same status, headers in the same order, and body; request
ids, generated ids, timestamps and dates aside."""

from __future__ import annotations

import http.client
import json
import re
import socket

import pytest

from mlxgw.server import ServerConfig
from tests.gateway_harness import apply_config, openai_config, running_gateway
from tests.supervisor_helpers import wait_until
from tests.upstream import upstream, upstream_server  # noqa: F401

ALLOWED = "http://allowed.example"
LIMIT = 4096
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there"}]}
MESSAGES = {"model": "gpt-4o", "max_tokens": 50, "messages": [{"role": "user", "content": "hello there"}]}
RESPONSES = {"model": "gpt-4o", "input": "hello there", "store": False}


def _json(body: dict, **more) -> bytes:
    return json.dumps({**body, **more}).encode()


def _chunked(data: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (data[:10], data[10:])) + b"0\r\n\r\n"


# (name, path, headers after Host, body as sent, chunked?): the key header is added unless a case sets one.
CASES = [
    ("chat", "/v1/chat/completions", [], _json(CHAT), False),
    ("chat stream", "/v1/chat/completions", [], _json(CHAT, stream=True), False),
    ("chat stream usage", "/v1/chat/completions", [], _json(CHAT, stream=True, stream_options={"include_usage": True}),
     False),
    ("messages", "/v1/messages", [("anthropic-version", "2023-06-01")], _json(MESSAGES), False),
    ("messages stream", "/v1/messages", [("anthropic-version", "2023-06-01")], _json(MESSAGES, stream=True), False),
    ("responses", "/v1/responses", [], _json(RESPONSES), False),
    ("responses stream", "/v1/responses", [], _json(RESPONSES, stream=True), False),
    ("unknown model", "/v1/chat/completions", [], _json(CHAT, model="nope"), False),
    ("unknown model, anthropic", "/v1/messages", [], _json(MESSAGES, model="nope"), False),
    ("not json", "/v1/chat/completions", [], b"{nope", False),
    ("not json, anthropic", "/v1/messages", [], b"{nope", False),
    ("empty body", "/v1/responses", [], b"", False),
    ("no messages", "/v1/chat/completions", [], _json({"model": "gpt-4o"}), False),
    ("chunked body", "/v1/chat/completions", [], _json(CHAT), True),
    ("chunked body over the limit", "/v1/chat/completions", [], _json(CHAT, pad="x" * LIMIT), True),
    ("no key", "/v1/chat/completions", [("x-api-key", None)], _json(CHAT), False),
    ("wrong key", "/v1/messages", [("authorization", "Bearer wrong")], _json(MESSAGES), False),
    ("foreign Host", "/v1/chat/completions", [("host", "evil.example")], _json(CHAT), False),
    ("refused Origin", "/v1/chat/completions", [("origin", "http://evil.example")], _json(CHAT), False),
    ("allowed Origin", "/v1/chat/completions", [("origin", ALLOWED)], _json(CHAT), False),
    ("allowed Origin, error", "/v1/messages", [("origin", ALLOWED)], b"{nope", False),
]
# A repeated header sends the request to Falcon even with the lane on (its values are joined there).
REPEATED = ("repeated header", "/v1/chat/completions", [("x-extra", "a"), ("x-extra", "b")], _json(CHAT), False)

_IDS = re.compile(rb"\b(req|resp|msg|chatcmpl|rs|fc|call|toolu|item)[_-][A-Za-z0-9_-]+")
_TIMES = re.compile(rb'"(created|created_at|completed_at)":\s*\d+')


def send(port: int, path: str, headers: list, body: bytes, chunked: bool, key: str):
    """One request as raw bytes; its status, headers (in order) and body, normalised for comparison."""
    names = {name for name, _ in headers}
    lines = [f"POST {path} HTTP/1.1"]
    if "host" not in names:
        lines.append(f"host: 127.0.0.1:{port}")
    if not names & {"x-api-key", "authorization"}:
        lines.append(f"authorization: Bearer {key}")
    lines += [f"{name}: {value}" for name, value in headers if value is not None]
    lines += ["content-type: application/json", "connection: close"]
    lines.append("transfer-encoding: chunked" if chunked else f"content-length: {len(body)}")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + (_chunked(body) if chunked else body))
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        data = resp.read()
        got = [(k.lower(), "-" if k.lower() in ("date", "x-request-id", "request-id") else v)
               for k, v in resp.getheaders()]
    return resp.status, got, _TIMES.sub(rb'"\1":0', _IDS.sub(rb"\1_ID", data))


@pytest.fixture
def gw(home, cli, tmp_path, upstream):  # noqa: F811
    apply_config(cli, tmp_path, openai_config(upstream.base_url))
    code, out, err = cli("tokens", "create", "lane", "--json")
    assert code == 0, out + err
    config = ServerConfig(require_keys=True, allow_origins=(ALLOWED,), max_body_bytes=LIMIT, reload_interval=0.2)
    with running_gateway(config) as g:
        g.key = json.loads(out)["token"]
        g.taken = []  # the paths the lane answered
        g.resources = {path: lane.responder.__self__ for path, lane in g.app.lanes.items()}
        for path, lane in list(g.app.lanes.items()):
            g.app.lanes[path] = _counting(lane, path, g.taken)
        yield g


def _counting(lane, path: str, taken: list):
    async def counted(scope, receive, send, headers):
        taken.append(path)
        return await lane(scope, receive, send, headers)
    return counted


def test_the_lane_answers_every_request_as_falcon_does(gw):
    assert wait_until(lambda: send(gw.port, *CASES[0][1:], gw.key)[0] == 200, 15)  # the key is loaded
    gw.taken.clear()
    lane = [send(gw.port, path, headers, body, chunked, gw.key) for _, path, headers, body, chunked in CASES]
    assert len(gw.taken) == len(CASES)  # every case went through the lane
    lanes, gw.app.lanes = gw.app.lanes, {}
    falcon = [send(gw.port, path, headers, body, chunked, gw.key) for _, path, headers, body, chunked in CASES]
    gw.app.lanes = lanes
    assert len(gw.taken) == len(CASES)  # and none of these
    for (name, *_), one, other in zip(CASES, lane, falcon, strict=True):
        assert one == other, name
    statuses = {name: status for (name, *_), (status, _, _) in zip(CASES, lane, strict=True)}
    assert statuses == {
        "chat": 200, "chat stream": 200, "chat stream usage": 200, "messages": 200, "messages stream": 200,
        "responses": 200, "responses stream": 200, "unknown model": 404, "unknown model, anthropic": 404,
        "not json": 400, "not json, anthropic": 400, "empty body": 400, "no messages": 400, "chunked body": 200,
        "chunked body over the limit": 413, "no key": 401, "wrong key": 401, "foreign Host": 403,
        "refused Origin": 403, "allowed Origin": 200, "allowed Origin, error": 400}


def test_a_request_with_a_repeated_header_goes_to_falcon(gw):
    status, headers, _ = send(gw.port, *REPEATED[1:], gw.key)
    assert status == 200 and ("x-request-id", "-") in headers
    assert gw.taken == []


def test_a_bug_is_the_same_plain_500_both_ways(gw, monkeypatch, caplog):
    def explode(req, raw, request_id):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(gw.resources["/v1/messages"].dialect, "parse", explode)
    case = ("/v1/messages", [], _json(MESSAGES), False)
    lane = send(gw.port, *case, gw.key)
    assert gw.taken == ["/v1/messages"]
    lanes, gw.app.lanes = gw.app.lanes, {}
    falcon = send(gw.port, *case, gw.key)
    gw.app.lanes = lanes
    assert lane == falcon
    status, _, body = lane
    assert status == 500 and json.loads(body)["error"]["type"] == "api_error"
    assert b"secret" not in body
    assert sum("secret internal detail" in r.getMessage() or (r.exc_info and "secret" in str(r.exc_info[1]))
               for r in caplog.records) == 2  # logged server-side, once a request
