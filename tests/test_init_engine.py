"""The first run, as the issue's "done when" states it: on a machine with one MLX model in the Hugging Face
cache and an engine on PATH, `mlxgw init --yes && mlxgw apply -f gateway.yaml --yes && mlxgw serve`
answers a chat request for that model, with no file written by hand. Real processes throughout: the CLI,
`mlxgw serve`, and the real engine (tests/engines/install.py) serving the generated tiny model. Slow."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from tests.engine_harness import ENGINES, engine_executable
from tests.init_helpers import hf_cache_model, machine_env
from tests.test_cli_serve import free_port

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("engine", ENGINES)
def test_init_apply_serve_answers_the_discovered_model(home, tmp_path, monkeypatch, engine):
    exe = engine_executable(engine)
    fake = tmp_path / "machine"
    machine_env(monkeypatch, fake, [os.path.dirname(exe)])  # the engine on PATH, as pipx/uv put it
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    monkeypatch.delenv("OPENAI_API_KEY")
    hf_cache_model(fake / ".cache/huggingface/hub", "mlx-community/Tiny-Llama-Instruct")
    monkeypatch.chdir(tmp_path)

    def mlxgw(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mlxgw", *args], capture_output=True, text=True, timeout=120)

    r = mlxgw("init", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    doc = yaml.safe_load((tmp_path / "gateway.yaml").read_text())
    assert doc["providers"][0]["kind"] == engine and doc["providers"][0]["models"][0]["name"] == "tiny-llama"
    for args in (("validate", "-f", "gateway.yaml"), ("apply", "-f", "gateway.yaml", "--yes")):
        r = mlxgw(*args)
        assert r.returncode == 0, r.stdout + r.stderr

    port = free_port()
    serve = subprocess.Popen([sys.executable, "-m", "mlxgw", "serve", "--port", str(port)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert serve.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.1)
        for name in ("tiny-llama", "default"):
            resp = httpx.post(base + "/v1/chat/completions", timeout=180, json={
                "model": name, "max_tokens": 4, "messages": [{"role": "user", "content": "Say hello."}]})
            assert resp.status_code == 200, resp.text
            assert resp.json()["choices"][0]["message"]["content"]
            assert resp.json()["usage"]["completion_tokens"] >= 1
    finally:
        serve.terminate()
        out, _ = serve.communicate(timeout=60)
    assert serve.returncode == 0, out
