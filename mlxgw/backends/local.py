"""What every local engine adapter shares (BACK-02, BACK-03): requests reach a running engine through the
HTTP adapters of the wires it speaks, pointed at its port; the supervisor starts the engine first.

A LocalBackend serves every model of one provider. Its `call()`/`stream()` take a lease on the model
(`Supervisor.lease`: start it if cold, count the request in flight), apply the model's request defaults,
and hand the body to the engine's client for that wire: an `OpenAICompatBackend` (and, for engines that
serve Anthropic's Messages API themselves, an `AnthropicBackend`) built once per engine start, never per
request. Timeouts start when the engine is ready, so a cold start counts in the time to first byte but not
against the first-token timeout. A stream holds its lease until it ends or the caller closes it; closing
it (a client that went away) closes the upstream request, so the engine stops generating.

Timeouts of a stream: an engine answers at once with a first chunk that holds no token (mlx-openai-server's
role chunk; message_start), then prefills, which for an agent's prompt can take minutes. So the `idle`
timeout counts only from the first generated token; until then the gaps are bounded by `first_token`
(local engines: 10 minutes by default, see routing/snapshot.py) and the whole by `total`.

Context (`fit`, before the attempt loop calls): the prompt is counted with the model's own tokenizer and
chat template (`backends/tokencount.py`, in a worker thread, without starting the engine) only when a
decision needs it: the model's context is known (its `context_length`, else `max_position_embeddings`)
and the rendered prompt's UTF-8 length (bounding its token count) plus the requested max_tokens does
not already fit. A prompt that leaves no room raises ContextExceeded (the next target takes it); a
prompt that fits while prompt + max_tokens does not gets max_tokens clamped to the room left (the
model's `on_overflow: clamp`, the default) or raises ContextExceeded (`on_overflow: fail`). The model's
request defaults are applied first, so a default max_tokens is checked too.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import replace

from mlxgw import kinds
from mlxgw.backends import tokencount
from mlxgw.backends.anthropic import AnthropicBackend
from mlxgw.backends.base import (
    Backend, ChatResult, ContextExceeded, Timeouts, UpstreamConnectError, UpstreamError, UpstreamStream,
    UpstreamTimeout,
)  # fmt: skip
from mlxgw.backends.http import HttpClient
from mlxgw.backends.openai_compat import OpenAICompatBackend
from mlxgw.dialects import anthropic as an
from mlxgw.kinds import ANTHROPIC_MESSAGES, OPENAI_CHAT
from mlxgw.supervisor import EngineProfile, ManagedModel, Supervisor

# Request fields a model's `defaults` may fill, and the fields that already set the same limit.
_SAME_AS = {"max_tokens": ("max_tokens", "max_completion_tokens")}
_REDIAL_PAUSE = 0.2  # seconds before a request dropped by a dying engine is sent again
_LIMIT_FIELDS = ("max_tokens", "max_completion_tokens")

log = logging.getLogger("mlxgw.backends")


class _Redial(Exception):
    """The engine dropped the request before answering: lease the model again and resend once."""


class LocalProfile(EngineProfile):
    """An EngineProfile whose clients are the HTTP adapters of the wires its kind speaks (from the
    provider-kind registry), keyed by wire."""

    def __init__(self, http: HttpClient):
        self.http = http
        self.wires = kinds.get(self.kind).wires

    def make_client(self, m: ManagedModel) -> dict[str, Backend]:
        clients: dict[str, Backend] = {
            OPENAI_CHAT: OpenAICompatBackend(m.provider, "openai-compatible", {"base_url": m.base_url + "/v1"},
                                             None, self.http)}
        if ANTHROPIC_MESSAGES in self.wires:
            clients[ANTHROPIC_MESSAGES] = AnthropicBackend(m.provider, "anthropic", {"base_url": m.base_url},
                                                           None, self.http)
        return clients

    def base_args(self, m: ManagedModel) -> list[str]:
        return list(m.launch.args)

    def fix_result(self, body: dict, result: ChatResult) -> ChatResult:
        return result

    def fix_stream(self, body: dict, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        return chunks

    def fix_messages_stream(self, body: dict, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        return chunks


def apply_defaults(body: dict, defaults: dict) -> dict:
    """`body` with the model's default request parameters filled where the request left them unset."""
    if not defaults:
        return body
    out = None
    for key, value in defaults.items():
        if any(body.get(k) is not None for k in _SAME_AS.get(key, (key,))):
            continue
        if out is None:
            out = dict(body)
        out[key] = value
    return out if out is not None else body


