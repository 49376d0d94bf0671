"""POST /v1/responses of the upstream emulator (tests/upstream.py mounts it): the stand-in for OpenAI's own
Responses API, so tests can prove what the gateway passes through to a provider of kind `openai`.

Written from OpenAI's API description, not from the gateway's code (a test of the gateway must not
compare it with itself): every body and stream event validates against the vendored
openai-responses.schema.json (tests/test_upstream.py proves it).

It takes the same scripted behaviours (``Reply``) from the same queues as /v1/chat/completions:
    text / tool_calls   a message with one output_text part / function_call items (ToolCall name,
                        arguments, id -> call_id); default text ``"Echo: <text of the last user input>"``
    status >= 400       OpenAI's error body (``Reply.error(...)``), as for chat
    delay_first         seconds after the headers before the first event / the body
    break_after         a stream: close the connection after this many events
    error_after         a stream: after this many events send ``response.failed`` and end
    usage               a ResponseUsage overriding the computed one
``max_output_tokens`` cuts the text to that many words: status ``incomplete``, reason
``max_output_tokens``. With ``store`` unset or true the response is remembered, and a later
``previous_response_id`` naming it is accepted (an unknown one gets OpenAI's 400
``previous_response_not_found``): the gateway should never send one, and the tests check it does not.
Built-in tools (``web_search`` ...) are accepted, as OpenAI accepts them; they are only recorded.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any, Iterator

from aiohttp import web

if TYPE_CHECKING:  # tests/upstream.py imports this module: no import back at run time
    from tests.upstream import Recorded, Reply, UpstreamServer


def _sse(event: dict) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _messages(body: dict) -> list[dict]:
    items = body.get("input")
    if isinstance(items, str):
        return [{"type": "message", "role": "user", "content": items}]
    return [i for i in items or [] if isinstance(i, dict) and i.get("type", "message") == "message"]


def last_user_text(body: dict) -> str:
    for item in reversed(_messages(body)):
        if item.get("role") == "user":
            return _text_of(item.get("content"))
    return ""


def _usage(body: dict, output_words: int) -> dict:
    words = sum(len(_text_of(m.get("content")).split()) + 1 for m in _messages(body))
    words += len((body.get("instructions") or "").split())
    return {"input_tokens": max(words, 1), "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": output_words, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": max(words, 1) + output_words}


def _echo_tool(tool: dict) -> dict:
    """A tool as OpenAI's Response echoes it: a function tool with its defaults (strict is true)."""
    if isinstance(tool, dict) and tool.get("type") == "function":
        return {"description": None, "strict": True, **tool}
    return tool


