"""Stored responses' retention from gateway.yaml (`responses: {retention: 30d}`, the default): validated,
canonical (days where they divide), planned and exported like any setting, applied to the running
gateway's store on start and on reload, and a shortened retention expires older responses at once."""

from __future__ import annotations

import textwrap
import time

import httpx
import pytest

from mlxgw.server import ServerConfig
from mlxgw.store.responses import RETENTION
from tests.gateway_harness import apply_config, openai_config, running_gateway
from tests.upstream import upstream, upstream_server  # noqa: F401

KEY = {"authorization": "Bearer client-key"}


def with_retention(base_url: str, retention: str | None) -> str:
    text = openai_config(base_url)
    if retention is None:
        return text
    return text.replace("version: 1\n", f"version: 1\nresponses:\n  retention: {retention}\n")


def wait_until(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.05)


def test_retention_is_validated_canonical_planned_and_exported(home, cli, tmp_path, upstream):  # noqa: F811
    bad = tmp_path / "bad.yaml"
    bad.write_text(with_retention(upstream.base_url, "'30 days'"))
    code, out, err = cli("validate", "-f", str(bad))
    assert code != 0 and "responses.retention" in out + err
    apply_config(cli, tmp_path, with_retention(upstream.base_url, "48h"))
    code, out, err = cli("export")
    assert code == 0, err
    assert "responses:\n  retention: 2d\n" in out
    changed = tmp_path / "changed.yaml"
    changed.write_text(with_retention(upstream.base_url, "12h"))
    code, out, err = cli("diff", "-f", str(changed))
    assert "responses" in out and "2d" in out and "12h" in out, out + err
    same = tmp_path / "same.yaml"
    same.write_text(with_retention(upstream.base_url, "2d"))
    code, out, err = cli("diff", "-f", str(same))
    assert "responses" not in out, out


def test_the_gateway_applies_retention_on_start_and_reload(home, cli, tmp_path, upstream):  # noqa: F811
    apply_config(cli, tmp_path, with_retention(upstream.base_url, None))
    with running_gateway(ServerConfig(reload_interval=0.2)) as gw:
        store = gw.app.gateway.responses
        assert store.retention == RETENTION == 30 * 86400
        r = httpx.post(gw.base_url + "/responses", headers=KEY, json={"model": "gpt-4o", "input": "keep me"})
        rid = r.json()["id"]
        assert httpx.get(f"{gw.base_url}/responses/{rid}", headers=KEY).status_code == 200
        apply_config(cli, tmp_path, with_retention(upstream.base_url, "1s"))
        wait_until(lambda: store.retention == 1.0)
        # Shortened: the response made before is gone once it is a second old, without waiting for a prune.
        wait_until(lambda: httpx.get(f"{gw.base_url}/responses/{rid}", headers=KEY).status_code == 404)
        apply_config(cli, tmp_path, with_retention(upstream.base_url, None))
        wait_until(lambda: store.retention == RETENTION)
    apply_config(cli, tmp_path, with_retention(upstream.base_url, "7d"))
    with running_gateway(ServerConfig(reload_interval=0.2)) as gw:
        assert gw.app.gateway.responses.retention == 7 * 86400
