"""The local-engine adapters: command lines, readiness, request defaults, mlx-openai-server's finish
reason quirk, and vllm-mlx's native /v1/messages under a lease (over the fake engine)."""

from __future__ import annotations

import json

import pytest

from mlxgw.backends import create, local_profiles
from mlxgw.backends.base import ChatResult, Timeouts, UpstreamProtocolError
from mlxgw.kinds import ANTHROPIC_MESSAGES, OPENAI_CHAT
from mlxgw.backends.http import HttpClient
from mlxgw.backends.local import apply_defaults
from mlxgw.routing import Snapshot
from mlxgw.supervisor import LaunchSpec, ManagedModel, ModelSettings, Supervisor
from tests.supervisor_helpers import model, provider, write_fake_command

pytestmark = pytest.mark.asyncio(loop_scope="session")


def managed(kind: str, args=()) -> ManagedModel:
    launch = LaunchSpec(kind=kind, command="/opt/bin/engine", path="/models/q", args=tuple(args), env=())
    return ManagedModel("loc", "q", launch, ModelSettings(), log_path=None)


async def test_command_lines_and_readiness():
    profiles = local_profiles(None)
    mos, vllm = profiles["mlx-openai-server"], profiles["vllm-mlx"]
    assert mos.command_line(managed("mlx-openai-server", ["--x", "1"]), 9001) == [
        "/opt/bin/engine", "launch", "--model-path", "/models/q", "--model-type", "lm", "--served-model-name", "q",
        "--host", "127.0.0.1", "--port", "9001", "--no-log-file", "--x", "1"]
    assert vllm.command_line(managed("vllm-mlx"), 9002) == [
        "/opt/bin/engine", "serve", "/models/q", "--host", "127.0.0.1", "--port", "9002", "--served-model-name", "q"]
    assert mos.is_ready(200, b'{"status":"ok"}') and not mos.is_ready(503, b"")
    assert vllm.is_ready(200, b'{"status":"healthy","model_loaded":true}')
    assert not vllm.is_ready(200, b'{"status":"healthy","model_loaded":false}') and not vllm.is_ready(200, b"<html>")
    assert vllm.env["VLLM_MLX_SIMPLE_ENGINE_LOCK_ADMISSION"] == "wait" and ANTHROPIC_MESSAGES in vllm.wires
    assert ANTHROPIC_MESSAGES not in mos.wires


async def test_request_defaults_fill_only_what_is_unset():
    d = {"temperature": 0.2, "max_tokens": 64, "top_p": 0.9}
    assert apply_defaults({"model": "q"}, d) == {"model": "q", "temperature": 0.2, "max_tokens": 64, "top_p": 0.9}
    out = apply_defaults({"model": "q", "temperature": 1, "max_completion_tokens": 5, "top_p": None}, d)
    assert out == {"model": "q", "temperature": 1, "max_completion_tokens": 5, "top_p": 0.9}
    body = {"model": "q"}
    assert apply_defaults(body, {}) is body


async def test_mlx_openai_server_reports_length_when_max_tokens_ended_the_reply():
    mos = local_profiles(None)["mlx-openai-server"]

    def result(n):
        return ChatResult(200, {"choices": [{"finish_reason": "stop", "message": {"content": "x"}}],
                                "usage": {"completion_tokens": n}})

    assert mos.fix_result({"max_tokens": 8}, result(8)).body["choices"][0]["finish_reason"] == "length"
    assert mos.fix_result({"max_tokens": 8}, result(3)).body["choices"][0]["finish_reason"] == "stop"
    assert mos.fix_result({}, result(8)).body["choices"][0]["finish_reason"] == "stop"

    async def upstream(events, split=7):
        raw = b"".join(b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n\n" for e in events)
        for i in range(0, len(raw), split):  # chunk boundaries anywhere
            yield raw[i:i + split]

    def finish(reason, usage=None):
        c = {"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}
        if usage:
            c["usage"] = usage
        return c

    async def run(events, body):
        out = b"".join([c async for c in mos.fix_stream(body, upstream(events))])
        return [json.loads(line[6:]) if line != b"data: [DONE]" else "[DONE]"
                for line in out.split(b"\n\n") if line]

    content = {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]}
    # usage on the finishing chunk (what 1.8.1 sends)
    got = await run([content, finish("stop", {"completion_tokens": 4}), b"[DONE]"], {"max_tokens": 4})
    assert got[1]["choices"][0]["finish_reason"] == "length" and got[-1] == "[DONE]" and got[0] == content
    # usage in the next chunk: the finishing chunk is held until then
    got = await run([content, finish("stop"), {"choices": [], "usage": {"completion_tokens": 4}}, b"[DONE]"],
                    {"max_tokens": 4})
    assert got[1]["choices"][0]["finish_reason"] == "length" and got[2]["usage"]["completion_tokens"] == 4
    # a real stop stays a stop
    got = await run([content, finish("stop", {"completion_tokens": 2}), b"[DONE]"], {"max_tokens": 4})
    assert got[1]["choices"][0]["finish_reason"] == "stop"
    # a held chunk at the very end is not lost
    got = await run([content, finish("stop")], {"max_tokens": 4})
    assert got[-1]["choices"][0]["finish_reason"] == "stop"


async def test_vllm_mlx_messages_go_to_the_engine_under_a_lease(tmp_path):
    http = HttpClient()
    await http.start()
    fake = write_fake_command(tmp_path / "bin")
    (tmp_path / "m").mkdir()
    snap = Snapshot({"providers": [provider("loc", fake, [model("q", str(tmp_path / "m"),
                                                                 defaults={"temperature": 0.3})]),
                                   provider("mos", fake, [model("r", str(tmp_path / "m"))], kind="mlx-openai-server")]})
    sup = Supervisor(http, tmp_path / "logs", local_profiles(http))
    sup.sync(snap.providers.values())
    try:
        backend = create("loc", "vllm-mlx", snap.providers["loc"].spec, None, http, supervisor=sup)
        assert backend.wires == {OPENAI_CHAT, ANTHROPIC_MESSAGES}
        r = await backend.call(ANTHROPIC_MESSAGES, {"model": "q", "max_tokens": 4,
                                                    "messages": [{"role": "user", "content": "hi"}]},
                               Timeouts(), {"anthropic-beta": "x"})
        assert r.body["type"] == "message" and json.loads(r.body["content"][0]["text"][5:])["temperature"] == 0.3
        m = sup.get("loc", "q")
        assert m.inflight == 0 and m.state == "ready"
        other = create("mos", "mlx-openai-server", snap.providers["mos"].spec, None, http, supervisor=sup)
        assert other.wires == {OPENAI_CHAT}
        with pytest.raises(UpstreamProtocolError, match="does not speak the 'anthropic' API"):
            await other.count_tokens({"model": "r", "messages": []}, Timeouts())
        with pytest.raises(ValueError, match="needs the gateway's engine supervisor"):
            create("loc", "vllm-mlx", snap.providers["loc"].spec, None, http)
    finally:
        await sup.shutdown()
        await http.close()
