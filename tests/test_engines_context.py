"""Local models under real agent traffic (issue 13), on the real engines with the tiny model (context
2048 tokens): Claude Code's request shape (tests/claude_code_shape.py) over the context fails over to a
cloud fallback at once without starting the engine, or is refused with the 400 naming both numbers; a
fitting request with an oversized max_tokens is clamped and answered; the gateway's exact count
(count_tokens) equals the engine's own usage.prompt_tokens; the count equals transformers'
apply_chat_template in the engine's own install, tools and content arrays included.

One gateway per engine, the engine started only by the tests that must start it. Marked slow."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from mlxgw.backends import tokencount
from mlxgw.dialects import anthropic as an
from mlxgw.server import ServerConfig
from tests import claude_code_shape
from tests.anthropic_upstream import AnthropicUpstream
from tests.engine_harness import ENGINES, engine_executable, tiny_model_dir
from mlxgw.audit import queries
from mlxgw.store.db import Store
from tests.gateway_harness import RunningGateway

pytestmark = pytest.mark.slow

CONTEXT = 2048
HEADERS = {"anthropic-version": "2023-06-01", "anthropic-beta": "claude-code-20250219"}
SHORT = [{"role": "user", "content": "Say hello."}]


@dataclass
class Stack:
    engine: str
    gw: RunningGateway
    cloud: AnthropicUpstream
    exe: str

    def messages(self, body: dict, timeout: float = 120) -> httpx.Response:
        return httpx.post(self.gw.base_url + "/messages", json=body, headers=HEADERS, timeout=timeout)

    def model(self) -> dict:
        data = httpx.get(self.gw.origin + "/admin/models", timeout=10).json()["data"]
        return next(m for m in data if m["name"] == "tiny")

    def row(self, request_id: str) -> dict:
        """The audit row of one request (the module's gateway has many: wait_for_rows counts them all)."""
        store = Store(self.gw.app.gateway.config.db_url)
        deadline = time.monotonic() + 10
        try:
            while True:
                rows = [r for r in queries.tail(store, 10_000) if r["id"] == request_id]
                if rows or time.monotonic() > deadline:
                    assert rows, f"no audit row for {request_id}"
                    return rows[0]
                time.sleep(0.1)
        finally:
            store.engine.dispose()


@pytest.fixture(scope="module", params=ENGINES)
def stack(request, tmp_path_factory):
    engine = request.param
    exe = engine_executable(engine)
    tmp = tmp_path_factory.mktemp(engine + "-ctx")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLXGW_HOME", str(tmp / "home"))
    mp.delenv("MLXGW_DB", raising=False)
    mp.setenv("MLXGW_MASTER_KEY", Fernet.generate_key().decode())
    mp.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    cloud = AnthropicUpstream().start()
    config = {
        "version": 1,
        "providers": [
            {"name": "eng", "kind": engine, "command": exe,
             "models": [{"name": "tiny", "path": tiny_model_dir(), "context_length": CONTEXT,
                         "defaults": {"temperature": 0}}]},
            {"name": "cloud", "kind": "anthropic", "base_url": cloud.base_url, "api_key": "${env:ANTHROPIC_API_KEY}"},
        ],
        "routes": [
            {"match": {"exact": "tiny"}, "target": "eng/tiny"},
            {"match": {"exact": "tiny-or-cloud"}, "target": "eng/tiny", "fallback": ["cloud/claude-sonnet-4-5"]},
        ],
    }
    (tmp / "gateway.yaml").write_text(json.dumps(config))
    from mlxgw.cli import app

    result = CliRunner().invoke(app, ["apply", "-f", str(tmp / "gateway.yaml"), "--yes"])
    assert result.exit_code == 0, result.output
    gw = RunningGateway(ServerConfig()).start()
    try:
        yield Stack(engine, gw, cloud, exe)
    finally:
        gw.stop()
        cloud.stop()
        mp.undo()


def test_claude_codes_request_over_the_context_fails_over_at_once_without_starting_the_engine(stack):
    body = claude_code_shape.request("tiny-or-cloud")
    t0 = time.monotonic()
    r = stack.messages(body)
    took = time.monotonic() - t0
    assert r.status_code == 200, r.text
    assert "event: message_stop" in r.text
    assert stack.cloud.last.body["model"] == "claude-sonnet-4-5"
    assert stack.model()["state"] == "stopped" and stack.model()["starts"] == 0
    row = stack.row(r.headers["request-id"])
    first, second = row["attempts_detail"]
    assert first["outcome"] == "context_exceeded" and f"> {CONTEXT} maximum" in first["error"]
    assert second["outcome"] == "ok" and row["provider"] == "cloud" and row["failovers"] == 1
    print(f"{stack.engine}: over-long request failed over in {took * 1000:.0f} ms "
          f"(counting took {first['ms']} ms)")


def test_claude_codes_request_with_no_fallback_is_refused_with_both_numbers(stack):
    body = claude_code_shape.request("tiny")
    r = stack.messages(body)
    assert r.status_code == 400, r.text
    err = r.json()
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    message = err["error"]["message"]
    assert message.startswith("prompt is too long: ") and f"> {CONTEXT} maximum" in message
    counted = int(message.split("prompt is too long: ")[1].split(" tokens")[0])
    assert counted > CONTEXT
    # The same request from an OpenAI client: its own error code, both numbers named.
    chat = an.to_openai_request(body, "tiny")
    r = httpx.post(stack.gw.base_url + "/chat/completions", json={**chat, "stream": True}, timeout=60)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "context_length_exceeded" and err["type"] == "invalid_request_error"
    assert f"maximum context length is {CONTEXT} tokens" in err["message"] and f"{counted} tokens" in err["message"]
    assert stack.model()["starts"] == 0


def test_a_fitting_request_with_an_oversized_max_tokens_is_clamped_and_answered(stack):
    body = {"model": "tiny", "max_tokens": 32000, "messages": SHORT}
    r = stack.messages(body, timeout=300)
    assert r.status_code == 200, r.text
    msg = r.json()
    prompt = msg["usage"]["input_tokens"] + (msg["usage"].get("cache_read_input_tokens") or 0)
    assert msg["stop_reason"] == "max_tokens"
    if stack.engine == "mlx-openai-server":
        # The reply filled the room left: the clamp, not the engine's own default, ended it. (vllm-mlx
        # reports output_tokens by re-encoding the generated text, which for the tiny model's gibberish
        # is not the number of tokens generated.)
        assert msg["usage"]["output_tokens"] == CONTEXT - prompt
    row = stack.row(r.headers["request-id"])
    note = row["attempts_detail"][-1]["note"]
    assert note == f"max_tokens clamped from 32000 to {CONTEXT - prompt}: the prompt is {prompt} tokens of the " \
                   f"{CONTEXT}-token context"


def test_count_tokens_agrees_with_the_engines_own_prompt_tokens(stack):
    cases = [
        {"system": "Be brief.", "messages": SHORT},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "First part."},
                                                   {"type": "text", "text": "Second part, with ünïcode."}]},
                      {"role": "assistant", "content": "An answer."},
                      {"role": "user", "content": "And a follow-up question?"}]},
    ]
    for case in cases:
        r = httpx.post(stack.gw.base_url + "/messages/count_tokens", json={"model": "tiny", **case},
                       headers=HEADERS, timeout=60)
        assert r.status_code == 200, r.text
        counted = r.json()["input_tokens"]
        answer = stack.messages({"model": "tiny", "max_tokens": 1, **case})
        assert answer.status_code == 200, answer.text
        usage = answer.json()["usage"]
        # Anthropic's input_tokens leave out what the engine's prompt cache held: add it back.
        assert counted == usage["input_tokens"] + (usage.get("cache_read_input_tokens") or 0), case
        chat = an.to_openai_request({"model": "tiny", **case}, "tiny")
        r = httpx.post(stack.gw.base_url + "/chat/completions", json={**chat, "max_tokens": 1}, timeout=60)
        assert r.status_code == 200, r.text
        assert counted == r.json()["usage"]["prompt_tokens"], case


