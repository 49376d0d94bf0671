"""The benchmark's figures as markdown: absolutes per subject, ratios mlxgw / passthrough from the same run,
and issue 15's done-when checklist."""

from __future__ import annotations

SUBJECTS = (("direct", "direct (upstream)"), ("passthrough", "passthrough (bench/passthrough.py)"),
            ("gateway", "mlxgw"))
GOALS = {"json_rps_ratio_c8": 0.75, "stream_rps_ratio_c8": 0.6, "json_tail_c8": 4.0, "added_p50_ms_c1": 0.5,
         "idle_rss_mib": 60.0, "startup_s": 1.0}
TRANSLATED_RATIO_GOAL = 1.3


def ms(us: float) -> float:
    return us / 1000.0


def ok(flag: bool | None) -> str:
    return "n/a" if flag is None else "yes" if flag else "NO"


def _div(a: float, b: float) -> float:
    return a / b if b else float("nan")


def _point(results: dict, subject: str, c: str) -> dict | None:
    load = results["direct"] if subject == "direct" else results.get(subject, {}).get("load")
    return load.get(c) if load else None


def summarise(results: dict, concs: list[int]) -> dict:
    """Ratios and the checklist's figures; c=1 and c=8 stand in for the lowest and middle concurrency
    when those were not measured."""
    keys = [str(c) for c in concs]
    c1 = "1" if "1" in keys else keys[0]
    c8 = "8" if "8" in keys else keys[len(keys) // 2]
    direct = results["direct"]
    s: dict = {"c1": c1, "c8": c8, "ratios": {}, "subjects": {}}
    for name in ("passthrough", "gateway"):
        r = results.get(name)
        if not r:
            continue
        p = r["load"]
        s["subjects"][name] = {
            "added_p50_ms_c1": ms(p[c1]["plain"]["latency_us"]["p50"] - direct[c1]["plain"]["latency_us"]["p50"]),
            "added_ttfb_ms_c1": ms(p[c1]["ttfb"]["ttfb_us"]["p50"] - direct[c1]["ttfb"]["ttfb_us"]["p50"]),
            "json_tail_c8": _div(p[c8]["plain"]["latency_us"]["p99"], p[c8]["plain"]["latency_us"]["p50"]),
            "idle_rss_mib": r["idle_rss_kib"] / 1024, "peak_rss_mib": r["peak_rss_kib"] / 1024,
            "startup_s": min(r["startup_s"]),
        }
    if "passthrough" in results and "gateway" in results:
        pt, gw = results["passthrough"]["load"], results["gateway"]["load"]
        for c in keys:
            s["ratios"][c] = {"json_rps": _div(gw[c]["plain"]["rps"], pt[c]["plain"]["rps"]),
                              "stream_rps": _div(gw[c]["stream"]["rps"], pt[c]["stream"]["rps"])}
        g = s["subjects"]["gateway"]
        json_rps, json_shown = _rps_ratio(results, s, c8, "json_rps", "plain")
        stream_rps, stream_shown = _rps_ratio(results, s, c8, "stream_rps", "stream")
        s["checklist"] = [
            (f"JSON RPS at c={c8} >= {GOALS['json_rps_ratio_c8']}x the passthrough's",
             json_shown, json_rps >= GOALS["json_rps_ratio_c8"]),
            (f"stream RPS at c={c8} >= {GOALS['stream_rps_ratio_c8']}x the passthrough's",
             stream_shown, stream_rps >= GOALS["stream_rps_ratio_c8"]),
            (f"JSON p99 <= {GOALS['json_tail_c8']:.0f}x its own p50 at c={c8}",
             f"{g['json_tail_c8']:.1f}x", g["json_tail_c8"] <= GOALS["json_tail_c8"]),
            (f"added p50 at c={c1} <= {GOALS['added_p50_ms_c1']} ms",
             f"{g['added_p50_ms_c1']:.2f} ms", g["added_p50_ms_c1"] <= GOALS["added_p50_ms_c1"]),
            (f"idle RSS <= {GOALS['idle_rss_mib']:.0f} MiB", f"{g['idle_rss_mib']:.1f} MiB",
             g["idle_rss_mib"] <= GOALS["idle_rss_mib"]),
            (f"start-up <= {GOALS['startup_s']:.0f} s (spawn to first 200 on /health, best of "
             f"{len(results['gateway']['startup_s'])}, without apply)", f"{g['startup_s']:.3f} s",
             g["startup_s"] <= GOALS["startup_s"]),
        ]
    return s


def _rps_ratio(results: dict, s: dict, c8: str, key: str, kind: str) -> tuple[float, str]:
    """A req/s ratio at c8 for the checklist, and how it is shown: this run's own pair of points, or with
    `--rounds` the median of that pair and the rounds' (one 3-second pair moves by 0.1 or more from one
    minute to the next on a shared machine; the median of several alternating pairs much less)."""
    own = s["ratios"][c8][key]
    rounds = results.get("rounds")
    if not rounds or str(rounds["c"]) != c8:
        return own, f"{own:.2f}x"
    v = sorted([own] + [r["rps_ratio"] for r in rounds[kind] if r["rps_ratio"] is not None])
    mid = v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2
    return mid, f"median {mid:.2f}x of {len(v)} pairs ({v[0]:.2f}-{v[-1]:.2f}; this run's first {own:.2f}x)"


def headline(results: dict, s: dict) -> list[str]:
    """One row per subject at the middle concurrency, as issue 15's table."""
    c1, c8 = s["c1"], s["c8"]
    lines = [f"| subject | JSON req/s c={c8} | JSON p50 / p99 ms | stream req/s c={c8} | stream p50 / p99 ms "
             f"| added p50 c={c1} | idle RSS | peak RSS | start-up |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, label in SUBJECTS:
        p = _point(results, name, c8)
        if p is None:
            continue
        jl, sl = p["plain"]["latency_us"], p["stream"]["latency_us"]
        sub = s["subjects"].get(name)
        jr, sr = f"{p['plain']['rps']:,.0f}", f"{p['stream']['rps']:,.0f}"
        if name == "gateway" and c8 in s["ratios"]:
            jr += f" ({s['ratios'][c8]['json_rps']:.2f}x)"
            sr += f" ({s['ratios'][c8]['stream_rps']:.2f}x)"
        extra = (f"+{sub['added_p50_ms_c1']:.2f} ms | {sub['idle_rss_mib']:.1f} MiB | {sub['peak_rss_mib']:.1f} MiB "
                 f"| {sub['startup_s']:.2f} s") if sub else "- | - | - | -"
        lines.append(f"| {label} | {jr} | {ms(jl['p50']):.2f} / {ms(jl['p99']):.2f} | {sr} "
                     f"| {ms(sl['p50']):.2f} / {ms(sl['p99']):.2f} | {extra} |")
    return lines


def per_concurrency(results: dict, concs: list[int]) -> list[str]:
    lines = ["| c | subject | JSON req/s | JSON p50 / p99 ms | stream req/s | stream p50 / p99 ms "
             "| stream TTFB p50 / p99 ms |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for c in map(str, concs):
        for name, label in SUBJECTS:
            p = _point(results, name, c)
            if p is None:
                continue
            jl, sl, tl = p["plain"]["latency_us"], p["stream"]["latency_us"], p["ttfb"]["ttfb_us"]
            lines.append(f"| {c} | {label} | {p['plain']['rps']:,.0f} | {ms(jl['p50']):.2f} / {ms(jl['p99']):.2f} "
                         f"| {p['stream']['rps']:,.0f} | {ms(sl['p50']):.2f} / {ms(sl['p99']):.2f} "
                         f"| {ms(tl['p50']):.2f} / {ms(tl['p99']):.2f} |")
    return lines


def ratios(results: dict, s: dict) -> list[str]:
    lines = ["| c | JSON req/s mlxgw / passthrough | stream req/s mlxgw / passthrough "
             "| JSON p99 / p50 mlxgw (passthrough) |", "|---:|---:|---:|---:|"]
    for c, r in s["ratios"].items():
        g, p = results["gateway"]["load"][c]["plain"]["latency_us"], results["passthrough"]["load"][c]["plain"]["latency_us"]
        lines.append(f"| {c} | {r['json_rps']:.2f}x | {r['stream_rps']:.2f}x "
                     f"| {_div(g['p99'], g['p50']):.1f} ({_div(p['p99'], p['p50']):.1f}) |")
    lines += cpu_per_request(results, list(s["ratios"]))
    sub = s["subjects"]
    lines += ["", "| | mlxgw | passthrough | mlxgw / passthrough |", "|---|---:|---:|---:|"]
    for key, label, unit in (("added_p50_ms_c1", f"added p50 c={s['c1']} (JSON)", "ms"),
                             ("added_ttfb_ms_c1", f"added stream TTFB p50 c={s['c1']}", "ms"),
                             ("idle_rss_mib", "idle RSS", "MiB"), ("peak_rss_mib", "peak RSS (during load)", "MiB"),
                             ("startup_s", "start-up, best of 4", "s")):
        g, p = sub["gateway"][key], sub["passthrough"][key]
        lines.append(f"| {label} | {g:.2f} {unit} | {p:.2f} {unit} | {_div(g, p):.2f}x |")
    return lines


def cpu_per_request(results: dict, concs: list[str]) -> list[str]:
    """The subjects' own CPU time per request (from /proc, all threads) at each point, and the ratio
    passthrough / mlxgw: what req/s would be if each had the core to itself, and much steadier than
    req/s when the machine is shared."""
    lines = ["", "| c | JSON CPU us/request mlxgw / passthrough | ratio | stream CPU us/request mlxgw / passthrough "
             "| ratio |", "|---:|---:|---:|---:|---:|"]
    gw, pt = results["gateway"]["load"], results["passthrough"]["load"]
    for c in concs:
        row = [c]
        for kind in ("plain", "stream"):
            g, p = gw[c][kind].get("cpu_us_per_request"), pt[c][kind].get("cpu_us_per_request")
            if g is None or p is None:
                return []  # a result file from before the bench measured CPU
            row += [f"{g:.0f} / {p:.0f}", f"{_div(p, g):.2f}x"]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def table(results: dict, concs: list[int]) -> str:
    s = results["summary"]
    lines = headline(results, s) + [""] + per_concurrency(results, concs)
    if s["ratios"]:
        lines += [""] + ratios(results, s)
    if s.get("checklist"):
        lines += ["", "Issue 15, done when (mlxgw pinned to one core, ratios against this run's passthrough):", "",
                  "| done when | measured | ok |", "|---|---:|:-:|"]
        lines += [f"| {what} | {value} | {ok(flag)} |" for what, value, flag in s["checklist"]]
    if results.get("rounds"):
        lines += [""] + rounds_table(results["rounds"])
    prof = results.get("gateway", {}).get("profile")
    if prof:
        if "top" in prof:
            lines += ["", f"Hottest functions in mlxgw at concurrency {max(concs)}, JSON (self %, inclusive %), "
                          f"{prof['file']}:"]
            lines += [f"  {a:5.1f}%  {b:5.1f}%  {name}" for name, a, b in prof["top"]]
        else:
            lines += ["", f"py-spy failed: {prof.get('error')}"]
    return "\n".join(lines)


def rounds_table(rounds: dict) -> list[str]:
    """The median and range of the ratios over `--rounds` more alternating pairs of points."""
    def spread(values: list) -> str:
        v = sorted(x for x in values if x is not None)
        if not v:
            return "-"
        mid = v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2
        return f"{mid:.2f}x ({v[0]:.2f}-{v[-1]:.2f})"
    n = len(rounds["plain"])
    lines = [f"c={rounds['c']} over {n} more alternating rounds, mlxgw / passthrough: median (min-max)", "",
             "| kind | req/s ratio | CPU per request ratio (passthrough / mlxgw) |", "|---|---:|---:|"]
    for kind, label in (("plain", "JSON"), ("stream", "stream")):
        rs = rounds[kind]
        lines.append(f"| {label} | {spread([r['rps_ratio'] for r in rs])} | {spread([r['cpu_ratio'] for r in rs])} |")
    return lines


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
