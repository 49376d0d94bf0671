"""A long prefill on a local engine (issue 13), simulated with the fake engine (tests/fake_engine.py:
FAKE_FIRST_TOKEN_DELAY sends a stream's headers at once and its first chunk later): a streaming client
of each dialect gets keep-alives in its own dialect while the engine is silent (an SSE comment for
OpenAI chat and Responses, Anthropic's `ping` event), is not cut at the idle timeout (idle counts only
after the first token), and gets the whole answer; a failure after the stream was committed reaches it
as its dialect's error event. Intervals are scaled down: keep-alives every 0.3 s, idle 1 s, a client
read timeout of 2 s against a 3 s prefill.
"""

from __future__ import annotations

import json

import httpx
import pytest
import yaml

from mlxgw.server import ServerConfig
from tests.gateway_harness import apply_config, running_gateway, wait_for_rows
from tests.supervisor_helpers import write_fake_command

PREFILL = 3.0
CLIENT_READ_TIMEOUT = 2.0  # a client (or proxy) that gives up on a silent connection sooner than the prefill


@pytest.fixture
def gw(home, cli, tmp_path):
    fake = write_fake_command(tmp_path / "bin")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")

    def provider(name, env, timeouts):
        return {"name": name, "kind": "mlx-openai-server", "command": fake, "env": env, "timeouts": timeouts,
                "models": [{"name": "m", "path": str(model), "idle_ttl": "10m"}]}

    config = {
        "version": 1,
        "providers": [
            provider("prefill", {"FAKE_FIRST_TOKEN_DELAY": str(PREFILL)}, {"idle": "1s"}),
            # mlx-openai-server's way: a role-only chunk at once, then the prefill
            provider("rolefirst", {"FAKE_FIRST_TOKEN_DELAY": str(PREFILL), "FAKE_ROLE_CHUNK": "1"}, {"idle": "1s"}),
            provider("stalls", {"FAKE_TOKEN_DELAY": "3"}, {"idle": "1s"}),  # a token, then 3 s of silence
            provider("stuck", {"FAKE_FIRST_TOKEN_DELAY": "30"}, {"idle": "1s", "first_token": "2s"}),
        ],
        "routes": [{"match": {"exact": "slow"}, "target": "prefill/m"},
                   {"match": {"exact": "rolefirst"}, "target": "rolefirst/m"},
                   {"match": {"exact": "stalls"}, "target": "stalls/m"},
                   {"match": {"exact": "stuck"}, "target": "stuck/m"}],
    }
    apply_config(cli, tmp_path, yaml.safe_dump(config))
    with running_gateway(ServerConfig(keepalive_interval=0.3)) as g:
        yield g


def stream(gw, dialect: str, model: str) -> tuple[int, dict, list[bytes]]:
    """Status, headers and the raw pieces of one streamed request, read with a short read timeout."""
    messages = [{"role": "user", "content": "hello"}]
    path, body, headers = {
        "openai": ("/chat/completions", {"model": model, "messages": messages, "stream": True}, {}),
        "anthropic": ("/messages", {"model": model, "max_tokens": 5, "messages": messages, "stream": True},
                      {"anthropic-version": "2023-06-01"}),
        "responses": ("/responses", {"model": model, "input": "hello", "stream": True}, {}),
    }[dialect]
    timeout = httpx.Timeout(10.0, read=CLIENT_READ_TIMEOUT)
    with httpx.stream("POST", gw.base_url + path, json=body, headers=headers, timeout=timeout) as r:
        return r.status_code, dict(r.headers), list(r.iter_raw())


KEEPALIVE = {"openai": b": keep-alive\n\n", "responses": b": keep-alive\n\n",
             "anthropic": b'event: ping\ndata: {"type": "ping"}\n\n'}


def strip_keepalives(text: bytes, dialect: str) -> tuple[bytes, int]:
    """The stream after its leading keep-alives, and how many there were."""
    n = 0
    while text.startswith(KEEPALIVE[dialect]):
        text, n = text[len(KEEPALIVE[dialect]):], n + 1
    return text, n


# The fake engine's answers end at max_tokens: Responses calls that incomplete.
END = {"openai": b"data: [DONE]", "responses": b"event: response.incomplete", "anthropic": b"event: message_stop"}


@pytest.mark.parametrize("dialect", ["openai", "anthropic", "responses"])
def test_a_long_prefill_keeps_a_streaming_client_alive_and_is_not_cut_at_the_idle_timeout(gw, dialect):
    status, headers, pieces = stream(gw, dialect, "slow")
    assert status == 200
    rest, keepalives = strip_keepalives(b"".join(pieces), dialect)
    assert keepalives >= 2, rest  # every 0.3 s of a 3 s prefill, before any content
    assert rest.startswith(b"data: {" if dialect == "openai" else b"event: ") and END[dialect] in rest, rest
    rid = headers.get("x-request-id") or headers.get("request-id")
    rows = [r for r in wait_for_rows(gw, 1) if r["id"] == rid]
    assert rows and rows[0]["status"] == 200 and rows[0]["error"] is None
    assert rows[0]["attempts_detail"][-1]["committed"].startswith("before the first token")


@pytest.mark.parametrize("dialect", ["openai", "anthropic", "responses"])
def test_an_engine_that_sends_its_role_chunk_then_prefills_keeps_the_client_alive_past_idle(gw, dialect):
    """The stream starts at once (the role chunk is the client's first bytes), then keep-alives follow
    while the engine prefills, and the 1 s idle timeout does not cut it: idle runs from the first token."""
    status, headers, pieces = stream(gw, dialect, "rolefirst")
    assert status == 200
    text = b"".join(pieces)
    assert not text.startswith(KEEPALIVE[dialect])
    assert text.count(KEEPALIVE[dialect]) >= 2, text
    assert END[dialect] in text and b"timeout" not in text, text
    rid = headers.get("x-request-id") or headers.get("request-id")
    rows = [r for r in wait_for_rows(gw, 1) if r["id"] == rid]
    assert rows and rows[0]["status"] == 200 and rows[0]["error"] is None
    assert "committed" not in rows[0]["attempts_detail"][-1]


@pytest.mark.parametrize("dialect", ["openai", "anthropic", "responses"])
def test_a_first_token_timeout_after_the_commit_is_the_dialects_error_event(gw, dialect):
    status, _, pieces = stream(gw, dialect, "stuck")
    assert status == 200
    rest, keepalives = strip_keepalives(b"".join(pieces), dialect)
    assert keepalives >= 2
    events = [json.loads(line[6:]) for line in rest.split(b"\n") if line.startswith(b"data: {")]
    *head, error = events
    # no content: at most the stream's opening events (a translated stream opens before it fails)
    assert all(e.get("type") in ("message_start", "ping", "response.created", "response.in_progress")
               for e in head), rest
    message = json.dumps(error)
    assert "first_token timeout of 2s" in message
    if dialect == "openai":
        assert error["error"]["type"] == "timeout_error"
    elif dialect == "anthropic":
        assert error["type"] == "error" and error["error"]["type"] == "timeout_error"
    else:
        assert error["type"] == "response.failed"


def test_after_the_first_token_the_idle_timeout_applies(gw):
    status, _, pieces = stream(gw, "openai", "stalls")
    assert status == 200
    text = b"".join(pieces)
    assert b'"content": "echo' in text or b'"content":"echo' in text, text  # the first token reached the client
    assert b"idle timeout of 1s" in text and b"[DONE]" not in text, text
