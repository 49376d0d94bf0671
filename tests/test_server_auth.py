"""Gateway keys (clients off this machine): stored hashed, checked on every API request when required,
revocable while the server runs; the client's own key never travels upstream."""

from __future__ import annotations

import json
import sqlite3

import httpx
import openai
import pytest

from mlxgw.server import ServerConfig
from mlxgw.server.config import is_loopback
from tests import conformance
from tests.conftest import SENTINEL_OPENAI
from tests.gateway_harness import apply_config, openai_config, running_gateway
from tests.supervisor_helpers import wait_until
from tests.upstream import upstream, upstream_server  # noqa: F401

MESSAGES = [{"role": "user", "content": "hi"}]


def create_token(cli, name: str) -> str:
    code, out, err = cli("tokens", "create", name, "--json")
    assert code == 0, out + err
    return json.loads(out)["token"]


@pytest.fixture
def gw(home, cli, tmp_path, upstream):  # noqa: F811
    apply_config(cli, tmp_path, openai_config(upstream.base_url))
    with running_gateway(ServerConfig(require_keys=True, reload_interval=0.2)) as g:
        yield g


def test_tokens_are_stored_hashed_and_listed_without_secrets(home, cli):
    token = create_token(cli, "laptop")
    assert token.startswith("mlxgw-") and len(token) > 40
    with sqlite3.connect(home / "mlxgw.db") as db:
        dump = "\n".join(db.iterdump())
    assert token not in dump
    code, out, _ = cli("tokens", "list")
    assert code == 0 and "laptop" in out and token not in out and token[:12] in out
    code, out, err = cli("tokens", "create", "laptop")
    assert code == 1 and "already exists" in err
    code, out, err = cli("tokens", "revoke", "nope")
    assert code == 1 and "no gateway key" in err
    code, out, err = cli("tokens", "create", "Bad Name")
    assert code == 1 and "invalid key name" in err


@pytest.mark.both_stores
def test_requests_need_a_valid_key(gw, cli, upstream):  # noqa: F811
    token = create_token(cli, "ci")
    url = gw.base_url + "/chat/completions"
    body = {"model": "gpt-4o", "messages": MESSAGES}
    # The server picks the new key up on its reload tick: from then on a request without one is refused.
    assert wait_until(lambda: httpx.post(url, json=body).status_code == 401, 15)
    for headers in ({}, {"authorization": "Bearer wrong"}, {"x-api-key": "wrong"}, {"authorization": token}):
        r = httpx.post(url, json=body, headers=headers)
        assert r.status_code == 401, headers
        conformance.validate("ErrorResponse", r.json())
        assert r.headers["x-request-id"]
    assert httpx.get(gw.base_url + "/models").status_code == 401
    assert httpx.get(gw.origin + "/health").status_code == 200  # liveness stays open
    assert httpx.post(url, json=body, headers={"x-api-key": token}).status_code == 200
    with openai.OpenAI(base_url=gw.base_url, api_key=token, max_retries=0) as c:
        assert c.chat.completions.create(**body).choices[0].message.content
    assert upstream.last.headers["authorization"] == f"Bearer {SENTINEL_OPENAI}"
    assert token not in json.dumps(upstream.last.headers)

    code, _, _ = cli("tokens", "revoke", "ci")
    assert code == 0
    assert wait_until(lambda: httpx.post(url, json=body, headers={"x-api-key": token}).status_code == 401, 15)


def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")
    assert ServerConfig(host="0.0.0.0").keys_required and not ServerConfig().keys_required
