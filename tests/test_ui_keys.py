"""Provider keys from the browser (CONF-03): on /ui, a cloud provider without a stored key offers a form to
store one, one with a key offers to replace it. Driven in a real headless Chromium (tests/browser.py):
a sentinel key typed into the form must reach the running gateway's snapshot and never appear anywhere
but as its fingerprint: not in the page, the database file, or the logs. Requests from another origin,
another host name (DNS rebinding) or without an Origin are refused."""

from __future__ import annotations

import logging
import textwrap
import time

import httpx

from mlxgw.store.db import home as store_home
from mlxgw.fingerprints import fingerprint
from tests.browser import Chromium
from tests.conftest import SENTINEL_ANTHROPIC
from tests.gateway_harness import apply_config, running_gateway
from tests.test_ui import need_chromium

FORM_KEY = "sk-FORMSENTINEL-3c9e1a7f5d"
CONFIG = textwrap.dedent("""\
    version: 1
    providers:
      - name: openai
        kind: openai
      - name: anthropic
        kind: anthropic
        api_key: ${env:ANTHROPIC_API_KEY}
      - name: local
        kind: vllm-mlx
        models: [{name: tiny, path: /nowhere/tiny}]
    routes:
      - {match: {prefix: gpt-}, target: openai}
      - {match: {prefix: claude-}, target: anthropic}
""")


def stored_bytes() -> bytes:
    """Every byte of the SQLite store (database, WAL, shared memory)."""
    return b"".join(p.read_bytes() for p in store_home().glob("mlxgw.db*"))


def test_store_a_key_from_the_page(home, cli, tmp_path, caplog):
    need_chromium()
    for logger in ("mlxgw", "uvicorn"):  # the server's logs (not the test's own browser driver's)
        caplog.set_level(logging.DEBUG, logger=logger)
    apply_config(cli, tmp_path, CONFIG)
    with running_gateway() as gw, Chromium() as browser:
        gateway = gw.app.gateway
        assert gateway.runtime.snapshot.providers["openai"].api_key is None
        browser.open(gw.origin + "/ui")
        forms = browser.evaluate("""[...document.querySelectorAll('form.keyform')].map(f => [
            f.closest('article').id, f.querySelector('label').innerText, f.querySelector('button').innerText])""")
        assert forms == [["provider-openai", "Store a key of openai", "Store key"],
                         ["provider-anthropic", "Replace the stored key of anthropic", "Replace key"]]
        assert "mlxgw apply -f gateway.yaml" in browser.evaluate("document.getElementById('provider-local').textContent")

        browser.type_into("#key-openai", FORM_KEY)
        mark = len(browser.events)
        browser.evaluate("document.querySelector('#provider-openai form button').click()")
        browser.wait_event("Page.loadEventFired", mark)
        assert browser.evaluate("location.pathname + location.search") == "/ui?key_stored=openai", \
            browser.evaluate("document.body.innerText")
        notice = browser.evaluate("document.getElementById('key-stored').innerText")
        assert notice == f"Stored the key of openai; its fingerprint is now {fingerprint(FORM_KEY)}."
        card = browser.evaluate("document.getElementById('provider-openai').innerText")
        assert fingerprint(FORM_KEY) in card and "Replace the stored key" in card
        html = browser.evaluate("document.documentElement.outerHTML")
        assert browser.console_errors() == []

        # The running gateway uses it at once (the endpoint reloads before redirecting).
        assert gateway.runtime.snapshot.providers["openai"].api_key == FORM_KEY
        assert gateway.runtime.snapshot.providers["anthropic"].api_key == SENTINEL_ANTHROPIC
        page = httpx.get(gw.origin + "/ui").text

    assert fingerprint(FORM_KEY) in caplog.text  # the server's log line was captured, and names only this
    for text in (html, page, caplog.text):
        assert FORM_KEY not in text and FORM_KEY[6:] not in text
    assert FORM_KEY.encode() not in stored_bytes() and FORM_KEY[6:].encode() not in stored_bytes()
    code, stdout, _ = cli("providers", "list")
    assert fingerprint(FORM_KEY) in stdout and "set-key" in stdout


def post(gw, name: str, key: str = "sk-x", **headers) -> httpx.Response:
    base = {"Origin": gw.origin, "Content-Type": "application/x-www-form-urlencoded"}
    return httpx.post(f"{gw.origin}/admin/providers/{name}/key", content=f"key={key}",
                      headers={**base, **headers}, follow_redirects=False)


def test_the_endpoint_refuses_other_origins_and_bad_input(home, cli, tmp_path, caplog):
    for logger in ("mlxgw", "uvicorn"):
        caplog.set_level(logging.DEBUG, logger=logger)
    apply_config(cli, tmp_path, CONFIG)
    with running_gateway() as gw:
        host = gw.origin.split("//")[1]
        # The gateway-wide Origin and Host checks (issue 12) refuse these before the endpoint's own.
        for headers, code in (({"Origin": "http://evil.example"}, "origin_not_allowed"),
                              ({"Origin": "null"}, "origin_not_allowed"),
                              ({"Origin": "http://rebound.example:%d" % gw.port, "Host": "rebound.example:%d" % gw.port},
                               "host_not_allowed")):
            r = post(gw, "openai", "sk-EVIL-1234567", **headers)
            assert r.status_code == 403, r.text
            assert r.json()["error"]["code"] == code
        r = httpx.post(f"{gw.origin}/admin/providers/openai/key", content="key=sk-EVIL-1234567",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 403  # no Origin at all: not from the page
        assert gw.app.gateway.runtime.snapshot.providers["openai"].api_key is None

        assert post(gw, "ghost").status_code == 404 and post(gw, "ghost").json()["error"]["param"] == "name"
        r = post(gw, "local")
        assert r.status_code == 400 and "local engine" in r.json()["error"]["message"]
        for bad in ("", "%20%20", "a%20b", "x" * 5000):
            r = post(gw, "openai", bad)
            assert r.status_code == 400 and r.json()["error"]["param"] == "key", (bad, r.text)
        r = httpx.post(f"{gw.origin}/admin/providers/openai/key", json={"key": "sk-x"},
                       headers={"Origin": gw.origin})
        assert r.status_code == 415
        assert gw.app.gateway.runtime.snapshot.providers["openai"].api_key is None

        r = post(gw, "openai", "sk-GOOD-abcdef", Host=host)
        assert r.status_code == 303 and r.headers["location"] == "/ui?key_stored=openai#provider-openai"
        deadline = time.monotonic() + 5
        while gw.app.gateway.runtime.snapshot.providers["openai"].api_key != "sk-GOOD-abcdef":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert "sk-EVIL" not in caplog.text and "sk-GOOD" not in caplog.text


def test_static_page_has_no_form(home, cli, tmp_path):
    """`mlxgw ui build` writes a file nobody can post from: no form there."""
    apply_config(cli, tmp_path, CONFIG)
    out = tmp_path / "routes.html"
    assert cli("ui", "build", "-o", str(out))[0] == 0
    assert "<form" in out.read_text() and 'class="keyform"' not in out.read_text()
