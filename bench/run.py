"""mlxgw speed benchmark: one command, `python bench/run.py`. See bench/README.md.

One run measures three subjects side by side, against the same instant upstream (bench/fast_upstream.py,
streams of 20 content chunks by default):
  - direct: the upstream itself;
  - passthrough: bench/passthrough.py, mlxgw's stack (Falcon ASGI, uvicorn with uvloop + httptools, one
    aiohttp session) relaying bytes and doing nothing else: the ceiling for the gateway on this machine;
  - mlxgw: `mlxgw serve` at its defaults, in a temporary MLXGW_HOME whose gateway.yaml routes `bench-*` to
    the upstream (applied once, before the timed starts).
Both servers are pinned to CPU 0 (`taskset -c 0`) and started the same way; the upstream, wrk, ttfb.py and
this process run on CPU 1. For each subject: start-up (spawn to the first 200 on /health, best of 4),
idle RSS (1 s after start), then at each concurrency (1, 8, 32) JSON and streamed requests/s and p50/p99
latency (wrk, bench/post.lua) and streamed time to first byte (bench/ttfb.py); peak RSS is polled every
50 ms during the load. The servers' measurements are interleaved point by point, in alternating order, so
the shared machine's drift hits both alike. Printed as markdown (absolutes, ratios mlxgw / passthrough,
issue 15's done-when checklist) and written as JSON to bench/results/ (gitignored).

Other modes: --direct-only (the upstream only), --anthropic / --responses (streamed requests from an
Anthropic client on /v1/messages, or a Responses client on /v1/responses, translated to the chat upstream,
against the same streams passed through on /v1/chat/completions: added time to first byte and to the end of
the stream, ratio translated / pass-through, goal <= 1.3), --profile (py-spy on mlxgw during the highest
concurrency's JSON run; installs py-spy with pip when missing), --gateway-cmd "..." (how to run the CLI,
default: this Python's `-m mlxgw`), --chunks N (content chunks per upstream stream), --duration S, --rounds N
(then N more alternating pairs of c=8 points, JSON and stream: the median ratio and its range).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from load import BODY, CHAT, STREAM_BODY, Profile, ensure_wrk, ttfb, wrk
from procs import (
    HERE, ROOT, Gateway, Passthrough, PeakRss, Subject, cpu_seconds, cpus, http_post, log, rss_kib, stop,
)
from report import ms, summarise, table, translated_table

RESULTS = HERE / "results"
# --anthropic: the same request from an Anthropic client (POST /v1/messages), routed to the OpenAI upstream
ANTHROPIC_STREAM_BODY = {"model": "bench-model", "max_tokens": 64, "stream": True,
                         "messages": [{"role": "user", "content": "Say hello."}]}
# --responses: the same request from a Responses API client (POST /v1/responses, stored as clients default to)
RESPONSES_STREAM_BODY = {"model": "bench-model", "input": "Say hello.", "stream": True}
TRANSLATED = {"anthropic": (ANTHROPIC_STREAM_BODY, "/v1/messages"),
              "responses": (RESPONSES_STREAM_BODY, "/v1/responses")}
KINDS = ("plain", "stream", "ttfb")  # JSON via wrk, streams via wrk, streamed time to first byte


def point(kind: str, wrk_bin: str, pin: list[str], port: int, c: int, duration: float) -> dict:
    if kind == "ttfb":
        return ttfb(pin, port, c, duration)
    return wrk(wrk_bin, pin, port, BODY if kind == "plain" else STREAM_BODY, c, duration)


def bring_up(subject: Subject) -> dict:
    """Timed starts (the last stays up), idle RSS one second later, one checked request, a warm-up."""
    startups = subject.start_timed(4)
    time.sleep(1.0)
    idle = rss_kib(subject.proc.pid)  # type: ignore[union-attr]
    status, body = http_post(subject.port, CHAT, BODY)
    if status != 200:
        raise RuntimeError(f"{subject.name} answered {status} to a bench request: {body[:500]!r}")
    log(f"{subject.name} up in {min(startups):.3f}s (best of {len(startups)}), idle RSS {idle / 1024:.1f} MiB")
    return {"startup_s": startups, "idle_rss_kib": idle}


def measure_side_by_side(subjects: dict[str, Subject], up_port: int, wrk_bin: str, load_pin: list[str],
                         concs: list[int], duration: float, profile_at: tuple[int, Path] | None) -> dict:
    """direct, then the servers in alternating order, for every (concurrency, kind) point."""
    res: dict = {"direct": {}}
    samplers = {}
    for name, s in subjects.items():
        res[name] = bring_up(s)
        res[name]["load"] = {}
    for name, s in subjects.items():  # warm-up, then sample RSS from here to the end of the load
        wrk(wrk_bin, load_pin, s.port, BODY, 8, 1)
        wrk(wrk_bin, load_pin, s.port, STREAM_BODY, 8, 1)
        samplers[name] = PeakRss(s.proc.pid)  # type: ignore[union-attr]
    order = list(subjects)
    for c in concs:
        res["direct"][str(c)] = {}
        for name in order:
            res[name]["load"][str(c)] = {}
        for kind in KINDS:
            log(f"c={c} {kind}: direct, then {' / '.join(order)}")
            res["direct"][str(c)][kind] = point(kind, wrk_bin, load_pin, up_port, c, duration)
            for name in order:
                s = subjects[name]
                spy = None
                if profile_at and name == "gateway" and kind == "plain" and c == profile_at[0]:
                    spy = Profile(s.proc.pid, profile_at[1], duration)  # type: ignore[union-attr]
                cpu = cpu_seconds(s.proc.pid)  # type: ignore[union-attr]
                r = res[name]["load"][str(c)][kind] = point(kind, wrk_bin, load_pin, s.port, c, duration)
                if r.get("requests"):  # CPU per request: steadier than req/s on a shared machine
                    r["cpu_us_per_request"] = (cpu_seconds(s.proc.pid) - cpu) / r["requests"] * 1e6  # type: ignore[union-attr]
                if spy:
                    res[name]["profile"] = spy.finish()
            order.reverse()  # who goes first alternates from one point to the next
    time.sleep(1.0)
    for name, s in subjects.items():
        res[name]["peak_rss_kib"] = samplers[name].stop()
        res[name]["rss_after_load_kib"] = rss_kib(s.proc.pid)  # type: ignore[union-attr]
    return res


def measure_translated(mode: str, wrk_bin: str, pin: list[str], port: int, direct: dict, concs: list[int],
                       duration: float) -> dict:
    """--anthropic / --responses: per concurrency, streamed requests passed through (/v1/chat/completions)
    and translated (the client's own endpoint -> OpenAI chat upstream -> the client's events), each with its
    time to first byte and to the end of the stream, minus the same figures measured directly."""
    out: dict = {}
    for c in concs:
        row: dict = {}
        d = direct[str(c)]["ttfb"]
        for name, body, path in (("passthrough", STREAM_BODY, CHAT), ("translated", *TRANSLATED[mode])):
            log(f"{mode} mode: concurrency {c}: {name} ({path})")
            t = ttfb(pin, port, c, duration, body, path)
            rps = wrk(wrk_bin, pin, port, body, c, duration, path)
            row[name] = {"ttfb": t, "stream_rps": rps["rps"],
                         "added_ttfb_ms": ms(t["ttfb_us"]["p50"] - d["ttfb_us"]["p50"]),
                         "added_total_ms": ms(t["total_us"]["p50"] - d["total_us"]["p50"])}
        p, t_ = row["passthrough"], row["translated"]
        row["ratio_ttfb"] = t_["added_ttfb_ms"] / p["added_ttfb_ms"] if p["added_ttfb_ms"] > 0 else float("nan")
        row["ratio_total"] = t_["added_total_ms"] / p["added_total_ms"] if p["added_total_ms"] > 0 else float("nan")
        out[str(c)] = row
    return out


def measure_rounds(subjects: dict[str, Subject], wrk_bin: str, load_pin: list[str], c: int, duration: float,
                   rounds: int) -> dict:
    """`rounds` more alternating pairs of points at concurrency `c`, JSON and stream, for the ratio's spread:
    one pair of 3-second points moves by 0.1 from one minute to the next on a shared machine, a median of
    several much less. Per kind: the ratio mlxgw / passthrough of req/s and of CPU per request, per round."""
    out: dict = {"c": c, "plain": [], "stream": []}
    order = ["passthrough", "gateway"]
    for i in range(rounds):
        for kind in ("plain", "stream"):
            got = {}
            for name in order:
                pid = subjects[name].proc.pid  # type: ignore[union-attr]
                cpu = cpu_seconds(pid)
                r = point(kind, wrk_bin, load_pin, subjects[name].port, c, duration)
                got[name] = (r["rps"], (cpu_seconds(pid) - cpu) / r["requests"] if r.get("requests") else None)
            (pt_rps, pt_cpu), (gw_rps, gw_cpu) = got["passthrough"], got["gateway"]
            out[kind].append({"rps_ratio": gw_rps / pt_rps if pt_rps else None,
                              "cpu_ratio": pt_cpu / gw_cpu if pt_cpu and gw_cpu else None})
            order.reverse()
        log(f"round {i + 1}/{rounds} at c={c}: JSON {out['plain'][-1]['rps_ratio']:.2f}x, "
            f"stream {out['stream'][-1]['rps_ratio']:.2f}x")
    return out


def run_translated(mode: str, gateway: Gateway, up_port: int, wrk_bin: str, load_pin: list[str],
                   concs: list[int], duration: float) -> dict:
    direct = {str(c): {"ttfb": ttfb(load_pin, up_port, c, duration)} for c in concs}
    res = {"direct": direct, "gateway": bring_up(gateway)}
    body_t, path_t = TRANSLATED[mode]
    status, body = http_post(gateway.port, path_t, dict(body_t, stream=False))
    if status != 200:
        raise RuntimeError(f"mlxgw answered {status} to a {mode} bench request: {body[:500]!r}")
    wrk(wrk_bin, load_pin, gateway.port, STREAM_BODY, 8, 1)
    wrk(wrk_bin, load_pin, gateway.port, body_t, 8, 1, path_t)
    res[mode] = measure_translated(mode, wrk_bin, load_pin, gateway.port, direct, concs, duration)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description="mlxgw speed benchmark: direct, a bare passthrough and mlxgw, side by side")
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per measurement point (default 3)")
    ap.add_argument("--concurrency", default="1,8,32", help="comma-separated (default 1,8,32)")
    ap.add_argument("--chunks", type=int, default=20, help="content chunks per upstream stream (default 20)")
    ap.add_argument("--trickle-ms", type=float, default=0.0,
                    help="the upstream sends a stream one event per write, this many ms apart, as a model "
                         "does (default 0: a whole stream in one write); compare CPU per request then")
    ap.add_argument("--direct-only", action="store_true", help="only measure the upstream directly")
    ap.add_argument("--rounds", type=int, default=0,
                    help="then N more alternating pairs of points at c=8, JSON and stream: the ratios' median")
    ap.add_argument("--profile", action="store_true", help="py-spy mlxgw during the highest concurrency's JSON run")
    ap.add_argument("--anthropic", action="store_true",
                    help="measure an Anthropic client (/v1/messages, streamed, translated to the OpenAI upstream) "
                         "against streamed pass-through, instead of the standard points")
    ap.add_argument("--responses", action="store_true",
                    help="measure a Responses API client (/v1/responses, streamed, translated to the OpenAI chat "
                         "upstream) against streamed pass-through, instead of the standard points")
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
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "loadavg_at_start": os.getloadavg()},
        "duration_s": duration, "chunks": args.chunks, "trickle_ms": args.trickle_ms, "concurrency": concs,
        "pinning": {"subjects": gw_pin, "load_and_upstream": load_pin},
    }
    up = subprocess.Popen([*load_pin, sys.executable, str(HERE / "fast_upstream.py"), "--port", "0",
                           "--chunks", str(args.chunks), "--trickle-ms", str(args.trickle_ms)],
                          stdout=subprocess.PIPE, text=True, start_new_session=True)
    tmp = tempfile.TemporaryDirectory(prefix="mlxgw-bench-")
    subjects: dict[str, Subject] = {}
    try:
        line = up.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith("PORT "):
            raise RuntimeError(f"upstream did not start: {line!r}")
        up_port = int(line.split()[1])
        gateway = None
        if not args.direct_only:
            gateway = Gateway(shlex.split(args.gateway_cmd), Path(tmp.name), up_port, gw_pin)
            if not gateway.available():
                log("`mlxgw serve` is not available: measuring the upstream and the passthrough only")
                gateway = None
            else:
                gateway.apply()  # once: start-up is timed without it
        if mode:
            if gateway is None:
                sys.exit(f"--{mode} needs mlxgw")
            subjects["gateway"] = gateway
            results.update(run_translated(mode, gateway, up_port, wrk_bin, load_pin, concs, duration))
        else:
            if not args.direct_only:
                subjects["passthrough"] = Passthrough(Path(tmp.name), up_port, gw_pin)
            if gateway is not None:
                subjects["gateway"] = gateway
            profile_at = (max(concs), RESULTS / f"profile-{stamp}.txt") if args.profile and gateway else None
            results.update(measure_side_by_side(subjects, up_port, wrk_bin, load_pin, concs, duration, profile_at))
            if args.rounds > 0 and "passthrough" in subjects and "gateway" in subjects:
                results["rounds"] = measure_rounds(subjects, wrk_bin, load_pin, 8, duration, args.rounds)
            results["summary"] = summarise(results, concs)
    finally:
        for s in subjects.values():
            s.stop()
        stop(up)
        tmp.cleanup()

    results["machine"]["loadavg_at_end"] = os.getloadavg()
    out_file = RESULTS / f"bench-{stamp}.json"
    out_file.write_text(json.dumps(results, indent=2))
    print(translated_table(results[mode]) if mode else table(results, concs))
    la0, la1 = results["machine"]["loadavg_at_start"][0], results["machine"]["loadavg_at_end"][0]
    print(f"\nload average (1 min) at start / end: {la0:.2f} / {la1:.2f}; {args.chunks} chunks per stream"
          f"{f' trickled {args.trickle_ms:g} ms apart' if args.trickle_ms else ' in one write'}; {duration:.0f} s per point")
    print(f"results: {out_file.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
