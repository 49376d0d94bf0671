"""The real engines (mlx-openai-server and vllm-mlx, installed by tests/engines/install.py) serving the
tiny generated model through the gateway: cold starts, streams, /v1/messages, /v1/responses, single-flight starts, crash
recovery, memory eviction and refusal, idle TTL, start failures, and `serve` stopping its engines.

One gateway per engine serves every test of that engine, so each engine starts only a few times; each
test brings the models it needs to the state it needs (`ready()`, `stopped()`), so any one of them runs
alone or in any order. Marked slow; CI runs them (a missing engine fails there, and is skipped
elsewhere). The engines' answers are also recorded in tests/cassettes/ (tests/test_engine_cassettes.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from mlxgw.backends import local_profiles
from mlxgw.server import ServerConfig
from mlxgw.supervisor import memory
from tests import conformance
from tests.engine_harness import ENGINES, engine_executable, local_config, tiny_model_dir
from tests.gateway_harness import RunningGateway
from tests.supervisor_helpers import alive, group_members, wait_until

pytestmark = pytest.mark.slow

MESSAGES = [{"role": "user", "content": "Say hello."}]


@dataclass
class Stack:
    engine: str
    gw: RunningGateway
    home: Path

    def post(self, model: str, timeout: float = 120, **extra) -> httpx.Response:
        return httpx.post(self.gw.base_url + "/chat/completions",
                          json={"model": model, "messages": MESSAGES, "max_tokens": 8, **extra}, timeout=timeout)

    def model(self, name: str) -> dict:
        data = httpx.get(self.gw.origin + "/admin/models", timeout=10).json()["data"]
        return next(m for m in data if m["name"] == name)

    def ready(self, name: str) -> dict:
        """The model, started first if it is not running."""
        if self.model(name)["state"] != "ready":
            r = httpx.post(self.gw.origin + f"/admin/models/{name}/start", timeout=180)
            assert r.status_code == 200, r.text
        m = self.model(name)
        assert m["state"] == "ready" and alive(m["pid"]), m
        return m

    def stopped(self, name: str) -> dict:
        r = httpx.post(self.gw.origin + f"/admin/models/{name}/stop", timeout=60)
        assert r.status_code == 200 and r.json()["state"] == "stopped", r.text
        return self.model(name)


@pytest.fixture(scope="module", params=ENGINES)
def stack(request, tmp_path_factory):
    engine = request.param
    exe = engine_executable(engine)
    path = tiny_model_dir()
    tmp = tmp_path_factory.mktemp(engine)
    mp = pytest.MonkeyPatch()
    mp.setenv("MLXGW_HOME", str(tmp / "home"))
    mp.delenv("MLXGW_DB", raising=False)
    mp.setenv("MLXGW_MASTER_KEY", Fernet.generate_key().decode())
    # Room for one tiny model, not two: a second model evicts the idle first one.
    one = memory.estimate(Path(path), None, local_profiles(None)[engine].overhead).total
    mp.setenv("MLXGW_MEMORY_BUDGET", str(int(one * 1.5)))
    text = local_config(engine, exe, [
        {"name": "tiny", "path": path, "aliases": ["tiny-alias"], "defaults": {"temperature": 0}},
        {"name": "tiny-ttl", "path": path, "idle_ttl": "2s"},
        {"name": "huge", "path": path, "context_length": 50_000_000},
        {"name": "broken", "path": path, "args": ["--no-such-flag"]},
    ])
    (tmp / "gateway.yaml").write_text(text)
    from mlxgw.cli import app

    result = CliRunner().invoke(app, ["apply", "-f", str(tmp / "gateway.yaml"), "--yes"])
    assert result.exit_code == 0, result.output
    gw = RunningGateway(ServerConfig()).start()
    try:
        yield Stack(engine, gw, tmp / "home")
    finally:
        gw.stop()
        mp.undo()


def anthropic_events(text: str) -> list[tuple[str, dict]]:
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        lines = block.split("\n")
        if block.strip():
            assert lines[0].startswith("event: ") and lines[1].startswith("data: "), block
            out.append((lines[0][7:], json.loads(lines[1][6:])))
    return out


def sse_events(text: str) -> list:
    out = []
    for block in text.split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                data = line[6:]
                out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_a_cold_request_starts_the_engine_and_gets_an_answer(stack):
    before = stack.stopped("tiny")["starts"]
    t0 = time.monotonic()
    r = stack.post("tiny-alias")
    assert r.status_code == 200, r.text
    body = r.json()
    choice = body["choices"][0]
    assert body["model"] == "tiny" and isinstance(choice["message"]["content"], str) and choice["message"]["content"]
    # The random model never emits end-of-sequence, so max_tokens ends the reply (mlx-openai-server says
    # "stop" there; the gateway reports "length").
    assert choice["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] >= 1
    m = stack.model("tiny")
    assert m["state"] == "ready" and m["starts"] == before + 1 and alive(m["pid"]) and m["memory"] > 0
    print(f"{stack.engine}: cold start and answer in {time.monotonic() - t0:.1f}s")

    with httpx.stream("POST", stack.gw.base_url + "/chat/completions", timeout=60,
                      json={"model": "tiny", "messages": MESSAGES, "max_tokens": 6, "stream": True}) as s:
        text = "".join(s.iter_text())
    assert s.status_code == 200
    events = sse_events(text)
    assert events[-1] == "[DONE]"
    chunks = [e for e in events[:-1] if e["choices"]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert stack.model("tiny")["starts"] == before + 1


def test_anthropic_messages(stack):
    body = {"model": "tiny", "max_tokens": 6, "messages": [{"role": "user", "content": "Say hello."}]}
    r = httpx.post(stack.gw.base_url + "/messages", json=body, timeout=60,
                   headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 200, r.text
    msg = r.json()
    assert msg["type"] == "message" and msg["role"] == "assistant" and msg["content"][0]["type"] == "text"
    assert msg["stop_reason"] == "max_tokens"
    with httpx.stream("POST", stack.gw.base_url + "/messages", json={**body, "stream": True}, timeout=60,
                      headers={"anthropic-version": "2023-06-01"}) as s:
        text = "".join(s.iter_text())
    assert s.status_code == 200
    events = anthropic_events(text)
    names = [n for n, _ in events if n != "ping"]
    assert names[:2] == ["message_start", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[2:-3]) == {"content_block_delta"}
    assert "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    (delta,) = [d for n, d in events if n == "message_delta"]
    assert delta["delta"]["stop_reason"] == "max_tokens"  # cut by max_tokens, as the non-streamed answer says
    r = httpx.post(stack.gw.base_url + "/messages/count_tokens", json={"model": "tiny", "messages": body["messages"]},
                   timeout=60, headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 200 and isinstance(r.json()["input_tokens"], int) and r.json()["input_tokens"] > 0


def test_responses_api_plain_streamed_and_chained(stack):
    """A Responses client on the engine's chat completions: plain, streamed, and a previous_response_id
    chain with retrieve, input_items and delete; every body and event schema-valid. The random model never
    ends by itself, so max_output_tokens does: status incomplete, reason max_output_tokens."""
    client = openai.OpenAI(base_url=stack.gw.base_url, api_key="unused", max_retries=0, timeout=120)
    raw = client.responses.with_raw_response.create(model="tiny", input="Say hello.", max_output_tokens=16)
    conformance.validate_response(json.loads(raw.http_response.text))
    first = raw.parse()
    assert first.model == "tiny" and first.status == "incomplete"
    assert first.incomplete_details.reason == "max_output_tokens" and first.output_text
    assert first.usage.output_tokens >= 1
    with httpx.stream("POST", stack.gw.base_url + "/responses", timeout=120,
                      json={"model": "tiny", "input": "Say hello.", "max_output_tokens": 16, "stream": True}) as s:
        events = conformance.validate_response_sse(s.read().decode())
    assert s.status_code == 200 and events[-1]["type"] == "response.incomplete"
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    raw = client.responses.with_raw_response.create(model="tiny", input="Again.", max_output_tokens=16,
                                                    previous_response_id=first.id)
    conformance.validate_response(json.loads(raw.http_response.text))
    second = raw.parse()
    assert second.previous_response_id == first.id and second.output_text
    got = client.responses.with_raw_response.retrieve(second.id)
    conformance.validate_response(json.loads(got.http_response.text))
    assert got.parse().output_text == second.output_text
    assert [i.content[0].text for i in client.responses.input_items.list(second.id).data] == ["Again."]
    client.responses.delete(first.id)
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="tiny", input="x", previous_response_id=first.id)


def test_ten_concurrent_cold_requests_start_exactly_one_process(stack):
    before = stack.stopped("tiny")["starts"]
    codes: list[int] = []

    def one():
        codes.append(stack.post("tiny").status_code)

    threads = [threading.Thread(target=one) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * 10
    m = stack.model("tiny")
    assert m["starts"] == before + 1 and alive(m["pid"])
    # Engines this test process started (other gateways on the machine may serve a "tiny" too).
    engines = [pid for pid in _serving("tiny") if _pgid(pid) == pid and _ppid(pid) == os.getpid()]
    assert engines == [m["pid"]]


def test_a_killed_engine_is_restarted_by_the_next_request(stack):
    m = stack.ready("tiny")
    os.killpg(m["pid"], signal.SIGKILL)
    assert wait_until(lambda: not alive(m["pid"]), 10)
    r = stack.post("tiny")
    assert r.status_code == 200, r.text
    m2 = stack.model("tiny")
    assert m2["pid"] != m["pid"] and m2["starts"] == m["starts"] + 1


def test_a_model_that_does_not_fit_evicts_the_idle_one(stack):
    stack.stopped("tiny-ttl")
    tiny = stack.ready("tiny")
    r = stack.post("tiny-ttl")
    assert r.status_code == 200, r.text
    assert stack.model("tiny")["state"] == "stopped" and not alive(tiny["pid"])
    log = httpx.get(stack.gw.origin + "/admin/models/tiny/logs", timeout=10).text
    assert "evicted for 'tiny-ttl' (memory)" in log


def test_idle_ttl_stops_the_engine(stack):
    m = stack.ready("tiny-ttl")
    assert wait_until(lambda: stack.model("tiny-ttl")["state"] == "stopped", 15, 0.2)
    assert wait_until(lambda: not group_members(m["pid"]), 10)


def test_a_model_over_the_memory_budget_is_refused_with_its_numbers(stack):
    r = stack.post("huge")
    assert r.status_code == 502
    msg = r.json()["error"]["message"]
    assert "not starting 'huge'" in msg and "KV cache" in msg and "50000000 tokens" in msg
    assert "memory budget is" in msg
    assert stack.model("huge")["starts"] == 0


def test_an_engine_that_fails_to_start_gives_a_clear_error_quickly(stack):
    r = stack.post("broken")
    assert r.status_code == 502, r.text
    msg = r.json()["error"]["message"]
    # Quickly: the engine's exit is noticed, not waited out until the start timeout ("not ready within").
    assert "exited with code" in msg and "while starting" in msg and "no-such-flag" in msg
    assert stack.model("broken")["state"] == "failed"


def test_serve_stops_its_engines_on_sigterm(stack):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "mlxgw", "serve", "--port", str(port)], env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: _up(port), 15)
        r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=120,
                       json={"model": "tiny", "messages": MESSAGES, "max_tokens": 4})
        assert r.status_code == 200, r.text
        m = next(x for x in httpx.get(f"http://127.0.0.1:{port}/admin/models").json()["data"] if x["name"] == "tiny")
        pid = m["pid"]
        assert alive(pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert not alive(pid) and not group_members(pid)


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5).status_code == 200
    except httpx.TransportError:
        return False


def _serving(name: str) -> list[int]:
    """Live processes whose command line has `--served-model-name NAME`."""
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                argv = Path(f"/proc/{entry.name}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            for i, a in enumerate(argv[:-1]):
                if a == b"--served-model-name" and argv[i + 1] == name.encode() and alive(int(entry.name)):
                    out.append(int(entry.name))
                    break
    return out


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None
