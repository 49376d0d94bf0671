"""Issue 12, item 4: admin-scoped gateway keys, `--require-keys` for a loopback bind behind a proxy, and
proxy headers trusted only from the proxies named with `--forwarded-allow-ips`; item 11: the store's
files are private and a lost master key is refused."""

from __future__ import annotations

import json
import signal
import sqlite3
import stat
import time

import httpx

from mlxgw.server import ServerConfig
from tests.gateway_harness import apply_config, openai_config, running_gateway
from tests.test_cli_serve import free_port, start
from tests.upstream import upstream, upstream_server  # noqa: F401

BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}


def token(cli, name: str, *extra: str) -> str:
    code, out, err = cli("tokens", "create", name, "--json", *extra)
    assert code == 0, out + err
    return json.loads(out)["token"]


def test_admin_api_needs_an_admin_key_when_keys_are_required(home, cli, tmp_path, upstream):  # noqa: F811
    apply_config(cli, tmp_path, openai_config(upstream.base_url))
    client, admin = token(cli, "laptop"), token(cli, "ops", "--admin")
    code, out, _ = cli("tokens", "list")
    assert code == 0 and {line.split()[0]: line.split()[2] for line in out.splitlines()} == \
        {"laptop": "client", "ops": "admin"}
    code, out, _ = cli("tokens", "list", "--json")
    assert {json.loads(line)["name"]: json.loads(line)["scope"] for line in out.splitlines()} == \
        {"laptop": "client", "ops": "admin"}
    with running_gateway(ServerConfig(require_keys=True)) as gw:
        r = httpx.get(gw.origin + "/admin/cooldowns", headers={"authorization": f"Bearer {client}"})
        assert r.status_code == 403 and "--admin" in r.json()["error"]["message"]
        r = httpx.post(gw.origin + "/admin/models/m1/start", headers={"x-api-key": client})
        assert r.status_code == 403
        assert httpx.get(gw.origin + "/admin/cooldowns", headers={"x-api-key": admin}).status_code == 200
        # A client key still reaches the inference API, an admin key too.
        for key in (client, admin):
            assert httpx.post(gw.base_url + "/chat/completions", json=BODY, headers={"x-api-key": key}).status_code == 200
    # Loopback without keys is unchanged: the admin API answers local clients.
    with running_gateway(ServerConfig()) as gw:
        assert httpx.get(gw.origin + "/admin/cooldowns").status_code == 200


def test_require_keys_on_loopback_and_proxy_headers_only_when_configured(home, cli, tmp_path, upstream):  # noqa: F811
    apply_config(cli, tmp_path, openai_config(upstream.base_url))
    code, _, err = cli("serve", "--require-keys", "--port", str(free_port()))
    assert code == 1 and "--require-keys" in err and "mlxgw tokens create" in err
    key = token(cli, "proxy")
    proc, port, _ = start("--require-keys")
    try:
        origin = f"http://127.0.0.1:{port}"
        assert httpx.post(origin + "/v1/chat/completions", json=BODY).status_code == 401
        assert httpx.get(origin + "/ui").status_code == 401
        assert httpx.post(origin + "/v1/chat/completions", json=BODY, headers={"x-api-key": key}).status_code == 200
        assert httpx.get(origin + "/health").status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
    # Without --forwarded-allow-ips a forged X-Forwarded-For changes nothing: the client is 127.0.0.1.
    # With it, the proxy's header is believed, and a remote client needs an admin key for /admin.
    for args, status in (((), 200), (("--forwarded-allow-ips", "127.0.0.1"), 403)):
        proc, port, _ = start(*args)
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/admin/cooldowns", headers={"x-forwarded-for": "203.0.113.9"})
            assert r.status_code == status, args
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=15)


def test_store_files_are_private(home, cli, tmp_path, upstream):  # noqa: F811
    apply_config(cli, tmp_path, openai_config(upstream.base_url))
    with running_gateway(ServerConfig()) as gw:
        assert httpx.post(gw.base_url + "/chat/completions", json=BODY).status_code == 200
        deadline = time.monotonic() + 5
        while not (home / "mlxgw.db-wal").exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        for name in ("mlxgw.db", "mlxgw.db-wal", "mlxgw.db-shm"):
            assert stat.S_IMODE((home / name).stat().st_mode) == 0o600, name


def test_a_lost_master_key_is_refused_when_secrets_exist(home, cli, tmp_path, upstream, monkeypatch):  # noqa: F811
    monkeypatch.delenv("MLXGW_MASTER_KEY", raising=False)
    apply_config(cli, tmp_path, openai_config(upstream.base_url))
    assert stat.S_IMODE((home / "master.key").stat().st_mode) == 0o600
    with sqlite3.connect(home / "mlxgw.db") as db:
        assert db.execute("select count(*) from secrets").fetchone()[0] == 1
    (home / "master.key").unlink()
    code, out, err = cli("providers", "set-key", "up", input="sk-new\n")
    assert code == 1 and "master.key" in err and "MLXGW_MASTER_KEY" in err
    assert not (home / "master.key").exists()  # no second key was made
    code, out, err = cli("apply", "-f", str(tmp_path / "gateway.yaml"))
    assert code == 1 and "master.key" in err
    assert not (home / "master.key").exists()
