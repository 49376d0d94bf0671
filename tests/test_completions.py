"""completions/ are generated from the CLI; these tests fail when they drift or stop working."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from mlxgw.cli.completion import script
from tests.ci import missing
from tests.conftest import ROOT

REGENERATE = "for s in bash zsh fish; do mlxgw completion $s > completions/mlxgw.$s; done"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_files_match_the_cli(shell):
    shipped = (ROOT / "completions" / f"mlxgw.{shell}").read_text()
    assert shipped == script(shell), f"completions/mlxgw.{shell} is stale; regenerate: {REGENERATE}"


def _complete_bash(words: list[str]) -> list[str]:
    line = " ".join(words)
    program = (
        f"source {ROOT / 'completions/mlxgw.bash'}\n"
        f"COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}\n"
        "_mlxgw; printf '%s\\n' \"${COMPREPLY[@]}\"\n"
    )
    out = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True).stdout
    return out.split()


def test_bash_completes_commands_and_options():
    assert "validate" in _complete_bash(["mlxgw", "va"])
    assert _complete_bash(["mlxgw", "providers", "s"]) == ["set-key"]
    assert "--exit-code" in _complete_bash(["mlxgw", "diff", "--ex"])
    assert _complete_bash(["mlxgw", "apply", "--dry"]) == ["--dry-run"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_other_shells_parse(shell):
    exe = shutil.which(shell)
    if exe is None:
        missing(shell, f"apt-get install -y {shell}")
    subprocess.run([exe, "-n", str(ROOT / "completions" / f"mlxgw.{shell}")], check=True)


def test_fish_completes_subcommands():
    exe = shutil.which("fish")
    if exe is None:
        missing("fish", "apt-get install -y fish")
    src = ROOT / "completions" / "mlxgw.fish"
    out = subprocess.run([exe, "-c", f"source {src}; complete -C 'mlxgw providers s'; complete -C 'mlxgw diff --ex'"],
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0].startswith("set-key")
    assert "--exit-code" in out
