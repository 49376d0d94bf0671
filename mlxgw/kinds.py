"""The one registry of provider kinds, and the names of the wires (HTTP APIs) that clients and backends
speak. A leaf module: it imports nothing else from mlxgw, so config, routing, backends and server can all
read it without an import cycle.

A wire is one name for one concept everywhere: the API a client speaks (`Dialect.wire`, the audit row's
`client_api`) and the APIs a backend speaks (`Backend.wires`, the audit row's `backend_api`):

    openai       OpenAI chat completions (POST /v1/chat/completions)
    anthropic    Anthropic messages (POST /v1/messages, /v1/messages/count_tokens)
    responses    OpenAI Responses (POST /v1/responses)

Each kind is registered once with what it is (local engine or cloud, the wires it speaks) and, by the
backends package when it is imported, how to build its adapter (`factory`) and, for a local engine, how to
launch it (`profile`). Adding a provider kind is one `register()` call (plus its name in the config
schema's enum).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

OPENAI_CHAT = "openai"
ANTHROPIC_MESSAGES = "anthropic"
OPENAI_RESPONSES = "responses"


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    local: bool  # a local engine the gateway launches (models need a `path`), else a cloud/remote API
    wires: frozenset[str]
    factory: Callable | None = None  # (name, kind, spec, api_key, http, supervisor) -> Backend
    profile: Callable | None = None  # local engines: (http) -> EngineProfile, the supervisor's launcher


KINDS: dict[str, Kind] = {}


def register(name: str, *, local: bool, wires, factory: Callable | None = None,
             profile: Callable | None = None) -> Kind:
    """Add (or complete) a provider kind. The facts (`local`, `wires`) are declared here; the backends
    package fills `factory` and `profile` when it is imported."""
    kind = Kind(name, local, frozenset(wires), factory, profile)
    old = KINDS.get(name)
    if old is not None and (old.local, old.wires) != (kind.local, kind.wires):
        raise ValueError(f"provider kind '{name}' registered twice with different facts")
    KINDS[name] = replace(old, factory=factory or old.factory, profile=profile or old.profile) if old else kind
    return KINDS[name]


def get(name: str) -> Kind | None:
    return KINDS.get(name)


def is_local(name: str | None) -> bool:
    kind = KINDS.get(name or "")
    return kind is not None and kind.local


register("openai", local=False, wires={OPENAI_CHAT, OPENAI_RESPONSES})
register("openai-compatible", local=False, wires={OPENAI_CHAT})
register("anthropic", local=False, wires={ANTHROPIC_MESSAGES})
register("mlx-openai-server", local=True, wires={OPENAI_CHAT})
register("vllm-mlx", local=True, wires={OPENAI_CHAT, ANTHROPIC_MESSAGES})
