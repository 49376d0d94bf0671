"""Issue 12, item 2, in a real Chromium: a page from another loopback origin (127.0.0.2) cannot make any
request reach an upstream or /admin (fetch no-cors, a text/plain form, a CORS fetch), the gateway's own
/ui page still works, a Host that is not the gateway's is refused, and `server.allow_origins` opens the
gateway to the origin it names (CORS preflight included)."""

from __future__ import annotations

import http.server
import json
import threading
import time

import httpx
import pytest

from mlxgw.server import ServerConfig
from tests.browser import Chromium, executable
from tests.gateway_harness import apply_config, openai_config, running_gateway
from tests.upstream import upstream, upstream_server  # noqa: F401

ATTACK = """<!DOCTYPE html><html><body>
<form id="f" method="POST" enctype="text/plain" target="sink" action="GW/v1/chat/completions">
<input name='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"pad":"' value='"}'></form>
<iframe name="sink"></iframe>
<script>
const body = JSON.stringify({model: "gpt-4o-mini", messages: [{role: "user", content: "from a foreign page"}]});
window.results = {};
async function attack() {
  const tries = {
    nocors_chat: () => fetch("GW/v1/chat/completions", {method: "POST", mode: "no-cors", body,
                                                        headers: {"content-type": "text/plain"}}),
    nocors_messages: () => fetch("GW/v1/messages", {method: "POST", mode: "no-cors", body}),
    nocors_admin: () => fetch("GW/admin/models/m1/start", {method: "POST", mode: "no-cors"}),
    cors_models: () => fetch("GW/v1/models").then(r => r.text()),
    cors_chat: () => fetch("GW/v1/chat/completions", {method: "POST", body,
                                                      headers: {"content-type": "application/json"}}).then(r => r.text()),
  };
  for (const [name, go] of Object.entries(tries)) {
    try { const r = await go(); window.results[name] = typeof r === "string" ? r : r.type; }
    catch (e) { window.results[name] = "blocked: " + e.name; }
  }
  document.getElementById("f").submit();
  return window.results;
}
</script></body></html>"""


def need_chromium():
    if executable() is None:
        pytest.fail("chromium is missing: .ci/run installs it with apt-get")


