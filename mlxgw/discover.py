"""What `mlxgw init` finds on this machine: local MLX models, engines, cloud keys. Plain data, no printing.

Models: a folder is a model when it holds `config.json` and at least one `*.safetensors` (every shard its
`model.safetensors.index.json` names must be there, else the download is incomplete and it is skipped).
Where it is looked for, in this order:
- the Hugging Face cache: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`; each
  `models--ORG--NAME` repository resolves to the snapshot `refs/main` names (else its newest snapshot);
- LM Studio's folders: `~/.lmstudio/models` and `~/.cache/lm-studio/models` (`PUBLISHER/NAME/`);
- `~/models` and every `--scan` folder, walked up to four levels deep (hidden folders skipped).
The MLX `quantization` entry of config.json (`{"bits": 4, "group_size": 64}`), when present, gives the
bits; the memory estimate is the supervisor's own (mlxgw.supervisor.memory.estimate).

Names (`short_name`): the repository name without its organisation, lower-cased; the words `instruct`,
`chat`, `it`, `mlx` and `hf` dropped; the quantisation appended as `-Nbit` when the config says so and the
name does not already end with it. mlx-community/Qwen2.5-0.5B-Instruct-4bit gives `qwen2.5-0.5b-4bit`.
When two models would get the same name, both keep their full lower-cased repository name instead, and
any that still collide get `-2`, `-3`... in the order they were found. The same folder found twice (a
`--scan` of the cache itself) counts once.

Engines (`find_engines`): `mlx-openai-server` and `vllm-mlx` on PATH, else in pipx's venvs
(`$PIPX_HOME` or `~/.local/pipx`, then `~/.local/share/pipx`) or uv's tool folder (`$UV_TOOL_DIR` or
`~/.local/share/uv/tools`).

Keys (`find_keys`): which of OPENAI_API_KEY and ANTHROPIC_API_KEY are set. Only the names leave here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from mlxgw.backends import local_profiles
from mlxgw.supervisor import memory

ENGINES = ("vllm-mlx", "mlx-openai-server")  # preference order when both are installed (see init)
INSTALL_HINT = "uv tool install vllm-mlx   (or: pipx install vllm-mlx; mlx-openai-server works too)"
CLOUD_KEYS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
_DROP_WORDS = {"instruct", "chat", "it", "mlx", "hf"}
_QUANT = re.compile(r"(\d+)[-_]?bit$")
_SCAN_DEPTH = 4


@dataclass
class Model:
    name: str
    path: Path  # the folder an engine loads (a resolved snapshot for the HF cache)
    repo: str  # ORG/NAME where known, else the folder name
    source: str  # "hf-cache", "lmstudio" or the scanned folder
    size: int  # bytes of the folder's files
    bits: int | None  # from the MLX quantization entry
    context_length: int | None  # max_position_embeddings
    estimate: memory.Estimate | None = None

    def as_dict(self) -> dict:
        return {"name": self.name, "path": str(self.path), "repo": self.repo, "source": self.source,
                "size": self.size, "bits": self.bits, "context_length": self.context_length,
                "estimate": self.estimate.total if self.estimate else None}


@dataclass
class Findings:
    models: list[Model] = field(default_factory=list)
    engines: dict[str, str] = field(default_factory=dict)  # engine -> executable path
    keys: dict[str, str] = field(default_factory=dict)  # provider -> env var name
    skipped: list[str] = field(default_factory=list)  # folders that looked like models but were not usable
    searched: list[str] = field(default_factory=list)

    @property
    def engine(self) -> str | None:
        """The engine init configures: the first of ENGINES that is installed."""
        return next((e for e in ENGINES if e in self.engines), None)


# --- models --------------------------------------------------------------------------------------------

def hf_hub_dir(environ=os.environ) -> Path:
    if environ.get("HF_HUB_CACHE"):
        return Path(environ["HF_HUB_CACHE"]).expanduser()
    if environ.get("HF_HOME"):
        return Path(environ["HF_HOME"]).expanduser() / "hub"
    return Path("~/.cache/huggingface/hub").expanduser()


def _read_config(folder: Path) -> dict | None:
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return cfg if isinstance(cfg, dict) else None


def _complete(folder: Path) -> bool:
    """Every weight file is there (symlinks of the HF cache resolve to a blob)."""
    shards = [p for p in folder.glob("*.safetensors")]
    if not shards or not all(p.exists() for p in shards):
        return False
    index = folder / "model.safetensors.index.json"
    if index.exists():
        try:
            names = set(json.loads(index.read_text()).get("weight_map", {}).values())
        except (OSError, ValueError, AttributeError):
            return False
        return all((folder / n).exists() for n in names)
    return True


def _size(folder: Path) -> int:
    total = 0
    for p in folder.iterdir():
        try:
            if p.is_file():
                total += p.stat().st_size  # follows the HF cache's symlinks to the blobs
        except OSError:
            continue
    return total


def _model(folder: Path, repo: str, source: str, skipped: list[str]) -> Model | None:
    cfg = _read_config(folder)
    if cfg is None:
        return None
    if not _complete(folder):
        skipped.append(f"{folder}: incomplete download (a *.safetensors file is missing)")
        return None
    quant = cfg.get("quantization") or cfg.get("quantization_config") or {}
    bits = quant.get("bits") if isinstance(quant, dict) and isinstance(quant.get("bits"), int) else None
    text = cfg.get("text_config", cfg) if isinstance(cfg.get("text_config"), dict) else cfg
    ctx = text.get("max_position_embeddings")
    return Model(name="", path=folder, repo=repo, source=source, size=_size(folder), bits=bits,
                 context_length=ctx if isinstance(ctx, int) else None)


def _hf_snapshot(repo_dir: Path) -> Path | None:
    snaps = repo_dir / "snapshots"
    ref = repo_dir / "refs" / "main"
    try:
        if ref.is_file():
            snap = snaps / ref.read_text().strip()
            if snap.is_dir():
                return snap
        candidates = [p for p in snaps.iterdir() if p.is_dir()]
    except OSError:
        return None
    return max(candidates, key=lambda p: p.stat().st_mtime, default=None)


def scan_hf_cache(hub: Path, skipped: list[str]) -> list[Model]:
    out = []
    if not hub.is_dir():
        return out
    for repo_dir in sorted(hub.glob("models--*")):
        snap = _hf_snapshot(repo_dir)
        if snap is None:
            continue
        repo = "/".join(repo_dir.name.split("--")[1:])
        m = _model(snap, repo, "hf-cache", skipped)
        if m:
            out.append(m)
    return out


def scan_folder(root: Path, source: str, skipped: list[str], depth: int = _SCAN_DEPTH) -> list[Model]:
    """Model folders under `root` (root itself included), repo named from the last two path parts."""
    out: list[Model] = []
    if not root.is_dir():
        return out
    stack = [(root, 0)]
    while stack:
        folder, level = stack.pop()
        if (folder / "config.json").is_file() and any(folder.glob("*.safetensors")):
            rel = folder.relative_to(root).parts if folder != root else (folder.name,)
            m = _model(folder, "/".join(rel[-2:]), source, skipped)
            if m:
                out.append(m)
            continue
        if level >= depth:
            continue
        try:
            children = sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                              reverse=True)
        except OSError:
            continue
        stack.extend((c, level + 1) for c in children)
    return out


def short_name(repo: str, bits: int | None) -> str:
    """See the module docstring."""
    base = repo.rsplit("/", 1)[-1].lower()
    words = [w for w in re.split(r"[-_\s]+", base) if w and w not in _DROP_WORDS]
    name = "-".join(words) or base
    if bits and not _QUANT.search(name):
        name += f"-{bits}bit"
    return _clean(name)


def _clean(name: str) -> str:
    name = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9._-]+", "-", name.lower())).strip("-._")
    return name or "model"


def name_models(models: list[Model]) -> None:
    short = [short_name(m.repo, m.bits) for m in models]
    counts: dict[str, int] = {}
    for s in short:
        counts[s] = counts.get(s, 0) + 1
    taken: dict[str, int] = {}
    for m, s in zip(models, short):
        name = s if counts[s] == 1 else _clean(m.repo.replace("/", "-"))
        n = taken.get(name, 0) + 1
        taken[name] = n
        m.name = name if n == 1 else f"{name}-{n}"


def find_models(scan: list[Path] | None = None, home: Path | None = None, environ=os.environ,
                engine: str | None = None) -> tuple[list[Model], list[str], list[str]]:
    """(models, skipped folders, searched places). Memory estimates use `engine`'s overhead."""
    home = home or Path.home()
    skipped: list[str] = []
    hub = hf_hub_dir(environ)
    places = [(hub, "hf-cache"), (home / ".lmstudio" / "models", "lmstudio"),
              (home / ".cache" / "lm-studio" / "models", "lmstudio"), (home / "models", "~/models")]
    places += [(Path(p).expanduser(), str(p)) for p in scan or []]
    found: list[Model] = []
    seen: set[Path] = set()
    for root, source in places:
        is_hub = source == "hf-cache" or root.resolve() == hub.resolve()  # a --scan of the cache itself
        models = scan_hf_cache(root, skipped) if is_hub else scan_folder(root, source, skipped)
        for m in models:
            key = m.path.resolve()
            if key not in seen:
                seen.add(key)
                found.append(m)
    name_models(found)
    profiles = local_profiles(None)  # each engine's measured runtime memory, as the supervisor counts it
    overhead = profiles[engine].overhead if engine in profiles else max(p.overhead for p in profiles.values())
    for m in found:
        m.estimate = memory.estimate(m.path, None, overhead)
    return found, skipped, [str(p) for p, _ in places]


