"""mlxgw speed benchmark: one command, `python bench/run.py`.

What it does (all traffic stays on 127.0.0.1):
  1. installs Debian's `wrk` when missing (`apt-get install -y wrk`, needs root);
  2. starts bench/fast_upstream.py, an OpenAI-compatible upstream that answers instantly;
  3. measures the upstream directly: non-streaming latency p50/p99 and requests/s with wrk
     (bench/post.lua), streaming requests/s with wrk and streaming time-to-first-byte with bench/ttfb.py,
     at concurrency 1, 8 and 32;
  4. creates a temporary MLXGW_HOME, writes a gateway.yaml routing `bench-*` to that upstream
     (provider kind openai-compatible), applies it with `mlxgw apply -f FILE --yes`, starts
     `mlxgw serve --port P` pinned to CPU 0 (`taskset -c 0`) and measures start-up time (process start to
     the first 200 on /health, best of 4 starts) and idle RSS;
  5. runs the same measurements through the gateway; the load generators and the upstream are pinned to
     the other CPU, so the gateway has one core to itself;
  6. prints a markdown table (added latency = gateway minus direct) and writes everything as JSON to
     bench/results/ (gitignored).

Options: --duration S (seconds per point, default 3), --concurrency 1,8,32, --direct-only (skip the
gateway), --anthropic (instead of the standard gateway points: streamed requests from an Anthropic client
on /v1/messages, translated to the OpenAI upstream and back, against the same streamed requests passed
through on /v1/chat/completions; reports each one's added time to first byte and added time to the end
of the stream, and the ratio translated / pass-through, whose goal is <= 1.3), --responses (the same
comparison for a Responses API client: streamed POST /v1/responses translated to the chat-completions
upstream and back, goal <= 1.3), --profile (record the gateway with py-spy during the c=32 non-streaming run and print the
hottest functions; installs py-spy with pip when missing), --gateway-cmd "..." (how to run the CLI,
default: this Python's `-m mlxgw`).
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
BODY = {"model": "bench-model", "messages": [{"role": "user", "content": "Say hello."}]}
STREAM_BODY = dict(BODY, stream=True)
# --anthropic: the same request from an Anthropic client (POST /v1/messages), routed to the OpenAI upstream
ANTHROPIC_STREAM_BODY = {"model": "bench-model", "max_tokens": 64, "stream": True,
                         "messages": [{"role": "user", "content": "Say hello."}]}
# --responses: the same request from a Responses API client (POST /v1/responses, stored as clients default to)
RESPONSES_STREAM_BODY = {"model": "bench-model", "input": "Say hello.", "stream": True}
TRANSLATED = {"anthropic": (ANTHROPIC_STREAM_BODY, "/v1/messages"),
              "responses": (RESPONSES_STREAM_BODY, "/v1/responses")}
TRANSLATED_RATIO_GOAL = 1.3
TARGETS = {
    "added_p50_ms_c1": 1.0,
    "rps_per_core": 2500,
    "added_ttfb_ms": 1.0,
    "idle_rss_mib": 60,
    "startup_s": 1.5,
}

# ---------------------------------------------------------------------------------------------- helpers


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def cpus() -> tuple[list[str], list[str]]:
    """(gateway pin, load pin) as taskset prefixes; empty when pinning is impossible."""
    n = os.cpu_count() or 1
    if n < 2 or not shutil.which("taskset"):
        log(f"{n} CPU(s) or no taskset: running without CPU pinning")
        return [], []
    return ["taskset", "-c", "0"], ["taskset", "-c", "1"]


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    log("wrk not found: installing Debian's wrk (apt-get install -y wrk)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], env=env).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], env=env, check=True)
    path = shutil.which("wrk")
    if not path:
        sys.exit("wrk could not be installed; install it (apt-get install -y wrk) and re-run")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get_status(port: int, path: str, timeout: float = 0.5) -> int | None:
    """Status of a tiny HTTP/1.1 GET, or None when nothing answers (no dependencies, cheap to poll)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            data = s.recv(64)
            if data.startswith(b"HTTP/1."):
                return int(data.split(b" ", 2)[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def http_post(port: int, path: str, body: dict, timeout: float = 10.0) -> tuple[int, bytes]:
    payload = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), rest


def rss_kib(pid: int) -> int:
    """RSS of a process and all its descendants, KiB."""
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                todo.extend(int(c) for c in children)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# ---------------------------------------------------------------------------------------------- load


def wrk(wrk_bin: str, pin: list[str], port: int, body: dict, conc: int, duration: float,
        path: str = "/v1/chat/completions") -> dict:
    cmd = [*pin, wrk_bin, "-t1", f"-c{conc}", f"-d{max(1, round(duration))}s", "--timeout", "10s", "-s", str(HERE / "post.lua"),
           f"http://127.0.0.1:{port}{path}"]
    env = dict(os.environ, BENCH_BODY=json.dumps(body))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            r = json.loads(line[len("BENCH_JSON "):])
            r["rps"] = r["requests"] / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0
            r["error_count"] = sum(r["errors"].values())
            return r
    raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout}\n{out.stderr}")


