"""`mlxgw init` on a fake machine (tests/init_helpers.py): what it finds, the names it gives, the file it
writes (validated by `mlxgw validate` and applied by `mlxgw apply`), and the machine where it finds nothing.
The run with a real engine answering the discovered name is in tests/test_init_engine.py."""

from __future__ import annotations

import httpx
import yaml

from mlxgw import discover
from mlxgw.routing.snapshot import Snapshot
from mlxgw.store.db import Store
from mlxgw.store.state import read_config
from tests.conftest import SENTINEL_ANTHROPIC, SENTINEL_OPENAI
from tests.gateway_harness import running_gateway
from tests.test_cli_serve import start as start_serve
from tests.init_helpers import fake_executable, hf_cache_model, machine_env, plain_model

Q4 = {"bits": 4, "group_size": 64}


def test_short_names_follow_the_rule():
    assert discover.short_name("mlx-community/Qwen2.5-0.5B-Instruct-4bit", 4) == "qwen2.5-0.5b-4bit"
    assert discover.short_name("mlx-community/Llama-3.2-3B-Instruct", 4) == "llama-3.2-3b-4bit"
    assert discover.short_name("mlx-community/gemma-2-2b-it-8bit", 8) == "gemma-2-2b-8bit"
    assert discover.short_name("Qwen/Qwen3-4B", None) == "qwen3-4b"
    assert discover.short_name("x/Mistral 7B (v0.3)", None) == "mistral-7b-v0.3"


def test_init_finds_models_engines_and_keys(home, cli, tmp_path, monkeypatch):
    fake = tmp_path / "machine"
    machine_env(monkeypatch, fake, [tmp_path / "bin"])
    fake_executable(tmp_path / "bin", "vllm-mlx")
    fake_executable(fake / ".local/share/uv/tools/mlx-openai-server/bin", "mlx-openai-server")
    hub = fake / ".cache/huggingface/hub"
    snap = hf_cache_model(hub, "mlx-community/Qwen2.5-0.5B-Instruct-4bit", quantization=Q4)
    hf_cache_model(hub, "mlx-community/Broken-Model-4bit", drop="model.safetensors")
    plain_model(fake / ".lmstudio/models/lmstudio-community/Phi-3-mini-8bit")
    plain_model(fake / "models/base/Qwen2.5-0.5B-4bit")  # the same short name as the cache's model
    plain_model(fake / "models/half/Partial", index_extra_shard=True)
    scanned = plain_model(tmp_path / "elsewhere/deep/er/tinyllama", quantization={"bits": 3, "group_size": 32})

    out = tmp_path / "gateway.yaml"
    code, stdout, stderr = cli("init", "-o", str(out), "--scan", str(tmp_path / "elsewhere"))
    assert code == 0, stdout + stderr
    text = out.read_text()
    assert SENTINEL_OPENAI not in text + stdout + stderr and SENTINEL_ANTHROPIC not in text + stdout + stderr
    assert "${env:OPENAI_API_KEY}" in text and "${env:ANTHROPIC_API_KEY}" in text
    doc = yaml.safe_load(text)
    (local,) = [p for p in doc["providers"] if p["name"] == "local"]
    assert local["kind"] == "vllm-mlx" and "command" not in local  # preferred, and on PATH
    models = {m["name"]: m["path"] for m in local["models"]}
    # The collision (qwen2.5-0.5b-4bit twice) falls back to the full repository names.
    assert models == {
        "mlx-community-qwen2.5-0.5b-instruct-4bit": str(snap),
        "phi-3-mini-8bit": str(fake / ".lmstudio/models/lmstudio-community/Phi-3-mini-8bit"),
        "base-qwen2.5-0.5b-4bit": str(fake / "models/base/Qwen2.5-0.5B-4bit"),
        "tinyllama-3bit": str(scanned),
    }
    assert "Broken-Model" in stderr and "Partial" in stderr  # incomplete downloads are named, not used
    for name in models:
        assert name in stdout  # the table
    assert "mlx-openai-server" in stdout and "next:" in stdout and f"mlxgw apply -f {out} --yes" in stdout

    # The project's own validator, then apply; the routes resolve as promised.
    code, stdout, stderr = cli("validate", "-f", str(out))
    assert code == 0, stdout + stderr
    code, stdout, stderr = cli("apply", "-f", str(out), "--yes")
    assert code == 0, stdout + stderr
    with Store().session() as s:
        snap_ = Snapshot(read_config(s))
    for name in models:
        route = snap_.route(name)
        assert [t.label for t in route.targets] == [f"local/{name}", "openai/gpt-4o-mini"]
    assert snap_.route("gpt-4.1").targets[0].provider == "openai"
    assert snap_.route("claude-opus-4-8").targets[0].provider == "anthropic"
    assert snap_.route("default").targets[0].provider == "local"

    code, stdout, stderr = cli("init", "-o", str(tmp_path / "other.yaml"), "--scan", str(tmp_path / "nope"))
    assert code == 1 and "--scan" in stderr and "nope" in stderr and not (tmp_path / "other.yaml").exists()

    # Never overwritten without --yes; with it, the old file is kept.
    out.write_text("# mine\n")
    code, stdout, stderr = cli("init", "-o", str(out))
    assert code == 1 and "exists" in stderr and out.read_text() == "# mine\n"
    code, stdout, stderr = cli("init", "-o", str(out), "--yes")
    assert code == 0 and (tmp_path / "gateway.yaml.bak").read_text() == "# mine\n"


