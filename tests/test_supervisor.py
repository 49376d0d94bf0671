"""The supervisor over real processes (the fake engine in tests/fake_engine.py): single-flight starts,
failures with log lines, idle TTL, leases, crashes, stop escalation, memory budget, max_loaded, reloads."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import struct
import time

import pytest

from mlxgw.backends import local_profiles
from mlxgw.backends.base import Timeouts
from mlxgw.backends.http import HttpClient
from mlxgw.kinds import OPENAI_CHAT
from mlxgw.routing import Snapshot
from mlxgw.supervisor import READY, STOPPED, EngineError, Supervisor
from mlxgw.supervisor import memory
from tests.supervisor_helpers import alive, group_members, model, provider, write_fake_command

pytestmark = pytest.mark.asyncio(loop_scope="session")


def model_dir(root, name: str = "m", weights: int = 0, **config) -> str:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    cfg = {"model_type": "llama", "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "head_dim": 16, "hidden_size": 64, "max_position_embeddings": 2048, "torch_dtype": "float32", **config}
    (d / "config.json").write_text(json.dumps(cfg))
    if weights:  # only the header is read: claim `weights` bytes of tensors
        header = json.dumps({"w": {"dtype": "F32", "shape": [weights // 4], "data_offsets": [0, weights]}}).encode()
        (d / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    return str(d)


@pytest.fixture
async def env(tmp_path):
    """(make, tmp_path): make(providers, budget=None) -> a Supervisor synced to them."""
    http = HttpClient()
    await http.start()
    made: list[Supervisor] = []

    def make(providers: list[dict], budget: int | None = None, reap: float = 0.1) -> Supervisor:
        sup = Supervisor(http, tmp_path / "logs", local_profiles(http),
                         budget=(lambda: budget) if budget else (lambda: 64 * memory.GIB), reap_interval=reap)
        sup.stop_grace = 2.0
        sup.sync(Snapshot({"providers": providers}).providers.values())
        made.append(sup)
        return sup

    yield make, tmp_path
    for sup in made:
        await sup.shutdown()
    await http.close()


@pytest.fixture
def fake(tmp_path):
    return write_fake_command(tmp_path / "bin")


async def test_cold_start_then_ready_and_logged(env, fake):
    make, tmp = env
    sup = make([provider("loc", fake, [model("a", model_dir(tmp))])])
    m = await sup.ensure_ready("loc", "a")
    assert m.state == READY and m.port and alive(m.proc.pid)
    assert "mlxgw starts:" in m.log_path.read_text() and "--served-model-name a" in m.log_path.read_text()
    r = await m.client[OPENAI_CHAT].call(OPENAI_CHAT, {"model": "a", "messages": []}, Timeouts())
    assert r.body["choices"][0]["message"]["content"].startswith("echo")
    info = sup.describe(m)
    assert info["state"] == "ready" and info["pid"] == m.proc.pid and info["memory"] > 0
    assert info["estimate"]["total"] > 0 and info["uptime"] >= 0


async def test_ten_concurrent_cold_requests_start_one_process(env, fake):
    make, tmp = env
    starts = tmp / "starts.txt"
    sup = make([provider("loc", fake, [model("a", model_dir(tmp))],
                         env={"FAKE_START_DELAY": "0.5", "FAKE_STARTS": str(starts)})])
    results = await asyncio.gather(*(sup.ensure_ready("loc", "a") for _ in range(10)))
    assert len({id(r) for r in results}) == 1
    assert len(starts.read_text().splitlines()) == 1 and results[0].starts == 1


async def test_exit_during_start_fails_every_waiter_at_once_with_log_lines(env, fake):
    make, tmp = env
    sup = make([provider("loc", fake, [model("a", model_dir(tmp), start_timeout="60s")], env={"FAKE_MODE": "exit"})])
    t0 = time.monotonic()
    results = await asyncio.gather(*(sup.ensure_ready("loc", "a") for _ in range(3)), return_exceptions=True)
    assert time.monotonic() - t0 < 30  # the exit was noticed: the 60 s start_timeout did not run out
    assert all(isinstance(r, EngineError) for r in results)
    assert "exited with code 3 while starting" in str(results[0]) and "boom: cannot load" in str(results[0])
    assert sup.get("loc", "a").state == "failed"
    # A new request right after reports the same failure without spawning again; a retry later starts again.
    with pytest.raises(EngineError, match="exited with code 3"):
        await sup.ensure_ready("loc", "a")
    assert sup.get("loc", "a").starts == 1
    with pytest.raises(EngineError):
        await sup.ensure_ready("loc", "a", retry_failed=True)
    assert sup.get("loc", "a").starts == 2


async def test_start_timeout_kills_the_engine(env, fake):
    make, tmp = env
    sup = make([provider("loc", fake, [model("a", model_dir(tmp), start_timeout="1s")],
                         env={"FAKE_MODE": "never_ready"})])
    with pytest.raises(EngineError, match=r"not ready within 1s \(start_timeout\)") as info:
        await sup.ensure_ready("loc", "a")
    assert "fake-engine: listening" in info.value.log_tail
    assert sup.get("loc", "a").proc is None


async def test_missing_executable_and_missing_model_dir_are_clear(env, tmp_path):
    make, tmp = env
    sup = make([provider("loc", str(tmp / "nope" / "vllm-mlx"), [model("a", model_dir(tmp)),
                                                                 model("b", str(tmp / "missing"))])])
    with pytest.raises(EngineError, match="cannot run the engine of 'a'"):
        await sup.ensure_ready("loc", "a")
    with pytest.raises(EngineError, match="model directory of 'b' does not exist"):
        await sup.ensure_ready("loc", "b")


async def test_idle_ttl_stops_but_never_with_a_request_in_flight(env, fake):
    make, tmp = env
    sup = make([provider("loc", fake, [model("a", model_dir(tmp), idle_ttl="300ms")])])
    async with sup.lease("loc", "a") as m:
        pid = m.proc.pid
        await asyncio.sleep(0.8)  # past the TTL, but in flight
        assert m.state == READY and alive(pid)
    for _ in range(200):  # polled for up to 20 s, for what is asserted next
        await asyncio.sleep(0.1)
        if m.state == STOPPED and not alive(pid):
            break
    assert m.state == STOPPED and not alive(pid)
    assert "idle for 0.3s" in m.log_path.read_text()


async def test_a_killed_engine_is_restarted_by_the_next_request(env, fake):
    make, tmp = env
    sup = make([provider("loc", fake, [model("a", model_dir(tmp))])], reap=60)
    m = await sup.ensure_ready("loc", "a")
    pid = m.proc.pid
    os.kill(pid, signal.SIGKILL)
    for _ in range(400):  # until it is gone (polled for up to 20 s), not a guess at how long dying takes
        if m.proc.poll() is not None:
            break
        await asyncio.sleep(0.05)
    m2 = await sup.ensure_ready("loc", "a")
    assert m2.state == READY and m2.proc.pid != pid and m2.starts == 2
    assert "exited on its own" in m2.log_path.read_text()


async def test_the_reaper_notices_a_crash(env, fake):
    make, tmp = env
    sup = make([provider("loc", fake, [model("a", model_dir(tmp))])], reap=0.05)
    m = await sup.ensure_ready("loc", "a")
    m.proc.kill()
    for _ in range(400):  # polled for up to 20 s, for what is asserted next
        await asyncio.sleep(0.05)
        if m.state == STOPPED and "exited on its own" in (m.error or ""):
            break
    assert m.state == STOPPED and "exited on its own" in (m.error or "")


async def test_a_request_during_stop_waits_then_restarts(env, fake):
    make, tmp = env
    sup = make([provider("loc", fake, [model("a", model_dir(tmp))], env={"FAKE_MODE": "ignore_term"})])
    sup.stop_grace = 0.5
    m = await sup.ensure_ready("loc", "a")
    pid = m.proc.pid
    stopping = asyncio.create_task(sup.stop("loc", "a"))
    await asyncio.sleep(0.05)
    assert m.state == "stopping"
    m2 = await sup.ensure_ready("loc", "a")
    await stopping
    assert m2.state == READY and m2.proc.pid != pid and not alive(pid)
    assert "ignoring SIGTERM" in m.log_path.read_text()  # it took SIGKILL


async def test_stop_kills_the_whole_process_group(env, fake):
    make, tmp = env
    sup = make([provider("loc", fake, [model("a", model_dir(tmp))], env={"FAKE_CHILD": "1"})])
    m = await sup.ensure_ready("loc", "a")
    pgid = m.proc.pid
    assert len(group_members(pgid)) == 2
    await sup.stop("loc", "a")
    assert group_members(pgid) == [] and m.state == STOPPED


async def test_a_waiter_that_gives_up_does_not_cancel_the_start(env, fake):
    make, tmp = env
    sup = make([provider("loc", fake, [model("a", model_dir(tmp))], env={"FAKE_START_DELAY": "0.6"})])
    waiter = asyncio.create_task(sup.ensure_ready("loc", "a"))
    await asyncio.sleep(0.2)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    m = sup.get("loc", "a")
    assert m.state == "starting"
    assert (await sup.ensure_ready("loc", "a")) is m and m.starts == 1  # the same start, not a new one


async def test_memory_budget_refuses_with_numbers(env, fake):
    make, tmp = env
    sup = make([provider("loc", fake, [model("big", model_dir(tmp, "big", weights=3 * memory.GIB))])],
               budget=2 * memory.GIB)
    with pytest.raises(EngineError) as info:
        await sup.ensure_ready("loc", "big")
    msg = str(info.value)
    assert "not starting 'big'" in msg and "weights 3.0 GiB" in msg and "budget is 2.0 GiB" in msg
    assert sup.get("loc", "big").starts == 0


async def test_memory_budget_evicts_the_least_recently_used_idle_model(env, fake):
    make, tmp = env
    gib = memory.GIB
    sup = make([provider("loc", fake, [model("a", model_dir(tmp, "a", weights=gib)),
                                       model("b", model_dir(tmp, "b", weights=gib)),
                                       model("c", model_dir(tmp, "c", weights=gib))])],
               budget=int(2.8 * gib))
    a = await sup.ensure_ready("loc", "a")
    b = await sup.ensure_ready("loc", "b")
    await sup.ensure_ready("loc", "a")  # b is now the least recently used
    c = await sup.ensure_ready("loc", "c")
    assert (a.state, b.state, c.state) == (READY, STOPPED, READY)
    async with sup.lease("loc", "a"), sup.lease("loc", "c"):  # nothing idle: refused, with the numbers
        with pytest.raises(EngineError, match=r"cannot be stopped now: loc/a \(ready, 1 in flight\)"):
            await sup.ensure_ready("loc", "b")


async def test_max_loaded_evicts_per_provider(env, fake):
    make, tmp = env
    sup = make([provider("loc", fake, [model("a", model_dir(tmp, "a")), model("b", model_dir(tmp, "b"))],
                         max_loaded=1)])
    a = await sup.ensure_ready("loc", "a")
    b = await sup.ensure_ready("loc", "b")
    assert a.state == STOPPED and b.state == READY
    async with sup.lease("loc", "b"):
        with pytest.raises(EngineError, match=r"allows 1 loaded model\(s\) \(max_loaded\)"):
            await sup.ensure_ready("loc", "a")


async def test_reload_keeps_unchanged_engines_and_restarts_changed_ones(env, fake):
    make, tmp = env
    d = model_dir(tmp)
    cfg = [provider("loc", fake, [model("a", d), model("b", d), model("c", d)])]
    sup = make(cfg)
    a, b, c = [await sup.ensure_ready("loc", n) for n in "abc"]
    pids = a.proc.pid, b.proc.pid, c.proc.pid
    new = [provider("loc", fake, [model("a", d, idle_ttl="1h"), model("b", d, args=["--extra"])])]
    sup.sync(Snapshot({"providers": new}).providers.values())
    assert a.proc.pid == pids[0] and a.settings.idle_ttl == 3600  # same spec: kept, settings updated
    for _ in range(400):  # polled for up to 20 s, for all that is asserted next (c is forgotten only
        await asyncio.sleep(0.05)  # after its process is gone)
        if not alive(pids[2]) and ("loc", "c") not in sup.models and b.state == STOPPED:
            break
    assert not alive(pids[2]) and ("loc", "c") not in sup.models  # removed: stopped and forgotten
    b2 = await sup.ensure_ready("loc", "b")
    assert b2.proc.pid != pids[1] and "--extra" in b2.log_path.read_text()
    assert a.proc.pid == pids[0]


async def test_shutdown_stops_every_engine(env, fake):
    make, tmp = env
    d = model_dir(tmp)
    sup = make([provider("loc", fake, [model("a", d), model("b", d, env={})])])
    pids = [(await sup.ensure_ready("loc", n)).proc.pid for n in "ab"]
    await sup.shutdown()
    assert not any(alive(p) for p in pids)
    with pytest.raises(EngineError, match="shutting down"):
        await sup.ensure_ready("loc", "a")


async def test_a_big_log_is_rotated_at_the_next_start(env, fake, monkeypatch):
    from mlxgw.supervisor import process

    make, tmp = env
    monkeypatch.setattr(process, "LOG_ROTATE_BYTES", 100)
    sup = make([provider("loc", fake, [model("a", model_dir(tmp))])])
    m = sup.get("loc", "a")
    m.log_path.parent.mkdir(parents=True, exist_ok=True)
    m.log_path.write_text("old line\n" * 20)
    await sup.ensure_ready("loc", "a")
    assert "old line" not in m.log_path.read_text() and "mlxgw starts" in m.log_path.read_text()
    assert (m.log_path.parent / (m.log_path.name + ".1")).read_text().startswith("old line")
