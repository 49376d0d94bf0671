"""Exact prompt token counts for local models: the model folder's own tokenizer and chat template, used
the way the engines (mlx-lm under mlx-openai-server and vllm-mlx) use them.

    counter(path) -> Counter | None     loaded once per model folder and cached (None: the folder has no
                                        tokenizer.json or chat template, or `tokenizers`/`jinja2` are
                                        not installed; then no decision is made on a count)
    Counter.count(chat_body) -> int     tokens of the prompt a chat-completions body becomes
    context_length(path, configured)    the model's context: the config's `context_length`, else
                                        `max_position_embeddings` from its config.json (None: unknown)

How the engines build a prompt, and so how it is counted here (transformers' `apply_chat_template`):
the template (`chat_template.jinja`, else `chat_template` in tokenizer_config.json; a named list picks
`tool_use` when the request has tools, else `default`) is rendered in jinja2's immutable sandbox with
trim_blocks and lstrip_blocks, the `loopcontrols` extension, HF's `tojson` filter (no HTML escaping),
`raise_exception` and `strftime_now`, the tokenizer's special tokens (bos_token, eos_token...) as
variables, `messages`, `tools` (the request's, as sent) and `add_generation_prompt=True`. Messages are
first normalised as mlx-openai-server does: a list content becomes its text parts joined with newlines,
a message without content (and without tool calls) is dropped, system messages are merged into one,
first. The rendered text is encoded with the BOS token added only when the text does not already start
with it (mlx-lm's rule).

Known difference: an engine may add fields the template reads (pydantic defaults such as `name: None`),
which a template may render differently from an absent key; with the templates of common models (and the
tests' tiny model) the count equals the engine's `usage.prompt_tokens`.

Cost: loading is done once per folder (in a worker thread by the callers); counting a ~30k-token agent
prompt is measured by bench/tokencount.py.
"""

from __future__ import annotations

import functools
import json
import threading
from datetime import datetime
from pathlib import Path

_CACHE: dict[str, tuple[float, Counter | None]] = {}
_LOCK = threading.Lock()
_SPECIAL = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _token_text(value) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _environment():
    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    # HF's AssistantTracker adds a {% generation %} block; rendering only needs its body.
    env.add_extension(_generation_extension())
    return env


def _generation_extension():
    from jinja2 import nodes
    from jinja2.ext import Extension

    class Generation(Extension):
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    return Generation


def normalise(messages) -> list[dict]:
    """The messages as mlx-openai-server hands them to the template (see the module docstring)."""
    out: list[dict] = []
    system: dict | None = None
    for m in messages or ():
        if not isinstance(m, dict):
            continue
        m = dict(m)
        content = m.get("content")
        if content is None:
            if not m.get("tool_calls"):
                continue
            content = ""
        if isinstance(content, list):
            parts = [p if isinstance(p, str) else p.get("text") for p in content
                     if isinstance(p, str) or (isinstance(p, dict) and p.get("type") == "text" and p.get("text"))]
            content = "\n".join(parts)
        m["content"] = content
        if m.get("role") == "system":
            if system is None:
                system = m
            elif content:
                system["content"] += "\n\n" + content
        else:
            out.append(m)
    if system is not None:
        out.insert(0, system)
    return out


class Counter:
    """One model folder's tokenizer and compiled chat template(s)."""

    def __init__(self, tokenizer, templates: dict, special: dict):
        self.tokenizer = tokenizer
        self.templates = templates  # name -> compiled template ("default" always there)
        self.special = special
        self.bos = special.get("bos_token")

    def render(self, body: dict) -> str:
        tools = body.get("tools") or None
        template = self.templates.get("tool_use") if tools else None
        template = template or self.templates["default"]
        return template.render(**self.special, messages=normalise(body.get("messages")), tools=tools,
                               add_generation_prompt=True)

    def count(self, body: dict, bound_below: int | None = None) -> int:
        """Tokens of the prompt the chat-completions `body` becomes on the engine. With `bound_below`, a
        prompt whose UTF-8 length + 4 (a bound on its tokens: each covers at least one byte, plus what a
        post-processor adds, BOS/EOS, and a prefix space) is under it certainly fits, and that bound is
        returned without encoding."""
        text = self.render(body)
        if bound_below is not None:
            bound = len(text.encode()) + 4
            if bound < bound_below:
                return bound
        add_special = self.bos is None or not text.startswith(self.bos)
        return len(self.tokenizer.encode(text, add_special_tokens=add_special).ids)


def _load(folder: Path) -> Counter | None:
    try:
        from tokenizers import Tokenizer
    except ImportError:
        return None
    if not (folder / "tokenizer.json").is_file():
        return None
    config = _read_json(folder / "tokenizer_config.json")
    source = config.get("chat_template")
    jinja_file = folder / "chat_template.jinja"
    if jinja_file.is_file():
        source = jinja_file.read_text()
    if isinstance(source, list):
        source = {t.get("name"): t.get("template") for t in source if isinstance(t, dict)}
    elif isinstance(source, str):
        source = {"default": source}
    else:
        return None
    try:
        env = _environment()
    except ImportError:
        return None
    templates = {name: env.from_string(text) for name, text in source.items() if isinstance(text, str)}
    if "default" not in templates:
        if not templates:
            return None
        templates["default"] = next(iter(templates.values()))
    special = {k: t for k in _SPECIAL if (t := _token_text(config.get(k))) is not None}
    return Counter(Tokenizer.from_file(str(folder / "tokenizer.json")), templates, special)


def counter(path: str) -> Counter | None:
    """The cached Counter of a model folder, reloaded when its tokenizer files change (blocking: call
    it from a worker thread on the request path)."""
    folder = Path(path)
    try:
        stamp = max((folder / f).stat().st_mtime for f in ("tokenizer.json", "tokenizer_config.json")
                    if (folder / f).exists())
    except (OSError, ValueError):
        stamp = 0.0
    with _LOCK:
        hit = _CACHE.get(path)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        loaded = _load(folder)
        _CACHE[path] = (stamp, loaded)
        return loaded


def context_length(path: str, configured: int | None) -> int | None:
    """The model's context window (see the module docstring)."""
    return configured or _positions(path)


@functools.lru_cache(maxsize=256)
def _positions(path: str) -> int | None:
    cfg = _read_json(Path(path) / "config.json")
    cfg = cfg.get("text_config", cfg) if isinstance(cfg.get("text_config"), dict) else cfg
    value = cfg.get("max_position_embeddings")
    return value if isinstance(value, int) and value > 0 else None
