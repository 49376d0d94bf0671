"""The real Codex CLI (pinned, installed by tests/clients/install.py) against a small HTTP server that
answers /v1/responses with the Responses dialect: each request is checked and translated
(parse_request, to_chat_request / to_anthropic_request), and the answer is a canned backend stream
(chat-completions chunks or Anthropic events) run through ChatToResponsesStream /
AnthropicToResponsesStream. A turn with a shell tool call must complete: Codex runs the command, sends
its output back, and prints the final answer built from it. Every event served is schema-valid.

The gateway's own /v1/responses end-to-end tests belong with the endpoint; this one pins down that what
the dialect streams is what Codex needs."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import threading
from pathlib import Path

import pytest

from mlxgw.dialects import responses as rs
from tests import conformance
from tests.clients import install

MARKER = "codex-tool-ok"


def chat_answer(tool_output: str | None) -> bytes:
    if tool_output is None:
        chunks = [{"choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [
            {"index": 0, "id": "call_1", "type": "function",
             "function": {"name": "exec_command", "arguments": json.dumps({"cmd": f"echo {MARKER}"})}}]},
            "finish_reason": None}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}]
    else:
        chunks = [{"choices": [{"index": 0, "delta": {"content": f"the tool said {tool_output}"}, "finish_reason": None}]},
                  {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}]
    chunks.append({"choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 5, "total_tokens": 55}})
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def anthropic_answer(tool_output: str | None) -> bytes:
    events = [{"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                                                    "content": [], "usage": {"input_tokens": 50, "output_tokens": 1}}}]
    if tool_output is None:
        events += [{"type": "content_block_start", "index": 0, "content_block": {
                       "type": "tool_use", "id": "toolu_1", "name": "exec_command", "input": {}}},
                   {"type": "content_block_delta", "index": 0, "delta": {
                       "type": "input_json_delta", "partial_json": json.dumps({"cmd": f"echo {MARKER}"})}},
                   {"type": "content_block_stop", "index": 0}]
        reason = "tool_use"
    else:
        events += [{"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                   {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta",
                                                                         "text": f"the tool said {tool_output}"}},
                   {"type": "content_block_stop", "index": 0}]
        reason = "end_turn"
    events += [{"type": "message_delta", "delta": {"stop_reason": reason}, "usage": {"output_tokens": 5}},
               {"type": "message_stop"}]
    return b"".join(b"event: " + e["type"].encode() + b"\ndata: " + json.dumps(e).encode() + b"\n\n" for e in events)


class Stub(http.server.ThreadingHTTPServer):
    def __init__(self, wire: str):
        super().__init__(("127.0.0.1", 0), Handler)
        self.wire = wire
        self.requests: list[dict] = []
        self.problems: list[str] = []


class Handler(http.server.BaseHTTPRequestHandler):
    server: Stub

    def do_POST(self):  # noqa: N802
        raw = self.rfile.read(int(self.headers["content-length"]))
        try:
            assert self.path == "/v1/responses", self.path
            body = rs.parse_request(raw)
            self.server.requests.append(body)
            outputs = [i for i in body["input"] if i.get("type") == "function_call_output"]
            tool_output = outputs[-1]["output"].strip().splitlines()[-1] if outputs else None
            rid = rs.new_id("resp")
            writer = rs.ResponsesEventWriter(body, rid)
            if self.server.wire == "chat":
                rs.to_chat_request(body, "backend-model")
                conv, upstream = rs.ChatToResponsesStream(writer), chat_answer(tool_output)
            else:
                rs.to_anthropic_request(body, "backend-model")
                conv, upstream = rs.AnthropicToResponsesStream(writer), anthropic_answer(tool_output)
            out = b"".join(conv.feed(upstream[i:i + 7]) for i in range(0, len(upstream), 7)) + conv.end()
            conformance.validate_response_sse(out.decode())
        except Exception as exc:  # reported by the test, not swallowed by the server thread
            self.server.problems.append(repr(exc))
            self.send_response(500)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


def codex_env(tmp_path) -> dict:
    home = tmp_path / "codex-home"
    home.mkdir()
    return {**os.environ, "CODEX_HOME": str(home), "GW_KEY": "sk-test-not-a-secret",
            "MLXGW_KEY": "sk-test-not-a-secret", "NO_COLOR": "1"}


def run_codex(base_url: str, tmp_path, prompt: str = f"run echo {MARKER}",
              config_toml: str | None = None) -> subprocess.CompletedProcess:
    """`codex exec --json` in a fresh CODEX_HOME and work directory, with a custom model provider
    (wire_api="responses") at `base_url` given on the command line and web_search disabled (a chat or
    Anthropic backend cannot run it); or, with `config_toml`, configured by that config.toml alone."""
    codex = install.codex_path()
    assert install.is_installed(), "run `python3 tests/clients/install.py` (.ci/run does)"
    work = tmp_path / "work"
    work.mkdir()
    env = codex_env(tmp_path)
    if config_toml is None:
        provider = f'model_providers.gw={{name="gw", base_url="{base_url}", env_key="GW_KEY", wire_api="responses"}}'
        options = ["-m", "local-model", "-c", "model_provider=gw", "-c", provider, "-c", 'web_search="disabled"']
    else:
        (Path(env["CODEX_HOME"]) / "config.toml").write_text(config_toml)
        options = []
    return subprocess.run(
        [str(codex), "exec", "--json", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
         *options, prompt],
        cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)


def completed_items(stdout: str) -> list[dict]:
    """The items of `codex exec --json`'s item.completed events, in order."""
    return [e["item"] for e in map(json.loads, stdout.splitlines()) if e.get("type") == "item.completed"]


def check_tool_turn(done: subprocess.CompletedProcess) -> None:
    """Codex ran `echo MARKER` once, successfully, and ended with the answer built from its output."""
    assert done.returncode == 0, done.stderr[-3000:]
    items = completed_items(done.stdout)
    ran = [i for i in items if i["type"] == "command_execution"]
    # The last line: `bash -lc` runs the login profile, whose tools (pyenv) may print warnings first.
    assert [(i["exit_code"], i["aggregated_output"].strip().splitlines()[-1]) for i in ran] == [(0, MARKER)], \
        done.stdout
    assert items[-1] == {**items[-1], "type": "agent_message", "text": f"the tool said {MARKER}"}


@pytest.mark.parametrize("wire", ["chat", "anthropic"])
def test_codex_exec_runs_a_tool_call_turn(tmp_path, wire):
    stub = Stub(wire)
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    try:
        done = run_codex(f"http://127.0.0.1:{stub.server_address[1]}/v1", tmp_path)
    finally:
        stub.shutdown()
    assert stub.problems == []
    check_tool_turn(done)
    assert len(stub.requests) == 2
    second = stub.requests[1]["input"]
    call = next(i for i in second if i.get("type") == "function_call")
    output = next(i for i in second if i.get("type") == "function_call_output")
    assert call["name"] == "exec_command" and output["call_id"] == call["call_id"]
    assert MARKER in output["output"]
