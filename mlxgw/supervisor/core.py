"""The supervisor (GATE-04): one owner per local model, which starts its engine when a request needs it
and stops it when nobody does.

States: stopped -> starting -> ready -> stopping -> stopped, and failed (a start that did not make it).
`ensure_ready()` (or the `lease()` context manager built on it) is the only way in:

- single-flight: the first cold request creates the start task; every concurrent request awaits that same
  task (shielded, so a client that disconnects does not cancel a load others, or its own retry, wait for);
- a request that arrives while the model is stopping waits for the stop, then starts it again;
- readiness is polled on the engine's /health until the model's start timeout; an engine that exits during
  the start fails every waiter at once, with the last lines of its log in the message;
- a lease counts the request in flight: the idle reaper stops a model only when its idle TTL has passed
  and nothing is in flight; a crashed engine is noticed (by the reaper or the next request) and the next
  request starts it again;
- before a start, memory: the model's estimate against the budget, evicting least recently used idle
  models (and, per provider, `max_loaded`); if it still does not fit the start is refused with the numbers,
  as an upstream-unavailable error so failover can take the request;
- stop: SIGTERM to the engine's process group, wait, then SIGKILL;
- load-aware routing: `expected_start()` (the median of the model's recent start times) and
  `expected_remaining()` tell the attempt loop how long a cold model will take, and `warm()` starts it in
  the background while the request goes elsewhere.

Engine output goes to `MLXGW_HOME/logs/<provider>--<model>.log` (kept as `.log.1` at a start once it
passes 16 MiB). Everything runs on the server's event loop;
there is no lock because every state change happens between two awaits.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from mlxgw.backends.base import UpstreamConnectError
from mlxgw.config import durations
from mlxgw.supervisor import memory

log = logging.getLogger("mlxgw.supervisor")

STOPPED, STARTING, READY, STOPPING, FAILED = "stopped", "starting", "ready", "stopping", "failed"
DEFAULT_IDLE_TTL = 15 * 60.0
DEFAULT_START_TIMEOUT = 120.0
STOP_GRACE = 10.0
DRAIN_TIMEOUT = 30.0
LOG_TAIL_LINES = 20
LOG_ROTATE_BYTES = 16 * 1024 * 1024  # at a start, a bigger log is kept as <name>.log.1 and a new one begun


class EngineError(UpstreamConnectError):
    """A local model could not be served (start failed, timed out, or does not fit). It is an
    UpstreamConnectError, so the server answers 502 `upstream_unavailable` and failover may take over.
    `log_tail` holds the engine's last log lines when there are any."""

    def __init__(self, provider: str, message: str, log_tail: str = ""):
        super().__init__(provider, message + (f"\n--- last lines of the engine log ---\n{log_tail}" if log_tail else ""))
        self.summary = message
        self.log_tail = log_tail


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """What a model's engine is started with. Two specs that are equal start the same process, so a
    config reload that leaves them equal keeps the running engine."""

    kind: str
    command: str
    path: str
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]


@dataclass(slots=True)
class ModelSettings:
    """What can change under a running engine without restarting it."""

    aliases: tuple[str, ...] = ()
    idle_ttl: float | None = DEFAULT_IDLE_TTL
    start_timeout: float = DEFAULT_START_TIMEOUT
    context_length: int | None = None
    defaults: dict = field(default_factory=dict)
    max_loaded: int | None = None


@dataclass(eq=False)
class ManagedModel:
    provider: str
    name: str
    launch: LaunchSpec
    settings: ModelSettings
    log_path: Path
    state: str = STOPPED
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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, lines: int = LOG_TAIL_LINES, max_bytes: int = 64 * 1024) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


