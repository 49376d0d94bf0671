"""The Responses dialect on a provider of kind `openai` (OpenAI's own cloud, played by tests/upstream.py's
/v1/responses): the request is passed through to /v1/responses with the model rewritten, `store: false`
and the stored conversation expanded into `input` (the gateway keeps the state), built-in tools reach
OpenAI; and a conversation begun on OpenAI fails over mid-chain to a chat-completions backend. Every body
and event the client gets is schema-valid."""

from __future__ import annotations

import json
import textwrap

import httpx
import openai
import pytest

from mlxgw.server import ServerConfig
from tests import conformance
from tests.gateway_harness import apply_config, running_gateway, wait_for_rows
from tests.upstream import Reply, ToolCall, upstream, upstream_server  # noqa: F401

KEY = "client-key"


def config(url: str) -> str:
    return textwrap.dedent(f"""\
        version: 1
        providers:
          - name: oai
            kind: openai
            base_url: '{url}'
            api_key: ${{env:OPENAI_API_KEY}}
          - name: chat
            kind: openai-compatible
            base_url: '{url}'
            api_key: ${{env:OPENAI_API_KEY}}
        routes:
          - match: {{exact: gpt-4o}}
            target: oai/gpt-4o-2024-08-06
          - match: {{exact: resilient}}
            target: oai/gpt-4o-2024-08-06
            fallback: [chat/local-chat]
    """)


@pytest.fixture
def gateway(home, cli, tmp_path, upstream):  # noqa: F811
    apply_config(cli, tmp_path, config(upstream.base_url))
    with running_gateway(ServerConfig(reload_interval=0.2)) as gw:
        yield gw


@pytest.fixture
def oai(gateway):
    with openai.OpenAI(base_url=gateway.base_url, api_key=KEY, max_retries=0) as c:
        yield c


def create(oai, **kw):
    raw = oai.responses.with_raw_response.create(**kw)
    conformance.validate_response(json.loads(raw.http_response.text))
    return raw.parse()


def test_passed_through_with_model_rewritten_store_false_and_builtin_tools(gateway, oai, upstream):  # noqa: F811
    resp = create(oai, model="gpt-4o", input="hello there", instructions="Be brief.",
                  tools=[{"type": "web_search"}], metadata={"k": "v"})
    assert resp.status == "completed" and resp.output_text == "Echo: hello there"
    assert resp.model == "gpt-4o" and resp.store is True and resp.id.startswith("resp_up")
    sent = upstream.responses_requests()[-1].body
    assert sent["model"] == "gpt-4o-2024-08-06" and sent["store"] is False
    assert sent["tools"] == [{"type": "web_search"}] and sent["instructions"] == "Be brief."
    assert "reasoning.encrypted_content" in sent["include"] and sent["metadata"] == {"k": "v"}
    assert upstream.chat_requests() == []
    row = wait_for_rows(gateway, 1)[-1]
    assert (row["client_api"], row["backend_api"], row["status"]) == ("responses", "responses", 200)
    assert row["output_tokens"] == resp.usage.output_tokens