def ttfb(pin: list[str], port: int, conc: int, duration: float, body: dict = STREAM_BODY,
         path: str = "/v1/chat/completions") -> dict:
    cmd = [*pin, sys.executable, str(HERE / "ttfb.py"), "--port", str(port), "--concurrency", str(conc),
           "--duration", str(duration), "--path", path]
    env = dict(os.environ, BENCH_BODY=json.dumps(body))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60)
    if out.returncode != 0:
        raise RuntimeError(f"ttfb client failed: {out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(label: str, wrk_bin: str, pin: list[str], port: int, concs: list[int], duration: float,
            profile_hook=None) -> dict:
    out: dict = {}
    for c in concs:
        log(f"{label}: concurrency {c}: non-streaming")
        hook = profile_hook(c) if profile_hook else None
        plain = wrk(wrk_bin, pin, port, BODY, c, duration)
        if hook:
            hook()
        log(f"{label}: concurrency {c}: streaming")
        stream = wrk(wrk_bin, pin, port, STREAM_BODY, c, duration)
        first = ttfb(pin, port, c, duration)
        out[str(c)] = {"plain": plain, "stream": stream, "ttfb": first}
        for name, r in (("plain", plain), ("stream", stream)):
            if r["error_count"]:
                log(f"WARNING {label} c={c} {name}: errors {r['errors']}")
        if first["errors"]:
            log(f"WARNING {label} c={c} ttfb: {first['errors']} errors, e.g. {first['error_samples']}")
    return out


def measure_translated(mode: str, wrk_bin: str, pin: list[str], port: int, direct: dict, concs: list[int],
                       duration: float) -> dict:
    """--anthropic / --responses: per concurrency, streamed requests passed through
    (/v1/chat/completions) and translated (an Anthropic client on /v1/messages, or a Responses client on
    /v1/responses -> OpenAI chat upstream -> the client's events), each with its time to first byte and to
    the end of the stream, minus the same figures measured directly."""
    out: dict = {}
    for c in concs:
        row: dict = {}
        d = direct[str(c)]["ttfb"]
        for name, body, path in (("passthrough", STREAM_BODY, "/v1/chat/completions"),
                                 ("translated", *TRANSLATED[mode])):
            log(f"{mode} mode: concurrency {c}: {name} ({path})")
            t = ttfb(pin, port, c, duration, body, path)
            rps = wrk(wrk_bin, pin, port, body, c, duration, path)
            if t["errors"] or rps["error_count"]:
                log(f"WARNING {name} c={c}: errors {t['error_samples']} {rps['errors']}")
            row[name] = {"ttfb": t, "stream_rps": rps["rps"],
                         "added_ttfb_ms": ms(t["ttfb_us"]["p50"] - d["ttfb_us"]["p50"]),
                         "added_total_ms": ms(t["total_us"]["p50"] - d["total_us"]["p50"])}
        p, t_ = row["passthrough"], row["translated"]
        row["ratio_ttfb"] = t_["added_ttfb_ms"] / p["added_ttfb_ms"] if p["added_ttfb_ms"] > 0 else float("nan")
        row["ratio_total"] = t_["added_total_ms"] / p["added_total_ms"] if p["added_total_ms"] > 0 else float("nan")
        out[str(c)] = row
    return out


def translated_table(res: dict) -> str:
    lines = ["| concurrency | added TTFB p50 pass-through / translated (ms) | ratio | added full-stream p50 "
             "pass-through / translated (ms) | ratio | stream req/s pass-through / translated |",
             "|---:|---:|---:|---:|---:|---:|"]
    for c, r in res.items():
        p, t = r["passthrough"], r["translated"]
        lines.append(f"| {c} | {p['added_ttfb_ms']:.2f} / {t['added_ttfb_ms']:.2f} | {r['ratio_ttfb']:.2f} "
                     f"| {p['added_total_ms']:.2f} / {t['added_total_ms']:.2f} | {r['ratio_total']:.2f} "
                     f"| {p['stream_rps']:,.0f} / {t['stream_rps']:,.0f} |")
    c1 = min(res, key=int)
    worst = max(res[c1]["ratio_ttfb"], res[c1]["ratio_total"])
    lines += ["", f"translated / pass-through added latency at concurrency {c1}: {worst:.2f} "
                  f"(goal <= {TRANSLATED_RATIO_GOAL}: {ok(worst <= TRANSLATED_RATIO_GOAL)})"]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- gateway