class Supervisor:
    """Owns every local model of one gateway process. `http` is the shared HttpClient (readiness probes
    and the engine clients use it); `logs_dir` receives one log file per model."""

    def __init__(self, http, logs_dir: Path, profiles: dict[str, EngineProfile],
                 budget: Callable[[], int] = memory.budget, reap_interval: float = 0.5):
        self.http = http
        self.logs_dir = Path(logs_dir)
        self.profiles = profiles
        self._budget_fn = budget
        self._budget: int | None = None
        self.models: dict[tuple[str, str], ManagedModel] = {}
        self._reap_interval = reap_interval
        self._reaper: asyncio.Task | None = None
        self._closed = False
        self.stop_grace = STOP_GRACE

    # --- configuration --------------------------------------------------------------------------

    @property
    def budget(self) -> int:
        if self._budget is None:
            self._budget = self._budget_fn()
        return self._budget

    def sync(self, providers) -> None:
        """Adopt a config: `providers` are the Snapshot's Provider objects (local ones are used). New
        models are added stopped; a model whose launch spec changed restarts when idle; a model the
        config dropped stops when idle. Running engines whose spec did not change keep running."""
        seen: set[tuple[str, str]] = set()
        for p in providers:
            profile = self.profiles.get(p.kind)
            if profile is None or p.spec.get("base_url"):
                continue
            spec = p.spec
            for mspec in spec.get("models") or []:
                key = (p.name, mspec["name"])
                seen.add(key)
                launch = LaunchSpec(
                    kind=p.kind, command=os.path.expanduser(spec.get("command") or profile.executable),
                    path=str(Path(mspec.get("path") or "").expanduser()),
                    args=tuple(spec.get("args") or ()) + tuple(mspec.get("args") or ()),
                    env=tuple(sorted((spec.get("env") or {}).items())),
                )
                ttl = mspec.get("idle_ttl")
                settings = ModelSettings(
                    aliases=tuple(mspec.get("aliases") or ()),
                    idle_ttl=durations.parse_seconds(ttl) if ttl else DEFAULT_IDLE_TTL,
                    start_timeout=durations.parse_seconds(mspec["start_timeout"]) if mspec.get("start_timeout")
                    else DEFAULT_START_TIMEOUT,
                    context_length=mspec.get("context_length"),
                    defaults=dict(mspec.get("defaults") or {}),
                    max_loaded=spec.get("max_loaded"),
                )
                m = self.models.get(key)
                if m is None:
                    self.models[key] = ManagedModel(p.name, mspec["name"], launch, settings,
                                                    self.logs_dir / f"{p.name}--{_safe(mspec['name'])}.log")
                    continue
                m.retired = False  # back in the config before its stop finished: keep it
                m.settings = settings
                if m.launch != launch:
                    m.launch = launch
                    m.stale = m.state in (STARTING, READY)
        for key, m in list(self.models.items()):
            if key not in seen:
                if m.state in (STOPPED, FAILED):
                    del self.models[key]
                else:
                    m.retired = True
        self._ensure_reaper()

    def find(self, name: str, provider: str | None = None) -> ManagedModel:
        """A model by name or alias (optionally of one provider). LookupError says why not."""
        hits = [m for m in self.models.values() if not m.retired and (provider is None or m.provider == provider)
                and (m.name == name or name in m.settings.aliases)]
        exact = [m for m in hits if m.name == name]
        hits = exact or hits
        if not hits:
            raise LookupError(f"no local model named '{name}'")
        if len(hits) > 1:
            raise LookupError(f"'{name}' names local models of several providers "
                              f"({', '.join(m.provider for m in hits)}): say which with provider")
        return hits[0]

    def get(self, provider: str, name: str) -> ManagedModel:
        m = self.models.get((provider, name))
        if m is None or m.retired:
            raise EngineError(provider, f"provider '{provider}' has no local model '{name}'")
        return m

    # --- the way in -------------------------------------------------------------------------------

    async def ensure_ready(self, provider: str, name: str, *, retry_failed: bool = False) -> ManagedModel:
        """The model, ready to serve, starting it if needed (see the module docstring)."""
        m = self.get(provider, name)
        while True:
            if self._closed:
                raise EngineError(provider, "the gateway is shutting down")
            if m.state == READY:
                if not m.alive():
                    self._crashed(m)
                    continue
                if m.stale and m.inflight == 0:
                    await self._stop_shared(m, reason="its configuration changed")
                    continue
                m.last_used = time.monotonic()
                m.last_used_wall = time.time()
                return m
            if m.state == STOPPING:
                await asyncio.shield(m.stop_task)
                continue
            if m.state == FAILED and not retry_failed and m.failed_at and time.monotonic() - m.failed_at < 2.0:
                raise EngineError(provider, m.error or "the engine failed to start", m.error_tail)
            if m.state in (STOPPED, FAILED):
                m.state = STARTING
                m.error, m.error_tail, m.exit_code = None, "", None
                m.start_task = asyncio.get_running_loop().create_task(self._start(m), name=f"start {m.key}")
                m.start_task.add_done_callback(_consume)
            await asyncio.shield(m.start_task)  # raises the start's error for every waiter

    def expected_start(self, m: ManagedModel) -> float | None:
        """Seconds a start of `m` is expected to take: the median of its recent starts (None before the
        first one)."""
        if not m.start_seconds:
            return None
        xs = sorted(m.start_seconds)
        return xs[len(xs) // 2]

    def expected_remaining(self, m: ManagedModel) -> float | None:
        """Seconds until `m` is expected to be ready: 0 when it is, the expected start minus what has
        already elapsed while it starts, None when there is no past start to go by."""
        if m.state == READY and m.alive():
            return 0.0
        expected = self.expected_start(m)
        if expected is None:
            return None
        if m.state == STARTING and m.started_at:
            return max(0.0, expected - (time.time() - m.started_at))
        return expected

    def warm(self, provider: str, name: str) -> asyncio.Task:
        """Start `provider/name` in the background (or join its start) and return the task that ends when
        it is ready. Nothing cancels the load when a caller stops waiting for the task."""
        task = asyncio.get_running_loop().create_task(self.ensure_ready(provider, name), name=f"warm {provider}/{name}")
        task.add_done_callback(_consume)
        return task

    @contextlib.asynccontextmanager
    async def lease(self, provider: str, name: str) -> AsyncIterator[ManagedModel]:
        """ensure_ready() plus an in-flight count held until the block ends."""
        m = await self.ensure_ready(provider, name)
        m.inflight += 1
        try:
            yield m
        finally:
            m.inflight -= 1
            m.last_used = time.monotonic()
            m.last_used_wall = time.time()

    async def stop(self, provider: str, name: str, drain: float = DRAIN_TIMEOUT) -> ManagedModel:
        """Stop a model (admin): new requests wait, in-flight ones get up to `drain` seconds to finish."""
        m = self.get(provider, name)
        if m.state == STARTING and m.start_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(m.start_task)
        if m.state in (READY, STOPPING):
            await self._stop_shared(m, reason="asked to", drain=drain)
        elif m.state == FAILED:
            m.state = STOPPED
        return m

    async def shutdown(self) -> None:
        """Stop every engine this supervisor started (the gateway is exiting)."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        tasks = []
        for m in self.models.values():
            if m.state == STARTING and m.start_task is not None:
                m.start_task.cancel()
                tasks.append(m.start_task)
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        await asyncio.gather(*(self._stop_shared(m, reason="the gateway is stopping", drain=0)
                               for m in self.models.values() if m.state in (READY, STOPPING) or m.alive()),
                             return_exceptions=True)

    # --- starting -----------------------------------------------------------------------------------

    async def _start(self, m: ManagedModel) -> None:
        profile = self.profiles[m.launch.kind]
        try:
            await self._make_room(m, profile)
            await self._spawn_and_wait(m, profile)
        except asyncio.CancelledError:
            self._kill_now(m)
            m.state = STOPPED
            raise
        except EngineError as exc:
            self._kill_now(m)
            m.state, m.error, m.error_tail, m.failed_at = FAILED, exc.summary, exc.log_tail, time.monotonic()
            log.warning("local model %s/%s failed to start: %s", m.provider, m.name, exc.summary)
            raise
        except Exception as exc:
            self._kill_now(m)
            msg = f"could not start the engine of '{m.name}': {type(exc).__name__}: {exc}"
            m.state, m.error, m.error_tail, m.failed_at = FAILED, msg, tail(m.log_path), time.monotonic()
            raise EngineError(m.provider, msg, m.error_tail) from None

    async def _spawn_and_wait(self, m: ManagedModel, profile: EngineProfile) -> None:
        if not Path(m.launch.path).is_dir():
            raise EngineError(m.provider, f"the model directory of '{m.name}' does not exist: {m.launch.path}")
        port = free_port()
        cmd = profile.command_line(m, port)
        env = dict(os.environ)
        env["HF_HUB_OFFLINE"] = "1"
        env.update(profile.env)
        env.update(dict(m.launch.env))
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            if m.log_path.stat().st_size > LOG_ROTATE_BYTES:
                os.replace(m.log_path, m.log_path.with_name(m.log_path.name + ".1"))
        t0 = time.monotonic()
        with open(m.log_path, "ab") as logf:
            logf.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} mlxgw starts: {' '.join(cmd)}\n".encode())
            logf.flush()
            try:
                m.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                          env=env, cwd=self.logs_dir, start_new_session=True)
            except OSError as exc:
                raise EngineError(m.provider, f"cannot run the engine of '{m.name}' ({cmd[0]}): "
                                              f"{exc.strerror or exc}") from None
        m.port, m.started_at, m.ready_at = port, time.time(), None
        m.starts += 1
        log.info("local model %s/%s starting (pid %d, port %d)", m.provider, m.name, m.proc.pid, port)
        deadline = t0 + m.settings.start_timeout
        url = f"{m.base_url}/health"
        session = self.http.session
        import aiohttp  # the transport lives with the shared client; imported here to keep this module light

        probe_timeout = aiohttp.ClientTimeout(total=2.0)
        while True:
            code = m.proc.poll()
            if code is not None:
                m.exit_code = code
                raise EngineError(m.provider, f"the engine of '{m.name}' exited with code {code} while starting",
                                  tail(m.log_path))
            if time.monotonic() > deadline:
                raise EngineError(m.provider, f"the engine of '{m.name}' was not ready within "
                                              f"{m.settings.start_timeout:g}s (start_timeout)", tail(m.log_path))
            try:
                async with session.get(url, timeout=probe_timeout) as r:
                    body = await r.read()
                    if profile.is_ready(r.status, body):
                        break
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                pass
            await asyncio.sleep(0.1)
        m.client = profile.make_client(m)
        m.ready_at = time.time()
        m.start_seconds = (m.start_seconds + [time.monotonic() - t0])[-10:]
        m.last_used = time.monotonic()
        m.last_used_wall = time.time()
        m.stale = False
        m.state = READY
        log.info("local model %s/%s ready in %.1fs", m.provider, m.name, m.start_seconds[-1])

    def _loaded(self) -> list[ManagedModel]:
        return [x for x in self.models.values() if x.state in (STARTING, READY, STOPPING)]

    async def _make_room(self, m: ManagedModel, profile: EngineProfile) -> None:
        """Evict idle models (least recently used first) until `m` fits the memory budget and its
        provider's max_loaded; EngineError with the numbers when it cannot."""
        need = m.estimate(profile.overhead)
        while True:
            others = [x for x in self._loaded() if x is not m]
            used = sum(x.estimate(self.profiles[x.launch.kind].overhead).total for x in others)
            same = [x for x in others if x.provider == m.provider]
            limit = m.settings.max_loaded
            over_count = limit is not None and len(same) >= limit
            over_memory = used + need.total > self.budget
            if not over_count and not over_memory:
                return
            pool = same if over_count and not over_memory else others
            idle = sorted((x for x in pool if x.state == READY and x.inflight == 0), key=lambda x: x.last_used)
            if not idle:
                busy = ", ".join(f"{x.provider}/{x.name} ({x.state}, {x.inflight} in flight)" for x in pool) or "none"
                if over_memory:
                    raise EngineError(m.provider, (
                        f"not starting '{m.name}': it needs about {need.describe()}, the memory budget is "
                        f"{memory.human(self.budget)} and {memory.human(used)} of it is taken by models that "
                        f"cannot be stopped now: {busy}. Set MLXGW_MEMORY_BUDGET or stop a model."))
                raise EngineError(m.provider, (
                    f"not starting '{m.name}': provider '{m.provider}' allows {limit} loaded model(s) "
                    f"(max_loaded) and none of {busy} is idle"))
            victim = idle[0]
            why = "memory" if over_memory else "max_loaded"
            log.info("evicting idle model %s/%s to make room for %s (%s)", victim.provider, victim.name, m.name, why)
            await self._stop_shared(victim, reason=f"evicted for '{m.name}' ({why})")

    # --- stopping -------------------------------------------------------------------------------------

    async def _stop_shared(self, m: ManagedModel, reason: str, drain: float = 0.0) -> None:
        if m.state != STOPPING or m.stop_task is None:
            m.state = STOPPING
            m.stop_task = asyncio.get_running_loop().create_task(self._stop(m, reason, drain), name=f"stop {m.key}")
            m.stop_task.add_done_callback(_consume)
        await asyncio.shield(m.stop_task)

    async def _stop(self, m: ManagedModel, reason: str, drain: float) -> None:
        try:
            end = time.monotonic() + drain
            while m.inflight > 0 and time.monotonic() < end:
                await asyncio.sleep(0.05)
            proc = m.proc
            if proc is not None:
                log.info("stopping local model %s/%s (pid %d): %s", m.provider, m.name, proc.pid, reason)
                _signal_group(proc.pid, signal.SIGTERM)
                end = time.monotonic() + self.stop_grace
                while proc.poll() is None and time.monotonic() < end:
                    await asyncio.sleep(0.05)
                # The leader is gone (or too slow): give workers left in its group the same grace, then kill.
                while _signal_group(proc.pid, 0) and time.monotonic() < end and _group_has_live(proc.pid):
                    await asyncio.sleep(0.05)
                _signal_group(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=1.0)
                m.exit_code = proc.returncode
                self._note(m, f"mlxgw stopped the engine ({reason}); exit code {proc.returncode}")
        finally:
            m.proc, m.client, m.port, m.ready_at, m.started_at = None, None, None, None, None
            m.state = STOPPED
            m.stale = False
            if m.retired and self.models.get(m.key) is m:
                del self.models[m.key]

    def _kill_now(self, m: ManagedModel) -> None:
        proc = m.proc
        if proc is not None:
            _signal_group(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=2.0)
            m.exit_code = proc.returncode
        m.proc, m.client, m.ready_at = None, None, None

    def _crashed(self, m: ManagedModel) -> None:
        code = m.proc.returncode if m.proc is not None else None
        log.warning("local model %s/%s: its engine exited on its own (code %s)", m.provider, m.name, code)
        self._note(m, f"mlxgw noticed the engine exited on its own (code {code})")
        if m.proc is not None:
            _signal_group(m.proc.pid, signal.SIGKILL)  # its workers, if any are left
        m.error = f"the engine exited on its own (code {code})"
        m.error_tail = tail(m.log_path)
        m.exit_code = code
        m.proc, m.client, m.port, m.ready_at, m.started_at = None, None, None, None, None
        m.state = STOPPED

    def _note(self, m: ManagedModel, text: str) -> None:
        with contextlib.suppress(OSError):
            with open(m.log_path, "ab") as f:
                f.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n".encode())

    # --- the idle reaper ----------------------------------------------------------------------------

    def _ensure_reaper(self) -> None:
        if self._reaper is not None or self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # built outside the server loop (tests of the config); the first request starts it
        self._reaper = loop.create_task(self._reap_loop(), name="mlxgw-supervisor-reaper")

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(self._reap_interval)
            try:
                self.reap_once()
            except Exception:  # never let the reaper die
                log.exception("supervisor reaper failed")

    def reap_once(self) -> None:
        now = time.monotonic()
        loop = asyncio.get_running_loop()
        for m in list(self.models.values()):
            if m.state == READY and not m.alive():
                self._crashed(m)
                if m.retired:
                    self.models.pop(m.key, None)
                continue
            if m.state != READY or m.inflight > 0:
                continue
            ttl = m.settings.idle_ttl
            if m.retired or m.stale or (ttl is not None and now - m.last_used >= ttl):
                reason = ("removed from the configuration" if m.retired else "its configuration changed"
                          if m.stale else f"idle for {ttl:g}s")
                m.state = STOPPING
                m.stop_task = loop.create_task(self._stop(m, reason, 0.0), name=f"stop {m.key}")
                m.stop_task.add_done_callback(_consume)

    # --- views ----------------------------------------------------------------------------------------

    def describe(self, m: ManagedModel) -> dict:
        profile = self.profiles[m.launch.kind]
        est = m.estimate(profile.overhead)
        now = time.time()
        return {
            "provider": m.provider, "name": m.name, "kind": m.launch.kind, "aliases": list(m.settings.aliases),
            "state": m.state, "port": m.port, "pid": m.proc.pid if m.proc is not None else None,
            "memory": memory.process_group_rss(m.proc.pid) if m.alive() else None,
            "uptime": (now - m.started_at) if m.started_at and m.state == READY else None,
            "last_used": m.last_used_wall, "idle_ttl": m.settings.idle_ttl, "in_flight": m.inflight,
            "estimate": est.as_dict(), "path": m.launch.path, "error": m.error, "exit_code": m.exit_code,
            "start_seconds": m.start_seconds[-1] if m.start_seconds else None, "starts": m.starts,
            "expected_start": self.expected_start(m),
            "log": str(m.log_path),
        }

    def describe_all(self) -> list[dict]:
        return [self.describe(m) for m in sorted(self.models.values(), key=lambda x: x.key) if not m.retired]


def _group_has_live(pgid: int) -> bool:
    """True while a process of the group is alive and not a zombie (zombies still answer signal 0)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != b"Z":
                return True
        except (OSError, IndexError, ValueError):
            continue
    return False


def _consume(task: asyncio.Task) -> None:
    """Retrieve a background task's exception so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
