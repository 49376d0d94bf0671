"""Instructions per request, counted by valgrind (callgrind): the bench figure that does not move with
the machine's load. `python bench/instructions.py [--requests N] [--connections C] [--gateway-cmd "..."]`

On a shared virtual machine req/s and CPU time per request swing by a factor of two from one minute to
the next; an instruction count is the same run after run, so it tells whether a change to the hot path
helped, even by 3%. Each subject (bench/passthrough.py, then `mlxgw serve`) runs under
`valgrind --tool=callgrind --instr-atstart=no`; after a warm-up, counting is switched on
(`callgrind_control -i on`) for N sequential keep-alive requests, JSON then streamed, each batch dumped
and its total read. The gateway's audit writer runs in the counted window (its rows are part of the
cost); at one request at a time it writes small batches, so its share is larger than under load. Each
thread is counted apart, so the report also gives mlxgw's event loop alone (the main thread: the request
path, without the writer's thread). `--connections 8` sends the requests over 8 keep-alive connections
at once, as under load: more rows per flush, and the loop's per-request overheads shared as they are then.
It needs Debian's valgrind (`apt-get install -y valgrind`, which it runs when the tool is missing).
"""

from __future__ import annotations

import argparse
import http.client
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from procs import Gateway, free_port, http_get_status, stop

HERE = Path(__file__).resolve().parent
BODIES = {kind: json.dumps({"model": "bench-model", "stream": kind == "stream",
                            "messages": [{"role": "user", "content": "Say hello."}]}) for kind in ("json", "stream")}
VALGRIND = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes"]


def requests(port: int, n: int, kind: str, connections: int = 1) -> None:
    """`n` requests of `kind`, over `connections` keep-alive connections at once."""
    failed: list[str] = []

    def one_connection(count: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        for _ in range(count):
            conn.request("POST", "/v1/chat/completions", BODIES[kind], {"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200:
                failed.append(f"the subject answered {resp.status}: {data[:300]!r}")
                break
        conn.close()

    threads = [threading.Thread(target=one_connection, args=(n // connections + (i < n % connections),))
               for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        sys.exit(failed[0])


def count(proc: subprocess.Popen, port: int, n: int, out: Path, connections: int = 1) -> dict[str, tuple[int, int]]:
    """Instructions per request of `proc` (under callgrind, listening on `port`), per kind: (all threads,
    the main thread)."""
    deadline = time.monotonic() + 300
    while http_get_status(port, "/health") != 200:
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"the subject did not start under valgrind; see {out.parent}")
        time.sleep(0.2)
    for kind in BODIES:
        requests(port, 30, kind)  # warm-up: imports, connections, caches
    result = {}
    for kind in BODIES:
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], capture_output=True)
        subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], capture_output=True)
        requests(port, n, kind, connections)
        time.sleep(0.6)  # the audit writer's next flush is part of the cost
        subprocess.run(["callgrind_control", "-i", "off", str(proc.pid)], capture_output=True)
        before = set(out.parent.glob(out.name + ".*"))
        subprocess.run(["callgrind_control", "-d", kind, str(proc.pid)], capture_output=True)
        dumps, waited = set(), time.monotonic() + 120
        while not dumps and time.monotonic() < waited:
            dumps = set(out.parent.glob(out.name + ".*")) - before  # one file per thread: NAME.N-TT
            time.sleep(0.2)
        if not dumps:
            sys.exit(f"callgrind wrote no dump for the {kind} requests within 2 minutes")
        time.sleep(1.0)  # every thread's file written
        dumps = set(out.parent.glob(out.name + ".*")) - before
        per_thread = {d.name.rsplit("-", 1)[-1]: _total(d) for d in dumps}
        result[kind] = (sum(per_thread.values()) // n, per_thread.get("01", 0) // n)
    return result


def _total(dump: Path) -> int:
    totals = [line for line in dump.read_text().splitlines() if line.startswith("totals:")]
    return int(totals[0].split()[1]) if totals else 0


def main() -> int:
    ap = argparse.ArgumentParser(description="instructions per request: passthrough and mlxgw, under callgrind")
    ap.add_argument("--requests", type=int, default=200, help="requests counted per kind (default 200)")
    ap.add_argument("--connections", type=int, default=1, help="keep-alive connections at once (default 1)")
    ap.add_argument("--gateway-cmd", default=f"{shlex.quote(sys.executable)} -m mlxgw")
    args = ap.parse_args()
    if not shutil.which("valgrind"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "valgrind"], check=True)
    up = subprocess.Popen([sys.executable, str(HERE / "fast_upstream.py"), "--port", "0"], stdout=subprocess.PIPE,
                          text=True, start_new_session=True)
    up_port = int(up.stdout.readline().split()[1])  # type: ignore[union-attr]
    rows = {}
    with tempfile.TemporaryDirectory(prefix="mlxgw-instr-") as tmp:
        out = Path(tmp) / "callgrind.out"
        port = free_port()
        proc = subprocess.Popen([*VALGRIND, f"--callgrind-out-file={out}", sys.executable, str(HERE / "passthrough.py"),
                                 "--port", str(port), "--upstream", f"http://127.0.0.1:{up_port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            rows["passthrough"] = count(proc, port, args.requests, out, args.connections)
        finally:
            stop(proc)
        gw = Gateway(shlex.split(args.gateway_cmd), Path(tmp), up_port, [])
        gw.apply()
        out = Path(tmp) / "callgrind-gw.out"
        gw.cmd = [*VALGRIND, f"--callgrind-out-file={out}", *gw.cmd]
        port = free_port()
        proc = subprocess.Popen([*gw.cmd, "serve", "--port", str(port)], env=gw.env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            rows["mlxgw"] = count(proc, port, args.requests, out, args.connections)
        finally:
            stop(proc)
    stop(up)
    p, g = rows["passthrough"], rows["mlxgw"]
    print(f"{args.requests} requests per kind over {args.connections} connection(s)\n")
    print("| instructions per request | passthrough | mlxgw | passthrough / mlxgw | mlxgw's event loop alone |\n"
          "|---|---:|---:|---:|---:|")
    for kind in BODIES:
        print(f"| {kind} | {p[kind][0]:,} | {g[kind][0]:,} | {p[kind][0] / g[kind][0]:.2f}x | {g[kind][1]:,} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
