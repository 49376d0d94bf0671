"""The README's first section holds exactly two commands, and CI runs the second one verbatim. The first
is the whole set-up: `mlxgw init` writes the gateway.yaml that `apply` then stores (tests/test_init.py
runs that sequence on a machine where init finds nothing, and on one where it finds a model)."""

from __future__ import annotations

import re

from tests.conftest import ROOT


def quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section, flags=re.S)


def test_two_commands():
    cmds = quick_start_commands()
    assert len(cmds) == 2 and all("\n" not in c for c in cmds)
    assert "mlxgw serve" in cmds[0] and "pytest" in cmds[1]


def test_ci_runs_the_readme_test_command():
    assert quick_start_commands()[1] in (ROOT / ".ci/run").read_text()


def test_quick_start_applies_what_init_writes():
    steps = [s.strip() for s in quick_start_commands()[0].split("&&")]
    mlxgw = [s for s in steps if s.startswith("mlxgw ")]
    assert mlxgw == ["mlxgw init --yes", "mlxgw apply -f gateway.yaml --yes", "mlxgw serve"]
