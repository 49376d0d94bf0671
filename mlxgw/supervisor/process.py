"""The operating-system side of local engines: a free port, spawning an engine in its own process group
with its output appended to its log (rotated at a start once it passes LOG_ROTATE_BYTES), signals to the
whole group, the /proc scan that tells live group members from zombies, and the log's last lines.

Nothing here knows a model's state: the Supervisor (core.py) decides, this module does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

LOG_TAIL_LINES = 20
LOG_ROTATE_BYTES = 16 * 1024 * 1024  # at a start, a bigger log is kept as <name>.log.1 and a new one begun


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_name(provider: str, model: str) -> str:
    """The file name of a model's engine log, safe whatever characters the model's name holds."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in model)
    return f"{provider}--{safe}.log"


def tail(path: Path, lines: int = LOG_TAIL_LINES, max_bytes: int = 64 * 1024) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def note(log_path: Path, text: str) -> None:
    """Append a timestamped line of the gateway's own to an engine's log."""
    with contextlib.suppress(OSError):
        with open(log_path, "ab") as f:
            f.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n".encode())


def spawn(cmd: list[str], env: dict, log_path: Path, cwd: Path) -> subprocess.Popen:
    """Start `cmd` in a new session (its own process group), output appended to `log_path` after a header
    line. OSError when it cannot be run."""
    cwd.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        if log_path.stat().st_size > LOG_ROTATE_BYTES:
            os.replace(log_path, log_path.with_name(log_path.name + ".1"))
    # 0600, also for a log an older version made: an engine's log may hold prompts (the folder is made
    # 0700 for the same reason).
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "ab") as logf:
        logf.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} mlxgw starts: {' '.join(cmd)}\n".encode())
        logf.flush()
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                env=env, cwd=cwd, start_new_session=True)


def signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def group_has_live(pgid: int) -> bool:
    """True while a process of the group is alive and not a zombie (zombies still answer signal 0)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != b"Z":
                return True
        except (OSError, IndexError, ValueError):
            continue
    return False


async def terminate(proc: subprocess.Popen, grace: float) -> int | None:
    """SIGTERM to the engine's process group, up to `grace` seconds for it (and the workers left in its
    group) to exit, then SIGKILL to whatever is left. The leader's exit code."""
    signal_group(proc.pid, signal.SIGTERM)
    end = time.monotonic() + grace
    while proc.poll() is None and time.monotonic() < end:
        await asyncio.sleep(0.05)
    # The leader is gone (or too slow): give workers left in its group the same grace, then kill.
    while signal_group(proc.pid, 0) and time.monotonic() < end and group_has_live(proc.pid):
        await asyncio.sleep(0.05)
    signal_group(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=1.0)
    return proc.returncode


def kill_now(proc: subprocess.Popen) -> int | None:
    """SIGKILL to the whole group at once; the leader's exit code."""
    signal_group(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=2.0)
    return proc.returncode
