"""Issue 12, items 5, 9, 10 and 12: hostile gateway.yaml files get clear errors fast; `logs tail` escapes
what clients wrote; `validate` refuses provider settings that inject headers or leak credentials; CLI
names stay one URL segment; a closed pipe ends the CLI quietly."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.test_audit import row
from tests.test_cli_logs import write
from tests.test_cli_models import gateway  # noqa: F401


def validate(cli, tmp_path, text: str):
    f = tmp_path / "g.yaml"
    f.write_text(text)
    code, out, err = cli("validate", "-f", str(f), "--offline")
    return code, out + err, f


def test_a_yaml_alias_bomb_is_refused(cli, tmp_path):
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    code, text, f = validate(cli, tmp_path, "\n".join(lines) + "\n")  # 9**9 values once expanded
    assert code == 1 and "expands to more than 200,000 values (YAML aliases?)" in text and f"{f}:" in text
    assert "internal error" not in text


def test_deep_nesting_and_size_get_clear_errors(cli, tmp_path):
    for doc in ("[" * 5000 + "]" * 5000, "version: 1\nproviders: " + "[" * 80 + "]" * 80 + "\n"):
        code, text, _ = validate(cli, tmp_path, doc)
        assert code == 1 and "nests deeper than 64 levels" in text and "RecursionError" not in text
    code, text, _ = validate(cli, tmp_path, "# " + "x" * (4 * 1024 * 1024) + "\nversion: 1\n")
    assert code == 1 and "larger than 4 MiB" in text


def test_dangerous_provider_settings_are_refused(cli, tmp_path):
    code, text, f = validate(cli, tmp_path, """version: 1
providers:
  - name: a
    kind: openai-compatible
    base_url: "http://user:hunter2@h.example:1/v1?x=1"
    organization: "org\\r\\nX-Evil: 1"
    project: "p\\n"
    headers:
      Transfer-Encoding: chunked
      Host: other.example
      X-Ok: "fine\\nInjected: yes"
  - name: b
    kind: openai-compatible
    base_url: "http://h.example/v1#frag"
    headers: {Content-Length: "5", Connection: close}
routes:
  - {match: {prefix: a}, target: a}
""")
    assert code == 1
    for where in ("providers[0].organization", "providers[0].project", "providers[0].headers.X-Ok"):
        assert f"{where}: " in text and "line break" in text
    for name in ("Transfer-Encoding", "Host", "Content-Length", "Connection"):
        assert f"headers.{name}: the gateway sets '{name}' itself" in text
    assert "providers[0].base_url: base_url must not have a query" in text
    assert "providers[1].base_url: base_url must not have a query (?...) or fragment" in text
    assert "base_url must not hold credentials" in text and "api_key or headers" in text
    assert f"{f}:5:" in text


def test_logs_tail_escapes_control_characters(home, cli):
    write(row(1, requested_model="x\n2026-01-01 00:00:00 req_forged 200 gpt-4o", error="\x1b]0;pwned\x07\x1b[2J"),
          row(2, client_api="unknown", path="/v1/responses\r", status=404, requested_model=None))
    code, out, _ = cli("logs", "tail")
    assert code == 0
    assert len(out.strip().splitlines()) == 2  # no forged row
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out
    assert "x\\n2026-01-01" in out and "\\x1b]0;pwned\\x07" in out and "path=/v1/responses\\r" in out


def test_logs_tail_into_a_closed_pipe_exits_quietly(home):
    write(*(row(i) for i in range(3000)))
    proc = subprocess.run(f"{sys.executable} -m mlxgw logs tail -n 3000 --json | head -n 1", shell=True,
                          capture_output=True, text=True, env=dict(os.environ), timeout=60,
                          executable="/bin/bash")
    assert proc.stdout.count("\n") == 1
    assert "BrokenPipe" not in proc.stderr and "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    status = subprocess.run(f"set -o pipefail; {sys.executable} -m mlxgw logs tail -n 3000 --json | head -n 1 "
                            ">/dev/null", shell=True, env=dict(os.environ), timeout=60, executable="/bin/bash")
    assert status.returncode == 0


def test_model_names_stay_one_path_segment(cli, gateway):  # noqa: F811
    for name in ("../../v1/models#", "..", "a/b?x=1"):
        code, out, err = cli("models", "logs", name, "--url", gateway.origin)
        assert code == 1 and '"object":"list"' not in out.replace(" ", "") and "model" in err.lower(), (name, out, err)


def test_engine_logs_are_private(cli, gateway, home):  # noqa: F811
    code, _, err = cli("models", "start", "m", "--url", gateway.origin)
    assert code == 0, err
    logs = [p for p in home.rglob("*.log")]
    assert logs and all(p.stat().st_mode & 0o777 == 0o600 for p in logs)
    assert all(p.parent.stat().st_mode & 0o777 == 0o700 for p in logs)
    code, _, _ = cli("models", "stop", "m", "--url", gateway.origin)
    assert code == 0
