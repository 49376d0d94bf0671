"""The OpenAI Responses dialect (POST /v1/responses) and the stored responses (GET and DELETE
/v1/responses/{id}, GET /v1/responses/{id}/input_items).

Its pairs, in order of preference:
- `responses` (OpenAI's own cloud): passed through with auth and model rewritten, the conversation
  expanded from the gateway's store (`dialects/responses/passthrough.py`: the gateway keeps the state,
  OpenAI is asked with `store: false`), so a conversation moves between OpenAI and any other backend;
- `openai` (chat completions: openai-compatible servers, local engines) and `anthropic` (Anthropic's cloud):
  translated both ways by `dialects/responses`.
A built-in tool (web_search, file_search, code_interpreter...) reaches only OpenAI's own API; a request
with one that must be translated gets a 400 naming the tool. Errors are OpenAI's shape.

State: `store` (true unless the client says false) keeps the finished response (completed or incomplete)
and its input items in the gateway's store (`store/responses.py`: batched off the request path, read
from memory first), scoped to the gateway key that made it. `previous_response_id` is expanded from
there before routing, whichever backend served the earlier turns; an unknown one is OpenAI's 400
`previous_response_not_found`.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field

import falcon

from mlxgw.backends.base import Backend, ChatResult, UpstreamError
from mlxgw.dialects import openai as oa
from mlxgw.dialects import responses as rs
from mlxgw.dialects.jsonfast import DecodeError, dumps, loads
from mlxgw.dialects.responses import passthrough
from mlxgw.kinds import ANTHROPIC_MESSAGES, OPENAI_CHAT, OPENAI_RESPONSES
from mlxgw.server.dialect import Dialect, Exchange, Leg, Pair
from mlxgw.server.errors import ApiError, from_upstream
from mlxgw.server.gateway import Gateway
from mlxgw.server.inference import audited
from mlxgw.server.keys import presented_token
from mlxgw.server.relays import SSETranslator
from mlxgw.server.streaming import Translator

FINAL = frozenset({"completed", "incomplete"})  # what is stored; a failed response is not
# An event's own type when it comes first, as OpenAI writes them: a delta is relayed with its `event:` line
# without being decoded; any other event is decoded (and re-encoded by rs.sse).
_TYPE_FIRST = re.compile(rb'\{\s*"type"\s*:\s*"([a-z_.]+)"')


def _error(exc: rs.RequestError) -> ApiError:
    return ApiError.of(exc.status, exc.message, param=exc.param, code=exc.code)


def owner_of(req) -> str | None:
    """Whose stored responses a request may see: the hash of the gateway key it presented (None without
    one, as on loopback), so one key cannot read or continue another's conversations."""
    token = presented_token(req.get_header("authorization"), req.get_header("x-api-key"))
    return hashlib.sha256(token.encode()).hexdigest() if token else None


@dataclass(slots=True)
class Turn:
    """What the dialect keeps for one request (`Exchange.state`)."""

    response_id: str
    owner: str | None
    store: bool
    items: list[dict]  # this request's input items, normalised with ids, as they are stored
    history: list[dict] | None = None  # the earlier turns' items, from previous_response_id
    stored: bool = field(default=False)


class _Storing:
    """Stores the terminal Response of a stream once it is there (mixed into the stream translators)."""

    def _init_storing(self, dialect: Responses, ex: Exchange) -> None:
        self._dialect, self._ex = dialect, ex

    def _check(self, out: bytes) -> bytes:
        response = self.response
        if response is not None and self.finished:
            self._dialect.keep(self._ex, response)
        return out

    def feed(self, chunk: bytes) -> bytes:
        return self._check(super().feed(chunk))

    def end(self) -> bytes:
        return self._check(super().end())


class ChatStream(_Storing, rs.ChatToResponsesStream, Translator):
    pass


class AnthropicStream(_Storing, rs.AnthropicToResponsesStream, Translator):
    pass


