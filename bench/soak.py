"""mlxgw soak run: `python bench/soak.py --minutes 30` (not part of the test suite).

A real `mlxgw serve` process under steady mixed traffic for N minutes, watched from outside:
  - both client dialects (OpenAI chat completions, Anthropic messages), streamed and not, to an
    OpenAI-compatible upstream (tests/upstream.py) and an Anthropic one (tests/anthropic_upstream.py);
  - failovers: a target that always answers 503 (failover to a backup) and one nobody listens on (refused,
    then skipped while its circuit breaker is open);
  - a local engine (tests/fake_engine.py, a real process) started by a request and stopped by its idle TTL,
    over and over;
  - `mlxgw apply` every minute with a changed config (the server reloads it while serving).
Every `--sample` seconds it scrapes the gateway's /metrics: resident memory, open files, asyncio tasks,
requests in flight, audit rows written. At the end it stops the gateway with SIGTERM and counts the audit
rows in the store against the answers the clients received: nothing may be lost.

Prints a markdown table and a verdict, and writes JSON to bench/results/. Verdict rules: resident memory
at the end within 10% (or 8 MiB) of its value after warm-up, open files and tasks back within a few of
their warm-up values, every answered request audited, no 5xx answered to a client, the local engine loaded
at least twice (so idle stops happened).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from tests.anthropic_upstream import AnthropicUpstream  # noqa: E402
from tests.supervisor_helpers import write_fake_command  # noqa: E402
from tests.upstream import Reply, UpstreamServer, closed_port  # noqa: E402

MESSAGES = [{"role": "user", "content": "tell me something about soak tests"}]
# (weight, dialect, model, stream)
MIX = [
    (6, "openai", "m", False), (6, "openai", "m", True), (5, "anthropic", "m", False), (5, "anthropic", "m", True),
    (2, "openai", "flaky", False), (2, "anthropic", "flaky", True),
    (2, "openai", "refused", True), (2, "anthropic", "refused", False),
    (3, "anthropic", "c", False), (3, "anthropic", "c", True), (2, "openai", "c", False), (1, "openai", "c", True),
]


def config(up: str, anth: str, fake: str, model_dir: str, generation: int) -> str:
    dead = f"http://127.0.0.1:{closed_port()}/v1"
    return yaml.safe_dump({
        "version": 1,
        "defaults": {"cooldown": "5s", "timeouts": {"connect": "1s", "first_token": "10s"}},
        "providers": [
            {"name": "primary", "kind": "openai-compatible", "base_url": up, "api_key": "${env:OPENAI_API_KEY}"},
            {"name": "backup", "kind": "openai-compatible", "base_url": up, "api_key": "${env:OPENAI_API_KEY}"},
            {"name": "dead", "kind": "openai-compatible", "base_url": dead},
            {"name": "claude", "kind": "anthropic", "base_url": anth, "api_key": "${env:ANTHROPIC_API_KEY}"},
            {"name": "eng", "kind": "vllm-mlx", "command": fake,
             "models": [{"name": "small", "path": model_dir, "idle_ttl": "10s"}]},
        ],
        "routes": [
            {"name": "main", "match": {"exact": "m"}, "target": "primary/p", "fallback": ["backup/b"]},
            {"name": "flaky", "match": {"exact": "flaky"}, "target": "primary/f", "fallback": ["backup/b"]},
            {"name": "refused", "match": {"exact": "refused"}, "target": "dead/x", "fallback": ["backup/b"]},
            {"name": "c", "match": {"exact": "c"}, "target": "claude/claude-soak"},
            {"name": "local", "match": {"exact": "small"}, "target": "eng/small"},
            # changes on every apply, so each one is a new revision the server reloads
            {"name": f"gen-{generation}", "match": {"exact": f"gen-{generation}"}, "target": "backup/b"},
        ],
    }, sort_keys=False)


class Soak:
    def __init__(self, args):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="mlxgw-soak-"))
        self.env = dict(os.environ, MLXGW_HOME=str(self.tmp / "home"), OPENAI_API_KEY="sk-soak",
                        ANTHROPIC_API_KEY="sk-ant-soak")
        self.env.setdefault("MLXGW_MASTER_KEY", "")
        if not self.env["MLXGW_MASTER_KEY"]:
            from cryptography.fernet import Fernet
            self.env["MLXGW_MASTER_KEY"] = Fernet.generate_key().decode()
        self.env.pop("MLXGW_DB", None)
        self.statuses: Counter = Counter()
        self.answered = 0
        self.no_answer = 0
        self.local_asked = 0
        self.applies = 0
        self.samples: list[dict] = []
        self.stop = False

    # --- set-up ----------------------------------------------------------------------------------------

    def mlxgw(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mlxgw", *args], env=self.env, capture_output=True, text=True,
                              timeout=120)

    def apply(self, generation: int) -> None:
        path = self.tmp / "gateway.yaml"
        path.write_text(config(self.up.base_url, self.anth.base_url, self.fake, str(self.model_dir), generation))
        r = self.mlxgw("apply", "-f", str(path), "--yes", "--prune")
        if r.returncode != 0:
            raise SystemExit(f"apply failed: {r.stdout}{r.stderr}")
        self.applies += 1

    def start(self) -> None:
        self.up = UpstreamServer().start()
        self.up.set_default(Reply.error(503), model="f")
        self.anth = AnthropicUpstream().start()
        self.fake = write_fake_command(self.tmp / "bin")
        self.model_dir = self.tmp / "model"
        self.model_dir.mkdir()
        (self.model_dir / "config.json").write_text("{}")
        self.apply(0)
        with __import__("socket").socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.log = open(self.tmp / "serve.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "mlxgw", "serve", "--port", str(self.port)],
                                     env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.origin + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise SystemExit("the gateway did not start; see " + str(self.tmp / "serve.log"))

    # --- traffic ---------------------------------------------------------------------------------------

    async def ask(self, client: httpx.AsyncClient, dialect: str, model: str, stream: bool) -> None:
        if dialect == "openai":
            path, body, headers = "/v1/chat/completions", {"model": model, "messages": MESSAGES, "stream": stream}, {}
        else:
            path = "/v1/messages"
            body = {"model": model, "max_tokens": 64, "messages": MESSAGES, "stream": stream}
            headers = {"anthropic-version": "2023-06-01"}
        try:
            async with client.stream("POST", path, json=body, headers=headers) as r:
                data = await r.aread()
            ok = r.status_code != 200 or not stream or data.rstrip().endswith((b"[DONE]", b'"message_stop"}'))
            self.statuses[r.status_code if ok else "incomplete"] += 1
            self.answered += 1
        except httpx.HTTPError:
            self.no_answer += 1

    async def worker(self, client: httpx.AsyncClient, pause: float) -> None:
        weights = [w for w, *_ in MIX]
        while not self.stop:
            _, dialect, model, stream = random.choices(MIX, weights)[0]
            await self.ask(client, dialect, model, stream)
            await asyncio.sleep(pause * random.uniform(0.5, 1.5))

    async def local_cycle(self, client: httpx.AsyncClient) -> None:
        """One request to the local model every 25 s: its 10 s idle TTL stops it in between."""
        while not self.stop:
            # The fake engine answers /v1/messages in JSON only: Anthropic clients ask it unstreamed.
            dialect = random.choice(["openai", "anthropic"])
            await self.ask(client, dialect, "small", dialect == "openai" and random.random() < 0.5)
            self.local_asked += 1
            for _ in range(250):
                if self.stop:
                    return
                await asyncio.sleep(0.1)

    async def applier(self) -> None:
        generation = 0
        while not self.stop:
            for _ in range(600):
                if self.stop:
                    return
                await asyncio.sleep(0.1)
            generation += 1
            await asyncio.to_thread(self.apply, generation)

    async def sampler(self, client: httpx.AsyncClient, t0: float) -> None:
        while not self.stop:
            self.samples.append(await self.sample(client, t0))
            s = self.samples[-1]
            print(f"  {s['minute']:6.1f} min  rss {s['rss_mib']:.1f} MiB  fds {s['open_fds']}  tasks {s['tasks']}  "
                  f"answered {s['answered']}  written {s['rows_written']}", flush=True)
            for _ in range(int(self.args.sample * 10)):
                if self.stop:
                    return
                await asyncio.sleep(0.1)

    async def sample(self, client: httpx.AsyncClient, t0: float) -> dict:
        r = await client.get("/metrics")
        values: dict[str, float] = {}
        for family in text_string_to_metric_families(r.text):
            for s in family.samples:
                values[s.name] = values.get(s.name, 0.0) + s.value
        return {"minute": round((time.monotonic() - t0) / 60, 2), "rss_mib": values["process_resident_memory_bytes"]
                / 2**20, "open_fds": int(values["process_open_fds"]), "tasks": int(values["mlxgw_event_loop_tasks"]),
                "in_flight": int(values["mlxgw_requests_in_flight"]), "answered": self.answered,
                "rows_written": int(values["mlxgw_audit_rows_written_total"]),
                "audit_queue": int(values["mlxgw_audit_queue_depth"]),
                "engine_loads": int(values.get("mlxgw_local_model_loads_total", 0)),
                "failovers": int(values.get("mlxgw_failovers_total", 0))}

    async def run(self) -> None:
        t0 = time.monotonic()
        limits = httpx.Limits(max_connections=self.args.clients + 4)
        async with httpx.AsyncClient(base_url=self.origin, timeout=60, limits=limits) as client:
            tasks = [asyncio.create_task(self.worker(client, self.args.pause)) for _ in range(self.args.clients)]
            tasks += [asyncio.create_task(self.local_cycle(client)), asyncio.create_task(self.applier()),
                      asyncio.create_task(self.sampler(client, t0))]
            await asyncio.sleep(self.args.minutes * 60)
            self.stop = True
            await asyncio.gather(*tasks)
            await asyncio.sleep(0.5)  # let the writer's timer run once
            self.samples.append(await self.sample(client, t0))

    # --- the end ---------------------------------------------------------------------------------------

    def finish(self) -> dict:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(60)
        self.up.stop()
        self.anth.stop()
        db = sqlite3.connect(self.tmp / "home" / "mlxgw.db")
        rows = db.execute("SELECT count(*) FROM requests").fetchone()[0]
        by_status = dict(db.execute("SELECT status, count(*) FROM requests GROUP BY status").fetchall())
        db.close()
        warm = next((s for s in self.samples if s["minute"] >= min(2.0, self.args.minutes / 3)), self.samples[0])
        last = self.samples[-1]
        checks = {
            "rss": last["rss_mib"] <= max(warm["rss_mib"] * 1.10, warm["rss_mib"] + 8),
            "open_fds": last["open_fds"] <= warm["open_fds"] + 5,
            "tasks": last["tasks"] <= warm["tasks"] + 5,
            "nothing_lost": rows == self.answered and self.no_answer == 0,
            "no_5xx": not any(isinstance(k, int) and k >= 500 for k in self.statuses) and not self.statuses["incomplete"],
            "engine_cycled": last["engine_loads"] >= 2,
            "clean_exit": code == 0,
        }
        return {"minutes": self.args.minutes, "clients": self.args.clients, "answered": self.answered,
                "no_answer": self.no_answer, "rows": rows, "rows_by_status": by_status,
                "client_statuses": {str(k): v for k, v in self.statuses.items()}, "applies": self.applies,
                "local_requests": self.local_asked, "exit_code": code, "samples": self.samples,
                "checks": checks, "verdict": "PASS" if all(checks.values()) else "FAIL"}


def table(result: dict) -> str:
    lines = ["| minute | RSS (MiB) | open files | asyncio tasks | in flight | answered | audit rows written | "
             "engine loads | failovers |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in result["samples"]:
        lines.append(f"| {s['minute']:.1f} | {s['rss_mib']:.1f} | {s['open_fds']} | {s['tasks']} | {s['in_flight']} "
                     f"| {s['answered']:,} | {s['rows_written']:,} | {s['engine_loads']} | {s['failovers']:,} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description="mlxgw soak run")
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--clients", type=int, default=4, help="concurrent client loops (default 4)")
    ap.add_argument("--pause", type=float, default=0.05, help="mean seconds between a client's requests")
    ap.add_argument("--sample", type=float, default=60, help="seconds between samples (default 60)")
    args = ap.parse_args()
    soak = Soak(args)
    soak.start()
    print(f"soak: {args.minutes:g} min, {args.clients} clients, gateway pid {soak.proc.pid}, home {soak.tmp}", flush=True)
    try:
        asyncio.run(soak.run())
    finally:
        result = soak.finish()
    print(table(result))
    print(f"\nanswered {result['answered']:,} (no answer: {result['no_answer']}), audit rows {result['rows']:,}, "
          f"applies {result['applies']}, local requests {result['local_requests']}, statuses {result['client_statuses']}")
    print("checks:", ", ".join(f"{k}={'ok' if v else 'FAIL'}" for k, v in result["checks"].items()))
    print("verdict:", result["verdict"])
    out = HERE / "results" / f"soak-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print("written", out)
    sys.exit(0 if result["verdict"] == "PASS" else 1)


if __name__ == "__main__":
    main()
