"""Real Responses API clients through a real gateway (uvicorn in-process) on real emulated backends:
- `codex exec` (Codex CLI, pinned, tests/clients/install.py) with a custom model provider
  (wire_api="responses") completes a turn with a shell tool call (`exec_command`), on a chat-completions
  backend and on an Anthropic backend: the backend is scripted to call the tool, then to answer in text,
  and the test checks that its second request carried the command's output; and again configured by
  examples/codex-config.toml alone;
- the OpenAI Agents SDK's default model (the Responses API) answers `Runner.run`, a function tool included;
- LangChain's `ChatOpenAI(use_responses_api=True)` answers.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import openai
import pytest

from mlxgw.server import ServerConfig
from tests.anthropic_upstream import AReply, ToolUse, anthropic_upstream, anthropic_upstream_server  # noqa: F401
from tests.gateway_harness import apply_config, running_gateway, wait_for_rows
from tests.test_codex_client import MARKER, check_tool_turn, run_codex
from tests.test_server_anthropic import config as two_backends
from tests.upstream import Reply, ToolCall, upstream, upstream_server  # noqa: F401

SHELL = {"cmd": f"echo {MARKER}"}


def config(openai_url: str, anthropic_url: str, model: str) -> str:
    """tests/test_server_anthropic.py's two upstreams, with `local-model` (what run_codex asks for),
    `qwen-small` (examples/codex-config.toml's) and `gpt-4o` routed to the one named by `model`."""
    target = "up/up-model" if model == "chat" else "claude/claude-sonnet"
    return two_backends(openai_url, anthropic_url) + "".join(
        f"  - match: {{exact: {name}}}\n    target: {target}\n" for name in ("local-model", "qwen-small", "gpt-4o"))


@contextlib.contextmanager
def gateway_on(backend: str, cli, tmp_path, upstream, anthropic_upstream):  # noqa: F811
    apply_config(cli, tmp_path, config(upstream.base_url, anthropic_upstream.base_url, backend))
    with running_gateway(ServerConfig(reload_interval=0.2)) as gw:
        gw.backend = backend
        yield gw


@pytest.fixture(params=["chat", "anthropic"])
def gateway(request, home, cli, tmp_path, upstream, anthropic_upstream):  # noqa: F811
    with gateway_on(request.param, cli, tmp_path, upstream, anthropic_upstream) as gw:
        yield gw


@pytest.fixture
def chat_gateway(home, cli, tmp_path, upstream, anthropic_upstream):  # noqa: F811
    with gateway_on("chat", cli, tmp_path, upstream, anthropic_upstream) as gw:
        yield gw


def tool_turn(gateway, upstream, anthropic_upstream, name: str, args: dict, answer: str):  # noqa: F811
    """Script the backend: call tool `name`, then answer `answer`. Returns a function giving the backend's
    requests (as the backend saw them)."""
    if gateway.backend == "chat":
        upstream.script(Reply(tool_calls=[ToolCall(name, args)]), Reply(text=answer))
        return upstream.chat_requests
    anthropic_upstream.script(AReply(tool_uses=[ToolUse(name, args)]), AReply(text=answer))
    return lambda: [r for r in anthropic_upstream.requests if r.path == "/v1/messages"]


def tool_result_sent(gateway, request) -> str:
    """The text of the last tool result in a backend request, in either wire."""
    if gateway.backend == "chat":
        tool = [m for m in request.body["messages"] if m["role"] == "tool"][-1]
        return tool["content"] if isinstance(tool["content"], str) else tool["content"][0]["text"]
    blocks = [b for m in request.body["messages"] if isinstance(m["content"], list) for b in m["content"]
              if b.get("type") == "tool_result"]
    content = blocks[-1]["content"]
    return content if isinstance(content, str) else " ".join(b.get("text", "") for b in content)


def test_codex_exec_completes_a_tool_call_turn_through_the_gateway(gateway, upstream, anthropic_upstream,  # noqa: F811
                                                                    tmp_path):
    sent = tool_turn(gateway, upstream, anthropic_upstream, "exec_command", SHELL, f"the tool said {MARKER}")
    done = run_codex(gateway.base_url, tmp_path)
    check_tool_turn(done)
    requests = sent()
    assert len(requests) == 2, [r.body for r in requests]
    assert MARKER in tool_result_sent(gateway, requests[1])
    rows = wait_for_rows(gateway, 2)
    assert [(r["client_api"], r["status"], r["stream"]) for r in rows[-2:]] == [("responses", 200, True)] * 2


def test_codex_with_the_example_config_toml(chat_gateway, upstream, anthropic_upstream, tmp_path):  # noqa: F811
    """examples/codex-config.toml (the README's), only its base_url pointed at this gateway."""
    example = (Path(__file__).parent.parent / "examples" / "codex-config.toml").read_text()
    assert 'base_url = "http://127.0.0.1:8080/v1"' in example
    sent = tool_turn(chat_gateway, upstream, anthropic_upstream, "exec_command", SHELL, f"the tool said {MARKER}")
    done = run_codex(chat_gateway.base_url, tmp_path,
                     config_toml=example.replace("http://127.0.0.1:8080/v1", chat_gateway.base_url))
    check_tool_turn(done)
    assert [r.body["model"] for r in sent()] == ["up-model", "up-model"]


async def test_agents_sdk_default_model_runs_a_tool_through_the_gateway(gateway, upstream, anthropic_upstream):  # noqa: F811
    import agents

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    sent = tool_turn(gateway, upstream, anthropic_upstream, "get_weather", {"city": "Paris"}, "It is sunny.")
    client = openai.AsyncOpenAI(base_url=gateway.base_url, api_key="client-key", max_retries=0)
    agents.set_default_openai_client(client, use_for_tracing=False)
    agents.set_default_openai_api("responses")  # the SDK's default, said out loud
    agents.set_tracing_disabled(True)
    try:
        agent = agents.Agent(name="weather", instructions="Use the tool.", model="gpt-4o", tools=[get_weather])
        result = await agents.Runner.run(agent, "Weather in Paris?")
    finally:
        await client.close()
    assert result.final_output == "It is sunny."
    assert tool_result_sent(gateway, sent()[-1]) == "sunny in Paris"
    rows = wait_for_rows(gateway, 2)
    assert {r["client_api"] for r in rows[-2:]} == {"responses"}


def test_langchain_chat_openai_with_the_responses_api_answers(gateway):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="gpt-4o", base_url=gateway.base_url, api_key="client-key", use_responses_api=True,
                     max_retries=0)
    assert llm.invoke("hello there").text == "Echo: hello there"
    assert "".join(chunk.text for chunk in llm.stream("hello again")) == "Echo: hello again"
    rows = wait_for_rows(gateway, 2)
    assert [(r["client_api"], r["stream"]) for r in rows[-2:]] == [("responses", False), ("responses", True)]
