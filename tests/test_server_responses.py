"""The Responses dialect end to end: the official `openai` SDK's `client.responses` against a real uvicorn
gateway, on a chat-completions backend (tests/upstream.py) and an Anthropic backend
(tests/anthropic_upstream.py): plain, streamed, a tool-call round trip, and the stored conversation
(previous_response_id across backends, retrieve, input_items, delete). Every body and event the client
gets is checked against the vendored Responses schema."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests import conformance
from tests.anthropic_upstream import AReply, ToolUse, anthropic_upstream, anthropic_upstream_server  # noqa: F401
from tests.gateway_harness import wait_for_rows
from tests.test_server_anthropic import CLIENT_KEY, gateway, oai  # noqa: F401  (the same two upstreams)
from tests.upstream import Reply, ToolCall, upstream, upstream_server  # noqa: F401

WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                          "additionalProperties": False}, "strict": True}


KEY = {"authorization": f"Bearer {CLIENT_KEY}"}  # stored responses are scoped to the key that made them


def raw_create(oai, **kw) -> tuple[object, dict]:
    raw = oai.responses.with_raw_response.create(**kw)
    body = json.loads(raw.http_response.text)
    conformance.validate_response(body)
    return raw.parse(), body


@pytest.mark.parametrize("model", ["gpt-4o", "claude-sonnet"])
def test_plain_create(gateway, oai, model):
    resp, body = raw_create(oai, model=model, input="hello there", instructions="Be brief.")
    assert resp.status == "completed" and resp.model == model and resp.id.startswith("resp_")
    assert "hello there" in resp.output_text
    assert body["instructions"] == "Be brief." and body["usage"]["input_tokens"] > 0
    row = wait_for_rows(gateway, 1)[-1]
    assert (row["client_api"], row["status"], row["stream"]) == ("responses", 200, False)
    assert row["backend_api"] == ("openai" if model.startswith("gpt") else "anthropic")
    assert row["output_tokens"] == body["usage"]["output_tokens"]


@pytest.mark.parametrize("model", ["gpt-4o", "claude-sonnet"])
def test_stream_events_are_schema_valid_and_end_completed(gateway, model):
    with httpx.stream("POST", gateway.base_url + "/responses", timeout=10,
                      json={"model": model, "input": "hello there", "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        text = r.read().decode()
    events = conformance.validate_response_sse(text)
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds and "response.output_item.done" in kinds
    final = events[-1]["response"]
    assert "hello there" in final["output"][0]["content"][0]["text"]
    row = wait_for_rows(gateway, 1)[-1]
    assert row["client_api"] == "responses" and row["stream"] and row["error"] is None


@pytest.mark.parametrize("model", ["gpt-4o", "claude-sonnet"])
def test_sdk_stream_helper_gets_the_final_response(gateway, oai, upstream, anthropic_upstream, model):  # noqa: F811
    with oai.responses.stream(model=model, input="hello there") as s:
        events = list(s)
        final = s.get_final_response()
    assert events[0].type == "response.created" and final.status == "completed"
    assert "hello there" in final.output_text


@pytest.mark.parametrize("model", ["gpt-4o", "claude-sonnet"])
def test_tool_call_round_trip_with_previous_response_id(gateway, oai, upstream, anthropic_upstream, model):  # noqa: F811
    if model.startswith("gpt"):
        upstream.script(Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"}, id="call_P1")]))
    else:
        anthropic_upstream.script(AReply(tool_uses=[ToolUse("get_weather", {"city": "Paris"}, id="toolu_P1")]))
    first, _ = raw_create(oai, model=model, input="Weather in Paris?", tools=[WEATHER])
    call = first.output[-1]
    assert call.type == "function_call" and call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    second, body = raw_create(oai, model=model, previous_response_id=first.id, tools=[WEATHER],
                              input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18C"}])
    assert second.status == "completed" and body["previous_response_id"] == first.id
    if model.startswith("gpt"):
        sent = upstream.last.body["messages"]
        assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
        assert sent[1]["tool_calls"][0]["id"] == call.call_id and sent[2] == {"role": "tool", "tool_call_id": call.call_id,
                                                                             "content": "18C"}
    else:
        sent = anthropic_upstream.last.body["messages"]
        assert [m["role"] for m in sent] == ["user", "assistant", "user"]
        assert sent[1]["content"][-1]["type"] == "tool_use" and sent[2]["content"][0]["type"] == "tool_result"


def test_a_conversation_moves_between_backends_and_is_stored(gateway, oai, upstream, anthropic_upstream):  # noqa: F811
    first, _ = raw_create(oai, model="gpt-4o", input="my name is Ada")
    second, _ = raw_create(oai, model="claude-sonnet", input="what is my name?", previous_response_id=first.id)
    sent = anthropic_upstream.last.body["messages"]
    assert sent == [{"role": "user", "content": [{"type": "text", "text": "my name is Ada"}]},
                    {"role": "assistant", "content": [{"type": "text", "text": "Echo: my name is Ada"}]},
                    {"role": "user", "content": [{"type": "text", "text": "what is my name?"}]}]
    got = oai.responses.retrieve(second.id)
    assert got.id == second.id and got.previous_response_id == first.id
    assert httpx.get(f"{gateway.base_url}/responses/{second.id}").status_code == 404  # another key's (none)
    r = httpx.get(f"{gateway.base_url}/responses/{second.id}", headers=KEY)
    conformance.validate_response(r.json())
    items = httpx.get(f"{gateway.base_url}/responses/{second.id}/input_items", headers=KEY).json()
    conformance.validate_responses("ResponseItemList", items)
    assert [i["content"][0]["text"] for i in items["data"]] == ["what is my name?"] and not items["has_more"]
    listed = oai.responses.input_items.list(first.id)
    assert [i.content[0].text for i in listed.data] == ["my name is Ada"]
    deleted = httpx.delete(f"{gateway.base_url}/responses/{first.id}", headers=KEY)
    assert deleted.status_code == 200 and deleted.json() == {"id": first.id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError) as exc:
        oai.responses.retrieve(first.id)
    assert exc.value.status_code == 404 and first.id in str(exc.value)
    with pytest.raises(openai.BadRequestError) as exc:
        oai.responses.create(model="gpt-4o", input="again", previous_response_id=first.id)
    body = exc.value.response.json()
    conformance.validate_responses("ErrorResponse", body)
    assert body["error"]["code"] == "previous_response_not_found" and body["error"]["param"] == "previous_response_id"


def test_a_streamed_response_is_stored_and_chains_at_once(gateway, oai):
    with oai.responses.stream(model="gpt-4o", input="remember 42") as s:
        final = s.get_final_response()
    chained, _ = raw_create(oai, model="gpt-4o", input="and now?", previous_response_id=final.id)
    assert chained.status == "completed"
    assert oai.responses.retrieve(final.id).output_text == final.output_text


def test_store_false_is_not_kept(gateway, oai):
    resp, body = raw_create(oai, model="gpt-4o", input="hi", store=False)
    assert body["store"] is False
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(resp.id)


def test_bad_input_names_the_field_and_unknown_models_are_404(gateway, oai):
    r = httpx.post(gateway.base_url + "/responses", json={"model": "gpt-4o", "input": 5})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"
    conformance.validate_responses("ErrorResponse", r.json())
    r = httpx.post(gateway.base_url + "/responses", json={"model": "nope", "input": "hi"})
    assert r.status_code == 404 and "nope" in r.json()["error"]["message"] and r.json()["error"]["param"] == "model"
    r = httpx.post(gateway.base_url + "/responses", json={"model": "gpt-4o", "input": "hi",
                                                          "tools": [{"type": "web_search"}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "tools[0].type" and "web_search" in r.text
    r = httpx.get(gateway.base_url + "/responses/resp_unknown")
    assert r.status_code == 404 and r.json()["error"]["message"] == "Response with id 'resp_unknown' not found."
    rows = wait_for_rows(gateway, 4)  # the GET of a stored response is audited too
    assert [x["status"] for x in rows[-4:]] == [400, 404, 400, 404] and {x["client_api"] for x in rows[-4:]} == {"responses"}
    assert [x["path"] for x in rows[-4:]] == ["/v1/responses"] * 3 + ["/v1/responses/resp_unknown"]


def test_logs_stats_counts_responses_traffic(gateway, oai, cli):
    _, plain = raw_create(oai, model="gpt-4o", input="hello there")
    with oai.responses.stream(model="claude-sonnet", input="hello again") as s:
        streamed = s.get_final_response()
    oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    wait_for_rows(gateway, 3)
    code, out, err = cli("logs", "stats", "--json")
    assert code == 0, err
    per_api = json.loads(out)["client_apis"]
    assert per_api["responses"]["requests"] == 2 and per_api["openai"]["requests"] == 1
    assert per_api["responses"]["output_tokens"] == plain["usage"]["output_tokens"] + streamed.usage.output_tokens
    code, out, _ = cli("logs", "stats")
    assert code == 0 and "per client API:" in out and "  responses" in out
