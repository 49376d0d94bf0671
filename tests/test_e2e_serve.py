"""End to end: `mlxgw serve` as users run it (a real subprocess on uvloop and httptools), driven by the
official OpenAI and Anthropic SDKs, streamed and not, in both directions of translation; a failover; a
SIGHUP reload; and a SIGTERM that lets a stream in flight finish.

The upstreams are the tests' emulators (tests/upstream.py, tests/anthropic_upstream.py): real HTTP
servers in this process. Most tests share one gateway process; the reload and drain tests start their own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import anthropic
import openai
import pytest
import yaml
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from tests.anthropic_upstream import anthropic_upstream, anthropic_upstream_server  # noqa: F401
from tests.conftest import SENTINEL_ANTHROPIC, SENTINEL_OPENAI
from tests.gateway_harness import answers_health, free_port, refuses
from tests.supervisor_helpers import alive, wait_until
from tests.upstream import Reply, closed_port, upstream, upstream_server  # noqa: F401

HI = [{"role": "user", "content": "hello there"}]


def config(openai_url: str, anthropic_url: str, extra_routes: list | None = None) -> str:
    return yaml.safe_dump({
        "version": 1,
        "defaults": {"cooldown": "0s"},
        "providers": [
            {"name": "up", "kind": "openai-compatible", "base_url": openai_url, "api_key": "${env:OPENAI_API_KEY}"},
            {"name": "claude", "kind": "anthropic", "base_url": anthropic_url, "api_key": "${env:ANTHROPIC_API_KEY}"},
            {"name": "dead", "kind": "openai-compatible", "base_url": f"http://127.0.0.1:{closed_port()}/v1"},
        ],
        "routes": [
            {"name": "gpt", "match": {"exact": "gpt-4o"}, "target": "up/gpt-4o"},
            {"name": "claude", "match": {"exact": "claude-x"}, "target": "claude/claude-x"},
            {"name": "fo", "match": {"exact": "fo"}, "target": "dead/x", "fallback": ["up/gpt-4o"]},
            *(extra_routes or []),
        ],
    }, sort_keys=False)


class Served:
    """One `mlxgw serve` process on a free port, its output in a file (a pipe nobody reads could fill)."""

    def __init__(self, home: Path, *args: str):
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.log = home.parent / f"serve-{self.port}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlxgw", "serve", "--port", str(self.port), "--log-level", "warning", *args],
            env=dict(os.environ), stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)
        if not wait_until(lambda: self.proc.poll() is not None or answers_health(self.origin), 60, 0.05) or not answers_health(self.origin):
            self.stop()
            raise AssertionError(f"serve did not come up: {self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def _apply(text: str, folder: Path, name: str = "gateway.yaml") -> None:
    from mlxgw.cli import app

    (folder / name).write_text(text)
    result = CliRunner().invoke(app, ["apply", "-f", str(folder / name), "--yes"])
    assert result.exit_code == 0, result.output


def _env(mp: pytest.MonkeyPatch, home: Path) -> None:
    mp.setenv("MLXGW_HOME", str(home))
    mp.delenv("MLXGW_DB", raising=False)
    mp.setenv("MLXGW_MASTER_KEY", Fernet.generate_key().decode())
    mp.setenv("OPENAI_API_KEY", SENTINEL_OPENAI)
    mp.setenv("ANTHROPIC_API_KEY", SENTINEL_ANTHROPIC)


def tail() -> list[dict]:
    """The gateway's audit rows, read by the CLI as a user would."""
    out = subprocess.run([sys.executable, "-m", "mlxgw", "logs", "tail", "--json", "-n", "1000"],
                         env=dict(os.environ), capture_output=True, text=True, timeout=60).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def audit_rows(n: int) -> list[dict]:
    """The audit rows once `n` are written (the writer batches): fewer after 30 s, or more, fail."""
    rows: list[dict] = []

    def enough() -> bool:
        rows[:] = tail()
        return len(rows) >= n

    assert wait_until(enough, 30, 0.2), rows
    assert len(rows) == n, rows
    return rows


@pytest.fixture(scope="module")
def served(tmp_path_factory, upstream_server, anthropic_upstream_server):  # noqa: F811
    tmp = tmp_path_factory.mktemp("e2e")
    mp = pytest.MonkeyPatch()
    _env(mp, tmp / "home")
    _apply(config(upstream_server.base_url, anthropic_upstream_server.base_url), tmp)
    s = Served(tmp / "home", "--reload-interval", "60")
    try:
        yield s
    finally:
        code = s.stop()
        mp.undo()
    assert code == 0 and "Traceback" not in s.output(), s.output()


def test_serve_runs_on_uvloop_and_httptools(served):
    maps = Path(f"/proc/{served.proc.pid}/maps").read_text()
    assert "/uvloop/" in maps and "/httptools/" in maps  # their compiled modules are loaded in the process


