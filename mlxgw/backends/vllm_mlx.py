"""vllm-mlx (BACK-03): launch, readiness, and its native Anthropic Messages API.

    vllm-mlx serve DIR --host 127.0.0.1 --port P --served-model-name NAME [provider args] [model args]

Ready when GET /health answers 200 with `"model_loaded": true`. It requires `model` in every request (the
gateway always sends the served name). It serves /v1/messages itself, streaming too, so Anthropic
requests go there untranslated (its kind speaks both wires, see mlxgw.kinds).

Its default engine (SimpleEngine) answers 503 `text_generation_busy` to a request that arrives while
another one generates; the gateway starts it with VLLM_MLX_SIMPLE_ENGINE_LOCK_ADMISSION=wait so
concurrent requests queue instead (the provider's `env` can set it back to fail_fast).

Its streamed /v1/messages (0.6.0) ends a reply cut by max_tokens with stop_reason "end_turn" (the
non-streamed answer says "max_tokens"): when the message_delta's output_tokens reached the request's
max_tokens, the gateway reports "max_tokens" (recorded in tests/cassettes/vllm-mlx/messages_stream.yaml).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from mlxgw.backends.local import LocalProfile
from mlxgw.dialects.jsonfast import DecodeError, dumps, loads
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

    async def fix_messages_stream(self, body: dict, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The stream, whole events at a time, with the message_delta's "end_turn" turned into
        "max_tokens" when the limit was reached."""
        limit = body.get("max_tokens")
        buf = b""
        try:
            async for chunk in chunks:
                buf += chunk
                cut = buf.rfind(b"\n\n") + 2
                if cut >= 2:
                    out, buf = buf[:cut], buf[cut:]
                    # (find, not `in`: bytes.__contains__ first tries a bytes operand as an integer, and
                    # formats the TypeError, which cost more than the search on every event)
                    yield _relabel_delta(out, limit) if out.find(b"message_delta") >= 0 else out
            if buf:
                yield buf
        finally:
            await chunks.aclose()


def _relabel_delta(events: bytes, limit) -> bytes:
    blocks = events.split(b"\n\n")
    for i, block in enumerate(blocks):
        head, sep, data = block.partition(b"data: ")
        if not sep or b"message_delta" not in head:
            continue
        try:
            obj = loads(data)
        except DecodeError:
            continue
        out_tokens = (obj.get("usage") or {}).get("output_tokens")
        delta = obj.get("delta") or {}
        if isinstance(limit, int) and isinstance(out_tokens, int) and out_tokens >= limit \
                and delta.get("stop_reason") == "end_turn":
            delta["stop_reason"] = "max_tokens"
            blocks[i] = head + sep + dumps(obj)
    return b"\n\n".join(blocks)
