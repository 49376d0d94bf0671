"""The gateway.yaml `mlxgw init` writes, from what mlxgw.discover found: commented, and valid even when
nothing was found (then it says in its comments what to do next).

- Local models: one provider `local` of the preferred installed engine (vllm-mlx, else mlx-openai-server),
  one entry per model with its path; `command` only when the engine is not on PATH. Without an engine the
  models are written as comments, so the file never routes a name to an engine that cannot start.
- Clouds: `openai` and `anthropic` when their key variable is set, as `${env:NAME}` (never the value).
- Routes: each local model by its exact name; `gpt-` to OpenAI and `claude-` to Anthropic; `default` to
  the local model with the smallest memory estimate (else the first cloud's small model). With both local
  models and a cloud, every local route falls back to that cloud's small model.
"""

from __future__ import annotations

import json
import time

import yaml

from mlxgw.discover import INSTALL_HINT, Findings
from mlxgw.supervisor.memory import human

CLOUD_FALLBACK = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"}
CLOUD_ROUTE = {"openai": "gpt-", "anthropic": "claude-"}
CLOUD_LABEL = {"openai": "OpenAI", "anthropic": "Anthropic"}
LOCAL_PROVIDER = "local"


def q(text: str) -> str:
    """A YAML scalar for `text`: plain when YAML reads it back as the same string, else double-quoted."""
    try:
        if yaml.safe_load(text) == text and ": " not in text and " #" not in text:
            return text
    except yaml.YAMLError:
        pass
    return json.dumps(text)


def default_target(f: Findings) -> str | None:
    if f.engine and f.models:
        best = min(f.models, key=lambda m: (m.estimate.total if m.estimate else 0, m.name))
        return f"{LOCAL_PROVIDER}/{best.name}"
    for provider in ("openai", "anthropic"):
        if provider in f.keys:
            return f"{provider}/{CLOUD_FALLBACK[provider]}"
    return None


def cloud_fallback(f: Findings) -> list[str]:
    return [f"{p}/{CLOUD_FALLBACK[p]}" for p in ("openai", "anthropic") if p in f.keys][:1]


def _model_lines(f: Findings, prefix: str) -> list[str]:
    out = []
    for m in f.models:
        size = human(m.size)
        est = f", about {human(m.estimate.total)} loaded" if m.estimate else ""
        quant = f", {m.bits}-bit" if m.bits else ""
        out += [f"{prefix}  # {m.repo} ({m.source}{quant}): {size} on disk{est}",
                f"{prefix}  - name: {q(m.name)}",
                f"{prefix}    path: {q(str(m.path))}",
                f"{prefix}    idle_ttl: 10m"]
    return out


def render(f: Findings, on_path: bool, now: float | None = None) -> str:
    """The file's text. `on_path`: the engine was found on PATH (else `command` names its executable)."""
    when = time.strftime("%Y-%m-%d", time.gmtime(now))
    lines = [f"# gateway.yaml written by `mlxgw init` on {when}. Edit it freely; `mlxgw apply -f gateway.yaml`",
             "# stores it, and a running `mlxgw serve` picks the change up within a second.",
             "# Keys never appear here: ${env:NAME} is read when you apply, and stored encrypted.",
             "version: 1"]
    providers: list[str] = []
    engine = f.engine
    if f.models and engine:
        providers += [f"  # Local models, served by {engine}: started on the first request for them, stopped",
                      "  # after idle_ttl without requests.",
                      f"  - name: {LOCAL_PROVIDER}", f"    kind: {engine}"]
        if not on_path:
            providers.append(f"    command: {q(f.engines[engine])}")
        providers.append("    models:")
        providers += _model_lines(f, "    ")
    elif f.models:
        providers += ["  # Local models were found but no engine to serve them. Install one:",
                      f"  #   {INSTALL_HINT}",
                      "  # then run `mlxgw init --yes` again. What it will add:",
                      f"  # - name: {LOCAL_PROVIDER}", "  #   kind: vllm-mlx", "  #   models:"]
        providers += [line.replace("    ", "  # ", 1) for line in _model_lines(f, "    ")]
    for provider, var in f.keys.items():
        providers += [f"  # {CLOUD_LABEL[provider]}'s cloud; the key comes from {var} when you apply.",
                      f"  - name: {provider}", f"    kind: {provider}", f"    api_key: ${{env:{var}}}"]
    routes: list[str] = []
    fallback = cloud_fallback(f)
    fb = f"\n    fallback: [{', '.join(fallback)}]" if fallback else ""
    if f.models and engine:
        routes.append("  # Each local model by its name" + (f"; when it fails, {fallback[0]} answers." if fallback
                                                            else "."))
        for m in f.models:
            routes.append(f"  - match: {{exact: {q(m.name)}}}\n    target: {LOCAL_PROVIDER}/{m.name}{fb}")
    for provider in f.keys:
        routes += [f"  # Model names starting with {CLOUD_ROUTE[provider]} go to {CLOUD_LABEL[provider]} as they are.",
                   f"  - match: {{prefix: {json.dumps(CLOUD_ROUTE[provider])}}}", f"    target: {provider}"]
    target = default_target(f)
    if target:
        dflt_fb = fb if target.startswith(LOCAL_PROVIDER + "/") else ""
        routes += ["  # `default`: for clients that want one name that always works.",
                   "  - name: default", "    match: {exact: default}", f"    target: {target}{dflt_fb}"]
    if providers:
        lines += ["providers:", *providers]
    else:
        lines += ["providers: []"]
    if routes:
        lines += ["routes:", *routes]
    else:
        lines += ["routes: []"]
    if not target:
        lines += ["", *nothing_found_comment()]
    return "\n".join(lines) + "\n"


def nothing_found_comment() -> list[str]:
    return ["# Nothing to serve yet: no local MLX model (config.json + *.safetensors) and no cloud key was",
            "# found, so every model name gets 404 for now. Next, either:",
            "# - download an MLX model, e.g. `hf download mlx-community/Qwen2.5-0.5B-Instruct-4bit`, install",
            f"#   an engine ({INSTALL_HINT}),",
            "# - or export OPENAI_API_KEY / ANTHROPIC_API_KEY,",
            "# then run `mlxgw init --yes && mlxgw apply -f gateway.yaml --yes` again."]