# --- engines and keys ------------------------------------------------------------------------------------

def engine_places(engine: str, home: Path, environ=os.environ) -> list[Path]:
    pipx = [Path(environ["PIPX_HOME"]).expanduser()] if environ.get("PIPX_HOME") else []
    pipx += [home / ".local" / "pipx", home / ".local" / "share" / "pipx"]
    uv = Path(environ["UV_TOOL_DIR"]).expanduser() if environ.get("UV_TOOL_DIR") else home / ".local/share/uv/tools"
    return [p / "venvs" / engine / "bin" / engine for p in pipx] + [uv / engine / "bin" / engine]


def find_engines(home: Path | None = None, environ=os.environ) -> dict[str, str]:
    home = home or Path.home()
    out = {}
    for engine in ENGINES:
        hit = shutil.which(engine, path=environ.get("PATH"))
        if hit is None:
            hit = next((str(p) for p in engine_places(engine, home, environ) if os.access(p, os.X_OK)), None)
        if hit:
            out[engine] = hit
    return out


def find_keys(environ=os.environ) -> dict[str, str]:
    return {provider: var for provider, var in CLOUD_KEYS.items() if environ.get(var, "").strip()}


def discover(scan: list[Path] | None = None, home: Path | None = None, environ=os.environ) -> Findings:
    engines = find_engines(home, environ)
    f = Findings(engines=engines, keys=find_keys(environ))
    f.models, f.skipped, f.searched = find_models(scan, home, environ, f.engine)
    return f
