"""The audit record of one request: typed while the request fills it, a row of the `requests` table when
it is complete (`row()`), queued for the batched writer."""

from __future__ import annotations

from time import time


class AuditRecord:
    """A plain class, not a dataclass: the fields' defaults are class attributes, so making one (once per
    request) sets only what the request gives, not all twenty fields (78 bytecodes down to 18)."""

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

    # `path` is positional too: the request path passes it so, a keyword costing about 1,000 instructions
    # more per call on Python 3.11.
    def __init__(self, id: str, client_api: str, path: str | None = None, **fields):
        self.id = id
        self.client_api = client_api
        self.path = path
        self.ts = time()
        if fields:  # the other fields by name, as a dataclass would take them (ts=0 means now)
            unknown = fields.keys() - _FIELDS
            if unknown:
                raise TypeError(f"AuditRecord has no field {', '.join(sorted(unknown))}")
            self.__dict__.update(fields)
            if not self.ts:
                self.ts = time()

    def __repr__(self) -> str:
        return f"AuditRecord({', '.join(f'{k}={v!r}' for k, v in self.row().items())})"

    def set_tokens(self, tokens: tuple) -> None:
        self.input_tokens, self.output_tokens, self.cached_tokens = tokens

    def row(self) -> dict:
        # The defaults, then what this request set: two dict merges in C, a third of the CPU of reading 20
        # attributes. An attribute that is no field (a typo a slots dataclass would have refused) comes
        # along; the audit writer logs and drops it (mlxgw.audit.writer.storable_row).
        return {**_DEFAULTS, **self.__dict__}


# The fields in their declared order (as dataclasses.fields() listed them), with their defaults.
_NAMES = tuple(AuditRecord.__annotations__)
_FIELDS = frozenset(_NAMES)
_DEFAULTS = {name: getattr(AuditRecord, name, None) for name in _NAMES}
