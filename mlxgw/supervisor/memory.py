"""Memory-aware loading: what a local model will take, what the machine can give, what a process uses.

estimate(): weights from the safetensors headers (the tensors' byte ranges, no weights read), plus the KV
cache for the model's context limit (2 x layers x KV heads x head_dim x tokens x bytes per value, from its
config.json), plus headroom (the engine's own runtime, measured on the tiny test model, and 10% slack).

budget(): MLXGW_MEMORY_BUDGET when set (e.g. `12G`, `800M`, bytes), else physical memory minus a reserve
(MLXGW_MEMORY_RESERVE, default 4G or a quarter of memory if less) and, on macOS, not above the GPU wired
memory limit (sysctl iogpu.wired_limit_mb; about 75% of memory when the sysctl is 0).
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

MIB = 1024 * 1024
GIB = 1024 * MIB
_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)i?b?\s*$", re.I)


def parse_size(text: str) -> int:
    """`12G`, `800M`, `1.5GiB`, `1024` (bytes) -> bytes. ValueError on anything else."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"not a memory size: {text!r} (use e.g. 12G, 800M or a number of bytes)")
    return int(float(m.group(1)) * 1024 ** "_kmgt".index((m.group(2) or "_").lower()))


def human(n: int | float | None) -> str:
    if n is None:
        return "-"
    if n >= GIB:
        return f"{n / GIB:.1f} GiB"
    return f"{n / MIB:.0f} MiB" if n >= MIB else f"{n / 1024:.0f} KiB"


@dataclass(frozen=True, slots=True)
class Estimate:
    weights: int
    kv_cache: int
    headroom: int
    context_length: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.headroom

    def describe(self) -> str:
        return (f"{human(self.total)} (weights {human(self.weights)} + KV cache {human(self.kv_cache)} for "
                f"{self.context_length} tokens + headroom {human(self.headroom)})")

    def as_dict(self) -> dict:
        return {**asdict(self), "total": self.total}


def safetensors_bytes(model_dir: Path) -> int:
    """Bytes of all tensors in the directory's *.safetensors files, from their headers only."""
    total = 0
    for f in sorted(model_dir.glob("*.safetensors")):
        try:
            with open(f, "rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(n))
        except (OSError, ValueError, struct.error):
            total += f.stat().st_size if f.exists() else 0
            continue
        for name, t in header.items():
            if name != "__metadata__" and isinstance(t, dict) and "data_offsets" in t:
                start, end = t["data_offsets"]
                total += end - start
    return total


def estimate(model_dir: Path, context_length: int | None, engine_overhead: int) -> Estimate:
    """The memory a model should take once loaded (see the module docstring)."""
    weights = safetensors_bytes(model_dir)
    try:
        cfg = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        cfg = {}
    cfg = cfg.get("text_config", cfg) if isinstance(cfg, dict) else {}
    layers = int(cfg.get("num_hidden_layers") or 0)
    heads = int(cfg.get("num_attention_heads") or 1)
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or (int(cfg.get("hidden_size") or 0) // max(heads, 1)))
    ctx = int(context_length or cfg.get("max_position_embeddings") or 4096)
    per_value = _DTYPE_BYTES.get(str(cfg.get("torch_dtype") or cfg.get("dtype") or "float16"), 2)
    kv = 2 * layers * kv_heads * head_dim * ctx * per_value
    headroom = engine_overhead + (weights + kv) // 10
    return Estimate(weights=weights, kv_cache=kv, headroom=headroom, context_length=ctx)


def physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16 * GIB


def _macos_wired_limit(total: int) -> int | None:
    try:
        out = subprocess.run(["sysctl", "-n", "iogpu.wired_limit_mb"], capture_output=True, text=True, timeout=2)
        mb = int(out.stdout.strip() or 0)
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    return mb * MIB if mb > 0 else int(total * 0.75)


def budget() -> int:
    """Bytes the local models may take together (see the module docstring)."""
    env = os.environ.get("MLXGW_MEMORY_BUDGET")
    if env:
        return parse_size(env)
    total = physical_memory()
    reserve_env = os.environ.get("MLXGW_MEMORY_RESERVE")
    reserve = parse_size(reserve_env) if reserve_env else min(4 * GIB, total // 4)
    out = total - reserve
    if sys.platform == "darwin":
        wired = _macos_wired_limit(total)
        if wired:
            out = min(out, wired)
    return max(out, 0)


def process_group_rss(pgid: int) -> int | None:
    """Resident memory of every process in a process group (an engine and its workers), in bytes."""
    if sys.platform.startswith("linux"):
        total, found = 0, False
        page = os.sysconf("SC_PAGE_SIZE")
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    stat = f.read().rsplit(b")", 1)[1].split()
                if int(stat[2]) != pgid:  # fields after the name: state, ppid, pgrp, ...
                    continue
                with open(f"/proc/{entry.name}/statm", "rb") as f:
                    total += int(f.read().split()[1]) * page
                found = True
            except (OSError, IndexError, ValueError):
                continue
        return total if found else None
    try:
        out = subprocess.run(["ps", "-o", "rss=", "-g", str(pgid)], capture_output=True, text=True, timeout=2)
        values = [int(x) for x in out.stdout.split()]
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    return sum(values) * 1024 if values else None
