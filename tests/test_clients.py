"""`mlxgw clients CLIENT`: the settings each client gets, read back with that client's own config format
(tomllib for Codex, json for opencode and Claude Code, YAML for llm, a POSIX shell for env lines), and
checked against the applied config; and the real Claude Code (tests/clients/install.py) answering
through the gateway with exactly the environment `mlxgw clients claude-code` printed.
and the real Codex CLI (pinned, same installer) answering with only what `mlxgw clients codex --write` wrote."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import textwrap
import tomllib

import pytest
import yaml

from mlxgw.routing.snapshot import Snapshot
from mlxgw.store.db import Store
from mlxgw.store.state import read_config
from tests.anthropic_upstream import AReply, anthropic_upstream, anthropic_upstream_server  # noqa: F401
from tests.clients import install as clients_install
from tests.engines import tiny_model
from tests.gateway_harness import apply_config, running_gateway, wait_for_rows
from tests.upstream import Reply, upstream, upstream_server  # noqa: F401

URL = "http://127.0.0.1:8123"


def config(tiny: str, anthropic_url: str | None = None) -> str:
    anthropic = (f"  - name: anthropic\n    kind: anthropic\n    base_url: '{anthropic_url}'\n"
                 "    api_key: ${env:ANTHROPIC_API_KEY}\n") if anthropic_url else ""
    claude = "  - match: {prefix: claude-}\n    target: anthropic\n" if anthropic_url else ""
    return textwrap.dedent(f"""\
        version: 1
        providers:
          - name: local
            kind: vllm-mlx
            models:
              - {{name: tiny, path: '{tiny}'}}
              - {{name: tiny-long, path: '{tiny}', context_length: 1024}}
          - name: openai
            kind: openai
            api_key: ${{env:OPENAI_API_KEY}}
        """) + anthropic + textwrap.dedent("""\
        routes:
          - match: {exact: tiny}
            target: local/tiny
          - match: {exact: tiny-long}
            target: local/tiny-long
          - {name: default, match: {exact: default}, target: local/tiny}
          - match: {prefix: gpt-}
            target: openai
        """) + claude


@pytest.fixture
def applied(home, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.delenv("CODEX_HOME", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("LLM_USER_PATH", raising=False)
    apply_config(cli, tmp_path, config(str(tiny_model.ensure())))
    with Store().session() as s:
        return Snapshot(read_config(s))


def env_lines(stdout: str) -> dict:
    """The `export NAME=VALUE` lines, as a POSIX shell would read them."""
    out = {}
    for line in stdout.splitlines():
        if line.startswith("export "):
            name, _, value = line[7:].partition("=")
            (out[name],) = shlex.split(value)
    return out


def test_codex_config_parses_and_carries_the_context_windows(applied, cli, tmp_path):
    user = tmp_path / "user"
    code, stdout, stderr = cli("clients", "codex", "--url", URL)
    assert code == 0, stdout + stderr
    printed = stdout.split("config.toml\n", 1)[1].split("# model names", 1)[0]
    doc = tomllib.loads(printed)
    assert doc["model"] == "default" and doc["model_provider"] == "mlxgw"
    assert doc["model_providers"]["mlxgw"] == {"name": "mlxgw gateway", "base_url": URL + "/v1",
                                               "wire_api": "responses"}
    assert doc["model_context_window"] == 2048  # the tiny model's config.json max_position_embeddings
    assert set(doc["profiles"]) == {f"mlxgw-{n}" for n, _ in applied.models()}
    assert doc["profiles"]["mlxgw-tiny-long"] == {"model": "tiny-long", "model_provider": "mlxgw",
                                                  "web_search": "disabled"}  # a local model: no web_search tool
    assert doc["web_search"] == "disabled"
    assert "-c model_context_window=1024" in printed  # tiny-long's own context_length
    assert "warning" not in stderr

    # Off loopback Codex must present a gateway key: from $MLXGW_KEY, which the env lines set.
    code, stdout, stderr = cli("clients", "codex", "--url", "http://10.0.0.5:8080", "--key", "mlxgw-abc")
    assert env_lines(stdout) == {"MLXGW_KEY": "mlxgw-abc"}
    remote = tomllib.loads(stdout.split("config.toml\n", 1)[1].split("# model names", 1)[0])
    assert remote["model_providers"]["mlxgw"]["env_key"] == "MLXGW_KEY"

    # --write: into an existing config.toml, keeping the user's settings; a second run changes nothing.
    (user / ".codex").mkdir(parents=True)
    (user / ".codex" / "config.toml").write_text('model = "gpt-5"\napproval_policy = "never"\n'
                                                 '[mcp_servers.x]\ncommand = "x"\n')
    code, stdout, stderr = cli("clients", "codex", "--url", URL, "--write")
    assert code == 0, stdout + stderr
    assert "+model_provider" in stdout  # the change is shown
    written = tomllib.loads((user / ".codex" / "config.toml").read_text())
    assert written["approval_policy"] == "never" and written["mcp_servers"]["x"]["command"] == "x"
    assert written["model_providers"]["mlxgw"]["wire_api"] == "responses"
    code, stdout, stderr = cli("clients", "codex", "--url", URL, "--write", "--model", "tiny-long")
    written = tomllib.loads((user / ".codex" / "config.toml").read_text())
    assert written["model"] == "tiny-long" and written["model_context_window"] == 1024
    assert f"{user}/.codex/config.toml already holds" in cli("clients", "codex", "--url", URL, "--write",
                                                              "--model", "tiny-long")[1]


def test_opencode_provider_block(applied, cli, tmp_path):
    code, stdout, stderr = cli("clients", "opencode", "--url", URL, "--write")
    assert code == 0, stdout + stderr
    doc = json.loads((tmp_path / "user/.config/opencode/opencode.json").read_text())
    provider = doc["provider"]["mlxgw"]
    assert provider["npm"] == "@ai-sdk/openai-compatible" and provider["options"]["baseURL"] == URL + "/v1"
    assert set(provider["models"]) == {n for n, _ in applied.models()}
    assert provider["models"]["tiny-long"]["limit"]["context"] == 1024
    assert doc["model"] == "mlxgw/default"
    for name in provider["models"]:
        assert applied.route(name) is not None


def test_claude_code_names_are_checked_against_the_routes(applied, cli, tmp_path, monkeypatch):
    # No claude-* route here: Claude Code is pointed at the gateway's default model, which is routed.
    code, stdout, stderr = cli("clients", "claude-code", "--url", URL)
    assert code == 0, stdout + stderr
    env = env_lines(stdout)
    assert env["ANTHROPIC_BASE_URL"] == URL and env["ANTHROPIC_AUTH_TOKEN"]
    assert env["ANTHROPIC_MODEL"] == env["ANTHROPIC_DEFAULT_HAIKU_MODEL"] == "default"
    assert "route default: local/tiny" in stdout and "warning" not in stderr
    # A name no route matches is flagged.
    code, stdout, stderr = cli("clients", "claude-code", "--url", URL, "--model", "claude-sonnet-4-5")
    assert code == 0 and "no route matches 'claude-sonnet-4-5'" in stderr
    # Claude Code rewrites claude-opus-4-1-* to claude-opus-4-8: that is the name that needs a route.
    code, stdout, stderr = cli("clients", "claude-code", "--url", URL, "--model", "claude-opus-4-1-20250805")
    assert "no route matches 'claude-opus-4-8'" in stderr and "legacy model remap" in stderr
    monkeypatch.setenv("CLAUDE_CODE_DISABLE_LEGACY_MODEL_REMAP", "1")
    code, stdout, stderr = cli("clients", "claude-code", "--url", URL, "--model", "claude-opus-4-1-20250805")
    assert "no route matches 'claude-opus-4-1-20250805'" in stderr
    # --write merges into settings.json, keeping what else is there.
    settings = tmp_path / "user/.claude/settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps({"theme": "dark", "env": {"FOO": "1"}}))
    code, stdout, stderr = cli("clients", "claude-code", "--url", URL, "--write")
    assert code == 0, stdout + stderr
    doc = json.loads(settings.read_text())
    assert doc["theme"] == "dark" and doc["env"]["FOO"] == "1" and doc["env"]["ANTHROPIC_BASE_URL"] == URL


@pytest.mark.parametrize("client,base_var,key_var", [("openai", "OPENAI_BASE_URL", "OPENAI_API_KEY"),
                                                     ("aider", "OPENAI_API_BASE", "OPENAI_API_KEY"),
                                                     ("anthropic", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY")])
def test_env_clients(applied, cli, client, base_var, key_var):
    code, stdout, stderr = cli("clients", client, "--url", URL + "/")
    assert code == 0, stdout + stderr
    env = env_lines(stdout)
    assert env[base_var] == (URL if client == "anthropic" else URL + "/v1")
    assert env[key_var] == "mlxgw-local"
    assert "route default" in stdout
    code, stdout, stderr = cli("clients", client, "--write")
    assert code == 1 and "environment variables only" in stderr
    code, stdout, stderr = cli("clients", client, "--url", "http://10.0.0.5:8080", "--key", "mlxgw-abc")
    assert env_lines(stdout)[key_var] == "mlxgw-abc"


def test_llm_models_file_keeps_other_entries(applied, cli, tmp_path):
    path = tmp_path / "user/.config/io.datasette.llm/extra-openai-models.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump([{"model_id": "mine", "model_name": "x", "api_base": "http://x"}]))
    code, stdout, stderr = cli("clients", "llm", "--url", URL, "--write")
    assert code == 0, stdout + stderr
    entries = yaml.safe_load(path.read_text())
    assert entries[0]["model_id"] == "mine"
    assert {e["model_name"] for e in entries[1:]} == {n for n, _ in applied.models()}
    assert all(e["api_base"] == URL + "/v1" for e in entries[1:])


def test_unknown_client_and_empty_config(home, cli):
    code, stdout, stderr = cli("clients", "cursor")
    assert code == 1 and "unknown client" in stderr
    code, stdout, stderr = cli("clients", "openai")
    assert code == 0 and "no model to point this client at" in stderr


def test_claude_code_answers_through_the_gateway(home, cli, tmp_path, monkeypatch, anthropic_upstream):  # noqa: F811
    if not clients_install.claude_installed():
        msg = "Claude Code is not installed for the tests: run `python3 tests/clients/install.py`"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(msg)
        pytest.skip(msg)
    claude = str(clients_install.claude_executable())  # under the real HOME, before it changes
    user = tmp_path / "user"
    user.mkdir()
    monkeypatch.setenv("HOME", str(user))
    apply_config(cli, tmp_path, config(str(tiny_model.ensure()), anthropic_upstream.base_url))
    anthropic_upstream.default = AReply(text="Hello from the emulated cloud.")
    with running_gateway() as gw:
        code, stdout, stderr = cli("clients", "claude-code", "--url", gw.origin)
        assert code == 0 and "warning" not in stderr, stdout + stderr
        env = env_lines(stdout)
        assert "ANTHROPIC_MODEL" not in env  # claude-* is routed: Claude Code keeps its own names
        run_env = {"PATH": os.environ["PATH"], "HOME": str(user), "DISABLE_AUTOUPDATER": "1",
                   "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", **env}
        result = subprocess.run([claude, "-p", "Say hello."], env=run_env,
                                cwd=tmp_path, capture_output=True, text=True, timeout=240)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Hello from the emulated cloud." in result.stdout
        rows = wait_for_rows(gw, 1)
    sent = {r.body.get("model") for r in anthropic_upstream.requests if r.path.startswith("/v1/messages")}
    assert sent and all(m.startswith("claude-") for m in sent)
    assert all(r["route"] == "prefix:claude-" for r in rows if r["requested_model"])
    assert any(r["status"] == 200 for r in rows)
    assert os.environ.get("ANTHROPIC_API_KEY") not in result.stdout + result.stderr


def test_codex_answers_through_the_gateway(home, cli, tmp_path, monkeypatch, upstream):  # noqa: F811
    """`codex exec` with nothing but what `mlxgw clients codex --write` wrote: Codex's Responses request is
    translated onto a chat-completions backend (tests/upstream.py, the OpenAI-wire emulator)."""
    if not clients_install.is_installed():
        msg = "Codex is not installed for the tests: run `python3 tests/clients/install.py`"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(msg)
        pytest.skip(msg)
    codex = str(clients_install.codex_path())  # under the real HOME, before it changes
    user = tmp_path / "user"
    (user / "codex").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(user))
    monkeypatch.setenv("CODEX_HOME", str(user / "codex"))
    apply_config(cli, tmp_path, textwrap.dedent(f"""\
        version: 1
        providers:
          - name: up
            kind: openai-compatible
            base_url: '{upstream.base_url}'
            api_key: ${{env:OPENAI_API_KEY}}
        routes:
          - match: {{exact: helper}}
            target: up
        """))
    upstream.default = Reply(text="Hello from the emulated chat upstream.")
    with running_gateway() as gw:
        code, stdout, stderr = cli("clients", "codex", "--url", gw.origin, "--model", "helper", "--write")
        assert code == 0 and "warning" not in stderr, stdout + stderr
        result = subprocess.run([codex, "exec", "--skip-git-repo-check", "Say hello."], cwd=tmp_path,
                                env={"PATH": os.environ["PATH"], "HOME": str(user), "CODEX_HOME": str(user / "codex")},
                                capture_output=True, text=True, timeout=240)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Hello from the emulated chat upstream." in result.stdout
        rows = wait_for_rows(gw, 1)
    assert [q.model for q in upstream.chat_requests()] and all(q.model == "helper" for q in upstream.chat_requests())
    assert any(r["client_api"] == "responses" and r["status"] == 200 and r["route"] == "exact:helper" for r in rows)