def test_engine_only_in_a_tool_folder_is_named_by_path(home, cli, tmp_path, monkeypatch):
    fake = tmp_path / "machine"
    machine_env(monkeypatch, fake)
    exe = fake_executable(fake / ".local/pipx/venvs/mlx-openai-server/bin", "mlx-openai-server")
    plain_model(fake / "models/Qwen3-4B-4bit")
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    out = tmp_path / "g.yaml"
    code, stdout, stderr = cli("init", "-o", str(out))
    assert code == 0, stdout + stderr
    doc = yaml.safe_load(out.read_text())
    assert doc["providers"] == [{"name": "local", "kind": "mlx-openai-server", "command": str(exe), "models": [
        {"name": "qwen3-4b-4bit", "path": str(fake / "models/Qwen3-4B-4bit"), "idle_ttl": "10m"}]}]
    assert all("fallback" not in r for r in doc["routes"])  # no cloud to fall back to
    assert cli("validate", "-f", str(out))[0] == 0


def test_models_without_an_engine_are_left_commented(home, cli, tmp_path, monkeypatch):
    fake = tmp_path / "machine"
    machine_env(monkeypatch, fake)
    plain_model(fake / "models/Qwen3-4B-4bit")
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    out = tmp_path / "g.yaml"
    code, stdout, stderr = cli("init", "-o", str(out))
    assert code == 0, stdout + stderr
    assert "uv tool install vllm-mlx" in stderr and "uv tool install vllm-mlx" in out.read_text()
    doc = yaml.safe_load(out.read_text())
    assert [p["name"] for p in doc["providers"]] == ["openai"]  # nothing routes to an engine that is missing
    assert "# - name: qwen3-4b" in out.read_text().replace("#   ", "# ")
    assert {r["target"] for r in doc["routes"]} == {"openai", "openai/gpt-4o-mini"}
    assert cli("validate", "-f", str(out))[0] == 0


def test_nothing_found_still_validates_serves_and_says_what_next(home, cli, tmp_path, monkeypatch):
    fake = tmp_path / "machine"
    machine_env(monkeypatch, fake)
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = cli("init", "--yes")  # the README's first command, in an empty folder
    assert code == 0, stdout + stderr
    text = (tmp_path / "gateway.yaml").read_text()
    assert yaml.safe_load(text) == {"version": 1, "providers": [], "routes": []}
    assert "No local MLX models found" in stdout and "nothing to serve yet" in stderr
    assert "hf download" in text and "OPENAI_API_KEY" in text
    assert cli("validate", "-f", "gateway.yaml")[0] == 0
    code, stdout, stderr = cli("apply", "-f", "gateway.yaml", "--yes")
    assert code == 0, stdout + stderr
    with running_gateway() as gw:
        r = httpx.post(gw.base_url + "/chat/completions",
                       json={"model": "default", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 404  # a clear answer naming the model, not a 502 from an engine nobody started
    assert "default" in r.json()["error"]["message"]
    # `mlxgw serve` itself says so when it starts.
    proc, port, _ = start_serve()
    proc.terminate()
    _, err = proc.communicate(timeout=30)
    assert "no routes" in err and "mlxgw init" in err
