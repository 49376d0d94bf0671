"""vllm-mlx (BACK-03): launch, readiness, and its native Anthropic Messages API.

    vllm-mlx serve DIR --host 127.0.0.1 --port P --served-model-name NAME [provider args] [model args]

Ready when GET /health answers 200 with `"model_loaded": true`. It requires `model` in every request (the
gateway always sends the served name). It serves /v1/messages itself, streaming too, so Anthropic
requests go there untranslated (its kind speaks both wires, see mlxgw.kinds).

Its default engine (SimpleEngine) answers 503 `text_generation_busy` to a request that arrives while
another one generates; the gateway starts it with VLLM_MLX_SIMPLE_ENGINE_LOCK_ADMISSION=wait so
concurrent requests queue instead (the provider's `env` can set it back to fail_fast).
"""

from __future__ import annotations

from mlxgw.backends.local import LocalProfile
from mlxgw.dialects.jsonfast import DecodeError, loads
from mlxgw.supervisor import ManagedModel
from mlxgw.supervisor.memory import MIB


class VllmMlxProfile(LocalProfile):
    kind = "vllm-mlx"
    executable = "vllm-mlx"
    overhead = 160 * MIB  # measured: 124 to 139 MiB, one process, with a tiny model
    env = {"VLLM_MLX_SIMPLE_ENGINE_LOCK_ADMISSION": "wait"}

    def command_line(self, m: ManagedModel, port: int) -> list[str]:
        return [m.launch.command, "serve", m.launch.path, "--host", "127.0.0.1", "--port", str(port),
                "--served-model-name", m.name, *self.base_args(m)]

    def is_ready(self, status: int, body: bytes) -> bool:
        if status != 200:
            return False
        try:
            data = loads(body)
        except DecodeError:
            return False
        return isinstance(data, dict) and data.get("model_loaded") is True
