"""Settings that point an agent CLI or SDK at the gateway, and the model names it will ask for, checked
against the applied config (a Snapshot: the server's own route resolution). Pure: the CLI prints/writes.

`setup(client, snapshot, url, model, key, environ)` returns a Setup: environment lines and/or one config
file (its path and its full text, merged into the existing file's text where the format allows), the
names the client sends with why, and notes.

Codex (0.171+; keys from openai/codex `codex-rs/core/config.schema.json`, the ConfigToml schema):
`model_providers.<id>` with `base_url`, `wire_api = "responses"` (the only WireApi value left), and
`model`, `model_provider`, `model_context_window` at the top level. `profiles.<name>` (ConfigProfile)
takes `model` and `model_provider`, so each gateway model gets a profile (`codex -p mlxgw-NAME`). Codex's
`model_catalog_json` (ModelsResponse of ModelInfo in `codex-rs/protocol/src/openai_models.rs`) is not
written: ModelInfo requires `base_instructions`, which would replace Codex's own prompt. The context
window of the profile's model is passed with `-c model_context_window=N` in the command shown instead.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

CLIENTS = ("claude-code", "codex", "opencode", "aider", "llm", "openai", "anthropic")
PROVIDER_ID = "mlxgw"
BEGIN, END = "# >>> mlxgw tables (written by `mlxgw clients codex`)", "# <<< mlxgw"
TOP_BEGIN = "# >>> mlxgw top-level keys (written by `mlxgw clients codex`)"
_OWN_KEYS = re.compile(r"^\s*(model|model_provider|model_context_window)\s*=")
# What Claude Code sends when no model setting overrides it: its main model, the small/fast model of side
# requests, and claude-opus-4-8, which it sends for claude-opus-4-1-* unless
# CLAUDE_CODE_DISABLE_LEGACY_MODEL_REMAP=1 (../shared/reference/clients.md, measured).
CLAUDE_DEFAULT_NAMES = (("claude-sonnet-4-5", "Claude Code's main model"),
                        ("claude-haiku-4-5", "its small/fast model (titles, quota probe)"),
                        ("claude-opus-4-8", "what it sends for opus and claude-opus-4-1-*"))
LOOPBACK = re.compile(r"^https?://(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?(/|$)")


@dataclass
class Setup:
    client: str
    env: list[tuple[str, str]] = field(default_factory=list)
    file: Path | None = None
    text: str | None = None  # the file's full new text
    names: list[tuple[str, str]] = field(default_factory=list)  # (model name the client sends, why)
    notes: list[str] = field(default_factory=list)


def key_value(url: str, key: str | None) -> str:
    """What the client presents as its key: the gateway key given, else a placeholder on loopback (the
    gateway ignores it there and never forwards a client's key upstream)."""
    if key:
        return key
    return "mlxgw-local" if LOOPBACK.match(url) else "<a gateway key: mlxgw tokens create NAME>"


def context_length(snapshot, name: str) -> int | None:
    """The context window of what `name` reaches first: the model's `context_length`, else its
    config.json's max_position_embeddings."""
    rt = snapshot.route(name)
    if rt is None or not rt.targets:
        return None
    t = rt.targets[0]
    p = snapshot.providers.get(t.provider)
    if p is None:
        return None
    backend = snapshot.backend_model(t, name)
    spec = next((m for m in p.spec.get("models") or [] if m.get("name") == backend), None)
    if spec is None:
        return None
    if spec.get("context_length"):
        return int(spec["context_length"])
    if spec.get("path"):
        try:
            cfg = json.loads((Path(spec["path"]).expanduser() / "config.json").read_text())
        except (OSError, ValueError):
            return None
        cfg = cfg.get("text_config", cfg) if isinstance(cfg.get("text_config"), dict) else cfg
        value = cfg.get("max_position_embeddings")
        return value if isinstance(value, int) else None
    return None


def gateway_models(snapshot) -> list[str]:
    """Names a client can ask for (exact routes, declared models and aliases), the server's /v1/models."""
    return [name for name, _ in snapshot.models()]


def pick_model(snapshot, model: str | None) -> str | None:
    if model:
        return model
    names = gateway_models(snapshot)
    if "default" in names:
        return "default"
    local = [n for n, owner in snapshot.models() if snapshot.providers.get(owner) and snapshot.providers[owner].local]
    return (local or names or [None])[0]


def _config_home(environ) -> Path:
    return Path(environ.get("XDG_CONFIG_HOME") or Path(environ.get("HOME", "~")) / ".config").expanduser()


def _home(environ) -> Path:
    return Path(environ.get("HOME") or Path.home()).expanduser()


def _merge_json(path: Path, update) -> str:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    update(data)
    return json.dumps(data, indent=2) + "\n"


def claude_code(s: Setup, snapshot, url: str, model: str | None, key: str, environ, requested: bool) -> None:
    """Claude's own names when the config routes them and no model was asked for, else `model` for all."""
    s.env = [("ANTHROPIC_BASE_URL", url), ("ANTHROPIC_AUTH_TOKEN", key)]
    claude_routed = all(snapshot.route(n) is not None for n, _ in CLAUDE_DEFAULT_NAMES)
    if model and (requested or not claude_routed):
        s.env += [("ANTHROPIC_MODEL", model), ("ANTHROPIC_DEFAULT_SONNET_MODEL", model),
                  ("ANTHROPIC_DEFAULT_OPUS_MODEL", model), ("ANTHROPIC_DEFAULT_HAIKU_MODEL", model),
                  ("ANTHROPIC_SMALL_FAST_MODEL", model)]
        s.names = [(model, "every request (the model settings above)")]
        if model.startswith("claude-opus-4-1") and environ.get("CLAUDE_CODE_DISABLE_LEGACY_MODEL_REMAP") != "1":
            s.names = [("claude-opus-4-8", f"what Claude Code sends for {model} (legacy model remap)")]
    else:
        s.names = list(CLAUDE_DEFAULT_NAMES)
    s.file = _home(environ) / ".claude" / "settings.json"
    env = dict(s.env)
    s.text = _merge_json(s.file, lambda d: d.setdefault("env", {}).update(env))
    s.notes = ["Run `claude` in a shell with these variables, or --write them into the `env` of "
               f"{s.file}.", "Claude Code sends claude-opus-4-8 for claude-opus-4-1-* unless "
               "CLAUDE_CODE_DISABLE_LEGACY_MODEL_REMAP=1; route the name it sends."]


# Codex sends its built-in `web_search` tool, which only OpenAI's own API runs; the gateway refuses it (400)
# for any other backend, so Codex must not send it there (`web_search`: ConfigToml and ConfigProfile).
_NO_WEB_SEARCH = 'web_search = "disabled"  # only OpenAI\'s own API runs Codex\'s web_search tool'


def _openai_cloud(snapshot, name: str) -> bool:
    rt = snapshot.route(name)
    p = snapshot.providers.get(rt.targets[0].provider) if rt and rt.targets else None
    return p is not None and p.kind == "openai"


def codex_text(snapshot, url: str, model: str | None, existing: str) -> str:
    """`existing` with mlxgw's settings: the top-level keys in a marked block first (TOML wants them before
    any table; the file's own `model`/`model_provider`/`model_context_window` lines give way), the
    provider and profile tables in a marked block last. Running it again replaces both blocks."""
    import tomllib

    top = [TOP_BEGIN]
    if model:
        top += [f"model = {json.dumps(model)}", f'model_provider = "{PROVIDER_ID}"']
        ctx = context_length(snapshot, model)
        if ctx:
            top.append(f"model_context_window = {ctx}  # {model}'s own window, not Codex's small default")
        if not _openai_cloud(snapshot, model):
            top.append(_NO_WEB_SEARCH)
    top.append(END)
    tables = [BEGIN, f"[model_providers.{PROVIDER_ID}]", 'name = "mlxgw gateway"',
              f"base_url = {json.dumps(url + '/v1')}", 'wire_api = "responses"']
    if not LOOPBACK.match(url):  # off loopback the gateway wants a key: Codex sends $MLXGW_KEY as a bearer
        tables.append('env_key = "MLXGW_KEY"')
    for name in gateway_models(snapshot):
        ctx = context_length(snapshot, name)
        tables += [f"[profiles.{json.dumps('mlxgw-' + name)}]", f"model = {json.dumps(name)}",
                   f'model_provider = "{PROVIDER_ID}"']
        if not _openai_cloud(snapshot, name):
            tables.append(_NO_WEB_SEARCH)
        if ctx:
            tables.append(f"# context window {ctx}: codex -p mlxgw-{name} -c model_context_window={ctx}")
    tables.append(END)
    for begin in (TOP_BEGIN, BEGIN):  # drop what an earlier run wrote
        if begin in existing:
            head, rest = existing.split(begin, 1)
            existing = head + (rest.split(END, 1)[1].lstrip("\n") if END in rest else "")
    lines, in_table = [], False
    for line in existing.splitlines(True):
        in_table = in_table or line.lstrip().startswith("[")
        if not in_table and model and _OWN_KEYS.match(line):
            continue
        lines.append(line)
    body = "".join(lines).strip("\n")
    text = "\n".join(top) + "\n" + (body + "\n\n" if body else "") + "\n".join(tables) + "\n"
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"cannot merge into the existing Codex config ({exc}); edit it by hand") from None
    return text