class PassThroughStream(SSETranslator):
    """OpenAI's own Responses stream: events go out as they came, those carrying a Response (created,
    in_progress, completed...) with the client's echo restored; the terminal Response is kept."""

    def __init__(self, dialect: Responses, ex: Exchange):
        super().__init__()
        self.dialect, self.ex = dialect, ex
        self.response: dict | None = None
        self.usage = None

    def _events(self, events) -> bytes:
        out = []
        for data in events:
            head = _TYPE_FIRST.match(data)
            if head and b'"response"' not in data and b'"error"' not in data:  # deltas: nothing to change
                out.append(b"event: " + head.group(1) + b"\ndata: " + data + b"\n\n")
                continue
            try:
                obj = loads(data)
            except DecodeError:
                continue
            if not isinstance(obj, dict):
                continue
            obj = passthrough.from_openai_event(obj, self.ex.body)
            kind = obj.get("type")
            if kind in ("response.completed", "response.incomplete", "response.failed"):
                self.finished = True
                self.response = obj.get("response")
                self.usage = (self.response or {}).get("usage")
                if kind == "response.failed":
                    self.error = str(((self.response or {}).get("error") or {}).get("message") or "failed")
                else:
                    self.dialect.keep(self.ex, self.response)
            elif kind == "error":
                self.finished, self.error = True, str(obj.get("message") or "upstream error")
            out.append(rs.sse(obj) if isinstance(kind, str) else b"data: " + dumps(obj) + b"\n\n")
        return b"".join(out)

    def _cut(self) -> bytes:
        self.error = rs.streams.CUT
        return self._failed_event(self.error)

    def _failed_event(self, message: str) -> bytes:
        writer = rs.ResponsesEventWriter(self.ex.body, self.ex.state.response_id, self.ex.created)
        return writer.failed(message, "server_error", None)

    def failed(self, exc: UpstreamError) -> bytes:
        return self._failed_event(exc.message)

    def tokens(self) -> tuple:
        return rs.audit_tokens(self.usage)


class PassThrough(Pair):
    wire = OPENAI_RESPONSES

    def __init__(self, dialect: Responses):
        self.dialect = dialect

    def leg(self, ex: Exchange, backend: Backend, backend_model: str) -> Leg:
        return Leg(self, passthrough.to_openai_request(ex.body, backend_model, ex.state.history), backend_model)

    def translator(self, ex: Exchange, leg: Leg, provider: str) -> Translator:
        return PassThroughStream(self.dialect, ex)

    def response(self, ex: Exchange, leg: Leg, result: ChatResult) -> tuple[dict, tuple]:
        out = passthrough.from_openai_response(result.body, ex.body)
        return out, rs.audit_tokens(out.get("usage"))


class _Translated(Pair):
    """A Responses client on a backend of another wire: `request` builds the backend's body, `stream`
    is the translator class, `answer` turns the backend's answer into the Response."""

    stream: type[Translator]

    def __init__(self, dialect: Responses):
        self.dialect = dialect

    def request(self, ex: Exchange, backend: Backend, backend_model: str) -> dict: ...

    def answer(self, body: dict, ex: Exchange) -> dict: ...

    def leg(self, ex: Exchange, backend: Backend, backend_model: str) -> Leg:
        for i, tool in enumerate(ex.body.get("tools") or ()):
            kind = tool.get("type") if isinstance(tool, dict) else None
            if kind in rs.BUILTIN_TOOL_TYPES:
                raise ApiError.of(400, f"tools[{i}].type: '{kind}' is a built-in tool of OpenAI's own API, and "
                                       f"provider '{backend.name}' ({backend.kind}) cannot run it; leave it out "
                                       f"(Codex: web_search = \"disabled\") or route this model to OpenAI",
                                  param=f"tools[{i}].type", code="unsupported_tool")
        try:
            return Leg(self, self.request(ex, backend, backend_model), backend_model)
        except rs.RequestError as exc:
            raise _error(exc) from None

    def translator(self, ex: Exchange, leg: Leg, provider: str) -> Translator:
        tr = self.stream(rs.ResponsesEventWriter(ex.body, ex.state.response_id, ex.created))
        tr._init_storing(self.dialect, ex)
        return tr

    def response(self, ex: Exchange, leg: Leg, result: ChatResult) -> tuple[dict, tuple]:
        out = self.answer(result.body, ex)
        return out, rs.audit_tokens(out.get("usage"))


class ToChat(_Translated):
    wire = OPENAI_CHAT
    stream = ChatStream

    def request(self, ex: Exchange, backend: Backend, backend_model: str) -> dict:
        target = backend.chat_target
        up = rs.to_chat_request(ex.body, backend_model, ex.state.history,
                                max_tokens_field=target.max_tokens_field, forward_user=target.developer_role)
        return up if target.developer_role else oa.developer_to_system(up)

    def answer(self, body: dict, ex: Exchange) -> dict:
        return rs.from_chat_response(body, ex.body, ex.state.response_id, ex.created, int(time.time()))


