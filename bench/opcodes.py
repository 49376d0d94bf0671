"""Bytecodes per request, function by function: where mlxgw's own work is, beside the passthrough's.
`python bench/opcodes.py [--requests N] [--connections C] [--top K] [--gateway-cmd "..."]`

bench/instructions.py says how much more a request costs in mlxgw than in the bare passthrough; callgrind
cannot say in which Python function, since it sees only the interpreter's C. This runs each subject
(bench/passthrough.py, then `mlxgw serve`) under bench/optrace.py, which counts the bytecodes every Python
function executes on the event loop. After a warm-up, N requests of each kind (JSON, streamed) are
counted. The report gives each subject's bytecodes per request, then the K functions whose count differs
most between the two, per request, with their calls per request. The counts are exact and the same run
after run (give or take a batch boundary: how many events one read brings), so a change to the hot path
shows in them as it is, without the machine's noise. A bytecode is not a fixed cost: a call or a dict
built costs more than a comparison, so read them beside the instruction counts.
"""

from __future__ import annotations

import argparse
import collections
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from instructions import BODIES, requests
from procs import Gateway, free_port, http_get_status, stop

HERE = Path(__file__).resolve().parent
_SHORT = re.compile(r"^.*?/(site-packages|lib/python3\.\d+)/|^" + re.escape(str(HERE.parent)) + "/")


def count(python: str, dump: Path, target: list[str], env: dict | None, n: int,
          connections: int) -> dict[str, dict]:
    """Per kind: {function: [bytecodes per request, calls per request]} of the server `target` (a script
    and its arguments, or -m and a module's), run under bench/optrace.py with `--port` appended."""
    port = free_port()
    proc = subprocess.Popen([python, str(HERE / "optrace.py"), str(dump), *target, "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while http_get_status(port, "/health") != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"the subject did not start: {shlex.join(target)}")
            time.sleep(0.1)
        out = {}
        for kind in BODIES:
            requests(port, 200, kind, connections)  # warm-up: imports, connections, caches
            dump.unlink(missing_ok=True)
            proc.send_signal(signal.SIGUSR1)
            time.sleep(0.3)  # the handler runs at the loop's next bytecode
            requests(port, n, kind, connections)
            time.sleep(0.5)  # the audit row's flush is not on the event loop, but its scheduling is
            proc.send_signal(signal.SIGUSR2)
            waited = time.monotonic() + 30
            while not dump.exists() and time.monotonic() < waited:
                time.sleep(0.1)
            time.sleep(0.3)  # the file written whole
            out[kind] = _read(dump, n)
        return out
    finally:
        stop(proc)


def _read(path: Path, n: int) -> dict:
    if not path.exists():
        sys.exit(f"bench/optrace.py wrote no counts to {path}")
    funcs: dict = collections.defaultdict(lambda: [0.0, 0.0])
    for line in path.read_text().splitlines():
        ops, calls, key = line.split("\t", 2)
        f = funcs[_SHORT.sub("", key)]
        f[0] += int(ops) / n
        f[1] += int(calls) / n
    return funcs


def main() -> int:
    ap = argparse.ArgumentParser(description="bytecodes per request, per function: passthrough and mlxgw")
    ap.add_argument("--requests", type=int, default=400, help="requests counted per kind (default 400)")
    ap.add_argument("--connections", type=int, default=8, help="keep-alive connections at once (default 8)")
    ap.add_argument("--top", type=int, default=40, help="functions listed per kind (default 40)")
    ap.add_argument("--gateway-cmd", default=f"{shlex.quote(sys.executable)} -m mlxgw")
    args = ap.parse_args()
    up = subprocess.Popen([sys.executable, str(HERE / "fast_upstream.py"), "--port", "0"], stdout=subprocess.PIPE,
                          text=True, start_new_session=True)
    up_port = int(up.stdout.readline().split()[1])  # type: ignore[union-attr]
    try:
        with tempfile.TemporaryDirectory(prefix="mlxgw-opcodes-") as tmp:
            dump = Path(tmp) / "opcodes.txt"
            p = count(sys.executable, dump, [str(HERE / "passthrough.py"), "--upstream", f"http://127.0.0.1:{up_port}"],
                      None, args.requests, args.connections)
            gw = Gateway(shlex.split(args.gateway_cmd), Path(tmp), up_port, [])
            gw.apply()
            python, *module = gw.cmd  # "python -m mlxgw": optrace runs the module in that interpreter
            if module[:1] != ["-m"]:
                sys.exit("--gateway-cmd must be PYTHON -m mlxgw here (bench/optrace.py runs the module)")
            g = count(python, dump, [*module, "serve"], gw.env, args.requests, args.connections)
    finally:
        stop(up)
    print(f"{args.requests} requests per kind over {args.connections} connection(s); bytecodes on the event loop\n")
    print("| bytecodes per request | passthrough | mlxgw | passthrough / mlxgw |\n|---|---:|---:|---:|")
    for kind in BODIES:
        tp, tg = (sum(v[0] for v in d[kind].values()) for d in (p, g))
        print(f"| {kind} | {tp:,.0f} | {tg:,.0f} | {tp / tg:.2f}x |")
    for kind in BODIES:
        pk, gk = p[kind], g[kind]
        keys = sorted(set(pk) | set(gk), key=lambda k: -abs(gk.get(k, (0, 0))[0] - pk.get(k, (0, 0))[0]))
        print(f"\n{kind}: the {args.top} functions that differ most (bytecodes and calls per request)\n")
        print("| function | mlxgw | passthrough | difference | calls mlxgw / passthrough |\n|---|---:|---:|---:|---:|")
        for k in keys[:args.top]:
            (go, gc), (po, pc) = gk.get(k, (0, 0)), pk.get(k, (0, 0))
            print(f"| `{k}` | {go:,.1f} | {po:,.1f} | {go - po:+,.1f} | {gc:.2f} / {pc:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
