"""Issue 12, item 6: slow and idle clients cannot hold connections: partial headers, a declared body
that never arrives, an unfinished chunked body get 408 and are closed, an idle connection is closed, a
declared length over the limit is refused before its body is read; /health answers meanwhile; the
concurrency cap answers 503 beyond it."""

from __future__ import annotations

import socket
import time

import httpx

from mlxgw.server import ServerConfig
from mlxgw.server.protocol import protocol
from tests.gateway_harness import apply_config, openai_config, running_gateway
from tests.upstream import upstream, upstream_server  # noqa: F401

PER_KIND = 40  # x 4 kinds held at once: bounded, loopback only
KINDS = {
    "partial headers": b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: appl",
    "declared body": b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-length: 100\r\n\r\n{\"mo",
    "chunked body": b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{\"mod\r\n",
    "idle": b"",
}


def read_until_closed(sock: socket.socket, deadline: float) -> bytes:
    data = b""
    while True:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            part = sock.recv(4096)
        except TimeoutError:
            raise AssertionError(f"the gateway kept the connection open; got {data[:80]!r}") from None
        if not part:
            return data
        data += part


def test_slow_clients_are_cut_and_health_still_answers(home, cli, tmp_path, upstream):  # noqa: F811
    apply_config(cli, tmp_path, openai_config(upstream.base_url))
    options = {"http": protocol(header_timeout=2.0, body_timeout=2.0), "limit_concurrency": 1000}
    with running_gateway(ServerConfig(), uvicorn_options=options) as gw:
        held: list[tuple[str, socket.socket]] = []
        try:
            for kind, payload in KINDS.items():
                for _ in range(PER_KIND):
                    s = socket.create_connection(("127.0.0.1", gw.port))
                    if payload:
                        s.sendall(payload)
                    held.append((kind, s))
            # With every slow connection held, the gateway still answers at once.
            with httpx.Client(timeout=5) as c:
                for _ in range(5):
                    assert c.get(gw.origin + "/health").status_code == 200
                assert c.post(gw.base_url + "/chat/completions", json={
                    "model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}).status_code == 200
            deadline = time.monotonic() + 20
            answers: dict[str, set] = {}
            for kind, s in held:
                data = read_until_closed(s, deadline)
                answers.setdefault(kind, set()).add(data.split(b"\r\n", 1)[0])
            assert answers == {"partial headers": {b"HTTP/1.1 408 Request Timeout"},
                               "declared body": {b"HTTP/1.1 408 Request Timeout"},
                               "chunked body": {b"HTTP/1.1 408 Request Timeout"}, "idle": {b""}}
        finally:
            for _, s in held:
                s.close()


def test_a_kept_alive_connection_gets_the_deadlines_again_for_its_next_request(home, cli, tmp_path, upstream):  # noqa: F811
    """Deadlines are armed only for a request its bytes left incomplete: after a whole request answered
    on a kept-alive connection, the next one's partial headers, or its declared body that never comes,
    still get 408 and a close."""
    apply_config(cli, tmp_path, openai_config(upstream.base_url))
    options = {"http": protocol(header_timeout=2.0, body_timeout=2.0), "timeout_keep_alive": 60}
    whole = (b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    with running_gateway(ServerConfig(), uvicorn_options=options) as gw:
        for second in (KINDS["partial headers"], KINDS["declared body"], whole + KINDS["partial headers"]):
            s = socket.create_connection(("127.0.0.1", gw.port))
            try:
                s.sendall(whole)
                s.settimeout(10)
                first = s.recv(4096)
                assert first.startswith(b"HTTP/1.1 200")
                s.sendall(second)  # the last case pipelines a whole request and a partial one in one write
                data = read_until_closed(s, time.monotonic() + 20)
            finally:
                s.close()
            assert (first + data).count(b"HTTP/1.1 408 Request Timeout") == 1, first + data


def test_a_declared_length_over_the_limit_is_refused_before_the_body(home, cli, tmp_path, upstream):  # noqa: F811
    apply_config(cli, tmp_path, openai_config(upstream.base_url))
    with running_gateway(ServerConfig(max_body_bytes=1000)) as gw:
        for path, shape in (("/v1/chat/completions", b'"code":"request_too_large"'), ("/v1/messages", b'"type":"error"')):
            s = socket.create_connection(("127.0.0.1", gw.port))
            try:  # a terabyte declared, nothing sent: the answer comes at once, and the connection closes
                s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-length: {10**12}\r\n\r\n".encode())
                data = read_until_closed(s, time.monotonic() + 10)
            finally:
                s.close()
            assert data.startswith(b"HTTP/1.1 413") and shape in data and b"x-request-id" in data


def test_beyond_the_concurrency_cap_new_requests_get_503(home, cli, tmp_path, upstream):  # noqa: F811
    apply_config(cli, tmp_path, openai_config(upstream.base_url))
    with running_gateway(ServerConfig(), uvicorn_options={"limit_concurrency": 5}) as gw:
        held = [socket.create_connection(("127.0.0.1", gw.port)) for _ in range(5)]
        try:
            deadline = time.monotonic() + 10
            while httpx.get(gw.origin + "/health").status_code != 503:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        finally:
            for s in held:
                s.close()
        deadline = time.monotonic() + 10
        while httpx.get(gw.origin + "/health").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