class Gateway:
    def __init__(self, cmd: list[str], home: Path, upstream_port: int, pin: list[str]) -> None:
        self.cmd = cmd
        self.home = home
        self.pin = pin
        self.upstream_port = upstream_port
        self.env = dict(os.environ, MLXGW_HOME=str(home), PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.env.pop("MLXGW_DB", None)
        self.env.setdefault("MLXGW_MASTER_KEY", self._fernet_key())
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.log_path = home / "serve.log"

    @staticmethod
    def _fernet_key() -> str:
        import base64
        return base64.urlsafe_b64encode(os.urandom(32)).decode()

    def available(self) -> bool:
        r = subprocess.run([*self.cmd, "serve", "--help"], env=self.env, capture_output=True, text=True, cwd=ROOT)
        return r.returncode == 0

    def apply(self) -> None:
        cfg = self.home / "gateway.yaml"
        cfg.write_text(
            "version: 1\n"
            "providers:\n"
            "  - name: up\n"
            "    kind: openai-compatible\n"
            f"    base_url: http://127.0.0.1:{self.upstream_port}/v1\n"
            "routes:\n"
            "  - name: bench\n"
            '    match: {prefix: "bench-"}\n'
            "    target: up\n"
        )
        r = subprocess.run([*self.cmd, "apply", "-f", str(cfg), "--yes"], env=self.env, capture_output=True,
                           text=True, cwd=ROOT)
        if r.returncode != 0:
            raise RuntimeError(f"mlxgw apply failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")

    def start(self, timeout: float = 30.0) -> float:
        """Start `mlxgw serve`; returns seconds from spawn to the first 200 on /health."""
        self.port = free_port()
        logf = self.log_path.open("ab")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen([*self.pin, *self.cmd, "serve", "--port", str(self.port)], env=self.env,
                                     stdout=logf, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        deadline = t0 + timeout
        while time.perf_counter() < deadline:
            if http_get_status(self.port, "/health") == 200:
                return time.perf_counter() - t0
            if self.proc.poll() is not None:
                break
            time.sleep(0.005)
        tail = self.log_path.read_text(errors="replace")[-3000:]
        self.stop()
        raise RuntimeError(f"mlxgw serve did not become healthy within {timeout}s; log tail:\n{tail}")

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


# ---------------------------------------------------------------------------------------------- profile


def py_spy_bin() -> str:
    path = shutil.which("py-spy")
    if path:
        return path
    log("installing py-spy (pip install py-spy)")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True)
    path = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return path


def summarise_collapsed(path: Path, top: int = 25) -> list[tuple[str, float, float]]:
    """(function, self %, inclusive %) of the hottest functions in a py-spy raw (collapsed) profile."""
    self_t: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        count = int(n)
        total += count
        frames = stack.split(";")
        self_t[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    return [(f, 100 * c / total, 100 * incl[f] / total) for f, c in self_t.most_common(top)] if total else []


# ---------------------------------------------------------------------------------------------- report


def ms(us: float) -> float:
    return us / 1000.0


def table(results: dict) -> str:
    direct = results["direct"]
    gw = results.get("gateway", {}).get("load")
    lines = []
    if gw:
        lines += [
            "| concurrency | direct p50 / p99 (ms) | gateway p50 / p99 (ms) | added p50 / p99 (ms) | gateway req/s (direct) "
            "| stream req/s | stream TTFB p50 direct / gateway (ms) | added TTFB p50 / p99 (ms) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for c, d in direct.items():
            g = gw[c]
            dp, gp = d["plain"]["latency_us"], g["plain"]["latency_us"]
            dt_, gt = d["ttfb"]["ttfb_us"], g["ttfb"]["ttfb_us"]
            lines.append(
                f"| {c} | {ms(dp['p50']):.2f} / {ms(dp['p99']):.2f} | {ms(gp['p50']):.2f} / {ms(gp['p99']):.2f} "
                f"| {ms(gp['p50'] - dp['p50']):.2f} / {ms(gp['p99'] - dp['p99']):.2f} "
                f"| {g['plain']['rps']:,.0f} ({d['plain']['rps']:,.0f}) | {g['stream']['rps']:,.0f} "
                f"| {ms(dt_['p50']):.2f} / {ms(gt['p50']):.2f} | {ms(gt['p50'] - dt_['p50']):.2f} / {ms(gt['p99'] - dt_['p99']):.2f} |")
    else:
        lines += ["| concurrency | direct p50 / p99 (ms) | direct req/s | stream req/s | stream TTFB p50 / p99 (ms) |",
                  "|---:|---:|---:|---:|---:|"]
        for c, d in direct.items():
            dp, dt_ = d["plain"]["latency_us"], d["ttfb"]["ttfb_us"]
            lines.append(f"| {c} | {ms(dp['p50']):.2f} / {ms(dp['p99']):.2f} | {d['plain']['rps']:,.0f} "
                         f"| {d['stream']['rps']:,.0f} | {ms(dt_['p50']):.2f} / {ms(dt_['p99']):.2f} |")
    g = results.get("gateway")
    if g:
        s = g["summary"]
        lines += [
            "",
            "| target | measured | goal | ok |",
            "|---|---:|---:|:-:|",
            f"| added p50 at concurrency 1 | {s['added_p50_ms_c1']:.2f} ms | <= {TARGETS['added_p50_ms_c1']} ms | {ok(s['added_p50_ms_c1'] <= TARGETS['added_p50_ms_c1'])} |",
            f"| non-streaming req/s on one gateway core (best concurrency) | {s['rps_per_core']:,.0f} | >= {TARGETS['rps_per_core']:,} | {ok(s['rps_per_core'] >= TARGETS['rps_per_core'])} |",
            f"| added streaming TTFB p50 at concurrency 1 | {s['added_ttfb_ms']:.2f} ms | <= {TARGETS['added_ttfb_ms']} ms | {ok(s['added_ttfb_ms'] <= TARGETS['added_ttfb_ms'])} |",
            f"| idle RSS | {s['idle_rss_mib']:.1f} MiB | <= {TARGETS['idle_rss_mib']} MiB | {ok(s['idle_rss_mib'] <= TARGETS['idle_rss_mib'])} |",
            f"| start-up to first 200 on /health (best of {len(g['startup_s'])}) | {s['startup_s']:.2f} s | <= {TARGETS['startup_s']} s | {ok(s['startup_s'] <= TARGETS['startup_s'])} |",
            f"| RSS after the load | {s['rss_after_load_mib']:.1f} MiB | | |",
        ]
    return "\n".join(lines)


class _TranslatedDone(Exception):
    """--anthropic / --responses measured what it wanted: skip the standard gateway points."""


def ok(flag: bool) -> str:
    return "yes" if flag else "NO"


# ---------------------------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description="mlxgw speed benchmark")
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per measurement point (default 3)")
    ap.add_argument("--concurrency", default="1,8,32", help="comma-separated (default 1,8,32)")
    ap.add_argument("--direct-only", action="store_true", help="only measure the upstream directly")
    ap.add_argument("--profile", action="store_true", help="py-spy the gateway during the c=32 non-streaming run")
    ap.add_argument("--anthropic", action="store_true",
                    help="measure an Anthropic client (/v1/messages, streamed, translated to the OpenAI upstream) "
                         "against streamed pass-through, instead of the standard gateway points")
    ap.add_argument("--responses", action="store_true",
                    help="measure a Responses API client (/v1/responses, streamed, translated to the OpenAI chat "
                         "upstream) against streamed pass-through, instead of the standard gateway points")
    ap.add_argument("--gateway-cmd", default=f"{shlex.quote(sys.executable)} -m mlxgw",
                    help="command that runs the mlxgw CLI (default: this Python's -m mlxgw)")
    args = ap.parse_args()
    concs = [int(c) for c in args.concurrency.split(",") if c.strip()]
    mode = "anthropic" if args.anthropic else "responses" if args.responses else None
    duration = float(max(1, min(round(args.duration), 30)))  # wrk takes whole seconds

    wrk_bin = ensure_wrk()
    gw_pin, load_pin = cpus()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    results: dict = {
        "when": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "duration_s": duration,
        "pinning": {"gateway": gw_pin, "load_and_upstream": load_pin},
    }

    up = subprocess.Popen([*load_pin, sys.executable, str(HERE / "fast_upstream.py"), "--port", "0"],
                          stdout=subprocess.PIPE, text=True, start_new_session=True)
    gateway: Gateway | None = None
    tmp = tempfile.TemporaryDirectory(prefix="mlxgw-bench-")
    try:
        line = up.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith("PORT "):
            raise RuntimeError(f"upstream did not start: {line!r}")
        up_port = int(line.split()[1])
        if mode:  # the direct baseline only needs the streamed time to first byte / end
            results["direct"] = {str(c): {"ttfb": ttfb(load_pin, up_port, c, duration)} for c in concs}
        else:
            results["direct"] = measure("direct", wrk_bin, load_pin, up_port, concs, duration)

        if args.direct_only:
            log("--direct-only: skipping the gateway")
        else:
            gateway = Gateway(shlex.split(args.gateway_cmd), Path(tmp.name), up_port, gw_pin)
            if not gateway.available():
                log("`mlxgw serve` is not available yet: measured the upstream only")
                gateway = None
        if gateway is not None:
            gateway.apply()
            startups = []
            for _ in range(3):
                startups.append(gateway.start())
                gateway.stop()
            startups.append(gateway.start())
            pid = gateway.proc.pid  # type: ignore[union-attr]
            time.sleep(1.0)
            idle_rss = rss_kib(pid)
            status, body = http_post(gateway.port, "/v1/chat/completions", BODY)
            if status != 200:
                raise RuntimeError(f"gateway answered {status} to a bench request: {body[:500]!r}")
            log(f"gateway up in {min(startups):.3f}s, idle RSS {idle_rss / 1024:.1f} MiB; warming up")
            wrk(wrk_bin, load_pin, gateway.port, BODY, 8, 1)
            if mode:
                body_t, path_t = TRANSLATED[mode]
                status, body = http_post(gateway.port, path_t, dict(body_t, stream=False))
                if status != 200:
                    raise RuntimeError(f"gateway answered {status} to a {mode} bench request: {body[:500]!r}")
                wrk(wrk_bin, load_pin, gateway.port, body_t, 8, 1, path_t)
                results[mode] = measure_translated(mode, wrk_bin, load_pin, gateway.port, results["direct"], concs,
                                                   duration)
                raise _TranslatedDone

            profile_out: dict = {}

            def profile_hook(c: int):
                if not args.profile or c != max(concs):
                    return None
                spy = py_spy_bin()
                raw = RESULTS / f"profile-{stamp}.txt"
                proc = subprocess.Popen([spy, "record", "--pid", str(pid), "--format", "raw", "--output", str(raw),
                                         "--rate", "250", "--duration", str(max(1, int(duration))), "--nonblocking"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

                def done() -> None:
                    proc.wait(60)
                    if raw.exists():
                        profile_out["file"] = str(raw)
                        profile_out["top"] = summarise_collapsed(raw)
                    else:
                        profile_out["error"] = proc.stderr.read().decode(errors="replace")[-2000:]  # type: ignore[union-attr]
                return done

            load = measure("gateway", wrk_bin, load_pin, gateway.port, concs, duration, profile_hook)
            time.sleep(1.0)
            after_rss = rss_kib(pid)
            c1 = str(min(concs))
            summary = {
                "added_p50_ms_c1": ms(load[c1]["plain"]["latency_us"]["p50"] - results["direct"][c1]["plain"]["latency_us"]["p50"]),
                "rps_per_core": max(v["plain"]["rps"] for v in load.values()),
                "added_ttfb_ms": ms(load[c1]["ttfb"]["ttfb_us"]["p50"] - results["direct"][c1]["ttfb"]["ttfb_us"]["p50"]),
                "idle_rss_mib": idle_rss / 1024,
                "rss_after_load_mib": after_rss / 1024,
                "startup_s": min(startups),
            }
            results["gateway"] = {"startup_s": startups, "idle_rss_kib": idle_rss, "rss_after_load_kib": after_rss,
                                  "load": load, "summary": summary, "profile": profile_out or None}
    except _TranslatedDone:
        pass
    finally:
        if gateway is not None:
            gateway.stop()
        stop(up)
        tmp.cleanup()

    out_file = RESULTS / f"bench-{stamp}.json"
    out_file.write_text(json.dumps(results, indent=2))
    if mode:
        print(translated_table(results[mode]))
        print(f"\nresults: {out_file.relative_to(ROOT)}")
        return 0
    print(table(results))
    if results.get("gateway", {}).get("profile"):
        prof = results["gateway"]["profile"]
        if "top" in prof:
            print(f"\nHottest functions in the gateway at concurrency {max(concs)} (self %, inclusive %), {prof['file']}:")
            for name, self_pct, incl_pct in prof["top"]:
                print(f"  {self_pct:5.1f}%  {incl_pct:5.1f}%  {name}")
        else:
            print(f"\npy-spy failed: {prof.get('error')}")
    print(f"\nresults: {out_file.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
