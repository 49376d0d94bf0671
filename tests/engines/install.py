#!/usr/bin/env python3
"""Install the local MLX engines the tests start, each into its own virtual environment.

Both engines pin conflicting mlx-lm versions, so each gets a venv of its own, exactly as a user who
installed it with pipx would have; the gateway launches it by the path of its executable. On Linux the
recipes are lean CPU ones: the engine with ``--no-deps``, then only the requirements that text
generation needs, plus ``mlx[cpu]`` (the lists below say what is left out and why).

Idempotent: a venv that finished installing holds a marker file and is left alone, so running this again
(as .ci/run does on every run) costs a second. The cache directory is keyed by engine version:
``$MLXGW_TEST_ENGINES/<engine>-<version>`` (default ``~/.cache/mlxgw-test-engines``).

Usage: python3 tests/engines/install.py [ENGINE ...] [--force] [--print-root]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

MARKER = ".mlxgw-installed"
MLX_CPU = "mlx[cpu]==0.32.4"

# mlx-openai-server's requirements that pull CUDA torch, vision, audio or image generation stacks.
MOS_EXCLUDED = {"mflux", "torchvision", "librosa", "mlx-whisper", "av", "mlx-vlm", "mlx-embeddings", "torch"}
OUTLINES_REQUIREMENTS = [
    "outlines_core==0.1.26", "interegular", "jinja2", "lark", "nest_asyncio", "cloudpickle", "diskcache",
    "referencing", "jsonschema", "requests", "tqdm", "typing_extensions", "iso3166", "airportsdata", "genson",
    "jsonpath_ng",
]
# outlines_core imports torch at import time but uses it only for structured output.
TORCH_PLACEHOLDER = '''"""Placeholder: outlines_core imports torch, text generation never uses it (mlxgw test engines)."""
__version__ = "0.0.0+mlxgw.placeholder"
'''

VLLM_REQUIREMENTS = [
    "mlx-lm>=0.31.3,<0.32", "transformers>=5", "tokenizers", "huggingface-hub", "numpy", "pillow", "tqdm",
    "pyyaml", "requests", "tabulate", "psutil", "fastapi", "starlette>=1.0.1", "uvicorn", "prometheus-client",
    "mcp", "jsonschema", "lm-format-enforcer", "llguidance", "pytz",
]

ENGINES = {
    "mlx-openai-server": {"version": "1.8.1", "executable": "mlx-openai-server"},
    "vllm-mlx": {"version": "0.6.0", "executable": "vllm-mlx"},
}

# Reads the engine's declared requirements inside its venv, with markers evaluated there.
_REQUIREMENTS_SCRIPT = r"""
import sys
from importlib.metadata import requires
from pip._vendor.packaging.requirements import Requirement
for line in requires(sys.argv[1]) or []:
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    print(line.split(";")[0].strip())
"""


def cache_root() -> Path:
    return Path(os.environ.get("MLXGW_TEST_ENGINES") or Path.home() / ".cache" / "mlxgw-test-engines").expanduser()


def venv_dir(engine: str) -> Path:
    return cache_root() / f"{engine}-{ENGINES[engine]['version']}"


def executable(engine: str) -> Path:
    return venv_dir(engine) / "bin" / ENGINES[engine]["executable"]


def is_installed(engine: str) -> bool:
    return (venv_dir(engine) / MARKER).is_file() and executable(engine).is_file()


def _run(cmd: list[str], log) -> None:
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(cmd)}")


def _requirement_name(spec: str) -> str:
    name = spec
    for sep in "<>=!~[ (;":
        name = name.split(sep)[0]
    return name.strip().lower().replace("_", "-")


def _install_mlx_openai_server(py: str, pip: list[str], vdir: Path, log) -> None:
    version = ENGINES["mlx-openai-server"]["version"]
    _run(pip + ["--no-deps", f"mlx-openai-server=={version}", "outlines==1.1.1"], log)
    out = subprocess.run([py, "-c", _REQUIREMENTS_SCRIPT, "mlx-openai-server"], capture_output=True, text=True,
                         check=True).stdout
    reqs = [r for r in out.splitlines() if r and _requirement_name(r) not in MOS_EXCLUDED]
    log.write(f"requirements kept: {reqs}\n")
    _run(pip + reqs + [MLX_CPU] + OUTLINES_REQUIREMENTS, log)
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    torch_dir = Path(site) / "torch"
    if not torch_dir.exists():
        torch_dir.mkdir()
        (torch_dir / "__init__.py").write_text(TORCH_PLACEHOLDER)


def _install_vllm_mlx(py: str, pip: list[str], vdir: Path, log) -> None:
    version = ENGINES["vllm-mlx"]["version"]
    _run(pip + ["--no-deps", f"vllm-mlx=={version}"], log)
    _run(pip + VLLM_REQUIREMENTS + [MLX_CPU], log)


def install(engine: str, force: bool = False) -> Path:
    vdir = venv_dir(engine)
    if is_installed(engine) and not force:
        print(f"{engine}: already installed in {vdir}")
        return executable(engine)
    if vdir.exists():
        shutil.rmtree(vdir)
    vdir.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    print(f"{engine}: installing into {vdir} (a few minutes)", flush=True)
    log_path = vdir.parent / f"{vdir.name}.install.log"
    with open(log_path, "w") as log:
        try:
            _run([sys.executable, "-m", "venv", str(vdir)], log)
            py = str(vdir / "bin" / "python")
            pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            if engine == "mlx-openai-server":
                _install_mlx_openai_server(py, pip, vdir, log)
            else:
                _install_vllm_mlx(py, pip, vdir, log)
            _run([str(executable(engine)), "--help"], log)
        except Exception as exc:
            log.flush()
            tail = log_path.read_text().splitlines()[-30:]
            raise SystemExit(f"{engine}: install failed: {exc}\nlast lines of {log_path}:\n" + "\n".join(tail))
    (vdir / MARKER).write_text(f"{engine}=={ENGINES[engine]['version']}\n")
    print(f"{engine}: installed in {time.monotonic() - started:.0f}s", flush=True)
    return executable(engine)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engines", nargs="*", metavar="ENGINE", help=f"one of {', '.join(ENGINES)} (default: all)")
    parser.add_argument("--force", action="store_true", help="reinstall even when the marker is present")
    parser.add_argument("--print-root", action="store_true", help="print the cache directory and exit")
    args = parser.parse_args(argv)
    if args.print_root:
        print(cache_root())
        return 0
    unknown = [e for e in args.engines if e not in ENGINES]
    if unknown:
        parser.error(f"unknown engine {unknown[0]!r}; known: {', '.join(ENGINES)}")
    for engine in args.engines or list(ENGINES):
        install(engine, force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