def test_streamed_pass_through_is_schema_valid_and_the_chain_is_expanded(gateway, oai, upstream):  # noqa: F811
    with httpx.stream("POST", gateway.base_url + "/responses", timeout=10, headers={"authorization": f"Bearer {KEY}"},
                      json={"model": "gpt-4o", "input": "my name is Ada", "stream": True}) as r:
        assert r.status_code == 200
        events = conformance.validate_response_sse(r.read().decode())
    kinds = [e["type"] for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds
    first = events[-1]["response"]
    assert first["model"] == "gpt-4o" and first["store"] is True
    second = create(oai, model="gpt-4o", input="what is my name?", previous_response_id=first["id"])
    assert second.previous_response_id == first["id"]
    sent = upstream.responses_requests()[-1].body
    assert "previous_response_id" not in sent and sent["store"] is False
    texts = [(i["role"], i["content"] if isinstance(i["content"], str) else i["content"][0]["text"])
             for i in sent["input"]]
    assert texts == [("user", "my name is Ada"), ("assistant", "Echo: my name is Ada"), ("user", "what is my name?")]
    assert all("id" not in i for i in sent["input"])  # gateway-minted ids OpenAI would look up
    assert oai.responses.retrieve(second.id).output_text == "Echo: what is my name?"


def test_a_tool_call_round_trip_passes_through(gateway, oai, upstream):  # noqa: F811
    upstream.script(Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"}, id="call_W1")]))
    tool = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}
    first = create(oai, model="gpt-4o", input="Weather in Paris?", tools=[tool])
    call = first.output[-1]
    assert call.type == "function_call" and call.call_id == "call_W1"
    create(oai, model="gpt-4o", previous_response_id=first.id, tools=[tool],
           input=[{"type": "function_call_output", "call_id": "call_W1", "output": "18C"}])
    sent = upstream.responses_requests()[-1].body["input"]
    assert [i.get("type", "message") for i in sent] == ["message", "function_call", "function_call_output"]
    assert sent[1]["call_id"] == "call_W1" and sent[2]["output"] == "18C"


def test_a_conversation_fails_over_mid_chain_from_openai_to_a_chat_backend(gateway, oai, upstream):  # noqa: F811
    first = create(oai, model="resilient", input="my name is Ada")
    assert upstream.responses_requests()[-1].body["model"] == "gpt-4o-2024-08-06"
    upstream.set_default(Reply.error(503), model="gpt-4o-2024-08-06")  # OpenAI is down from now on
    second = create(oai, model="resilient", input="what is my name?", previous_response_id=first.id)
    assert second.status == "completed" and second.output_text == "Echo: what is my name?"
    chat = upstream.chat_requests()[-1].body
    assert chat["model"] == "local-chat"
    assert [(m["role"], m["content"] if isinstance(m["content"], str) else m["content"][0]["text"])
            for m in chat["messages"]] == [("user", "my name is Ada"), ("assistant", "Echo: my name is Ada"),
                                           ("user", "what is my name?")]
    row = wait_for_rows(gateway, 2)[-1]
    assert (row["client_api"], row["backend_api"], row["provider"]) == ("responses", "openai", "chat")


def stream_events(gateway, **body) -> list[dict]:
    with httpx.stream("POST", gateway.base_url + "/responses", timeout=10, headers={"authorization": f"Bearer {KEY}"},
                      json={"stream": True, **body}) as r:
        assert r.status_code == 200
        return conformance.validate_response_sse(r.read().decode())


def test_a_streamed_turn_fails_over_from_openai_to_a_chat_backend(gateway, oai, upstream):  # noqa: F811
    first = stream_events(gateway, model="resilient", input="my name is Ada")[-1]["response"]
    upstream.set_default(Reply.error(503), model="gpt-4o-2024-08-06")
    events = stream_events(gateway, model="resilient", input="what is my name?", previous_response_id=first["id"])
    final = events[-1]["response"]
    assert events[-1]["type"] == "response.completed" and final["previous_response_id"] == first["id"]
    assert final["output"][0]["content"][0]["text"] == "Echo: what is my name?"
    assert len(upstream.chat_requests()[-1].body["messages"]) == 3  # the OpenAI turn, then this one
    assert oai.responses.retrieve(final["id"]).output_text == "Echo: what is my name?"


def test_openai_failing_mid_stream_ends_with_response_failed_and_nothing_is_stored(gateway, oai, upstream):  # noqa: F811
    """(Before the first event reached the client, the same failure would be failed over: a 502 here.)"""
    upstream.script(Reply(error_after=4, delay_between=0.05))  # past the stream line: created reached the client
    events = stream_events(gateway, model="gpt-4o", input="hello there")
    assert events[-1]["type"] == "response.failed"
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(events[-1]["response"]["id"])
    post, get = wait_for_rows(gateway, 2)[-2:]  # the create, then the retrieve that found nothing
    assert (post["path"], get["path"], get["status"]) == ("/v1/responses", f"/v1/responses/{events[-1]['response']['id']}", 404)
    assert post["client_api"] == "responses" and post["error"]
