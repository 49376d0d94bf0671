"""Context-aware routing for local models (issue 13), fast: the fake engine (tests/fake_engine.py echoes
the parameters it got) serving a model folder with the tiny model's real tokenizer and chat template and
a small context. The engine's start is watched through the supervisor, so "no engine was started" is a
fact, not a timing. The real-engine twins are in tests/test_engines_context.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
import yaml

from mlxgw.backends import tokencount
from mlxgw.server import ServerConfig
from tests.engines import tiny_model
from tests.gateway_harness import apply_config, running_gateway, wait_for_rows
from tests.supervisor_helpers import write_fake_command
from tests.upstream import Reply, upstream, upstream_server  # noqa: F401

CONTEXT = 300
LONG = "The quick brown fox jumps over the lazy dog. " * 60  # far more than 300 tokens of the tiny tokenizer
ANTHROPIC = {"anthropic-version": "2023-06-01"}


@pytest.fixture
def model_dir(tmp_path) -> Path:
    src = tiny_model.ensure()
    d = tmp_path / "model"
    d.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json"):
        shutil.copy(src / name, d / name)
    return d


@pytest.fixture
def gw(home, cli, tmp_path, upstream, model_dir):  # noqa: F811
    fake = write_fake_command(tmp_path / "bin")

    def local(name, **model):
        return {"name": name, "kind": "mlx-openai-server", "command": fake,
                "models": [{"name": "m", "path": str(model_dir), "context_length": CONTEXT, **model}]}

    config = {
        "version": 1,
        "providers": [
            local("eng"),
            local("strict", on_overflow="fail"),
            local("dflt", defaults={"max_tokens": 5000}),
            # max_position_embeddings (2048) from config.json when no context_length is set
            {"name": "wide", "kind": "mlx-openai-server", "command": fake,
             "models": [{"name": "m", "path": str(model_dir)}]},
            {"name": "cloud", "kind": "openai-compatible", "base_url": upstream.base_url},
        ],
        "routes": [
            {"match": {"exact": "solo"}, "target": "eng/m"},
            {"match": {"exact": "fb"}, "target": "eng/m", "fallback": ["cloud/big"]},
            {"match": {"exact": "strict"}, "target": "strict/m"},
            {"match": {"exact": "dflt"}, "target": "dflt/m"},
            {"match": {"exact": "wide"}, "target": "wide/m"},
        ],
    }
    apply_config(cli, tmp_path, yaml.safe_dump(config))
    with running_gateway(ServerConfig()) as g:
        yield g


def starts(gw, provider: str) -> int:
    return gw.app.gateway.supervisor.get(provider, "m").starts


def chat(gw, model: str, content: str, **extra) -> httpx.Response:
    return httpx.post(gw.base_url + "/chat/completions", timeout=30,
                      json={"model": model, "messages": [{"role": "user", "content": content}], **extra})


def row(gw, request_id: str) -> dict:
    rows = [r for r in wait_for_rows(gw, 1) if r["id"] == request_id]
    assert rows
    return rows[0]


def test_a_prompt_over_the_context_goes_to_the_fallback_without_starting_the_engine(gw, upstream):  # noqa: F811
    r = chat(gw, "fb", LONG)
    assert r.status_code == 200, r.text
    assert upstream.requests[-1].body["model"] == "big"
    assert starts(gw, "eng") == 0
    first, second = row(gw, r.headers["x-request-id"])["attempts_detail"]
    assert first["outcome"] == "context_exceeded" and f"> {CONTEXT} maximum" in first["error"]
    assert second["outcome"] == "ok"


@pytest.mark.parametrize("path", ["/chat/completions", "/messages", "/responses"])
def test_with_no_target_left_each_dialect_gets_its_400_naming_both_numbers(gw, path):
    body = {"model": "solo", "max_tokens": 10, "messages": [{"role": "user", "content": LONG}]}
    if path == "/responses":
        body = {"model": "solo", "input": LONG}
    r = httpx.post(gw.base_url + path, json=body, headers=ANTHROPIC, timeout=30)
    assert r.status_code == 400, r.text
    data = r.json()
    if path == "/messages":
        assert data["error"]["type"] == "invalid_request_error"
        message = data["error"]["message"]
        assert message.startswith("prompt is too long: ") and message.split(" tokens")[0].split(": ")[1].isdigit()
    else:
        assert data["error"]["code"] == "context_length_exceeded"
        message = data["error"]["message"]
        assert f"maximum context length is {CONTEXT} tokens" in message
    assert f"> {CONTEXT} maximum" in message
    assert starts(gw, "eng") == 0


def test_an_oversized_max_tokens_is_clamped_to_the_room_left(gw):
    r = chat(gw, "solo", "Say hello.", max_tokens=32000)
    assert r.status_code == 200, r.text
    prompt = tokencount.counter(str(Path(gw.app.gateway.supervisor.get("eng", "m").launch.path))).count(
        {"messages": [{"role": "user", "content": "Say hello."}]})
    sent = json.loads(r.json()["choices"][0]["message"]["content"].removeprefix("echo "))
    assert sent["max_tokens"] == CONTEXT - prompt
    note = row(gw, r.headers["x-request-id"])["attempts_detail"][-1]["note"]
    assert note.startswith(f"max_tokens clamped from 32000 to {CONTEXT - prompt}")


def test_a_models_default_max_tokens_is_clamped_too(gw):
    r = chat(gw, "dflt", "Say hello.")
    assert r.status_code == 200, r.text
    sent = json.loads(r.json()["choices"][0]["message"]["content"].removeprefix("echo "))
    assert 0 < sent["max_tokens"] < CONTEXT


def test_on_overflow_fail_refuses_what_clamp_would_shorten(gw):
    r = chat(gw, "strict", "Say hello.", max_tokens=32000)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "context_length_exceeded"
    assert "32000 max_tokens" in r.json()["error"]["message"]
    assert starts(gw, "strict") == 0
    r = chat(gw, "strict", "Say hello.", max_tokens=10)
    assert r.status_code == 200, r.text


def test_the_context_defaults_to_max_position_embeddings(gw):
    r = chat(gw, "wide", LONG, max_tokens=10)  # about 700 tokens: over 300, within 2048
    assert r.status_code == 200, r.text
    r = chat(gw, "wide", LONG * 4, max_tokens=10)
    assert r.status_code == 400 and "> 2048 maximum" in r.json()["error"]["message"], r.text


def test_count_tokens_for_a_local_model_is_exact_and_starts_nothing(gw):
    body = {"model": "solo", "system": "Be brief.", "messages": [{"role": "user", "content": "Say hello."}]}
    r = httpx.post(gw.base_url + "/messages/count_tokens", json=body, headers=ANTHROPIC, timeout=30)
    assert r.status_code == 200, r.text
    path = gw.app.gateway.supervisor.get("eng", "m").launch.path
    expected = tokencount.counter(path).count({"messages": [{"role": "system", "content": "Be brief."},
                                                            {"role": "user", "content": "Say hello."}]})
    assert r.json() == {"input_tokens": expected}
    assert starts(gw, "eng") == 0


def test_on_overflow_is_validated(home, cli, tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump({"version": 1, "providers": [
        {"name": "eng", "kind": "vllm-mlx", "models": [{"name": "m", "path": "/m", "on_overflow": "truncate"}]}]}))
    code, out, _ = cli("validate", "-f", str(f))
    assert code == 1 and "providers[0].models[0].on_overflow" in out, out