class ToAnthropic(_Translated):
    wire = ANTHROPIC_MESSAGES
    stream = AnthropicStream

    def request(self, ex: Exchange, backend: Backend, backend_model: str) -> dict:
        return rs.to_anthropic_request(ex.body, backend_model, ex.state.history)

    def answer(self, body: dict, ex: Exchange) -> dict:
        return rs.from_anthropic_response(body, ex.body, ex.state.response_id, ex.created, int(time.time()))


class Responses(Dialect):
    wire = OPENAI_RESPONSES

    def __init__(self, gateway: Gateway):
        self.gw = gateway
        self.pairs = (PassThrough(self), ToChat(self), ToAnthropic(self))

    def parse(self, req, raw: bytes, request_id: str) -> Exchange:
        try:
            body = rs.parse_request(raw, allow_builtin_tools=True)  # refused per backend (see the docstring)
        except rs.RequestError as exc:
            raise _error(exc) from None
        turn = Turn(rs.new_id("resp"), owner_of(req), body.get("store") is not False, rs.input_items(body))
        return Exchange(body, body["model"], bool(body.get("stream")), request_id, created=int(time.time()),
                        state=turn)

    async def prepare(self, ex: Exchange) -> None:
        prev = ex.body.get("previous_response_id")
        if prev:
            history = await self.gw.responses.history(prev, ex.state.owner)
            if history is None:
                raise _error(rs.previous_response_not_found(prev))
            ex.state.history = history

    def completed(self, ex: Exchange, out: dict) -> None:
        self.keep(ex, out)

    def keep(self, ex: Exchange, response: dict | None) -> None:
        """Store a finished response once, when the client asked for it to be stored."""
        turn = ex.state
        if turn.store and not turn.stored and response and response.get("status") in FINAL:
            turn.stored = True
            self.gw.responses.put(response, turn.items, turn.owner)

    def not_found(self, model: str) -> ApiError:
        return ApiError.of(404, f"The model `{model}` does not exist or no route of this gateway matches it.",
                           param="model", code="model_not_found")

    def upstream_error(self, exc: UpstreamError) -> ApiError:
        return from_upstream(exc)


def _stored_not_found(response_id: str) -> ApiError:
    return _error(rs.response_not_found(response_id))


class StoredResponse:
    """GET /v1/responses/{id} (the stored Response) and DELETE /v1/responses/{id}."""

    def __init__(self, gateway: Gateway):
        self.gw = gateway

    async def on_get(self, req, resp, response_id: str) -> None:
        async with audited(self.gw, req, OPENAI_RESPONSES):
            await self._get(req, resp, response_id)

    async def on_delete(self, req, resp, response_id: str) -> None:
        async with audited(self.gw, req, OPENAI_RESPONSES):
            await self._delete(req, resp, response_id)

    async def _get(self, req, resp, response_id: str) -> None:
        if req.get_param_as_bool("stream"):
            raise ApiError.of(400, "stream=true is only for background responses, which this gateway does not "
                                   "run", param="stream")
        found = await self.gw.responses.get(response_id, owner_of(req))
        if found is None:
            raise _stored_not_found(response_id)
        resp.content_type = falcon.MEDIA_JSON
        resp.data = dumps(found)

    async def _delete(self, req, resp, response_id: str) -> None:
        if not await self.gw.responses.delete(response_id, owner_of(req)):
            raise _stored_not_found(response_id)
        resp.content_type = falcon.MEDIA_JSON
        resp.data = dumps(rs.deleted(response_id))


class InputItems:
    """GET /v1/responses/{id}/input_items: the response's own input items, a page at a time."""

    def __init__(self, gateway: Gateway):
        self.gw = gateway

    async def on_get(self, req, resp, response_id: str) -> None:
        async with audited(self.gw, req, OPENAI_RESPONSES):
            await self._list(req, resp, response_id)

    async def _list(self, req, resp, response_id: str) -> None:
        limit = req.get_param_as_int("limit", min_value=1, max_value=100, default=20)
        order = req.get_param("order", default="desc")
        if order not in ("asc", "desc"):
            raise ApiError.of(400, "order must be 'asc' or 'desc'", param="order")
        page = await self.gw.responses.input_items(response_id, req.get_param("after"), limit, order,
                                                   owner_of(req))
        if page is None:
            raise _stored_not_found(response_id)
        resp.content_type = falcon.MEDIA_JSON
        resp.data = dumps(page)
