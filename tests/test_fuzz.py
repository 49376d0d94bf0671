"""Issue 12, item 7: a fuzz over every dialect (chat completions, messages, responses) and endpoint. Every field of a valid request gets
wrong types, deep nesting and odd Unicode (and is dropped); bodies get broken as a whole. No request may
get a 5xx, and the gateway keeps serving. Deterministic (seeded), bounded (a few thousand requests), over
the real gateway and the upstream emulators; the counts are printed for the record (pytest -s)."""

from __future__ import annotations

import copy
import json
import random
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from mlxgw.server import ServerConfig
from tests.anthropic_upstream import anthropic_upstream, anthropic_upstream_server  # noqa: F401
from tests.gateway_harness import apply_config, running_gateway
from tests.upstream import upstream, upstream_server  # noqa: F401

PER_FIELD = 14  # wrong values tried per field, drawn from WRONG (bounds the run to well under a minute)
DEEP = json.loads("[" * 200 + "]" * 200)
WRONG = [None, True, False, 0, -1, 3.5, 1e308, 2**70, "", "x", "\ud800", "\u202e\x00\x1b[2J", "🙂" * 3, [], {},
         [None], [1, "a"], {"a": 1}, {"type": 5}, [{"type": "text", "text": 5}], [[[]]], DEEP, "z" * 300]
TOOL = {"type": "function", "function": {"name": "get", "description": "d", "parameters": {
    "type": "object", "properties": {"q": {"type": "string"}}}}}
