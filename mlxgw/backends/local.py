"""What every local engine adapter shares (BACK-02, BACK-03): requests reach a running engine through the
HTTP adapters of the wires it speaks, pointed at its port; the supervisor starts the engine first.

A LocalBackend serves every model of one provider. Its `call()`/`stream()` take a lease on the model
(`Supervisor.lease`: start it if cold, count the request in flight), apply the model's request defaults,
and hand the body to the engine's client for that wire: an `OpenAICompatBackend` (and, for engines that
serve Anthropic's Messages API themselves, an `AnthropicBackend`) built once per engine start, never per
request. Timeouts start when the engine is ready, so a cold start counts in the time to first byte but not
against the first-token timeout. A stream holds its lease until it ends or the caller closes it; closing
it (a client that went away) closes the upstream request, so the engine stops generating.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from mlxgw import kinds
from mlxgw.backends.anthropic import AnthropicBackend
from mlxgw.backends.base import Backend, ChatResult, Timeouts, UpstreamConnectError, UpstreamStream
from mlxgw.backends.http import HttpClient
from mlxgw.backends.openai_compat import OpenAICompatBackend
from mlxgw.kinds import ANTHROPIC_MESSAGES, OPENAI_CHAT
from mlxgw.supervisor import EngineProfile, ManagedModel, Supervisor

# Request fields a model's `defaults` may fill, and the fields that already set the same limit.
_SAME_AS = {"max_tokens": ("max_tokens", "max_completion_tokens")}
_REDIAL_PAUSE = 0.2  # seconds before a request dropped by a dying engine is sent again


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

    async def _relay(self, body: dict, open_stream) -> AsyncIterator[bytes]:
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
                        async for chunk in chunks:
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

        def open_stream(m, filled):
            chunks = self._client(m, wire).stream(wire, filled, t, headers)
            if wire == OPENAI_CHAT:
                return self.profile.fix_stream(filled, chunks)
            return self.profile.fix_messages_stream(filled, chunks) if wire == ANTHROPIC_MESSAGES else chunks

        return UpstreamStream().attach(self._relay(body, open_stream))

    async def count_tokens(self, body: dict, t: Timeouts, headers: dict | None = None) -> ChatResult:
        """POST /v1/messages/count_tokens on the engine (started if cold, like any request)."""
        if ANTHROPIC_MESSAGES not in self.wires:
            raise self.unspoken(ANTHROPIC_MESSAGES)
        async with self.supervisor.lease(self.name, body.get("model") or "") as m:
            return await self._client(m, ANTHROPIC_MESSAGES).count_tokens(body, t, headers)
