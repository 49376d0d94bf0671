"""Backends: one adapter object per provider, all sharing the process's one HTTP client.

Importing this package registers every provider kind's adapter factory and, for local engines, the
engine profile the supervisor launches it with, in the one registry of kinds (`mlxgw.kinds`).
"""

from __future__ import annotations

from mlxgw import kinds
from mlxgw.backends.anthropic import AnthropicBackend
from mlxgw.backends.base import Backend
from mlxgw.backends.http import HttpClient
from mlxgw.backends.local import LocalBackend
from mlxgw.backends.mlx_openai_server import MlxOpenAIServerProfile
from mlxgw.backends.openai_compat import OpenAICompatBackend
from mlxgw.backends.vllm_mlx import VllmMlxProfile


def _cloud(cls):
    def factory(name, kind, spec, api_key, http, supervisor=None):
        return cls(name, kind, spec, api_key, http)
    return factory


for _kind, _factory, _profile in (
    ("openai", _cloud(OpenAICompatBackend), None),
    ("openai-compatible", _cloud(OpenAICompatBackend), None),
    ("anthropic", _cloud(AnthropicBackend), None),
    ("mlx-openai-server", LocalBackend, MlxOpenAIServerProfile),
    ("vllm-mlx", LocalBackend, VllmMlxProfile),
):
    _k = kinds.get(_kind)
    kinds.register(_kind, local=_k.local, wires=_k.wires, factory=_factory, profile=_profile)


def local_profiles(http: HttpClient) -> dict:
    """kind -> EngineProfile of every local engine the gateway can launch (for the Supervisor)."""
    return {k.name: k.profile(http) for k in kinds.KINDS.values() if k.profile is not None}


def create(name: str, kind: str, spec: dict, api_key: str | None, http: HttpClient, supervisor=None) -> Backend:
    """The adapter for a provider; ValueError says why there is none."""
    entry = kinds.get(kind)
    if entry is None or entry.factory is None:
        raise ValueError(f"provider '{name}' (kind {kind}) is not served by this version of the gateway")
    return entry.factory(name, kind, spec, api_key, http, supervisor)
