"""validate / diff / apply / export through the real CLI against real SQLite files."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from mlxgw.store import tables
from mlxgw.store.db import Store

from tests.conftest import EXAMPLES, ROOT

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))
pytestmark = pytest.mark.both_stores  # SQLite and PostgreSQL (tests/conftest.py)


def revisions(home) -> int:
    store = Store()  # the test's store: SQLite under `home`, or its PostgreSQL database (MLXGW_DB)
    try:
        with store.session() as s:
            return s.scalar(select(func.count()).select_from(tables.Revision))
    finally:
        store.engine.dispose()


def test_examples_exist():
    assert len(EXAMPLE_FILES) >= 3


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_round_trip(home, cli, tmp_path, path):
    code, out, err = cli("validate", "-f", str(path))
    assert code == 0, out + err
    code, out, err = cli("diff", "-f", str(path), "--exit-code")
    assert code == 2, out + err
    code, out, err = cli("apply", "-f", str(path), "--yes")
    assert code == 0, out + err
    assert "revision 1" in out
    # Re-applying the same file changes nothing and writes nothing.
    code, out, err = cli("apply", "-f", str(path), "--yes")
    assert code == 0 and "nothing changed" in out
    assert revisions(home) == 1
    # export -> diff reports no change, and export is stable.
    exported = tmp_path / "exported.yaml"
    code, out, err = cli("export", "-o", str(exported))
    assert code == 0, err
    code, out, err = cli("diff", "-f", str(exported), "--exit-code")
    assert code == 0, out + err
    assert "no changes" in out
    code, out2, _ = cli("export")
    assert out2 == exported.read_text()
    # The export is itself a valid file.
    code, out, err = cli("validate", "-f", str(exported))
    assert code == 0, out + err


def test_packaged_schema_matches_top_level_copy():
    assert (ROOT / "schemas/gateway.schema.json").read_text() == (
        ROOT / "mlxgw/schemas/gateway.schema.json"
    ).read_text()


def test_diff_shows_changes_entity_by_entity(home, cli, tmp_path):
    base = tmp_path / "g.yaml"
    base.write_text(
        "version: 1\nproviders:\n  - {name: up, kind: openai-compatible, base_url: 'http://127.0.0.1:9/v1'}\n"
        "routes:\n  - {match: {prefix: 'a-'}, target: up}\n  - {name: b, match: {exact: b}, target: up}\n"
    )
    assert cli("apply", "-f", str(base), "--yes")[0] == 0
    changed = tmp_path / "g2.yaml"
    changed.write_text(
        "version: 1\nproviders:\n  - {name: up, kind: openai-compatible, base_url: 'http://127.0.0.1:10/v1',"
        " timeouts: {total: 60s}}\n  - {name: up2, kind: openai}\n"
        "routes:\n  - {match: {prefix: 'a-'}, target: up2}\n"
    )
    code, out, _ = cli("diff", "-f", str(changed), "--exit-code")
    assert code == 2
    assert "~ provider up: base_url: http://127.0.0.1:9/v1 -> http://127.0.0.1:10/v1; timeouts.total = 1m" in out
    assert "+ provider up2" in out
    assert "~ route prefix:a-: target: up -> up2" in out
    assert "= route b" in out  # not in the file, kept without --prune
    code, out, _ = cli("diff", "-f", str(changed), "--prune", "--json")
    data = json.loads(out)
    assert {"op": "-", "kind": "route", "key": "b", "details": []} in data["changes"]


def test_apply_without_prune_keeps_and_with_prune_removes(home, cli, tmp_path):
    full = tmp_path / "full.yaml"
    full.write_text(
        "version: 1\nproviders:\n  - {name: a, kind: openai}\n  - {name: b, kind: openai}\n"
        "routes:\n  - {name: ra, match: {exact: x}, target: a}\n  - {name: rb, match: {exact: y}, target: b}\n"
    )
    small = tmp_path / "small.yaml"
    small.write_text("version: 1\nproviders:\n  - {name: a, kind: openai}\nroutes:\n"
                     "  - {name: ra, match: {exact: x}, target: a}\n")
    assert cli("apply", "-f", str(full), "--yes")[0] == 0
    code, out, _ = cli("apply", "-f", str(small), "--yes")
    assert code == 0 and "nothing changed" in out
    _, exported, _ = cli("export")
    assert "name: b" in exported and "name: rb" in exported
    code, out, _ = cli("apply", "-f", str(small), "--yes", "--prune")
    assert code == 0 and "- provider b" in out and "- route rb" in out
    _, exported, _ = cli("export")
    assert "name: b" not in exported and "rb" not in exported
    assert revisions(home) == 2


def test_dry_run_writes_nothing(home, cli):
    code, out, _ = cli("apply", "-f", str(EXAMPLE_FILES[0]), "--dry-run")
    assert code == 0 and "dry run" in out
    code, out, _ = cli("export")
    assert "providers: []" in out


def test_apply_json_output(home, cli):
    code, out, _ = cli("apply", "-f", str(EXAMPLE_FILES[0]), "--yes", "--json")
    data = json.loads(out)
    assert data["applied"] is True and data["revision"] == 1 and data["counts"]["add"] > 0


def test_durations_are_canonical_so_spelling_is_no_change(home, cli, tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text("version: 1\ndefaults: {timeouts: {total: 600s, connect: 5000ms}}\n")
    b = tmp_path / "b.yaml"
    b.write_text("version: 1\ndefaults: {timeouts: {total: 10m, connect: 5s}}\n")
    assert cli("apply", "-f", str(a), "--yes")[0] == 0
    assert cli("diff", "-f", str(b), "--exit-code")[0] == 0


def test_route_order_change_is_a_change(home, cli, tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text("version: 1\nproviders: [{name: p, kind: openai}]\nroutes:\n"
                 "  - {match: {regex: '^a'}, target: p}\n  - {match: {regex: '^ab'}, target: p}\n")
    b = tmp_path / "b.yaml"
    b.write_text("version: 1\nproviders: [{name: p, kind: openai}]\nroutes:\n"
                 "  - {match: {regex: '^ab'}, target: p}\n  - {match: {regex: '^a'}, target: p}\n")
    assert cli("apply", "-f", str(a), "--yes")[0] == 0
    code, out, _ = cli("diff", "-f", str(b), "--exit-code")
    assert code == 2 and "~ order routes" in out
    assert cli("apply", "-f", str(b), "--yes")[0] == 0
    _, exported, _ = cli("export")
    assert exported.index("^ab") < exported.index("^a\"")


def test_apply_without_yes_in_a_pipe_refuses(home, cli):
    code, out, err = cli("apply", "-f", str(EXAMPLE_FILES[0]))
    assert code == 1 and "--yes" in err
    assert "providers: []" in cli("export")[1]
