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
- load-aware routing: `readiness()` tells the attempt loop how cold a model is (from `expected_start()`,
  the median of its recent start times) and `warm()` starts it in the background.

Engine output goes to `MLXGW_HOME/logs/<provider>--<model>.log`. Everything runs on the server's event
loop, with no lock: every state change happens between two awaits, through `_move`, which checks it
against models.TRANSITIONS and raises IllegalTransition (a bug) otherwise. The data types live in
models.py, the operating-system side (spawn, signals, /proc, logs) in process.py, the choice of what to
evict before a start in room.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

from mlxgw.supervisor import memory, process, room
from mlxgw.supervisor.models import (
    FAILED, READY, STARTING, STOPPED, STOPPING, TRANSITIONS, EngineProfile, IllegalTransition, ManagedModel,
    Readiness,
)  # fmt: skip
from mlxgw.upstream_errors import EngineError

log = logging.getLogger("mlxgw.supervisor")

STOP_GRACE = 10.0
DRAIN_TIMEOUT = 30.0


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
        # Told of engine events for the metrics: on_event("loaded"|"evicted"|"crashed", provider, model, seconds).
        self.on_event: Callable[..., None] | None = None

    # --- configuration --------------------------------------------------------------------------

    @property
    def budget(self) -> int:
        if self._budget is None:
            self._budget = self._budget_fn()
        return self._budget

    def sync(self, providers) -> None:
        """Adopt a config: `providers` are the Snapshot's Provider objects; their `local_models` (typed
        by the snapshot) are used when this supervisor has a profile for their kind. New models are added
        stopped; a model whose launch spec changed restarts when idle; a model the config dropped stops
        when idle. Running engines whose spec did not change keep running."""
        seen: set[tuple[str, str]] = set()
        for p in providers:
            profile = self.profiles.get(p.kind)
            if profile is None:
                continue
            for lm in p.local_models:
                key = (p.name, lm.name)
                seen.add(key)
                launch = lm.launch if lm.launch.command else replace(
                    lm.launch, command=os.path.expanduser(profile.executable))
                m = self.models.get(key)
                if m is None:
                    self.models[key] = ManagedModel(p.name, lm.name, launch, lm.settings,
                                                    self.logs_dir / process.log_name(p.name, lm.name))
                    continue
                m.retired = False  # back in the config before its stop finished: keep it
                m.settings = lm.settings
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

    def _move(self, m: ManagedModel, to: str) -> None:
        """The one place a model's state changes: (from, to) must be in TRANSITIONS."""
        if to not in TRANSITIONS.get(m.state, ()):
            raise IllegalTransition(f"local model {m.provider}/{m.name}: no transition {m.state} -> {to}")
        m.state = to

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
                self._move(m, STARTING)
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

    def readiness(self, provider: str, name: str) -> Readiness:
        """How cold `provider/name` is now (see models.Readiness). EngineError when there is no such
        model."""
        m = self.get(provider, name)
        elapsed = time.time() - m.started_at if m.started_at else 0.0
        return Readiness(state=m.state, ready=m.state == READY and m.alive(), failed=m.state == FAILED,
                         expected_remaining=self.expected_remaining(m),
                         start_timeout_left=m.settings.start_timeout - elapsed)

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
            self._move(m, STOPPED)
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
            self._move(m, STOPPED)
            raise
        except EngineError as exc:
            self._kill_now(m)
            m.error, m.error_tail, m.failed_at = exc.summary, exc.log_tail, time.monotonic()
            self._move(m, FAILED)
            log.warning("local model %s/%s failed to start: %s", m.provider, m.name, exc.summary)
            raise
        except Exception as exc:
            self._kill_now(m)
            msg = f"could not start the engine of '{m.name}': {type(exc).__name__}: {exc}"
            m.error, m.error_tail, m.failed_at = msg, process.tail(m.log_path), time.monotonic()
            self._move(m, FAILED)
            raise EngineError(m.provider, msg, m.error_tail) from None

    async def _spawn_and_wait(self, m: ManagedModel, profile: EngineProfile) -> None:
        if not Path(m.launch.path).is_dir():
            raise EngineError(m.provider, f"the model directory of '{m.name}' does not exist: {m.launch.path}")
        port = process.free_port()
        cmd = profile.command_line(m, port)
        env = dict(os.environ)
        env["HF_HUB_OFFLINE"] = "1"
        env.update(profile.env)
        env.update(dict(m.launch.env))
        t0 = time.monotonic()
        try:
            m.proc = process.spawn(cmd, env, m.log_path, self.logs_dir)
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
                                  process.tail(m.log_path))
            if time.monotonic() > deadline:
                raise EngineError(m.provider, f"the engine of '{m.name}' was not ready within "
                                              f"{m.settings.start_timeout:g}s (start_timeout)", process.tail(m.log_path))
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
        self._move(m, READY)
        log.info("local model %s/%s ready in %.1fs", m.provider, m.name, m.start_seconds[-1])
        self._emit("loaded", m, m.start_seconds[-1])

    async def _make_room(self, m: ManagedModel, profile: EngineProfile) -> None:
        """Evict idle models (least recently used first) until `m` fits the memory budget and its
        provider's max_loaded; EngineError with the numbers when it cannot (room.py decides)."""
        need = m.estimate(profile.overhead)
        while (pick := room.next_eviction(m, need, self.models.values(), self.profiles, self.budget)) is not None:
            victim, why = pick
            log.info("evicting idle model %s/%s to make room for %s (%s)", victim.provider, victim.name, m.name, why)
            self._emit("evicted", victim)
            await self._stop_shared(victim, reason=f"evicted for '{m.name}' ({why})")

    # --- stopping -------------------------------------------------------------------------------------

    async def _stop_shared(self, m: ManagedModel, reason: str, drain: float = 0.0) -> None:
        if m.state != STOPPING or m.stop_task is None:
            self._begin_stop(m, reason, drain)
        await asyncio.shield(m.stop_task)

    def _begin_stop(self, m: ManagedModel, reason: str, drain: float) -> None:
        if m.state != STOPPING:
            self._move(m, STOPPING)
        m.stop_task = asyncio.get_running_loop().create_task(self._stop(m, reason, drain), name=f"stop {m.key}")
        m.stop_task.add_done_callback(_consume)

    async def _stop(self, m: ManagedModel, reason: str, drain: float) -> None:
        try:
            end = time.monotonic() + drain
            while m.inflight > 0 and time.monotonic() < end:
                await asyncio.sleep(0.05)
            proc = m.proc
            if proc is not None:
                log.info("stopping local model %s/%s (pid %d): %s", m.provider, m.name, proc.pid, reason)
                m.exit_code = await process.terminate(proc, self.stop_grace)
                process.note(m.log_path, f"mlxgw stopped the engine ({reason}); exit code {proc.returncode}")
        finally:
            m.proc, m.client, m.port, m.ready_at, m.started_at = None, None, None, None, None
            self._move(m, STOPPED)
            m.stale = False
            if m.retired and self.models.get(m.key) is m:
                del self.models[m.key]

    def _kill_now(self, m: ManagedModel) -> None:
        proc = m.proc
        if proc is not None:
            m.exit_code = process.kill_now(proc)
        m.proc, m.client, m.ready_at = None, None, None

    def _crashed(self, m: ManagedModel) -> None:
        code = m.proc.returncode if m.proc is not None else None
        log.warning("local model %s/%s: its engine exited on its own (code %s)", m.provider, m.name, code)
        process.note(m.log_path, f"mlxgw noticed the engine exited on its own (code {code})")
        if m.proc is not None:
            process.signal_group(m.proc.pid, signal.SIGKILL)  # its workers, if any are left
        m.error = f"the engine exited on its own (code {code})"
        m.error_tail = process.tail(m.log_path)
        m.exit_code = code
        m.proc, m.client, m.port, m.ready_at, m.started_at = None, None, None, None, None
        self._move(m, STOPPED)
        self._emit("crashed", m)

    def _emit(self, event: str, m: ManagedModel, seconds: float | None = None) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event, m.provider, m.name, seconds)
            except Exception:  # an observer's bug must not break the engine's lifecycle
                log.exception("supervisor event observer failed")

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
                self._begin_stop(m, reason, 0.0)

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


def _consume(task: asyncio.Task) -> None:
    """Retrieve a background task's exception so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()
