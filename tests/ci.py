"""The one reading of the `CI` environment variable for the whole suite.

In CI a missing tool (an engine, chromium, zsh, fish) is a failure, because .ci/run must have installed
it; on a developer's machine it is a skip that says how to install it. `CI=false`, `CI=0` or an empty
value mean "not CI": only true, 1 and yes (any case) count.
"""

from __future__ import annotations

import os

import pytest


def on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing(what: str, how: str) -> None:
    """Fail in CI, skip elsewhere: `what` is not installed, `how` installs it."""
    if on_ci():
        pytest.fail(f"{what} is missing in CI: .ci/run must install it ({how})")
    pytest.skip(f"{what} is not installed ({how})")
