"""Processes for the benchmark: CPU pinning, tiny HTTP probes, RSS, and the two servers it compares
(mlxgw serve and the bench's own passthrough), both started the same way and timed the same way."""

from __future__ import annotations

import abc
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def cpus() -> tuple[list[str], list[str]]:
    """(subject pin, load pin) as taskset prefixes; empty when pinning is impossible. The bench process
    itself moves to the load CPU, so its RSS sampler never takes the subject's core."""
    n = os.cpu_count() or 1
    if n < 2 or not shutil.which("taskset"):
        log(f"{n} CPU(s) or no taskset: running without CPU pinning")
        return [], []
    os.sched_setaffinity(0, {1})
    return ["taskset", "-c", "0"], ["taskset", "-c", "1"]


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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (/proc/PID/stat, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PeakRss:
    """The highest RSS of a process tree, polled from /proc every 50 ms by a thread of the bench process
    (on the load CPU): a peak during the load, not only after it."""

    def __init__(self, pid: int, every: float = 0.05) -> None:
        self.pid, self.every, self.peak = pid, every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, rss_kib(self.pid))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_kib(self.pid))
        return self.peak


def stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class Subject(abc.ABC):
    """A server under test, pinned to the subject CPU: `start()` returns seconds from spawn to the first
    200 on /health; `serve_cmd(port)` is what differs between subjects."""

    name = "subject"

    def __init__(self, home: Path, upstream_port: int, pin: list[str]) -> None:
        self.home, self.upstream_port, self.pin = home, upstream_port, pin
        self.env = dict(os.environ)
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.log_path = home / f"{self.name}.log"

    @abc.abstractmethod
    def serve_cmd(self, port: int) -> list[str]:
        """The command line that serves on `port` (the pin is added by start())."""

    def start(self, timeout: float = 30.0) -> float:
        self.port = free_port()
        logf = self.log_path.open("ab")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen([*self.pin, *self.serve_cmd(self.port)], env=self.env, stdout=logf,
                                     stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        deadline = t0 + timeout
        while time.perf_counter() < deadline:
            if http_get_status(self.port, "/health") == 200:
                return time.perf_counter() - t0
            if self.proc.poll() is not None:
                break
            time.sleep(0.005)
        tail = self.log_path.read_text(errors="replace")[-3000:]
        self.stop()
        raise RuntimeError(f"{self.name} did not become healthy within {timeout}s; log tail:\n{tail}")

    def start_timed(self, starts: int = 4) -> list[float]:
        """Start `starts` times, each to its first 200 on /health; the last start stays up."""
        times = []
        for i in range(starts):
            times.append(self.start())
            if i < starts - 1:
                self.stop()
        return times

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


class Passthrough(Subject):
    """bench/passthrough.py: the same stack as mlxgw without its work."""

    name = "passthrough"

    def serve_cmd(self, port: int) -> list[str]:
        return [sys.executable, str(HERE / "passthrough.py"), "--port", str(port),
                "--upstream", f"http://127.0.0.1:{self.upstream_port}"]


class Gateway(Subject):
    """`mlxgw serve` at its defaults (audit log on), in a temporary MLXGW_HOME routing bench-* upstream."""

    name = "mlxgw"

    def __init__(self, cmd: list[str], home: Path, upstream_port: int, pin: list[str]) -> None:
        super().__init__(home, upstream_port, pin)
        self.cmd = cmd
        self.env.update(MLXGW_HOME=str(home), PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.env.pop("MLXGW_DB", None)
        self.env.setdefault("MLXGW_MASTER_KEY", self._fernet_key())

    @staticmethod
    def _fernet_key() -> str:
        import base64
        return base64.urlsafe_b64encode(os.urandom(32)).decode()

    def serve_cmd(self, port: int) -> list[str]:
        return [*self.cmd, "serve", "--port", str(port)]

    def available(self) -> bool:
        r = subprocess.run([*self.cmd, "serve", "--help"], env=self.env, capture_output=True, text=True, cwd=ROOT)
        return r.returncode == 0

    def apply(self) -> None:
        """Once, before the timed starts: start-up is measured without apply."""
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
