"""The supervisor's state machine and its "how cold is this model" answer, over the fake engine: every
state change goes through one checked method, an illegal one raises, and `readiness()` follows a model
from stopped to ready to failed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mlxgw.supervisor
from mlxgw.supervisor import FAILED, READY, STARTING, STOPPED, STOPPING, EngineError, IllegalTransition, Readiness
from mlxgw.supervisor.models import TRANSITIONS
from tests.supervisor_helpers import model, provider
from tests.test_supervisor import env, fake, model_dir  # noqa: F401 - fixtures

ASYNC = pytest.mark.asyncio(loop_scope="session")
STATES = {STOPPED, STARTING, READY, STOPPING, FAILED}


def test_the_table_names_every_state_and_only_states():
    assert set(TRANSITIONS) == STATES
    assert all(targets <= STATES and state not in targets for state, targets in TRANSITIONS.items())


def test_only_the_checked_method_assigns_a_state():
    """No bare `x.state = ...` in the supervisor's code but the one in Supervisor._move."""
    where = []
    for path in sorted(Path(mlxgw.supervisor.__file__).parent.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                targets = node.targets if isinstance(node, ast.Assign) else \
                    [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
                for t in targets:
                    for leaf in ast.walk(t):
                        if isinstance(leaf, ast.Attribute) and leaf.attr == "state":
                            where.append(f"{path.name}:{fn.name}:{node.lineno}")
    assert len(where) == 1 and where[0].startswith("core.py:_move:"), where


@ASYNC
async def test_an_illegal_transition_raises_and_changes_nothing(env, fake):  # noqa: F811
    make, tmp = env
    sup = make([provider("loc", fake, [model("a", model_dir(tmp))])])
    m = sup.get("loc", "a")
    with pytest.raises(IllegalTransition, match="loc/a: no transition stopped -> ready"):
        sup._move(m, READY)  # noqa: SLF001 - the checker itself
    assert m.state == STOPPED
    await sup.ensure_ready("loc", "a")  # the legal path still works after the refusal
    with pytest.raises(IllegalTransition, match="ready -> starting"):
        sup._move(m, STARTING)  # noqa: SLF001
    assert m.state == READY


@ASYNC
async def test_readiness_follows_a_model_from_cold_to_ready(env, fake):  # noqa: F811
    make, tmp = env
    sup = make([provider("loc", fake, [model("a", model_dir(tmp), start_timeout="30s")])])
    cold = sup.readiness("loc", "a")
    assert cold == Readiness(state=STOPPED, ready=False, failed=False, expected_remaining=None,
                             start_timeout_left=30.0)
    await sup.ensure_ready("loc", "a")
    ready = sup.readiness("loc", "a")
    assert ready.state == READY and ready.ready and not ready.failed and ready.expected_remaining == 0.0
    await sup.stop("loc", "a")
    stopped = sup.readiness("loc", "a")
    # Stopped after one start: the next start is expected to take as long as that one did.
    assert not stopped.ready and stopped.expected_remaining == sup.expected_start(sup.get("loc", "a")) > 0
    with pytest.raises(EngineError, match="has no local model 'nope'"):
        sup.readiness("loc", "nope")


@ASYNC
async def test_readiness_reports_a_failed_start(env, fake):  # noqa: F811
    make, tmp = env
    sup = make([provider("loc", fake, [model("a", model_dir(tmp))], env={"FAKE_MODE": "exit"})])
    with pytest.raises(EngineError, match="exited with code 3"):
        await sup.ensure_ready("loc", "a")
    failed = sup.readiness("loc", "a")
    assert failed.state == FAILED and failed.failed and not failed.ready