class AttackerSite:
    """A page served from http://127.0.0.2:PORT, another origin than the gateway's 127.0.0.1."""

    def __init__(self, gateway_origin: str):
        page = ATTACK.replace("GW", gateway_origin).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.send_header("content-length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Handler)
        self.origin = f"http://127.0.0.2:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def statuses(browser: Chromium, fragment: str) -> list[int]:
    """The HTTP statuses Chromium saw for requests whose URL holds `fragment` (no-cors ones included)."""
    ids = {ev["params"]["requestId"] for ev in browser.events if ev["method"] == "Network.requestWillBeSent"
           and fragment in ev["params"]["request"]["url"]}
    seen = {}  # a response CORS blocks has no responseReceived, only the raw ExtraInfo
    for ev in browser.events:
        if ev["params"].get("requestId") in ids:
            if ev["method"] == "Network.responseReceived":
                seen[ev["params"]["requestId"]] = ev["params"]["response"]["status"]
            elif ev["method"] == "Network.responseReceivedExtraInfo":
                seen.setdefault(ev["params"]["requestId"], ev["params"]["statusCode"])
    return sorted(seen.values())


def wait_statuses(browser: Chromium, fragment: str, n: int) -> list[int]:
    deadline = time.monotonic() + 10
    while len(got := statuses(browser, fragment)) < n:
        assert time.monotonic() < deadline, (fragment, got)
        browser.evaluate("1")  # pumps the protocol, collecting events
        time.sleep(0.05)
    return got


def test_a_foreign_page_reaches_neither_upstream_nor_admin(home, cli, tmp_path, upstream):  # noqa: F811
    need_chromium()
    apply_config(cli, tmp_path, openai_config(upstream.base_url))
    with running_gateway(ServerConfig()) as gw, Chromium() as browser:
        site = AttackerSite(gw.origin)
        try:
            browser.open(site.origin + "/")
            results = browser.evaluate("attack()")
            # The browser sent every request; the gateway refused each one before any work.
            assert wait_statuses(browser, "/v1/chat/completions", 3) == [403, 403, 403]  # no-cors, cors, form
            assert wait_statuses(browser, "/admin/models/m1/start", 1) == [403]
            assert wait_statuses(browser, "/v1/messages", 1) == [403]
            assert wait_statuses(browser, "/v1/models", 1) == [403]
            assert results["cors_models"].startswith("blocked") and results["cors_chat"].startswith("blocked")
            assert upstream.chat_requests() == []  # the provider key never left for a foreign page

            # The gateway's own page still works, its same-origin calls included.
            browser.open(gw.origin + "/ui")
            assert browser.evaluate("document.title")
            assert browser.evaluate("fetch('/ui/resolve?model=gpt-4o-mini').then(r => r.status)") == 200
            reply = browser.evaluate("fetch('/v1/chat/completions', {method: 'POST', headers: {'content-type': "
                                     "'application/json'}, body: JSON.stringify({model: 'gpt-4o-mini', messages: "
                                     "[{role: 'user', content: 'hi'}]})}).then(r => r.status)")
            assert reply == 200 and len(upstream.chat_requests()) == 1
        finally:
            site.close()


def test_host_not_of_the_gateway_is_refused(home, cli, tmp_path, upstream):  # noqa: F811
    apply_config(cli, tmp_path, openai_config(upstream.base_url))
    with running_gateway(ServerConfig()) as gw:
        for path in ("/ui", "/v1/models", "/admin/models", "/health"):
            r = httpx.get(gw.origin + path, headers={"host": "attacker.example"})
            assert r.status_code == 403 and "--allowed-host attacker.example" in r.json()["error"]["message"]
        r = httpx.post(gw.origin + "/v1/messages", headers={"host": "attacker.example:80"}, json={})
        assert r.status_code == 403 and r.json()["type"] == "error"  # in the client's dialect
        for host in ("localhost", f"localhost:{gw.port}", "127.0.0.1", "[::1]:8080", "10.1.2.3", "app.localhost"):
            assert httpx.get(gw.origin + "/v1/models", headers={"host": host}).status_code == 200, host
    with running_gateway(ServerConfig(allowed_hosts=("gw.example",))) as gw:
        assert httpx.get(gw.origin + "/v1/models", headers={"host": "gw.example"}).status_code == 200
        assert httpx.get(gw.origin + "/v1/models", headers={"host": "other.example"}).status_code == 403


def test_allowed_origin_gets_cors_and_others_do_not(home, cli, tmp_path, upstream):  # noqa: F811
    need_chromium()
    with running_gateway(ServerConfig()) as gw, Chromium() as browser:
        site = AttackerSite(gw.origin)
        try:
            # Allowed in gateway.yaml, picked up by the running gateway at its next reload.
            apply_config(cli, tmp_path, openai_config(upstream.base_url).replace(
                "providers:", f"server:\n  allow_origins: ['{site.origin}']\nproviders:", 1))
            deadline = time.monotonic() + 10
            while site.origin not in gw.app.gateway.access.origins:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            pre = httpx.options(gw.origin + "/v1/chat/completions", headers={
                "origin": site.origin, "access-control-request-method": "POST",
                "access-control-request-headers": "content-type"})
            assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == site.origin
            refused = httpx.options(gw.origin + "/v1/chat/completions", headers={
                "origin": "http://127.0.0.3:1", "access-control-request-method": "POST"})
            assert refused.status_code == 403 and "--allow-origin http://127.0.0.3:1" in refused.text
            browser.open(site.origin + "/")
            results = browser.evaluate("attack()")
            assert json.loads(results["cors_chat"])["object"] == "chat.completion"
            assert json.loads(results["cors_models"])["object"] == "list"
        finally:
            site.close()