def codex(s: Setup, snapshot, url: str, model: str | None, key: str, environ) -> None:
    home = Path(environ["CODEX_HOME"]).expanduser() if environ.get("CODEX_HOME") else _home(environ) / ".codex"
    s.file = home / "config.toml"
    existing = s.file.read_text() if s.file.exists() else ""
    s.text = codex_text(snapshot, url, model, existing)
    if not LOOPBACK.match(url):
        s.env = [("MLXGW_KEY", key)]
    s.names = [(model, "Codex's model")] if model else []
    s.names += [(n, f"profile mlxgw-{n}") for n in gateway_models(snapshot) if n != model]
    s.notes = ["Codex speaks only the Responses API (POST /v1/responses) since 0.125.",
               "Pick another gateway model with `codex -p mlxgw-NAME`."]


def opencode(s: Setup, snapshot, url: str, model: str | None, key: str, environ) -> None:
    s.file = _config_home(environ) / "opencode" / "opencode.json"
    models = {}
    for name in gateway_models(snapshot):
        entry: dict = {"name": name}
        ctx = context_length(snapshot, name)
        if ctx:
            entry["limit"] = {"context": ctx, "output": min(ctx // 4, 8192)}
        models[name] = entry

    def update(d: dict) -> None:
        d.setdefault("$schema", "https://opencode.ai/config.json")
        d.setdefault("provider", {})[PROVIDER_ID] = {
            "npm": "@ai-sdk/openai-compatible", "name": "mlxgw gateway",
            "options": {"baseURL": url + "/v1", "apiKey": key}, "models": models}
        if model:
            d["model"] = f"{PROVIDER_ID}/{model}"

    s.text = _merge_json(s.file, update)
    s.names = [(n, "opencode provider mlxgw") for n in models]


def llm(s: Setup, snapshot, url: str, model: str | None, key: str, environ) -> None:
    import yaml

    base = environ.get("LLM_USER_PATH")
    s.file = Path(base).expanduser() if base else _config_home(environ) / "io.datasette.llm"
    s.file = s.file / "extra-openai-models.yaml"
    try:
        entries = yaml.safe_load(s.file.read_text()) or []
    except FileNotFoundError:
        entries = []
    entries = [e for e in entries if not (isinstance(e, dict) and str(e.get("model_id", "")).startswith("mlxgw-"))]
    names = gateway_models(snapshot)
    entries += [{"model_id": f"mlxgw-{n}", "model_name": n, "api_base": url + "/v1", "api_key_name": "mlxgw"}
                for n in names]
    s.text = yaml.safe_dump(entries, sort_keys=False)
    s.names = [(n, f"llm -m mlxgw-{n}") for n in names]
    s.notes = [f"Store the key llm sends once: `llm keys set mlxgw --value {key}`."]


def setup(client: str, snapshot, url: str, model: str | None = None, key: str | None = None,
          environ=os.environ) -> Setup:
    if client not in CLIENTS:
        raise ValueError(f"unknown client {client!r}; one of: {', '.join(CLIENTS)}")
    url = url.rstrip("/")
    key = key_value(url, key)
    requested = model is not None
    model = pick_model(snapshot, model)
    s = Setup(client)
    if client == "claude-code":
        claude_code(s, snapshot, url, model, key, environ, requested)
    elif client == "codex":
        codex(s, snapshot, url, model, key, environ)
    elif client == "opencode":
        opencode(s, snapshot, url, model, key, environ)
    elif client == "llm":
        llm(s, snapshot, url, model, key, environ)
    elif client == "aider":
        s.env = [("OPENAI_API_BASE", url + "/v1"), ("OPENAI_API_KEY", key)]
        s.names = [(model, f"aider --model openai/{model}")] if model else []
        s.notes = ["Only in aider's shell: the gateway reads its own OPENAI_API_KEY when you apply."]
    elif client == "openai":
        s.env = [("OPENAI_BASE_URL", url + "/v1"), ("OPENAI_API_KEY", key)]
        s.names = [(model, "model=... in your calls")] if model else []
        s.notes = ["Only in the client's shell: the gateway reads its own OPENAI_API_KEY when you apply."]
    else:
        s.env = [("ANTHROPIC_BASE_URL", url), ("ANTHROPIC_API_KEY", key)]
        s.names = [(model, "model=... in your calls")] if model else []
        s.notes = ["Only in the client's shell: the gateway reads its own ANTHROPIC_API_KEY when you apply."]
    return s