# A generated token in a chunk of the engine's stream: text, reasoning or tool-call arguments (OpenAI's
# chat chunks), or a content block's delta (Anthropic's Messages events).
_TOKEN = {
    OPENAI_CHAT: re.compile(rb'"(?:content|reasoning_content|reasoning|arguments)":\s*"[^"]|"tool_calls":\s*\[\s*\{'),
    ANTHROPIC_MESSAGES: re.compile(rb'"type":\s*"content_block_delta"'),
}


async def _idle_after_token(chunks, first: bytes, wire: str, idle: float, provider: str):
    """The rest of an engine's stream, with the `idle` timeout from the first generated token on: before
    it (an engine sends its role chunk or message_start at once, then prefills), the gaps are bounded by
    the first_token timeout the request was opened with."""
    token = _TOKEN[wire]
    seen = token.search(first) is not None
    while True:
        try:
            if seen:
                async with asyncio.timeout(idle):
                    chunk = await chunks.__anext__()
            else:
                chunk = await chunks.__anext__()
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise UpstreamTimeout(provider, "idle", idle) from None
        seen = seen or token.search(chunk) is not None
        yield chunk


def _asked(body: dict) -> int | None:
    """The most tokens the request may generate, when it says."""
    values = [v for k in _LIMIT_FIELDS if isinstance(v := body.get(k), int) and not isinstance(v, bool)]
    return max(values) if values else None


def _chat_body(wire: str, body: dict) -> dict:
    """The chat-completions equivalent of a body in `wire` (what an engine's Messages API renders)."""
    return an.to_openai_request(body, body.get("model") or "") if wire == ANTHROPIC_MESSAGES else body


def _count(path: str, chat: dict, bound_below: int | None) -> int | None:
    """The prompt count of `Counter.count` (blocking: run in a worker thread), or None when the model
    folder cannot count."""
    c = tokencount.counter(path)
    return c.count(chat, bound_below) if c is not None else None


