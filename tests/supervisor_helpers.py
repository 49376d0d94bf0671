"""Helpers for the supervisor tests: the fake engine as an executable, configs, process checks."""

from __future__ import annotations

import os
import queue
import stat
import sys
import threading
import time
from pathlib import Path

FAKE_ENGINE = Path(__file__).resolve().parent / "fake_engine.py"


def write_fake_command(folder: Path) -> str:
    """An executable that runs tests/fake_engine.py (a provider's `command` is one executable)."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "fake-engine"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_ENGINE}" "$@"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(exe)


def provider(name: str, command: str, models: list[dict], kind: str = "vllm-mlx", env: dict | None = None,
             **extra) -> dict:
    return {"name": name, "kind": kind, "command": command, "env": env or {}, "models": models, **extra}


def model(name: str, path: str, **extra) -> dict:
    return {"name": name, "path": path, **extra}


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def wait_until(cond, timeout: float = 10.0, interval: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(interval)
    return cond()


class Lines:
    """The lines a process writes to a pipe, read by a thread: a test waits for a line with a deadline
    instead of blocking on readline() forever."""

    def __init__(self, pipe):
        self._q: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(pipe,), daemon=True).start()

    def _pump(self, pipe) -> None:
        for line in pipe:
            self._q.put(line)
        self._q.put(None)

    def next(self, timeout: float = 30.0) -> str:
        try:
            line = self._q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line within {timeout:g}s; so far: {self.seen[-5:]}") from None
        if line is None:
            raise AssertionError(f"the process closed its output; so far: {self.seen[-5:]}")
        self.seen.append(line)
        return line

    def until(self, cond, timeout: float = 30.0) -> str:
        """The first line (from now) for which cond(line) is true."""
        end = time.monotonic() + timeout
        while True:
            line = self.next(max(0.01, end - time.monotonic()))
            if cond(line):
                return line


def group_members(pgid: int) -> list[int]:
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
                if int(fields[2]) == pgid and fields[0] != b"Z":
                    out.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return out
