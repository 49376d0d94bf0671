"""Backends: one adapter object per provider, all sharing the process's one HTTP client."""

from __future__ import annotations

from mlxgw.backends.base import Backend
from mlxgw.backends.http import HttpClient
from mlxgw.backends.openai_compat import OpenAICompatBackend, base_url_for

OPENAI_KINDS = frozenset({"openai", "openai-compatible"})
LOCAL_KINDS = frozenset({"mlx-openai-server", "vllm-mlx"})


def local_profiles(http: HttpClient) -> dict:
    """kind -> EngineProfile of every local engine the gateway can launch (for the Supervisor)."""
    from mlxgw.backends.mlx_openai_server import MlxOpenAIServerProfile
    from mlxgw.backends.vllm_mlx import VllmMlxProfile

    return {p.kind: p(http) for p in (MlxOpenAIServerProfile, VllmMlxProfile)}


def create(name: str, kind: str, spec: dict, api_key: str | None, http: HttpClient, supervisor=None) -> Backend:
    """The adapter for a provider. Local engines with an explicit `base_url` are served as the
    OpenAI-compatible servers they are (something else runs them); without one the gateway launches
    them through `supervisor`. ValueError says why there is none."""
    if kind in OPENAI_KINDS or (kind in LOCAL_KINDS and spec.get("base_url")):
        if not base_url_for(kind, spec):
            raise ValueError(f"provider '{name}' (kind {kind}) has no base_url")
        return OpenAICompatBackend(name, kind, spec, api_key, http)
    if kind in LOCAL_KINDS:
        if supervisor is None:
            raise ValueError(f"provider '{name}' (kind {kind}) needs the gateway's engine supervisor")
        if kind == "vllm-mlx":
            from mlxgw.backends.vllm_mlx import VllmMlxBackend as cls
        else:
            from mlxgw.backends.mlx_openai_server import MlxOpenAIServerBackend as cls
        return cls(name, kind, spec, http, supervisor)
    if kind == "anthropic":
        from mlxgw.backends.anthropic import AnthropicBackend

        return AnthropicBackend(name, kind, spec, api_key, http)
    raise ValueError(f"provider '{name}' (kind {kind}) is not served by this version of the gateway")