class LocalBackend(Backend):
    """The adapter of one local-engine provider; see the module docstring. The supervisor outlives
    config reloads; this object is rebuilt with each Runtime and holds nothing but references."""

    def __init__(self, name: str, kind: str, spec: dict, api_key: str | None, http: HttpClient,
                 supervisor: Supervisor | None):
        if supervisor is None:
            raise ValueError(f"provider '{name}' (kind {kind}) needs the gateway's engine supervisor")
        self.name = name
        self.kind = kind
        self.supervisor = supervisor
        self.profile = supervisor.profiles[kind]
        self.wires = self.profile.wires

    # An engine that died since the supervisor last looked (or a connection it dropped while its
    # process was going away) shows up as a connect error before any byte. The request then leases the
    # model again, which notices the crash and restarts the engine, and is sent once more: a crashed
    # engine is restarted by the next request instead of failing it.
    async def _call(self, body: dict, send) -> ChatResult:
        try:
            return await self._send_once(body, send)
        except _Redial:
            await asyncio.sleep(_REDIAL_PAUSE)
        return await self._send_once(body, send, last=True)

    async def _send_once(self, body: dict, send, last: bool = False) -> ChatResult:
        async with self.supervisor.lease(self.name, body.get("model") or "") as m:
            try:
                return await send(m, apply_defaults(body, m.settings.defaults))
            except UpstreamConnectError as exc:
                if last:
                    raise
                raise _Redial from exc

    async def _relay(self, body: dict, open_stream, wire: str, idle: float) -> AsyncIterator[bytes]:
        for last in (False, True):
            redial = False
            async with self.supervisor.lease(self.name, body.get("model") or "") as m:
                chunks = open_stream(m, apply_defaults(body, m.settings.defaults))
                try:
                    try:
                        first = await chunks.__anext__()
                    except StopAsyncIteration:
                        return
                    except UpstreamConnectError:
                        if last:
                            raise
                        redial = True
                    if not redial:
                        yield first
                        async for chunk in _idle_after_token(chunks, first, wire, idle, self.name):
                            yield chunk
                        return
                finally:
                    await chunks.aclose()
            await asyncio.sleep(_REDIAL_PAUSE)

    def _client(self, m: ManagedModel, wire: str) -> Backend:
        client = m.client.get(wire)
        if client is None:
            raise self.unspoken(wire)
        return client

    async def call(self, wire: str, body: dict, t: Timeouts, headers: dict | None = None) -> ChatResult:
        if wire not in self.wires:
            raise self.unspoken(wire)

        async def send(m, filled):
            result = await self._client(m, wire).call(wire, filled, t, headers)
            return self.profile.fix_result(filled, result) if wire == OPENAI_CHAT else result

        return await self._call(body, send)

    def stream(self, wire: str, body: dict, t: Timeouts, headers: dict | None = None) -> UpstreamStream:
        if wire not in self.wires:
            raise self.unspoken(wire)

        prefill = replace(t, idle=max(t.idle, t.first_token))  # idle runs from the first token: see above

        def open_stream(m, filled):
            chunks = self._client(m, wire).stream(wire, filled, prefill, headers)
            if wire == OPENAI_CHAT:
                return self.profile.fix_stream(filled, chunks)
            return self.profile.fix_messages_stream(filled, chunks) if wire == ANTHROPIC_MESSAGES else chunks

        return UpstreamStream().attach(self._relay(body, open_stream, wire, t.idle))

    def _model(self, body: dict):
        try:
            return self.supervisor.get(self.name, body.get("model") or "")
        except UpstreamError:
            return None  # send() reports it

    async def _prompt(self, m, wire: str, body: dict, bound_below: int | None = None) -> int | None:
        try:
            return await asyncio.to_thread(_count, m.launch.path, _chat_body(wire, body), bound_below)
        except Exception as exc:  # a template that refuses the conversation: the engine will say so itself
            log.debug("cannot count the prompt for %s/%s: %s", self.name, m.name, exc)
            return None

    async def prompt_tokens(self, wire: str, body: dict) -> int | None:
        m = self._model(body)
        return await self._prompt(m, wire, body) if m is not None else None

    fits = True

    async def fit(self, wire: str, body: dict) -> tuple[dict, str | None]:
        """See the module docstring."""
        m = self._model(body)
        if m is None:
            return body, None
        limit = tokencount.context_length(m.launch.path, m.settings.context_length)
        if limit is None:
            return body, None
        body = apply_defaults(body, m.settings.defaults)
        asked = _asked(body)
        prompt = await self._prompt(m, wire, body, limit - (asked or 1) + 1)
        if prompt is None:
            return body, None
        if prompt >= limit:
            raise ContextExceeded(self.name, m.name, prompt, limit)
        if asked is None or prompt + asked <= limit:
            return body, None
        if m.settings.on_overflow == "fail":
            raise ContextExceeded(self.name, m.name, prompt, limit, asked)
        room = limit - prompt
        out = dict(body)
        for k in _LIMIT_FIELDS:
            if k in out:
                out[k] = room
        thinking = out.get("thinking")  # Anthropic's rule, which an engine's Messages API may check too
        if isinstance(thinking, dict) and isinstance(thinking.get("budget_tokens"), int) \
                and thinking["budget_tokens"] >= room:
            out["thinking"] = {**thinking, "budget_tokens": max(room - 1, 1)}
        return out, f"max_tokens clamped from {asked} to {room}: the prompt is {prompt} tokens of the {limit}-token " \
                    f"context"

    async def count_tokens(self, body: dict, t: Timeouts, headers: dict | None = None) -> ChatResult:
        """POST /v1/messages/count_tokens on the engine (started if cold, like any request)."""
        if ANTHROPIC_MESSAGES not in self.wires:
            raise self.unspoken(ANTHROPIC_MESSAGES)
        async with self.supervisor.lease(self.name, body.get("model") or "") as m:
            return await self._client(m, ANTHROPIC_MESSAGES).count_tokens(body, t, headers)
