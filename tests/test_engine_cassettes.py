"""The real engines' recorded answers (tests/cassettes/, see tests/engine_cassettes.py) through the
gateway's adapters, and through the whole gateway to both SDKs (the fake engine serving them): replayed
on every machine, engines installed or not; and, where the engines are installed (always in CI), recorded
again and compared, so a change in the engines' behaviour fails here.

To refresh the cassettes after an engine upgrade: `MLXGW_RECORD_CASSETTES=1 python -m pytest
tests/test_engine_cassettes.py -k drift`, then review the diff of tests/cassettes/.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
import yaml

from mlxgw.backends import local_profiles
from mlxgw.backends.http import HttpClient
from tests.engine_cassettes import (
    CASSETTES, ENGINE_PORT, LIMIT, MESSAGES, MODEL, SCENARIOS, Engine, cassette_path, normalised, recorder,
)  # fmt: skip
from tests.engine_harness import ENGINES, engine_executable, tiny_model_dir
from tests.gateway_harness import apply_config, running_gateway
from tests.supervisor_helpers import group_members, wait_until, write_fake_command

ALL = [(kind, name) for kind, scenarios in SCENARIOS.items() for name in scenarios]


async def _run(kind: str, names: list[str], port: int, root: Path, record: bool) -> None:
    http = HttpClient()
    await http.start()
    try:
        e = Engine.build(kind, local_profiles(http), http, port)
        v = recorder(record)
        for name in names:
            path = cassette_path(root, kind, name)
            with v.use_cassette(str(path)) as cassette:
                await SCENARIOS[kind][name](e)
            if record:
                assert len(cassette) > 0, f"{name} made no request"
            else:
                assert cassette.all_played, f"{name} did not replay every recorded exchange"
    finally:
        await http.close()


@pytest.mark.parametrize("kind,name", ALL, ids=[f"{k}-{n}" for k, n in ALL])
def test_a_recorded_exchange_replays_through_the_adapter(kind, name):
    assert cassette_path(CASSETTES, kind, name).is_file(), "no cassette: record them (see the module docstring)"
    asyncio.run(_run(kind, [name], ENGINE_PORT, CASSETTES, record=False))


def test_every_cassette_belongs_to_a_scenario():
    on_disk = {(p.parent.name, p.stem) for p in CASSETTES.glob("*/*.yaml")}
    assert on_disk == set(ALL)


# --- recording and drift ---------------------------------------------------------------------------------


def _start_engine(kind: str, workdir: Path) -> tuple[subprocess.Popen, int]:
    """The engine serving the tiny model as the gateway launches it, ready."""
    from mlxgw.supervisor import LaunchSpec, ManagedModel, ModelSettings
    from mlxgw.supervisor.process import free_port

    profile = local_profiles(None)[kind]
    launch = LaunchSpec(kind, engine_executable(kind), tiny_model_dir(), (), ())
    m = ManagedModel("eng", MODEL, launch, ModelSettings(), log_path=None)
    port = free_port()
    log = open(workdir / f"{kind}.log", "wb")
    proc = subprocess.Popen(profile.command_line(m, port), stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ, **profile.env}, cwd=workdir,
                            start_new_session=True)

    def ready() -> bool:
        assert proc.poll() is None, (workdir / f"{kind}.log").read_text()[-3000:]
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
        except httpx.TransportError:
            return False
        return profile.is_ready(r.status_code, r.content)

    try:
        assert wait_until(ready, 240, 0.2), f"{kind} was not ready in 240 s"
    except BaseException:
        _stop_engine(proc)
        raise
    return proc, port


def _stop_engine(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert wait_until(lambda: not group_members(proc.pid), 30)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("kind", ENGINES)
def test_drift_the_engine_still_answers_as_recorded(kind, tmp_path):
    """Record every scenario against the real engine (the scenarios' asserts run on the live answers),
    then compare with the committed cassettes, ids, timestamps and ports masked."""
    write_in_place = os.environ.get("MLXGW_RECORD_CASSETTES") == "1"
    root = CASSETTES if write_in_place else tmp_path / "cassettes"
    names = list(SCENARIOS[kind])
    proc, port = _start_engine(kind, tmp_path)
    try:
        for name in names:
            cassette_path(root, kind, name).unlink(missing_ok=True)
        asyncio.run(_run(kind, names, port, root, record=True))
    finally:
        _stop_engine(proc)
    if write_in_place:
        return
    for name in names:
        new, old = cassette_path(root, kind, name), cassette_path(CASSETTES, kind, name)
        assert old.is_file(), f"{old} is missing: record it (MLXGW_RECORD_CASSETTES=1)"
        assert normalised(new) == normalised(old), (
            f"{kind} answers {name} differently from {old.relative_to(CASSETTES.parent.parent)}:\n"
            f"{new.read_text()[:3000]}")


# --- the recorded answers through the whole gateway ---------------------------------------------------------


def test_the_recorded_answers_reach_both_sdks_through_the_gateway(home, cli, tmp_path):
    """The fake engine serves the cassettes' answers (FAKE_CASSETTES), so the engines' real bytes go
    through the whole gateway: supervisor, adapters and their quirk fixes, and the translation for an
    Anthropic client of mlx-openai-server. Every reply was cut by max_tokens, and every client hears so."""
    fake = write_fake_command(tmp_path / "bin")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    providers = [{"name": p, "kind": kind, "command": fake, "env": {"FAKE_CASSETTES": str(CASSETTES / kind)},
                  "models": [{"name": MODEL, "path": str(tmp_path / "m")}]}
                 for p, kind in (("mos", "mlx-openai-server"), ("vl", "vllm-mlx"))]
    routes = [{"match": {"exact": p}, "target": f"{p}/{MODEL}"} for p in ("mos", "vl")]
    apply_config(cli, tmp_path, yaml.safe_dump({"version": 1, "providers": providers, "routes": routes}))
    recorded_count = yaml.safe_load(cassette_path(CASSETTES, "vllm-mlx", "count_tokens").read_text())
    recorded_count = json.loads(recorded_count["interactions"][0]["response"]["body"]["string"])["input_tokens"]
    with running_gateway() as gw:
        oa = openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0)
        an = anthropic.Anthropic(base_url=gw.origin, api_key="x", max_retries=0)
        for model in ("mos", "vl"):
            done = oa.chat.completions.create(model=model, messages=MESSAGES, max_tokens=LIMIT)
            assert done.choices[0].finish_reason == "length" and done.choices[0].message.content, model
            chunks = list(oa.chat.completions.create(model=model, messages=MESSAGES, max_tokens=LIMIT, stream=True))
            assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] \
                == ["length"], model
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            msg = an.messages.create(model=model, max_tokens=LIMIT, messages=MESSAGES)
            assert msg.stop_reason == "max_tokens" and msg.content[0].text, model
            with an.messages.stream(model=model, max_tokens=LIMIT, messages=MESSAGES) as s:
                final = s.get_final_message()
            assert final.stop_reason == "max_tokens" and final.content[0].text, model
        assert an.messages.count_tokens(model="vl", messages=MESSAGES).input_tokens == recorded_count