class Turn:
    """One answer: its Response object at each stage, and its stream events."""

    def __init__(self, b: Reply, body: dict, rid: str):
        self.b, self.body, self.rid = b, body, rid
        self.created = int(time.time())
        text = b.text if b.text is not None else ("" if b.tool_calls else f"Echo: {last_user_text(body)}")
        words = text.split(" ") if text else []
        limit = body.get("max_output_tokens")
        self.incomplete = isinstance(limit, int) and not b.tool_calls and len(words) > limit
        self.text = " ".join(words[:limit]) if self.incomplete else text
        self.calls = [(f"fc_{rid[5:]}_{i}", tc.id or f"call_{rid[-6:]}_{i}", tc.name, tc.args_text())
                      for i, tc in enumerate(b.tool_calls or [])]
        out_words = len(self.text.split()) + sum(len(a) // 4 + 1 for *_, a in self.calls)
        self.usage = b.usage if b.usage is not None else _usage(body, out_words)

    def message(self, status: str = "completed") -> dict:
        return {"type": "message", "id": f"msg_{self.rid[5:]}", "status": status, "role": "assistant",
                "content": [{"type": "output_text", "text": self.text, "annotations": [], "logprobs": []}]}

    @staticmethod
    def call(item_id: str, call_id: str, name: str, arguments: str, status: str = "completed") -> dict:
        return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name,
                "arguments": arguments, "status": status}

    def output(self) -> list[dict]:
        out = [self.message("incomplete" if self.incomplete else "completed")] if self.text else []
        return out + [self.call(*c) for c in self.calls]

    def response(self, status: str, output: list[dict] | None = None, error: dict | None = None) -> dict:
        body = self.body
        out = {"id": self.rid, "object": "response", "created_at": self.created, "status": status,
               "background": False, "error": error,
               "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
               "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
               "model": self.b.model or body["model"], "output": output or [],
               "parallel_tool_calls": body.get("parallel_tool_calls", True),
               "previous_response_id": body.get("previous_response_id"),
               "reasoning": {"effort": (body.get("reasoning") or {}).get("effort"), "summary": None},
               "store": body.get("store", True), "temperature": body.get("temperature", 1.0),
               "text": body.get("text") or {"format": {"type": "text"}},
               "tool_choice": body.get("tool_choice", "auto"), "tools": [_echo_tool(t) for t in body.get("tools") or []],
               "top_p": body.get("top_p", 1.0), "truncation": body.get("truncation", "disabled"),
               "metadata": body.get("metadata") or {}, "user": None}  # the live API's null user
        if status in ("completed", "incomplete"):
            out["usage"] = self.usage
            out["completed_at"] = int(time.time()) if status == "completed" else None
        return out

    def final(self) -> dict:
        return self.response("incomplete" if self.incomplete else "completed", self.output())

    def events(self) -> Iterator[dict]:
        """The stream, without sequence numbers (the writer numbers what it sends)."""
        yield {"type": "response.created", "response": self.response("in_progress")}
        yield {"type": "response.in_progress", "response": self.response("in_progress")}
        index = 0
        if self.text:
            msg = self.message("in_progress")
            ref = {"item_id": msg["id"], "output_index": 0, "content_index": 0}
            yield {"type": "response.output_item.added", "output_index": 0, "item": {**msg, "content": []}}
            yield {"type": "response.content_part.added", **ref,
                   "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}
            words = self.text.split(" ")
            for i, word in enumerate(words):
                yield {"type": "response.output_text.delta", **ref, "delta": word if i == 0 else " " + word,
                       "logprobs": []}
            done = self.message("incomplete" if self.incomplete else "completed")
            yield {"type": "response.output_text.done", **ref, "text": self.text, "logprobs": []}
            yield {"type": "response.content_part.done", **ref, "part": done["content"][0]}
            yield {"type": "response.output_item.done", "output_index": 0, "item": done}
            index = 1
        for item_id, call_id, name, args in self.calls:
            yield {"type": "response.output_item.added", "output_index": index,
                   "item": self.call(item_id, call_id, name, "", "in_progress")}
            for j in range(0, len(args), 8):
                yield {"type": "response.function_call_arguments.delta", "item_id": item_id,
                       "output_index": index, "delta": args[j:j + 8]}
            yield {"type": "response.function_call_arguments.done", "item_id": item_id, "output_index": index,
                   "name": name, "arguments": args}
            yield {"type": "response.output_item.done", "output_index": index,
                   "item": self.call(item_id, call_id, name, args)}
            index += 1
        final = self.final()
        yield {"type": f"response.{final['status']}", "response": final}


def _bad(message: str, param: str | None, code: str | None = None) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "invalid_request_error", "param": param,
                                         "code": code}}, status=400)


async def handle(server: UpstreamServer, request: web.Request) -> web.StreamResponse:
    rec = await server._record(request)
    denied = server._auth_failure(request)
    body = rec.body
    if denied is None and not isinstance(body, dict):
        denied = _bad("We could not parse the JSON body of your request.", None)
    elif denied is None and not (isinstance(body.get("model"), str) and body["model"]):
        denied = _bad("Missing required parameter: 'model'.", "model", "missing_required_parameter")
    elif denied is None and body.get("previous_response_id") not in (None, *server.stored_responses):
        denied = _bad(f"Previous response with id '{body['previous_response_id']}' not found.",
                      "previous_response_id", "previous_response_not_found")
    if denied is not None:
        rec.outcome = "error"
        return denied
    b = server._next_behaviour(body["model"])
    if b.status >= 400 or b.raw_body is not None:
        return await server._error_reply(request, rec, b)
    turn = Turn(b, body, f"resp_up{next(server._ids):06d}{int(time.time() * 1000) % 10**6:06d}")
    if body.get("store", True):
        server.stored_responses.add(turn.rid)
    if body.get("stream"):
        return await _stream(server, request, rec, b, turn)
    if b.delay_first:
        await asyncio.sleep(b.delay_first)
    rec.outcome = "ok"
    return web.json_response(turn.final(), headers=b.headers)


async def _stream(server: UpstreamServer, request: web.Request, rec: Recorded, b: Reply,
                  turn: Turn) -> web.StreamResponse:
    resp = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream; charset=utf-8", **b.headers})
    await resp.prepare(request)
    if b.delay_first:
        await asyncio.sleep(b.delay_first)
    for seq, event in enumerate(turn.events()):
        if b.break_after is not None and seq >= b.break_after:
            rec.outcome = "broken"
            server._abort(request)
            return resp
        if b.error_after is not None and seq >= b.error_after:
            err = {"code": "server_error", "message": "The server had an error while processing your request."}
            await resp.write(_sse({"type": "response.failed", "sequence_number": seq,
                                   "response": turn.response("failed", error=err)}))
            await resp.write_eof()
            rec.outcome = "error"
            return resp
        if seq and b.delay_between:
            await asyncio.sleep(b.delay_between)
        await resp.write(_sse({**event, "sequence_number": seq}))
    await resp.write_eof()
    rec.outcome = "ok"
    return resp
