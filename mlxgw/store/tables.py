"""SQLAlchemy tables. Config entities keep their identity in columns and the rest of their canonical
spec in a JSON column, so the store can round-trip any field the schema gains without a migration."""

from __future__ import annotations

import time

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Meta(Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Setting(Base):
    """Document-level settings: keys 'defaults', 'server', 'audit' and 'responses'."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict] = mapped_column(JSON)


class Provider(Base):
    __tablename__ = "providers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    spec: Mapped[dict] = mapped_column(JSON)  # canonical provider minus models
    position: Mapped[int] = mapped_column(Integer, default=0)
    origin: Mapped[str] = mapped_column(String(16), default="apply")
    created_at: Mapped[float] = mapped_column(Float, default=time.time)
    updated_at: Mapped[float] = mapped_column(Float, default=time.time)
    models: Mapped[list[ProviderModel]] = relationship(
        back_populates="provider", cascade="all, delete-orphan", order_by="ProviderModel.position"
    )


class ProviderModel(Base):
    __tablename__ = "provider_models"
    __table_args__ = (UniqueConstraint("provider_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict] = mapped_column(JSON)  # canonical model
    position: Mapped[int] = mapped_column(Integer, default=0)
    origin: Mapped[str] = mapped_column(String(16), default="apply")
    provider: Mapped[Provider] = relationship(back_populates="models")


class Route(Base):
    __tablename__ = "routes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(300), unique=True)  # name, else "kind:pattern"
    match_type: Mapped[str] = mapped_column(String(8))  # exact | prefix | regex
    pattern: Mapped[str] = mapped_column(String(300))
    target: Mapped[str] = mapped_column(String(300))
    spec: Mapped[dict] = mapped_column(JSON)  # canonical route
    position: Mapped[int] = mapped_column(Integer, default=0)
    origin: Mapped[str] = mapped_column(String(16), default="apply")
    created_at: Mapped[float] = mapped_column(Float, default=time.time)
    updated_at: Mapped[float] = mapped_column(Float, default=time.time)


class Secret(Base):
    """A provider's API key, Fernet-encrypted. `env_ref` is the variable it was read from, if any."""

    __tablename__ = "secrets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(String(63), unique=True)
    env_ref: Mapped[str | None] = mapped_column(String(200), nullable=True)
    ciphertext: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(32))
    updated_at: Mapped[float] = mapped_column(Float, default=time.time)


class Revision(Base):
    """One row per apply that changed something; the server reloads when max(id) moves."""

    __tablename__ = "revisions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    applied_at: Mapped[float] = mapped_column(Float, default=time.time)
    source: Mapped[str] = mapped_column(String(500))
    checksum: Mapped[str] = mapped_column(String(64))
    summary: Mapped[dict] = mapped_column(JSON)


class GatewayKey(Base):
    """Keys clients present to the gateway when it listens beyond loopback. Only a hash is kept."""

    __tablename__ = "gateway_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    hash: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[float] = mapped_column(Float, default=time.time)
    # Added by migration 4: "client" keys reach the inference API, "admin" keys also /admin/*.
    scope: Mapped[str] = mapped_column(String(16), default="client", server_default="client")


class RequestLog(Base):
    """The audit log: one row per request the gateway answered (RELI-04)."""

    __tablename__ = "requests"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the x-request-id
    ts: Mapped[float] = mapped_column(Float)  # indexed by (ts, id): AUDIT_INDEXES
    client_api: Mapped[str] = mapped_column(String(16))  # openai | anthropic | responses | unknown
    backend_api: Mapped[str | None] = mapped_column(String(16), nullable=True)
    requested_model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    route: Mapped[str | None] = mapped_column(String(300), nullable=True)
    provider: Mapped[str | None] = mapped_column(String(63), nullable=True)
    backend_model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[int] = mapped_column(Integer)
    duration_ms: Mapped[float] = mapped_column(Float)
    ttfb_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    input_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    output_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cached_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Added by migration 2: every attempt [{target, outcome, ms, status?, error?, at_byte?}], and how many
    # times the request moved on to a next target.
    attempts_detail: Mapped[list | None] = mapped_column(JSON, nullable=True)
    failovers: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Added by migration 4: the request's path, so a request to no known endpoint is audited too.
    path: Mapped[str | None] = mapped_column(String(300), nullable=True)


class StoredResponse(Base):
    """A Responses API response kept for `previous_response_id`, GET and input_items (issue 11): the
    request's own input items (normalised, ids minted), its output items and the whole Response JSON.
    `owner` is the gateway key that made it (None on loopback without keys); `created_at` is when it was
    stored; rows expire at `expires_at`, or sooner when the retention was shortened since."""

    __tablename__ = "responses"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float, index=True)
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    owner: Mapped[str | None] = mapped_column(String(63), nullable=True)
    previous_response_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    input_items: Mapped[list] = mapped_column(JSON)
    output: Mapped[list] = mapped_column(JSON)
    response: Mapped[dict] = mapped_column(JSON)


# Added by migration 5 (a store created at version 5 or later has them from migration 1, which creates the
# tables from this metadata): the newest rows come off the end of (ts, id) for `logs tail`, and `--since`,
# `logs prune` and retention find their window in it. Every index here must be append-only (keyed by the
# ever-growing ts): each row the audit writer inserts pays for every index, and an index keyed by anything
# else (version 5 had four on duration_ms) puts each insert at a random leaf, which costs about 90 us of
# CPU per row on a 200,000-row table and more as it grows (migration 6 dropped them; `logs stats` computes
# its percentiles in one scan instead).
AUDIT_INDEXES = (
    Index("ix_requests_ts_id", RequestLog.ts, RequestLog.id),
)
# What migration 6 drops: version 5's duration indexes and the plain ts index that (ts, id) makes redundant.
DROPPED_AUDIT_INDEXES = ("ix_requests_ts", "ix_requests_duration", "ix_requests_route_duration",
                         "ix_requests_provider_duration", "ix_requests_client_duration")
