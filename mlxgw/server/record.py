"""The audit record of one request: typed while the request fills it, a row of the `requests` table when
it is complete (`row()`), queued for the batched writer."""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from operator import attrgetter


@dataclass(slots=True)
class AuditRecord:
    id: str
    client_api: str  # the client's wire (mlxgw.kinds)
    ts: float = 0.0
    backend_api: str | None = None  # the wire the answering backend was spoken to in
    requested_model: str | None = None
    route: str | None = None
    provider: str | None = None
    backend_model: str | None = None
    attempts: int = 0  # tries made (a provider skipped while cooling down is listed, not counted)
    attempts_detail: list[dict] | None = None  # one {target, outcome, ms, error?, status?} per attempt
    failovers: int = 0  # targets before the one that answered
    stream: bool = False
    status: int = 0
    duration_ms: float = 0.0
    ttfb_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    error: str | None = None
    path: str | None = None  # the request path (kept short by the writer)

    def __post_init__(self):
        if not self.ts:
            self.ts = time.time()

    def set_tokens(self, tokens: tuple) -> None:
        self.input_tokens, self.output_tokens, self.cached_tokens = tokens

    def row(self) -> dict:
        return dict(zip(_NAMES, _VALUES(self)))


_NAMES = tuple(f.name for f in fields(AuditRecord))
_VALUES = attrgetter(*_NAMES)  # one C call for every field's value
