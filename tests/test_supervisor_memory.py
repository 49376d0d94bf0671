"""Memory estimates and the budget (no process needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlxgw.supervisor import memory
from tests.test_supervisor import model_dir


def test_estimate_and_sizes(tmp_path):
    d = model_dir(tmp_path, weights=100 * memory.MIB)
    est = memory.estimate(Path(d), 8192, 160 * memory.MIB)
    assert est.weights == 100 * memory.MIB
    assert est.kv_cache == 2 * 2 * 2 * 16 * 8192 * 4
    assert est.headroom == 160 * memory.MIB + (est.weights + est.kv_cache) // 10
    assert "KV cache" in est.describe() and "8192 tokens" in est.describe()
    assert memory.parse_size("12G") == 12 * memory.GIB and memory.parse_size("800MiB") == 800 * memory.MIB
    assert memory.parse_size("1024") == 1024
    with pytest.raises(ValueError):
        memory.parse_size("lots")


def test_budget_from_env_and_default(monkeypatch):
    monkeypatch.setenv("MLXGW_MEMORY_BUDGET", "3G")
    assert memory.budget() == 3 * memory.GIB
    monkeypatch.delenv("MLXGW_MEMORY_BUDGET")
    monkeypatch.setenv("MLXGW_MEMORY_RESERVE", "1G")
    assert memory.budget() == memory.physical_memory() - memory.GIB


def test_sync_expands_paths_and_resolves_aliases(tmp_path, monkeypatch):
    from mlxgw.backends import local_profiles
    from mlxgw.routing import Snapshot
    from mlxgw.supervisor import Supervisor

    monkeypatch.setenv("HOME", str(tmp_path))
    sup = Supervisor(None, tmp_path / "logs", local_profiles(None))
    sup.sync(Snapshot({"providers": [
        {"name": "a", "kind": "vllm-mlx", "command": "~/bin/vllm-mlx", "args": ["--p"],
         "models": [{"name": "m", "path": "~/models/m", "aliases": ["mm"], "args": ["--m"], "idle_ttl": "2m"}]},
        {"name": "b", "kind": "mlx-openai-server", "models": [{"name": "m", "path": "/x"}]},
    ]}).providers.values())
    a = sup.get("a", "m")
    assert a.launch.command == f"{tmp_path}/bin/vllm-mlx" and a.launch.path == f"{tmp_path}/models/m"
    assert a.launch.args == ("--p", "--m") and a.settings.idle_ttl == 120
    assert sup.get("b", "m").launch.command == "mlx-openai-server"
    assert sup.find("mm") is a
    with pytest.raises(LookupError, match="several providers"):
        sup.find("m")
    assert sup.find("m", "b").provider == "b"
    with pytest.raises(LookupError, match="no local model named 'x'"):
        sup.find("x")
