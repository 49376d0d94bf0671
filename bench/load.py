"""Load generators for the benchmark (wrk for requests/s and latency, bench/ttfb.py for streamed time to
first byte) and the py-spy profile of a subject under load."""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from procs import HERE, log

BODY = {"model": "bench-model", "messages": [{"role": "user", "content": "Say hello."}]}
STREAM_BODY = dict(BODY, stream=True)
CHAT = "/v1/chat/completions"


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


def wrk(wrk_bin: str, pin: list[str], port: int, body: dict, conc: int, duration: float, path: str = CHAT) -> dict:
    cmd = [*pin, wrk_bin, "-t1", f"-c{conc}", f"-d{max(1, round(duration))}s", "--timeout", "10s",
           "-s", str(HERE / "post.lua"), f"http://127.0.0.1:{port}{path}"]
    env = dict(os.environ, BENCH_BODY=json.dumps(body))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            r = json.loads(line[len("BENCH_JSON "):])
            r["rps"] = r["requests"] / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0
            r["error_count"] = sum(r["errors"].values())
            if r["error_count"]:
                log(f"WARNING wrk :{port}{path} c={conc}: errors {r['errors']}")
            return r
    raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout}\n{out.stderr}")


def ttfb(pin: list[str], port: int, conc: int, duration: float, body: dict = STREAM_BODY, path: str = CHAT) -> dict:
    cmd = [*pin, sys.executable, str(HERE / "ttfb.py"), "--port", str(port), "--concurrency", str(conc),
           "--duration", str(duration), "--path", path]
    env = dict(os.environ, BENCH_BODY=json.dumps(body))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60)
    if out.returncode != 0:
        raise RuntimeError(f"ttfb client failed: {out.stderr}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    if r["errors"]:
        log(f"WARNING ttfb :{port}{path} c={conc}: {r['errors']} errors, e.g. {r['error_samples']}")
    return r


# ---------------------------------------------------------------------------------------------- py-spy


def py_spy_bin() -> str:
    path = shutil.which("py-spy")
    if path:
        return path
    log("installing py-spy (pip install py-spy)")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True)
    return shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")


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


class Profile:
    """py-spy recording a pid for `duration` seconds, started before a load run; `finish()` after it."""

    def __init__(self, pid: int, out: Path, duration: float) -> None:
        self.out = out
        self.proc = subprocess.Popen([py_spy_bin(), "record", "--pid", str(pid), "--format", "raw", "--output",
                                      str(out), "--rate", "250", "--duration", str(max(1, int(duration))),
                                      "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def finish(self) -> dict:
        self.proc.wait(60)
        if self.out.exists():
            return {"file": str(self.out), "top": summarise_collapsed(self.out)}
        return {"error": self.proc.stderr.read().decode(errors="replace")[-2000:]}  # type: ignore[union-attr]
