#!/usr/bin/env python3
"""Install the real client programs the tests drive, pinned, from npm: the Codex CLI (`@openai/codex`) and
Claude Code (`@anthropic-ai/claude-code`).

Codex speaks only the Responses API (since 0.125), so it is the client that proves /v1/responses works.
It goes into its own npm prefix, keyed by version: ``$MLXGW_TEST_CLIENTS/codex-<version>`` (default
``~/.cache/mlxgw-test-clients``). Idempotent: a finished install holds a marker file and is only checked
(`codex --version`), so running this again (as .ci/run does on every run) costs a second. A failed install
exits non-zero: CI must fail rather than let the Codex tests skip.

Claude Code's npm package carries a placeholder `claude` and a postinstall that copies the platform's
native binary (an optional dependency) over it; npm 11 may skip install scripts, so `install_claude` runs
it itself. tests/test_clients.py runs `claude -p` through the gateway with what `mlxgw clients claude-code`
prints.

Usage: python3 tests/clients/install.py [--force] [--print-path]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

CODEX_VERSION = "0.171.0"
CLAUDE_CODE_VERSION = "2.1.332"
MARKER = ".mlxgw-installed"


def cache_root() -> Path:
    return Path(os.environ.get("MLXGW_TEST_CLIENTS") or Path.home() / ".cache" / "mlxgw-test-clients").expanduser()


def codex_dir() -> Path:
    return cache_root() / f"codex-{CODEX_VERSION}"


def codex_path() -> Path:
    """The pinned `codex` executable (present once installed)."""
    return codex_dir() / "node_modules" / ".bin" / "codex"


def version_ok(path: Path) -> bool:
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and CODEX_VERSION in out.stdout


def is_installed() -> bool:
    return (codex_dir() / MARKER).is_file() and codex_path().is_file()


def install(force: bool = False) -> Path:
    target = codex_dir()
    if is_installed() and not force and version_ok(codex_path()):
        return codex_path()
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is not installed: install Node.js (apt-get install nodejs npm) and rerun")
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    print(f"installing @openai/codex@{CODEX_VERSION} into {target}", flush=True)
    done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(target),
                           f"@openai/codex@{CODEX_VERSION}"], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"npm install @openai/codex@{CODEX_VERSION} failed:\n{done.stderr[-3000:]}")
    if not version_ok(codex_path()):
        raise SystemExit(f"{codex_path()} does not run or is not version {CODEX_VERSION}")
    (target / MARKER).write_text(CODEX_VERSION + "\n")
    return codex_path()


def claude_dir() -> Path:
    return cache_root() / f"claude-code-{CLAUDE_CODE_VERSION}"


def claude_executable() -> Path:
    return claude_dir() / "node_modules" / ".bin" / "claude"


def claude_installed() -> bool:
    return (claude_dir() / MARKER).is_file() and claude_executable().exists()


def install_claude(force: bool = False) -> Path:
    dest = claude_dir()
    if claude_installed() and not force:
        return claude_executable()
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is not installed: install Node.js (apt-get install nodejs npm) and rerun")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    print(f"installing @anthropic-ai/claude-code@{CLAUDE_CODE_VERSION} into {dest}", flush=True)
    done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(dest),
                           f"@anthropic-ai/claude-code@{CLAUDE_CODE_VERSION}"], capture_output=True, text=True,
                          timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"npm install @anthropic-ai/claude-code@{CLAUDE_CODE_VERSION} failed:\n{done.stderr[-3000:]}")
    package = dest / "node_modules" / "@anthropic-ai" / "claude-code"
    done = subprocess.run(["node", "install.cjs"], cwd=package, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"Claude Code's install.cjs failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    out = subprocess.run([str(claude_executable()), "--version"], capture_output=True, text=True, timeout=60)
    if out.returncode != 0 or CLAUDE_CODE_VERSION not in out.stdout:
        raise SystemExit(f"claude --version failed: {out.stdout}{out.stderr}")
    (dest / MARKER).write_text(out.stdout)
    return claude_executable()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="reinstall even when the marker is present")
    parser.add_argument("--print-path", action="store_true", help="print the codex executable's path and exit")
    args = parser.parse_args(argv)
    if args.print_path:
        print(codex_path())
        return 0
    print(install(force=args.force))
    print(install_claude(force=args.force))
    return 0


if __name__ == "__main__":
    sys.exit(main())
