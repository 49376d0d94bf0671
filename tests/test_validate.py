"""validate: every problem at once, each as FILE:LINE:COL: path: message; JSON for scripts."""

from __future__ import annotations

import json

from tests.conftest import SENTINEL_OPENAI, run_process

BAD = """\
version: 2
providers:
  - name: Open_AI
    kind: openai
    api_key: {sentinel}
    timeouts: {{first_token: 20 sec}}
  - name: local
    kind: mlx-openai-server
    models:
      - {{name: m1}}
  - name: local
    kind: vllm-mlx
    models: [{{name: x, path: /x}}]
routes:
  - match: {{exact: a, prefix: b}}
    target: nope
  - name: r1
    match: {{regex: "([a-"}}
    target: local/zzz
    fallback: ["@r2"]
  - name: r2
    match: {{prefix: "x"}}
    target: local
    fallback: ["@r1", "@ghost"]
    extra: 1
"""


def test_all_problems_reported_with_positions(home, cli, tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(BAD.format(sentinel=SENTINEL_OPENAI))
    code, out, err = cli("validate", "-f", str(f))
    assert code == 1
    lines = out.strip().splitlines()
    expected = [
        f"{f}:1:10: version: must be 1",
        f"{f}:3:11: providers[0].name: 'Open_AI' is not valid",
        f"{f}:5:14: providers[0].api_key: must be a ${{env:NAME}} reference",
        f"{f}:6:29: providers[0].timeouts.first_token: '20 sec' is not valid",
        f"{f}:10:9: providers[1].models[0]: missing required field 'path'",
        f"{f}:11:11: providers[2].name: duplicate provider name 'local'",
        f"{f}:15:12: routes[0].match: give exactly one of exact, prefix or regex",
        f"{f}:16:13: routes[0].target: no provider named 'nope'",
        f"{f}:18:20: routes[1].match.regex: regex does not compile",
        f"{f}:19:13: routes[1].target: provider 'local' has no model 'zzz'",
        f"{f}:20:15: routes[1].fallback: fallback cycle: @r1 -> @r2 -> @r1",
        f"{f}:24:23: routes[2].fallback[1]: no route named 'ghost'",
        f"{f}:25:12: routes[2].extra: unknown field 'extra'",
    ]
    assert len(lines) == len(expected), out
    for line, want in zip(lines, expected):
        assert line.startswith(want), (line, want)
    # A key pasted into the file is never echoed back.
    assert SENTINEL_OPENAI not in out + err


def test_json_output(home, cli, tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("version: 1\nroutes:\n  - {match: {exact: a}, target: nope}\n")
    code, out, _ = cli("validate", "-f", str(f), "--json")
    assert code == 1
    data = json.loads(out)
    assert data["valid"] is False
    assert data["errors"] == [{"file": str(f), "line": 3, "column": 33, "path": "routes[0].target",
                               "message": "no provider named 'nope' (providers: none defined)"}]


def test_malformed_yaml(home, cli, tmp_path):
    f = tmp_path / "broken.yaml"
    f.write_text("version: 1\nproviders:\n  - name: a\n    kind: [openai\n")
    code, out, _ = cli("validate", "-f", str(f))
    assert code == 1
    assert out.startswith(f"{f}:5:1: (document): YAML syntax error")


def test_duplicate_keys_are_an_error(home, cli, tmp_path):
    f = tmp_path / "dup.yaml"
    f.write_text("version: 1\nversion: 1\n")
    code, out, _ = cli("validate", "-f", str(f))
    assert code == 1 and f"{f}:2:1: version: duplicate key 'version'" in out


def test_missing_file_and_not_a_mapping(home, cli, tmp_path):
    code, out, _ = cli("validate", "-f", str(tmp_path / "nope.yaml"))
    assert code == 1 and "file not found" in out
    f = tmp_path / "list.yaml"
    f.write_text("- 1\n- 2\n")
    code, out, _ = cli("validate", "-f", str(f))
    assert code == 1 and "must be a mapping" in out


def test_env_vars_required_unless_offline(home, cli, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    f = tmp_path / "g.yaml"
    f.write_text("version: 1\nproviders:\n  - {name: openai, kind: openai, api_key: '${env:OPENAI_API_KEY}'}\n")
    code, out, _ = cli("validate", "-f", str(f))
    assert code == 1
    assert "providers[0].api_key: environment variable OPENAI_API_KEY is not set; export it, or pass --offline" in out
    assert cli("validate", "-f", str(f), "--offline")[0] == 0


def test_local_and_cloud_fields_checked(home, cli, tmp_path):
    f = tmp_path / "g.yaml"
    f.write_text(
        "version: 1\nproviders:\n"
        "  - {name: l, kind: vllm-mlx, base_url: 'http://x', models: [{name: m, path: /m, aliases: [m]}]}\n"
        "  - {name: c, kind: openai-compatible, command: foo}\n"
    )
    code, out, _ = cli("validate", "-f", str(f))
    assert code == 1
    assert "providers[0].base_url: local engines get a port from the gateway" in out
    assert "providers[0].models[0].aliases[0]: 'm' is already a model name" in out
    assert "providers[1]: kind openai-compatible needs a base_url" in out
    assert "providers[1].command: 'command' applies only to local engines" in out


def test_validate_in_a_real_process_has_no_traceback(home, tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("version: 1\nproviders: 3\n")
    r = run_process("validate", "-f", str(f))
    assert r.returncode == 1
    assert "providers: must be an array, not a number" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr
