"""Hot reload: `mlxgw apply` while the server runs takes effect within 2 s, and a stream in flight
finishes on the config it started with."""

from __future__ import annotations

import pytest

import threading
import time

import httpx

from mlxgw.server import ServerConfig
from tests import conformance
from tests.gateway_harness import apply_config, openai_config, running_gateway
from tests.upstream import Reply, upstream, upstream_server  # noqa: F401

pytestmark = pytest.mark.both_stores  # SQLite and PostgreSQL (tests/conftest.py)

MESSAGES = [{"role": "user", "content": "hi"}]


def test_apply_while_streaming(home, cli, tmp_path, upstream):  # noqa: F811
    apply_config(cli, tmp_path, openai_config(upstream.base_url))
    with running_gateway(ServerConfig()) as gw:  # the default 1 s poll
        upstream.script(Reply(text="one two three four five six seven eight", delay_between=0.25), model="gpt-4o")
        first_chunk = threading.Event()
        result: dict = {}

        def stream() -> None:
            with httpx.stream("POST", gw.base_url + "/chat/completions", timeout=20,
                              json={"model": "gpt-4o", "messages": MESSAGES, "stream": True}) as r:
                parts = []
                for part in r.iter_raw():
                    parts.append(part)
                    first_chunk.set()
                result["status"], result["text"] = r.status_code, b"".join(parts).decode()

        t = threading.Thread(target=stream)
        t.start()
        assert first_chunk.wait(5)
        new_routes = "- match: {exact: new-model}\n  target: up/up-model\n"
        apply_config(cli, tmp_path, openai_config(upstream.base_url, routes=new_routes), name="new.yaml")
        applied = time.monotonic()
        while True:
            r = httpx.post(gw.base_url + "/chat/completions", json={"model": "new-model", "messages": MESSAGES})
            if r.status_code == 200:
                break
            assert r.status_code == 404
            assert time.monotonic() - applied < 2.0, "the new route did not work within 2 s"
            time.sleep(0.05)
        assert time.monotonic() - applied < 2.0
        t.join(20)
        assert result["status"] == 200
        chunks = conformance.validate_sse(result["text"])  # completed, with [DONE]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        assert text == "one two three four five six seven eight"
        assert gw.app.gateway.runtime.revision == 2
        assert "new-model" in [m["id"] for m in httpx.get(gw.base_url + "/models").json()["data"]]