def test_the_openai_sdk_streamed_and_not_on_both_wires(served, upstream, anthropic_upstream):  # noqa: F811
    with openai.OpenAI(base_url=served.origin + "/v1", api_key="unused-on-loopback", max_retries=0) as client:
        for model in ("gpt-4o", "claude-x"):  # OpenAI's wire as is, then translated to Anthropic's
            done = client.chat.completions.create(model=model, messages=HI)
            assert done.choices[0].message.content == "Echo: hello there" and done.model == model
            assert done.choices[0].finish_reason == "stop" and done.usage.completion_tokens > 0
            chunks = list(client.chat.completions.create(model=model, messages=HI, stream=True,
                                                         stream_options={"include_usage": True}))
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert text == "Echo: hello there"
            assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
            assert chunks[-1].usage and chunks[-1].usage.completion_tokens > 0
    assert upstream.last.headers["authorization"] == f"Bearer {SENTINEL_OPENAI}"
    assert anthropic_upstream.last.headers["x-api-key"] == SENTINEL_ANTHROPIC


def test_the_anthropic_sdk_streamed_and_not_on_both_wires(served, upstream, anthropic_upstream):  # noqa: F811
    client = anthropic.Anthropic(base_url=served.origin, api_key="unused-on-loopback", max_retries=0)
    for model in ("claude-x", "gpt-4o"):  # Anthropic's wire as is, then translated to OpenAI's
        msg = client.messages.create(model=model, max_tokens=50, messages=HI)
        assert isinstance(msg, anthropic.types.Message) and msg.content[0].text == "Echo: hello there"
        assert msg.stop_reason == "end_turn" and msg.usage.output_tokens > 0
        with client.messages.stream(model=model, max_tokens=50, messages=HI) as s:
            kinds = [e.type for e in s]
            final = s.get_final_message()
        assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
        assert final.content[0].text == "Echo: hello there" and final.stop_reason == "end_turn"


def test_a_refused_target_fails_over_for_both_sdks(served, upstream):  # noqa: F811
    before = len(tail())
    with openai.OpenAI(base_url=served.origin + "/v1", api_key="x", max_retries=0) as client:
        assert client.chat.completions.create(model="fo", messages=HI).choices[0].message.content == "Echo: hello there"
        stream = client.chat.completions.create(model="fo", messages=HI, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Echo: hello there"
    msg = anthropic.Anthropic(base_url=served.origin, api_key="x", max_retries=0).messages.create(
        model="fo", max_tokens=50, messages=HI)
    assert msg.content[0].text == "Echo: hello there"
    rows = audit_rows(before + 3)[before:]
    for row in rows:
        assert row["status"] == 200 and row["provider"] == "up" and row["failovers"] == 1
        assert [a["outcome"] for a in row["attempts_detail"]] == ["unreachable", "ok"]


# --- signals: each test has a gateway process of its own ----------------------------------------------------


@pytest.fixture
def own(tmp_path, upstream, anthropic_upstream, monkeypatch):  # noqa: F811
    _env(monkeypatch, tmp_path / "home")
    _apply(config(upstream.base_url, anthropic_upstream.base_url), tmp_path)
    return tmp_path


def test_sighup_reloads_the_config_at_once(own, upstream, anthropic_upstream):  # noqa: F811
    s = Served(own / "home", "--reload-interval", "600")  # only the signal can reload within the test
    try:
        client = openai.OpenAI(base_url=s.origin + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="brand-new", messages=HI)
        _apply(config(upstream.base_url, anthropic_upstream.base_url,
                      [{"name": "new", "match": {"exact": "brand-new"}, "target": "up/gpt-4o"}]), own, "new.yaml")
        s.proc.send_signal(signal.SIGHUP)

        def served_now() -> bool:
            try:
                return client.chat.completions.create(model="brand-new", messages=HI).choices[0].message.content \
                    == "Echo: hello there"
            except openai.NotFoundError:
                return False

        assert wait_until(served_now, 15, 0.1)
        assert s.proc.poll() is None  # reloaded, not restarted
    finally:
        code = s.stop()
    assert code == 0 and "Traceback" not in s.output(), s.output()


def test_sigterm_lets_a_stream_in_flight_finish(own, upstream):  # noqa: F811
    s = Served(own / "home", "--shutdown-timeout", "30")
    words = " ".join(f"w{i}" for i in range(20))
    upstream.script(Reply(text=words, delay_between=0.1), model="gpt-4o")
    client = openai.OpenAI(base_url=s.origin + "/v1", api_key="x", max_retries=0)
    try:
        stream = client.chat.completions.create(model="gpt-4o", messages=HI, stream=True)
        chunks = iter(stream)
        got = [next(chunks)]
        s.proc.send_signal(signal.SIGTERM)

        assert wait_until(lambda: refuses(s.origin), 20, 0.05)  # new clients are turned away
        got += list(chunks)  # the rest of the stream, sent after SIGTERM
        assert s.proc.wait(60) == 0
    finally:
        s.stop()
    assert "".join(c.choices[0].delta.content or "" for c in got if c.choices) == words
    assert [c.choices[0].finish_reason for c in got if c.choices and c.choices[0].finish_reason] == ["stop"]
    rows = audit_rows(1)  # written before the process exited
    assert rows[0]["status"] == 200 and rows[0]["error"] is None and rows[0]["stream"]
    assert not alive(s.proc.pid)
