"""A fake user machine for `mlxgw init`: a HOME with a Hugging Face cache laid out as huggingface_hub
writes it (blobs, snapshots of symlinks, refs/main), LM Studio and ~/models folders, and engines on PATH.

The model files are the generated tiny model's (tests/engines/tiny_model.py), so an engine can serve what
init finds."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

from tests.engines import tiny_model

REVISION = "0123456789abcdef0123456789abcdef01234567"


def hf_cache_model(hub: Path, repo: str, *, quantization: dict | None = None, drop: str | None = None) -> Path:
    """Put the tiny model in the cache as `repo` (ORG/NAME); returns its snapshot folder. `quantization`
    adds an MLX quantization entry to config.json; `drop` leaves one file out (an interrupted download)."""
    src = tiny_model.ensure()
    repo_dir = hub / ("models--" + repo.replace("/", "--"))
    snap = repo_dir / "snapshots" / REVISION
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    snap.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        data = f.read_bytes()
        if f.name == "config.json" and quantization:
            data = json.dumps({**json.loads(data), "quantization": quantization}).encode()
        if f.name == drop:
            continue
        blob = repo_dir / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        os.symlink(os.path.relpath(blob, snap), snap / f.name)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(REVISION)
    return snap


def plain_model(folder: Path, *, quantization: dict | None = None, index_extra_shard: bool = False) -> Path:
    """The tiny model copied to `folder` (LM Studio, ~/models or a --scan folder)."""
    shutil.copytree(tiny_model.ensure(), folder)
    if quantization:
        cfg = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**cfg, "quantization": quantization}))
    if index_extra_shard:  # an index naming a shard that is not there: incomplete
        (folder / "model.safetensors.index.json").write_text(json.dumps(
            {"weight_map": {"a": "model.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    return folder


def fake_executable(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / name
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return exe


def machine_env(monkeypatch, home: Path, path: list[Path] = ()) -> None:
    """HOME and PATH of the fake machine; no HF_HOME/HF_HUB_CACHE/PIPX/UV overrides from the real one."""
    from tests.engines import install

    monkeypatch.setenv("MLXGW_TEST_ENGINES", str(install.cache_root()))  # the real cache, not the fake HOME's
    home.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    for var in ("HF_HOME", "HF_HUB_CACHE", "PIPX_HOME", "UV_TOOL_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", os.pathsep.join([*(str(p) for p in path), "/usr/bin", "/bin"]))
