"""The supervisor's data: a model's states and the transitions allowed between them, what its engine is
launched with (LaunchSpec), what may change under a running engine (ModelSettings), what the config says
about one local model (LocalModel, built by the routing snapshot), the live record of one model
(ManagedModel), the answer to "how cold is it" (Readiness), and the engine contract (EngineProfile) the
adapters in mlxgw.backends implement.
"""

from __future__ import annotations

import abc
import asyncio
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from mlxgw.supervisor import memory

STOPPED, STARTING, READY, STOPPING, FAILED = "stopped", "starting", "ready", "stopping", "failed"

# Every state change the supervisor makes, checked against this table: anything else is a bug.
TRANSITIONS: dict[str, frozenset[str]] = {
    STOPPED: frozenset({STARTING}),  # a request (or warm/start) needs it
    FAILED: frozenset({STARTING, STOPPED}),  # started afresh; or cleared by an admin stop
    STARTING: frozenset({READY, FAILED, STOPPED}),  # ready; the start failed; the start was cancelled
    READY: frozenset({STOPPING, STOPPED}),  # stopped (idle, evicted, asked, stale); or its engine exited
    STOPPING: frozenset({STOPPED}),
}

DEFAULT_IDLE_TTL = 15 * 60.0
DEFAULT_START_TIMEOUT = 120.0


class IllegalTransition(RuntimeError):
    """The supervisor tried a state change its table does not allow: a bug in the supervisor."""


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """What a model's engine is started with. Two specs that are equal start the same process, so a
    config reload that leaves them equal keeps the running engine. `command` "" means the engine
    profile's own executable."""

    kind: str
    command: str
    path: str
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """What can change under a running engine without restarting it."""

    aliases: tuple[str, ...] = ()
    idle_ttl: float | None = DEFAULT_IDLE_TTL
    start_timeout: float = DEFAULT_START_TIMEOUT
    context_length: int | None = None  # None: max_position_embeddings from the model's config.json
    on_overflow: str = "clamp"  # prompt fits but prompt + max_tokens does not: clamp | fail
    defaults: dict = field(default_factory=dict)
    max_loaded: int | None = None


@dataclass(frozen=True, slots=True)
class LocalModel:
    """One model of a provider the gateway runs itself, as the config declares it."""

    name: str
    launch: LaunchSpec
    settings: ModelSettings


@dataclass(frozen=True, slots=True)
class Readiness:
    """How cold a model is, for the attempt loop: `ready` (ready and its process alive), `failed` (its
    last start failed), the seconds it is expected to need (None without a past start to go by) and the
    seconds left before its start_timeout (the whole timeout when no start is under way)."""

    state: str
    ready: bool
    failed: bool
    expected_remaining: float | None
    start_timeout_left: float


@dataclass(eq=False)
class ManagedModel:
    provider: str
    name: str
    launch: LaunchSpec
    settings: ModelSettings
    log_path: Path
    state: str = STOPPED  # changed only through Supervisor._move, which checks TRANSITIONS
    proc: subprocess.Popen | None = None
    port: int | None = None
    started_at: float | None = None  # wall clock, when the process was spawned
    ready_at: float | None = None
    last_used: float = 0.0  # monotonic
    last_used_wall: float | None = None
    inflight: int = 0
    error: str | None = None
    error_tail: str = ""
    failed_at: float | None = None
    exit_code: int | None = None
    start_task: asyncio.Task | None = None
    stop_task: asyncio.Task | None = None
    stale: bool = False  # the config changed its launch spec: restart when idle
    retired: bool = False  # the config no longer has it: stop when idle, then forget
    client: object = None  # what the adapter talks to while ready (built by the engine profile)
    start_seconds: list = field(default_factory=list)
    starts: int = 0  # processes spawned for this model since the gateway started
    _estimate: tuple | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.provider, self.name

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def estimate(self, overhead: int) -> memory.Estimate:
        path = Path(self.launch.path)
        try:
            stamp = max((f.stat().st_mtime for f in path.glob("*.safetensors")), default=0.0)
        except OSError:
            stamp = 0.0
        key = (stamp, self.settings.context_length, overhead, self.launch.path)
        if self._estimate is None or self._estimate[0] != key:
            self._estimate = (key, memory.estimate(path, self.settings.context_length, overhead))
        return self._estimate[1]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class EngineProfile(abc.ABC):
    """How one kind of engine is launched and checked; the adapters in mlxgw.backends provide these."""

    kind: str = ""
    executable: str = ""
    overhead: int = 256 * memory.MIB  # resident memory of the engine itself, before the model
    env: dict = {}  # environment the engine needs from the gateway (the provider's `env` overrides it)

    @abc.abstractmethod
    def command_line(self, m: ManagedModel, port: int) -> list[str]:
        """The argv that launches model `m` on 127.0.0.1:`port`."""

    def is_ready(self, status: int, body: bytes) -> bool:
        return status == 200

    def make_client(self, m: ManagedModel):
        """The object requests use while the engine is ready (an HTTP adapter pointed at its port)."""
        return None
