"""mlx-openai-server (BACK-02): launch, readiness and quirks.

    mlx-openai-server launch --model-path DIR --model-type lm --served-model-name NAME
                             --host 127.0.0.1 --port P --no-log-file [provider args] [model args]

Ready when GET /health answers 200 (connection refused until the model is loaded). Quirks absorbed here:
- without --host/--port it binds 0.0.0.0:8000, and without --no-log-file it writes logs/app.log in its
  working directory (the supervisor gives it the logs folder as working directory anyway);
- it starts child processes (the supervisor signals the whole process group);
- it reports finish_reason "stop" when max_tokens ended the reply: when completion_tokens equals the
  request's limit, the gateway reports "length", streamed or not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from mlxgw.backends.base import ChatResult
from mlxgw.backends.local import LocalProfile
from mlxgw.dialects import openai as oa
from mlxgw.dialects.jsonfast import DecodeError, dumps, loads
from mlxgw.supervisor import ManagedModel
from mlxgw.supervisor.memory import MIB


def _limit(body: dict) -> int | None:
    value = body.get("max_completion_tokens") or body.get("max_tokens")
    return value if isinstance(value, int) else None


def _hit_limit(usage, limit: int) -> bool:
    return isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int) \
        and usage["completion_tokens"] >= limit


def _relabel(obj: dict) -> bool:
    changed = False
    for choice in obj.get("choices") or []:
        if isinstance(choice, dict) and choice.get("finish_reason") == "stop":
            choice["finish_reason"] = "length"
            changed = True
    return changed


def _stops(obj) -> bool:
    return isinstance(obj, dict) and any(isinstance(c, dict) and c.get("finish_reason") == "stop"
                                         for c in obj.get("choices") or [])


class MlxOpenAIServerProfile(LocalProfile):
    kind = "mlx-openai-server"
    executable = "mlx-openai-server"
    overhead = 320 * MIB  # measured: 275 to 300 MiB over its three processes with a tiny model

    def command_line(self, m: ManagedModel, port: int) -> list[str]:
        return [m.launch.command, "launch", "--model-path", m.launch.path, "--model-type", "lm",
                "--served-model-name", m.name, "--host", "127.0.0.1", "--port", str(port), "--no-log-file",
                *self.base_args(m)]

    def fix_result(self, body: dict, result: ChatResult) -> ChatResult:
        limit = _limit(body)
        if limit is not None and _hit_limit(result.body.get("usage"), limit) and _relabel(result.body):
            result.raw = b""
        return result

    async def fix_stream(self, body: dict, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The stream with `stop` turned into `length` when the usage says the limit was hit. The usage
        comes on the finishing chunk or right after it, so a finishing chunk without usage is held back
        until the next event."""
        limit = _limit(body)
        try:
            if limit is None:
                async for chunk in chunks:
                    yield chunk
                return
            parser = oa.SSEParser()
            held: dict | None = None
            async for chunk in chunks:
                out: list[bytes] = []
                for data in parser.feed(chunk):
                    held = self._event(data, held, limit, out)
                if out:
                    yield b"".join(out)
            out = []
            for data in parser.close():
                held = self._event(data, held, limit, out)
            if held is not None:
                out.append(oa.sse(held))
            if out:
                yield b"".join(out)
        finally:
            await chunks.aclose()

    @staticmethod
    def _event(data: bytes, held: dict | None, limit: int, out: list[bytes]) -> dict | None:
        if held is None and b'"finish_reason"' not in data:  # no finish in it (the text is escaped): as is
            out.append(b"data: " + data + b"\n\n")
            return None
        try:
            obj = loads(data) if data != b"[DONE]" else None
        except DecodeError:
            obj = None
        if held is not None:
            if isinstance(obj, dict) and _hit_limit(obj.get("usage"), limit):
                _relabel(held)
            out.append(oa.sse(held))
            held = None
        if _stops(obj):
            if _hit_limit(obj.get("usage"), limit):
                _relabel(obj)
                out.append(b"data: " + dumps(obj) + b"\n\n")
                return None
            return obj
        out.append(b"data: " + data + b"\n\n")
        return None
