"""What every local engine adapter shares (BACK-02, BACK-03): requests reach a running engine through the
OpenAI-compatible adapter pointed at its port; the supervisor starts the engine first.

A LocalBackend serves every model of one provider. Its `chat()`/`stream()` take a lease on the model
(`Supervisor.lease`: start it if cold, count the request in flight), apply the model's request defaults,
and hand the body to the engine's client: an `OpenAICompatBackend` built once per engine start, never per
request. Timeouts start when the engine is ready, so a cold start counts in the time to first byte but not
against the first-token timeout. A stream holds its lease until it ends or the caller closes it; closing
it (a client that went away) closes the upstream request, so the engine stops generating.

Engines that also speak Anthropic's Messages API (vllm-mlx) make the backend `anthropic_native`: its
`messages(body, timeouts, headers)` / `messages_stream(...)` go, under the same lease, through the
Anthropic adapter pointed at the engine (see base.py for the contract).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from mlxgw.backends.anthropic import AnthropicBackend
from mlxgw.backends.base import Backend, ChatResult, Timeouts, UpstreamConnectError, UpstreamProtocolError
from mlxgw.backends.http import HttpClient
from mlxgw.backends.openai_compat import OpenAICompatBackend
from mlxgw.supervisor import EngineProfile, ManagedModel, Supervisor

# Request fields a model's `defaults` may fill, and the fields that already set the same limit.
_SAME_AS = {"max_tokens": ("max_tokens", "max_completion_tokens")}
_REDIAL_PAUSE = 0.2  # seconds before a request dropped by a dying engine is sent again


class _Redial(Exception):
    """The engine dropped the request before answering: lease the model again and resend once."""


@dataclass(frozen=True, slots=True)
class EngineClients:
    """The HTTP adapters of one running engine."""

    openai: OpenAICompatBackend
    messages: AnthropicBackend | None = None  # engines with a native /v1/messages


class LocalProfile(EngineProfile):
    """An EngineProfile whose clients are the OpenAI-compatible adapter, plus the Anthropic adapter when
    the engine serves /v1/messages itself."""

    anthropic_native = False

    def __init__(self, http: HttpClient):
        self.http = http

    def make_client(self, m: ManagedModel) -> EngineClients:
        openai = OpenAICompatBackend(m.provider, "openai-compatible", {"base_url": m.base_url + "/v1"}, None,
                                     self.http)
        messages = AnthropicBackend(m.provider, "anthropic", {"base_url": m.base_url}, None, self.http) \
            if self.anthropic_native else None
        return EngineClients(openai, messages)

    def base_args(self, m: ManagedModel) -> list[str]:
        return list(m.launch.args)

    def fix_result(self, body: dict, result: ChatResult) -> ChatResult:
        return result

    def fix_stream(self, body: dict, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
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

    api = "openai"
    profile_class: type[LocalProfile] = LocalProfile

    def __init__(self, name: str, kind: str, spec: dict, http: HttpClient, supervisor: Supervisor):
        self.name = name
        self.kind = kind
        self.supervisor = supervisor
        self.profile = supervisor.profiles[kind]
        self.anthropic_native = self.profile.anthropic_native

    async def health(self) -> bool:
        return True  # engines start on demand: the provider is healthy while the gateway is

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

    async def chat(self, body: dict, timeouts: Timeouts) -> ChatResult:
        async def send(m, filled):
            return self.profile.fix_result(filled, await m.client.openai.chat(filled, timeouts))

        return await self._call(body, send)

    def stream(self, body: dict, timeouts: Timeouts) -> AsyncIterator[bytes]:
        return self._relay(body, lambda m, filled: self.profile.fix_stream(filled, m.client.openai.stream(filled, timeouts)))

    # --- Anthropic Messages, for engines that speak it natively ---------------------------------------

    async def messages(self, body: dict, timeouts: Timeouts, headers: dict | None = None) -> ChatResult:
        """POST /v1/messages on the engine (its `anthropic-*` headers passed on as to a cloud)."""
        async def send(m, filled):
            return await self._messages_client(m).messages(filled, timeouts, headers)

        return await self._call(body, send)

    def messages_stream(self, body: dict, timeouts: Timeouts, headers: dict | None = None) -> AsyncIterator[bytes]:
        return self._relay(body, lambda m, filled: self._messages_client(m).messages_stream(filled, timeouts, headers))

    def _messages_client(self, m: ManagedModel) -> AnthropicBackend:
        if m.client.messages is None:
            # The server only sends Messages to `anthropic_native` backends; reaching here is a wiring bug,
            # reported as an unusable upstream rather than a crash.
            raise UpstreamProtocolError(self.name, f"provider '{self.name}' ({self.kind}) does not speak Anthropic's Messages API")
        return m.client.messages