ATOOL = {"name": "get", "description": "d", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}
CHAT = {"model": "MODEL", "messages": [
    {"role": "system", "content": "be brief"}, {"role": "user", "content": [{"type": "text", "text": "hi"}]},
    {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
                                                          "function": {"name": "get", "arguments": "{\"q\":1}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "ok"}, {"role": "user", "content": "again"}],
    "tools": [TOOL], "tool_choice": "auto", "stop": ["x"], "max_tokens": 5, "temperature": 0.5, "stream": False,
    "stream_options": {"include_usage": True}, "n": 1, "response_format": {"type": "text"}, "user": "u"}
MESSAGES = {"model": "MODEL", "max_tokens": 5, "system": [{"type": "text", "text": "be brief"}], "messages": [
    {"role": "user", "content": [{"type": "text", "text": "hi"},
                                 {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}]},
    {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get", "input": {"q": "a"}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "ok"}]}]}],
    "tools": [ATOOL], "tool_choice": {"type": "auto"}, "stop_sequences": ["x"], "temperature": 0.5, "stream": False,
    "metadata": {"user_id": "u"}, "thinking": {"type": "enabled", "budget_tokens": 1024}, "top_k": 5}
RESPONSES = {"model": "MODEL", "instructions": "be brief", "input": [
    {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
    {"type": "function_call", "call_id": "call_1", "name": "get", "arguments": "{\"q\":1}"},
    {"type": "function_call_output", "call_id": "call_1", "output": "ok"}],
    "tools": [{"type": "function", "name": "get", "parameters": {"type": "object", "properties": {}}}],
    "tool_choice": "auto", "max_output_tokens": 5, "temperature": 0.5, "stream": False, "store": False,
    "text": {"format": {"type": "text"}}, "metadata": {"k": "v"}}
ENDPOINTS = [  # (path, template, models: one per backend wire)
    ("/v1/responses", RESPONSES, ["gpt-4o", "claude-3-5-haiku", "o-mini"]),
    ("/v1/chat/completions", CHAT, ["gpt-4o", "claude-3-5-haiku", "o-mini"]),
    ("/v1/messages", MESSAGES, ["gpt-4o", "claude-3-5-haiku", "o-mini"]),
    ("/v1/messages/count_tokens", {k: v for k, v in MESSAGES.items() if k != "max_tokens"}, ["gpt-4o", "claude-3-5-haiku"]),
]


def config(openai_url: str, anthropic_url: str) -> str:
    return textwrap.dedent(f"""\
        version: 1
        providers:
          - {{name: up, kind: openai-compatible, base_url: '{openai_url}', api_key: '${{env:OPENAI_API_KEY}}'}}
          - {{name: oai, kind: openai, base_url: '{openai_url}', api_key: '${{env:OPENAI_API_KEY}}'}}
          - {{name: claude, kind: anthropic, base_url: '{anthropic_url}', api_key: '${{env:ANTHROPIC_API_KEY}}'}}
        routes:
          - {{match: {{prefix: "gpt-"}}, target: up}}
          - {{match: {{prefix: "o-"}}, target: oai}}
          - {{match: {{prefix: "claude-"}}, target: claude}}
          - {{match: {{regex: "^(a+)+$"}}, target: up}}
    """)


def paths(obj, prefix=()):
    """Every field path of a JSON value: keys of objects and indexes of arrays, depth first."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield prefix + (k,)
            yield from paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield prefix + (i,)
            yield from paths(v, prefix + (i,))


def mutate(body: dict, path: tuple, value, delete: bool = False) -> dict:
    out = copy.deepcopy(body)
    node = out
    for p in path[:-1]:
        node = node[p]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = copy.deepcopy(value)
    return out


def encode(body) -> bytes:
    # ensure_ascii: lone surrogates travel as \\ud800 escapes, as a hostile client would send them.
    return json.dumps(body).encode()


def cases(rng: random.Random):
    for path, template, models in ENDPOINTS:
        for field in list(paths(template)):
            for value in rng.sample(WRONG, PER_FIELD):
                model = rng.choice(models)
                yield path, encode(mutate(template, field, value)).replace(b"MODEL", model.encode())
            yield path, encode(mutate(template, field, None, delete=True)).replace(b"MODEL", rng.choice(models).encode())
        for model in models:  # the valid request, streamed and not, and bodies broken as a whole
            for stream in (False, True):
                body = dict(template, stream=stream) if "count_tokens" not in path else template
                yield path, encode(body).replace(b"MODEL", model.encode())
            for raw in (b"", b"null", b"[]", b"{", b"\xff", b'{"model":' + b"[" * 5000, encode(DEEP),
                        encode(template).replace(b"MODEL", b"a" * 200 + b"!"), b'{"model":"x\\ud800"}'):
                yield path, raw


def test_fuzz_no_5xx_and_the_gateway_keeps_serving(home, cli, tmp_path, upstream, anthropic_upstream):  # noqa: F811
    apply_config(cli, tmp_path, config(upstream.base_url, anthropic_upstream.base_url))
    rng = random.Random(12)
    tried, server_errors, crashes = 0, [], 0
    t0 = time.monotonic()
    with running_gateway(ServerConfig()) as gw, httpx.Client(timeout=30) as c:
        headers = {"content-type": "application/json", "anthropic-version": "2023-06-01"}

        def send(case):
            path, raw = case
            try:
                r = c.post(gw.origin + path, content=raw, headers=headers)
            except httpx.TransportError:
                return path, raw, None
            return path, raw, r

        with ThreadPoolExecutor(4) as pool:  # a few clients at once, as real ones are
            for path, raw, r in pool.map(send, list(cases(rng))):
                if r is None:
                    crashes += 1
                    continue
                tried += 1
                if r.status_code >= 500:
                    server_errors.append((path, r.status_code, raw[:200], r.text[:300]))
        for method, path in [("GET", "/v1/models"), ("GET", "/admin/models"), ("GET", "/admin/cooldowns"),
                             ("POST", "/admin/models/%ff%fe/start"), ("GET", "/admin/models/x/logs?lines=-5"),
                             ("GET", "/admin/models/x/logs?offset=abc"), ("POST", "/admin/models/" + "n" * 300 + "/stop"),
                             ("GET", "/ui/resolve?model=%ED%A0%80"), ("GET", "/ui/resolve?model=" + "a" * 3000 + "!"),
                             ("DELETE", "/v1/models"), ("PUT", "/v1/messages"), ("GET", "/v1/%00"), ("TRACE", "/")]:
            r = c.request(method, gw.origin + path, headers={"anthropic-version": "2023-06-01"})
            tried += 1
            if r.status_code >= 500 and not (path.startswith("/admin/models") and r.status_code == 503):
                server_errors.append((path, r.status_code, b"", r.text[:300]))
        assert c.get(gw.origin + "/health").status_code == 200
        assert gw.thread.is_alive()
    print(f"\nfuzz: {tried} requests tried, {len(server_errors)} got a 5xx, {crashes} crashes, "
          f"{time.monotonic() - t0:.1f}s")
    assert tried > 2500
    assert server_errors == [] and crashes == 0, json.dumps(
        [(p, s, raw.decode("utf-8", "replace"), t) for p, s, raw, t in server_errors[:10]], indent=1)


@pytest.mark.parametrize("path, body, field", [
    ("/v1/messages", {"model": "gpt-4o", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
                      "stop_sequences": 5}, "stop_sequences"),
    ("/v1/messages", {"model": "gpt-4o", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
                      "stop_sequences": True}, "stop_sequences"),
    ("/v1/chat/completions", {"model": "claude-3-5-haiku", "messages": [{"role": "user", "content": "x"}],
                              "tools": 5}, "tools"),
    ("/v1/chat/completions", {"model": "claude-3-5-haiku", "messages": [{"role": "user", "content": "x"}],
                              "tools": True}, "tools"),
    ("/v1/messages/count_tokens", {"model": "gpt-4o", "messages": [{"role": "user", "content": [
        {"type": "text", "text": 5}]}]}, "text"),
])
def test_each_reported_500_is_a_400_naming_the_field(home, cli, tmp_path, upstream, anthropic_upstream,  # noqa: F811
                                                     path, body, field):
    apply_config(cli, tmp_path, config(upstream.base_url, anthropic_upstream.base_url))
    with running_gateway(ServerConfig()) as gw:
        r = httpx.post(gw.origin + path, json=body)
        assert r.status_code == 400 and field in r.text, r.text


def test_tool_result_nested_deep_is_a_400(home, cli, tmp_path, upstream, anthropic_upstream):  # noqa: F811
    apply_config(cli, tmp_path, config(upstream.base_url, anthropic_upstream.base_url))
    # Written as text: the standard library's own encoder cannot nest this deep.
    nested = '[{"type":"tool_result","tool_use_id":"t","content":' * 500 + '[{"type":"text","text":"x"}]' + "}]" * 500
    raw = '{"model":"gpt-4o","max_tokens":5,"messages":[{"role":"user","content":' + nested + "}]}"
    with running_gateway(ServerConfig()) as gw:
        for path in ("/v1/messages", "/v1/messages/count_tokens"):
            r = httpx.post(gw.origin + path, content=raw, headers={"content-type": "application/json"})
            assert r.status_code == 400 and "nested deeper than 128 levels" in r.json()["error"]["message"]
