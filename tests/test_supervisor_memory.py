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
