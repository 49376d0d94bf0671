"""Helpers of the fault-injection suite (tests/test_faults*.py): one request in either client dialect,
read back as what the client saw, plus the gateway config the suite runs against.

`ask(gw, dialect, model, stream)` returns a `Seen`: status, headers, the JSON body (non-streamed or an
error status), or the stream's events, and whether the stream ended properly ([DONE] / message_stop) or
with an error event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import httpx
import yaml

from tests import conformance
from tests.upstream import closed_port

DIALECTS = ("openai", "anthropic")
FAULT_TIMEOUT = 2.0  # the primary's connect, first-token and idle timeouts (s): no healthy answer nears it
MESSAGES = [{"role": "user", "content": "hello there"}]


@dataclass
class Seen:
    status: int
    headers: dict
    body: dict | None = None
    events: list = field(default_factory=list)  # OpenAI: chunk payloads; Anthropic: (name, data)
    complete: bool = False  # ended with [DONE] / message_stop
    stream_error: str | None = None  # the error event's message, when the stream ended with one

    @property
    def request_id(self) -> str:
        return self.headers["x-request-id"]

    def text(self) -> str:
        """The answer's text, whichever dialect and mode."""
        if self.events and isinstance(self.events[0], tuple):
            return "".join(d["delta"].get("text", "") for n, d in self.events if n == "content_block_delta")
        if self.events:
            return "".join(c["choices"][0]["delta"].get("content") or "" for c in self.events if c.get("choices"))
        if self.body and "choices" in self.body:
            return self.body["choices"][0]["message"]["content"]
        if self.body and "content" in self.body:
            return "".join(b.get("text", "") for b in self.body["content"])
        return ""

    def error_message(self) -> str:
        return self.stream_error or ((self.body or {}).get("error") or {}).get("message") or ""


def request(dialect: str, model: str, stream: bool, **extra) -> tuple[str, dict, dict]:
    if dialect == "openai":
        return "/v1/chat/completions", {"model": model, "messages": MESSAGES, "stream": stream, **extra}, {}
    return ("/v1/messages", {"model": model, "max_tokens": 50, "messages": MESSAGES, "stream": stream, **extra},
            {"anthropic-version": "2023-06-01"})


def read(dialect: str, r: httpx.Response, stream: bool) -> Seen:
    headers = {k.lower(): v for k, v in r.headers.items()}
    assert "Traceback" not in r.text
    if r.status_code != 200 or not stream:
        body = r.json()
        if r.status_code >= 400:
            if dialect == "openai":
                conformance.validate("ErrorResponse", body)
            else:
                assert body["type"] == "error" and body["error"]["type"] and body["error"]["message"], body
                assert headers["request-id"].startswith("req_")
        return Seen(r.status_code, headers, body=body)
    if dialect == "openai":
        payloads, done = conformance.parse_sse(r.text)
        seen = Seen(200, headers, events=payloads, complete=done)
        if payloads and "error" in payloads[-1]:
            conformance.validate("ErrorResponse", payloads[-1])
            seen.stream_error = payloads[-1]["error"]["message"]
            seen.events = payloads[:-1]
            assert not done, "an error event, then [DONE]"
        conformance.validate_chunks(seen.events)
        return seen
    events = []
    for block in r.text.replace("\r\n", "\n").split("\n\n"):
        if block.strip():
            lines = block.split("\n")
            assert lines[0].startswith("event: ") and lines[1].startswith("data: "), block
            events.append((lines[0][7:], json.loads(lines[1][6:])))
    seen = Seen(200, headers, events=events, complete=bool(events) and events[-1][0] == "message_stop")
    if events and events[-1][0] == "error":
        seen.stream_error = events[-1][1]["error"]["message"]
        assert "message_stop" not in [n for n, _ in events]
    return seen


def ask(gw, dialect: str, model: str, stream: bool = False, timeout: float = 20, **extra) -> Seen:
    path, body, headers = request(dialect, model, stream, **extra)
    r = httpx.post(gw.origin + path, json=body, headers=headers, timeout=timeout)
    return read(dialect, r, stream)


async def ask_async(client: httpx.AsyncClient, dialect: str, model: str, stream: bool = False, **extra) -> Seen:
    path, body, headers = request(dialect, model, stream, **extra)
    r = await client.post(path, json=body, headers=headers)
    return read(dialect, r, stream)


def cloud_config(up_url: str, *, defaults: dict | None = None, primary: dict | None = None,
                 providers: list | None = None, routes: list | None = None) -> str:
    """gateway.yaml text: two providers on the same test upstream (primary answers model `p`, backup
    model `b`, so a test scripts faults per model), a provider nobody listens on, routes over them, and
    the `providers`/`routes` given. Cooldowns are off unless `defaults` says otherwise."""
    dead = f"http://127.0.0.1:{closed_port()}/v1"
    config = {
        "version": 1,
        "defaults": defaults if defaults is not None else {"cooldown": "0s"},
        "providers": [
            {"name": "primary", "kind": "openai-compatible", "base_url": up_url,
             "timeouts": {k: f"{FAULT_TIMEOUT:g}s" for k in ("connect", "first_token", "idle")},
             **(primary or {})},
            {"name": "backup", "kind": "openai-compatible", "base_url": up_url},
            {"name": "dead", "kind": "openai-compatible", "base_url": dead},
            *(providers or []),
        ],
        "routes": [
            {"name": "main", "match": {"exact": "m"}, "target": "primary/p", "fallback": ["backup/b"]},
            {"name": "solo", "match": {"exact": "solo"}, "target": "primary/p"},
            {"name": "refused", "match": {"exact": "refused"}, "target": "dead/x", "fallback": ["backup/b"]},
            {"name": "refused-only", "match": {"exact": "refused-only"}, "target": "dead/x"},
            {"name": "all", "match": {"exact": "all"}, "target": "dead/x", "fallback": ["primary/p"]},
            *(routes or []),
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)
