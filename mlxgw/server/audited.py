"""The base of the inference endpoints: exactly one audit row per request, however it ends.

Subclasses set `client_api` and implement `_serve(req, resp, row, t0)`, calling `_finish` once the
answer is complete (a stream calls it when the relay ends). An ApiError or a bug that escapes `_serve`
is recorded here and re-raised for the dialect's error serializer.
"""

from __future__ import annotations

import abc
import time

from mlxgw.server.errors import ApiError
from mlxgw.server.gateway import Gateway


def new_row(request_id: str, client_api: str) -> dict:
    return {"id": request_id, "ts": time.time(), "client_api": client_api, "backend_api": None,
            "requested_model": None, "route": None, "provider": None, "backend_model": None, "attempts": 0,
            "attempts_detail": None, "failovers": 0, "stream": False, "status": 0, "duration_ms": 0.0,
            "ttfb_ms": None, "input_tokens": None, "output_tokens": None, "cached_tokens": None, "error": None}


class AuditedEndpoint(abc.ABC):
    client_api = ""

    def __init__(self, gateway: Gateway):
        self.gw = gateway

    async def on_post(self, req, resp) -> None:
        t0 = time.perf_counter()
        row = new_row(req.context.request_id, self.client_api)
        try:
            await self._serve(req, resp, row, t0)
        except ApiError as exc:
            self._finish(row, t0, exc.status, exc.message)
            raise
        except Exception as exc:  # a bug: answered as a plain 500 by the error handler, audited here
            self._finish(row, t0, 500, f"internal error: {type(exc).__name__}")
            raise

    @abc.abstractmethod
    async def _serve(self, req, resp, row: dict, t0: float) -> None:
        """Answer the request, filling `row`; call `_finish` when the answer is complete."""

    def _finish(self, row: dict, t0: float, status: int, error: str | None = None) -> None:
        row["status"] = status
        row["error"] = error
        row["duration_ms"] = (time.perf_counter() - t0) * 1000
        self.gw.audit.record(row)