def test_the_count_equals_transformers_apply_chat_template_in_the_engines_install(stack, tmp_path):
    """The rendering is HF's: the same template, tools (tojson) included, gives the same token ids in
    the engine's own transformers."""
    folder = tmp_path / "with-tools"
    folder.mkdir()
    src = Path(tiny_model_dir())
    for name in ("tokenizer.json", "special_tokens_map.json", "config.json"):
        (folder / name).write_bytes((src / name).read_bytes())
    config = json.loads((src / "tokenizer_config.json").read_text())
    template = claude_code_shape.TOOLS_TEMPLATE
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": template}))
    chat = an.to_openai_request(claude_code_shape.request("tiny", 0.05), "tiny")
    ours = tokencount.counter(str(folder)).count(chat)
    python = str(Path(stack.exe).parent / "python")
    script = ("import json, sys\nfrom transformers import AutoTokenizer\n"
              "t = AutoTokenizer.from_pretrained(sys.argv[1])\nchat = json.load(sys.stdin)\n"
              "ids = t.apply_chat_template(chat['messages'], tools=chat.get('tools'), add_generation_prompt=True,"
              " tokenize=True)\nids = ids['input_ids'] if isinstance(ids, dict) or hasattr(ids, 'keys') else ids\n"
              "print(len(ids))\n")
    messages = tokencount.normalise(chat["messages"])
    out = subprocess.run([python, "-c", script, str(folder)], input=json.dumps({**chat, "messages": messages}),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    theirs = int(out.stdout.strip().splitlines()[-1])
    assert ours == theirs and ours > 1000  # 24 tools rendered
