"""The route view: `mlxgw ui build` and `GET /ui`, rendered in a real headless Chromium (tests/browser.py).

The page's resolver must answer exactly as the server's `Snapshot.route`: every test that types names
compares the page with the server, on the examples' store (which holds a prefix tie, a shadowed exact
name and regexes whose declared order matters) and on a store of regexes where Python and JavaScript
differ unless translated.
"""

from __future__ import annotations

import json
import textwrap
import time
import types
from pathlib import Path

import httpx
import pytest

from mlxgw.routing import Breakers
from mlxgw.routing.snapshot import Snapshot
from mlxgw.store.db import Store
from mlxgw.store.state import current_revision, read_config
from mlxgw.ui import data, jsregex, render
from tests.browser import Chromium, executable
from tests.ci import missing
from tests.conftest import EXAMPLES, ROOT, SENTINEL_ANTHROPIC, SENTINEL_OPENAI
from tests.gateway_harness import apply_config, running_gateway

ARTIFACTS = ROOT / "test-artifacts"
SENTINELS = (SENTINEL_OPENAI, SENTINEL_ANTHROPIC)

TRICKY = textwrap.dedent(r"""
    version: 1
    providers:
      - name: openai
        kind: openai
        api_key: ${env:OPENAI_API_KEY}
      - name: anthropic
        kind: anthropic
        api_key: ${env:ANTHROPIC_API_KEY}
      - name: local
        kind: mlx-openai-server
        models:
          - name: qwen-small
            path: "/models/<b>qwen</b>&amp;\"x\"<script>window.__pwned=1</script>"
            aliases: [default]
    routes:
      - {match: {prefix: "gpt-"}, target: openai}
      - {name: gpt4o, match: {prefix: "gpt-4o"}, target: anthropic, fallback: [openai]}
      - {match: {exact: "gpt-4o"}, target: local/qwen-small, fallback: ["@gpt4o"]}
      - {match: {exact: "default"}, target: local}
      - {match: {regex: "mini$"}, target: anthropic}
      - {match: {regex: "^o\\d"}, target: openai}
      - {match: {regex: "(?i)^CLAUDE"}, target: anthropic}
      - {match: {regex: "^\\w+!$"}, target: local/qwen-small}
      - {match: {regex: "(?a)\\bbeta\\b"}, target: openai}
      - {match: {regex: "^x{,2}y$"}, target: openai}
      - {match: {regex: "^a.b$"}, target: anthropic}
      - {match: {regex: "^sp\\sce$"}, target: anthropic}
      - {match: {regex: "^[]a]z$"}, target: openai}
      - {match: {regex: "^(?P<w>ab){2}$"}, target: openai}
      - {match: {regex: "^\\d+b\\Z"}, target: local}
      - {match: {regex: "(?m)^tail$"}, target: local}
      - {match: {regex: "(?s)^dot.all$"}, target: local}
      - {match: {exact: "<img src=x onerror=window.__pwned=2>"}, target: openai}
      - {match: {regex: "</script><script>window.__pwned=3</script>"}, target: openai}
""")

TRICKY_NAMES = [
    "gpt-4o",  # exact beats the prefixes
    "gpt-4o-mini",  # the longest prefix beats the shorter one and the regex "mini$"
    "gpt-3.5-turbo", "gpt-", "gpt", "GPT-4o",
    "default",  # an alias name as an exact route: backend model is the alias's model
    "o3-mini",  # two regexes match: the one declared first wins
    "o1", "my-mini", "mini\n",  # Python's $ also matches before a final newline
    "CLAUDE-3", "claude-3", "Claude",
    "héllo!", "hello!", "hé llo!", "٣٤!",  # \w is Unicode in Python
    "x-beta-2", "betamax", "ébeta", "xxy", "y", "xxxy", "x{,2}y",
    "a\rb", "a\nb", "a\u2028b", "aXb",  # . stops only at \n in Python
    "sp\x1cce", "sp ce", "sp\u00a0ce", "sp\ufeffce",  # \s differs between the engines
    "]z", "az", "abab", "abac",
    "123b", "١٢٣b", "123b\n",  # \d is Unicode; \Z is the very end
    "head\ntail", "tail\n", "tail\r", "dot\nall",
    "<img src=x onerror=window.__pwned=2>", "</script><script>window.__pwned=3</script>",
    "🙂-mini", "", "nothing-matches", "__proto__", "constructor", "toString",
]

EXAMPLE_NAMES = [
    "qwen-small",  # two exact routes for one name (two example files): the first declared wins
    "llama3.2-3b", "fast", "gpt-4o", "gpt-4o-mini",  # "gpt-" declared twice: the first one wins the tie
    "gpt-", "claude-sonnet-4-5", "claude-", "qwen3-4b", "qwen3", "qwen2", "o1", "o3-mini", "o4", "o5",
    "default", "anything-else", "",
]


def need_chromium():
    if executable() is None:
        missing("chromium", "apt-get install -y chromium")


@pytest.fixture(scope="module")
def browser():
    need_chromium()
    with Chromium() as b:
        yield b


def server_answer(snap: Snapshot, name: str) -> dict:
    rt = snap.route(name)
    if rt is None:
        return {"route": None, "targets": []}
    return {"route": rt.key, "targets": [f"{t.provider}/{snap.backend_model(t, name)}" for t in rt.targets]}


def page_answers(browser: Chromium, names: list[str]) -> list[dict]:
    return browser.evaluate(f"{json.dumps(names)}.map(n => mlxgwResolve(n))")


def snapshot_of(store: Store) -> Snapshot:
    with store.session() as s:
        config = read_config(s)
    return Snapshot(config, {}, current_revision(store))


def build_page(cli, tmp_path: Path, name: str = "routes.html") -> tuple[Path, str]:
    out = tmp_path / name
    code, stdout, stderr = cli("ui", "build", "-o", str(out))
    assert code == 0, stdout + stderr
    assert "wrote" in stdout
    return out, out.read_text()


def add_audit_rows(store: Store, rows: list[dict]) -> None:
    from sqlalchemy import insert

    from mlxgw.store.tables import RequestLog

    base = {"client_api": "openai", "backend_api": "openai", "requested_model": "m", "provider": "openai",
            "backend_model": "m", "stream": False, "ttfb_ms": None, "input_tokens": None, "output_tokens": None,
            "cached_tokens": None, "error": None, "attempts": 1, "status": 200}
    with store.session(write=True) as s:
        s.execute(insert(RequestLog), [{**base, "id": f"req_{i}", **r} for i, r in enumerate(rows)])


def assert_no_secret(text: str) -> None:
    for sentinel in SENTINELS:
        assert sentinel not in text
        assert sentinel[6:] not in text  # not even a part of it


# --- the static page -------------------------------------------------------------------------------------

def test_examples_page_in_browser(home, cli, tmp_path, browser):
    for f in sorted(EXAMPLES.glob("*.yaml")):
        code, out, err = cli("apply", "-f", str(f), "--yes")
        assert code == 0, out + err
    store = Store()
    now = time.time()
    add_audit_rows(store, [
        {"ts": now - 60, "route": "gpt", "duration_ms": 100.0},
        {"ts": now - 120, "route": "gpt", "duration_ms": 300.0, "attempts": 2, "failovers": 1},
        {"ts": now - 180, "route": "gpt", "duration_ms": 200.0, "status": 502, "error": "upstream"},
        {"ts": now - 5 * 3600, "route": "gpt", "duration_ms": 900.0},
        {"ts": now - 3 * 86400, "route": "gpt", "duration_ms": 5.0},  # older than a day: not counted
        {"ts": now - 30, "route": "fast", "duration_ms": 40.0, "attempts": 3, "failovers": 2},
    ])
    path, html = build_page(cli, tmp_path)
    assert_no_secret(html)
    snap = snapshot_of(store)
    expected_order = [rt.key for rt in data.precedence(snap)]

    browser.emulate_dark(False)
    mark = len(browser.events)
    browser.open(path.as_uri())
    assert browser.evaluate("document.documentElement.classList.contains('js')")
    assert_no_secret(browser.evaluate("document.documentElement.outerHTML"))

    # The diagram: every route in the server's order, each with its chain of boxes and arrows.
    routes = browser.evaluate("""[...document.querySelectorAll('li.route')].map(li => ({
        key: li.dataset.route, match: li.dataset.match,
        boxes: [...li.querySelectorAll('.chain .box')].map(b => b.dataset.provider + '/' + b.dataset.model),
        fallbacks: li.querySelectorAll('.chain .box.fallback').length,
        arrows: li.querySelectorAll('.chain .arrow svg').length,
        text: li.innerText}))""")
    assert [r["key"] for r in routes] == expected_order
    by_key = {rt.key: rt for rt in snap.routes}
    for r in routes:
        targets = by_key[r["key"]].targets
        assert r["boxes"] == [f"{t.provider}/{t.model or ''}" for t in targets]
        assert r["fallbacks"] == r["arrows"] == len(targets) - 1
    fast = next(r for r in routes if r["key"] == "fast")
    assert fast["boxes"] == ["anthropic/claude-haiku-4-5", "openai/", "lan-box/"]  # "@gpt" expanded
    shadowed = next(r for r in routes if r["key"] == "exact:qwen-small")  # local-only's, after quickstart's
    assert "never matches" in shadowed["text"] and routes[-1] is shadowed

    # The resolver agrees with the server on every name.
    answers = page_answers(browser, EXAMPLE_NAMES)
    for name, got in zip(EXAMPLE_NAMES, answers):
        want = server_answer(snap, name)
        assert (got["route"], got["targets"]) == (want["route"], want["targets"]), name
        assert got["exact"] and got["undecided"] is None
    assert server_answer(snap, "gpt-4o")["route"] == "prefix:gpt-"  # the tie went to the first declared
    assert server_answer(snap, "anything-else")["route"] == "everything"

    # Typing into the box, as a person would.
    browser.type_into("#resolver-input", "fast")
    answer = browser.evaluate("document.getElementById('resolver-answer').innerText")
    assert "matches route" in answer and "fast" in answer
    assert answer.index("anthropic") < answer.index("claude-haiku-4-5") < answer.index("openai") < answer.index("lan-box")
    hit = browser.evaluate("[...document.querySelectorAll('li.route.hit')].map(li => li.dataset.route)")
    assert hit == ["fast"]
    browser.type_into("#resolver-input", "qwen3-4b")
    assert "vllm" in browser.evaluate("document.getElementById('resolver-answer').innerText")
    browser.type_into("#resolver-input", "gpt-4o")
    answer = browser.evaluate("document.getElementById('resolver-answer').innerText")
    assert "prefix" in answer and "longest matching prefix" in answer

    # Providers: fingerprints, never keys; local model paths; effective timeouts.
    providers = browser.evaluate("document.getElementById('providers').parentElement.innerText")
    fp = data.fingerprints_from_store(store)
    assert fp["openai"]["key"] in providers and fp["anthropic"]["key"] in providers
    assert "~/models/qwen3-4b-4bit" in providers and "https://api.openai.com/v1" in providers
    assert "first token 20s" in providers  # local-with-cloud-fallback's openai override

    # Traffic figures per route and the chart.
    row = browser.evaluate("[...document.querySelector('#traffic-table tr[data-route=\"gpt\"]').cells].map(c => c.innerText)")
    assert row[1:] == ["3", "1", "1", "200 ms", "4", "1", "1", "200 ms"]
    row = browser.evaluate("[...document.querySelector('#traffic-table tr[data-route=\"fast\"]').cells].map(c => c.innerText)")
    assert row[1:5] == ["1", "0", "1", "40 ms"]
    assert browser.evaluate("document.querySelectorAll('.chart svg rect.bar-ok').length") == 24
    assert "5 requests, 1 errors" in browser.evaluate("document.querySelector('.chart svg').getAttribute('aria-label')")

    # Nothing left the page: the only request was the file itself, and no script error.
    assert [u for u in browser.requested_urls()[mark:] if not u.startswith("file:")] == []
    assert browser.console_errors() == []

    browser.type_into("#resolver-input", "fast")
    browser.screenshot(ARTIFACTS / "ui-routes.png")
    browser.emulate_dark(True)
    assert browser.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
    bg = browser.evaluate("getComputedStyle(document.documentElement).backgroundColor")
    assert bg == "rgb(13, 17, 23)"
    browser.screenshot(ARTIFACTS / "ui-routes-dark.png")
    browser.emulate_dark(False)


def test_tricky_regexes_page_agrees_with_server(home, cli, tmp_path, browser):
    apply_config(cli, tmp_path, TRICKY)
    path, html = build_page(cli, tmp_path)
    assert_no_secret(html)
    assert "<script>window.__pwned" not in html and "<img src=x" not in html
    browser.open(path.as_uri())
    snap = snapshot_of(Store())
    answers = page_answers(browser, TRICKY_NAMES)
    for name, got in zip(TRICKY_NAMES, answers):
        want = server_answer(snap, name)
        assert (got["route"], got["targets"]) == (want["route"], want["targets"]), repr(name)
    # The names cover each rule: exact over prefix, longest prefix, regex order, no match at all.
    decided = {n: server_answer(snap, n)["route"] for n in TRICKY_NAMES}
    assert decided["gpt-4o"] == "exact:gpt-4o" and decided["gpt-4o-mini"] == "gpt4o"
    assert decided["gpt-3.5-turbo"] == "prefix:gpt-" and decided["o3-mini"] == "regex:mini$"
    assert decided["mini\n"] == "regex:mini$" and decided["nothing-matches"] is None
    assert server_answer(snap, "default")["targets"] == ["local/qwen-small"]
    # No injected markup ran or exists; the hostile names are text.
    assert browser.evaluate("window.__pwned === undefined")
    assert browser.evaluate("document.querySelectorAll('img').length") == 0
    texts = browser.evaluate("document.getElementById('route-list').innerText")
    assert "<img src=x onerror=window.__pwned=2>" in texts
    assert "/models/<b>qwen</b>&amp;\"x\"<script>window.__pwned=1</script>" in \
        browser.evaluate("document.getElementById('providers').parentElement.innerText")
    browser.type_into("#resolver-input", "<img src=x onerror=window.__pwned=2>")
    assert browser.evaluate("document.querySelectorAll('img').length") == 0
    assert "matches route" in browser.evaluate("document.getElementById('resolver-answer').innerText")
    # Routes whose regex may differ are marked, and say why when one takes part in an answer.
    marked = browser.evaluate("[...document.querySelectorAll('li.route')].filter(li => "
                              "li.querySelector('.b-warn')).map(li => li.dataset.route)")
    assert marked == ["regex:(?i)^CLAUDE"]
    browser.type_into("#resolver-input", "claude-3")
    assert "may match differently" in browser.evaluate("document.getElementById('resolver-answer').innerText")
    assert browser.console_errors() == []


def test_static_parts_read_without_javascript(home, cli, tmp_path, browser):
    apply_config(cli, tmp_path, (EXAMPLES / "local-with-cloud-fallback.yaml").read_text())
    path, _ = build_page(cli, tmp_path)
    browser.send("Emulation.setScriptExecutionDisabled", {"value": True})
    try:
        browser.open(path.as_uri())
        doc = browser.send("DOM.getDocument", {"depth": -1})
        html = browser.send("DOM.getOuterHTML", {"nodeId": doc["root"]["nodeId"]})["outerHTML"]
    finally:
        browser.send("Emulation.setScriptExecutionDisabled", {"value": False})
    assert 'class="js"' not in html  # the script did not run
    assert html.count('<li class="route"') == 3
    assert 'data-provider="local" data-model="qwen-small"' in html
    assert "The resolver needs" in html


def test_keyboard_reaches_the_resolver(home, cli, tmp_path, browser):
    apply_config(cli, tmp_path, (EXAMPLES / "quickstart.yaml").read_text())
    path, _ = build_page(cli, tmp_path)
    browser.open(path.as_uri())
    browser.evaluate("document.activeElement && document.activeElement.blur()")
    browser.press("Tab", "Tab", 9)
    assert browser.evaluate("document.activeElement.className") == "skip"
    browser.press("Enter", "Enter", 13)
    assert browser.evaluate("location.hash") == "#resolve"
    browser.press("Tab", "Tab", 9)
    assert browser.evaluate("document.activeElement.id") == "resolver-input"
    browser.send("Input.insertText", {"text": "anything"})
    assert "everything" in browser.evaluate("document.getElementById('resolver-answer').innerText")
    labels = browser.evaluate("[...document.querySelectorAll('input')].every(i => i.labels.length > 0)")
    assert labels


# --- GET /ui on a running server --------------------------------------------------------------------------

LIVE = textwrap.dedent(r"""
    version: 1
    providers:
      - name: openai
        kind: openai-compatible
        base_url: http://127.0.0.1:9/v1
        api_key: ${env:OPENAI_API_KEY}
      - name: local
        kind: mlx-openai-server
        models:
          - {name: qwen-small, path: /models/qwen}
    routes:
      - {match: {exact: qwen-small}, target: local/qwen-small, fallback: [openai/gpt-4o-mini]}
      - {match: {prefix: "gpt-"}, target: openai}
      - {match: {regex: "^poss(?:a*)b"}, target: openai}
      - {match: {regex: "^atom(?:x|xy)z"}, target: local/qwen-small}
""")


def ui_resource(gw):
    resource = gw.app._router.find("/ui")[0]  # noqa: SLF001
    return resource


def test_ui_served_live(home, cli, tmp_path, browser):
    apply_config(cli, tmp_path, LIVE)
    with running_gateway() as gw:
        page = ui_resource(gw)
        gateway = gw.app.gateway
        # Live state the server holds in memory: a supervisor's models, cooldowns.
        model = types.SimpleNamespace(provider="local", name="qwen-small", state="ready", port=40123, inflight=2,
                                      last_used_wall=time.time() - 5, error=None, retired=False)
        saved = {k: getattr(gateway, k) for k in ("supervisor", "breakers")}
        gateway.supervisor = types.SimpleNamespace(models={("local", "qwen-small"): model})
        gateway.breakers = Breakers()
        for _ in range(gateway.breakers.failures_to_open):
            gateway.breakers.failure("openai", 25)
        try:
            r1 = httpx.get(gw.origin + "/ui")
            assert r1.status_code == 200 and r1.headers["content-type"].startswith("text/html")
            assert r1.headers["cache-control"] == "no-store"
            assert_no_secret(r1.text)
            assert "Live state" in r1.text and "40123" in r1.text and "skipped by failover" in r1.text
            built = page._page  # noqa: SLF001
            r2 = httpx.get(gw.origin + "/ui")
            assert page._page is built  # noqa: SLF001 - not rebuilt per request
            assert r2.status_code == 200

            # The server's own answer, as JSON and server-rendered for clients without JavaScript.
            r = httpx.get(gw.origin + "/ui/resolve", params={"model": "possaaab"})
            assert r.json() == {"model": "possaaab", "route": "regex:^poss(?:a*)b", "match_type": "regex",
                                "pattern": "^poss(?:a*)b", "targets": ["openai/possaaab"]}
            assert httpx.get(gw.origin + "/ui/resolve", params={"model": "zzz"}).json()["route"] is None
            r = httpx.get(gw.origin + "/ui", params={"model": "qwen-small"})
            assert "matches route <code>exact:qwen-small</code>" in r.text
            assert 'value="qwen-small"' in r.text

            # In the browser: live states decorate the diagram; every regex a config may hold (validate
            # refuses what RE2 cannot run) is decided by the page itself, as the server decides it.
            browser.open(gw.origin + "/ui")
            assert browser.evaluate("document.querySelector('[data-state-for=\"local/qwen-small\"]').innerText"
                                    ).strip() == "ready"
            for name, route in [("possab", "regex:^poss(?:a*)b"), ("atomxyz", "regex:^atom(?:x|xy)z"),
                                ("atomxz", "regex:^atom(?:x|xy)z"), ("atomz", None)]:
                got = browser.evaluate("mlxgwResolve(%s)" % json.dumps(name))
                assert got["route"] == route and not got.get("undecided")
                assert httpx.get(gw.origin + "/ui/resolve", params={"model": name}).json()["route"] == route
            browser.type_into("#resolver-input", "gpt-4o")
            answer = browser.evaluate("document.getElementById('resolver-answer').innerText")
            assert "openai" in answer and "The server says" not in answer
            assert browser.console_errors() == []
            browser.screenshot(ARTIFACTS / "ui-live.png")

            # A new apply: the next request shows the new revision, built once.
            apply_config(cli, tmp_path, LIVE.replace('prefix: "gpt-"', 'prefix: "gpt-4"'), "v2.yaml")
            deadline = time.monotonic() + 20  # a poll: this tells a hang from a slow machine
            while "prefix:gpt-4" not in (text := httpx.get(gw.origin + "/ui").text):
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert page._page is not built  # noqa: SLF001
        finally:
            for k, v in saved.items():
                setattr(gateway, k, v)


def test_ui_audit_figures_come_from_a_background_query(home, cli, tmp_path, monkeypatch):
    apply_config(cli, tmp_path, LIVE)
    queries = []
    real = data.audit_figures
    monkeypatch.setattr(data, "audit_figures", lambda store: queries.append(1) or real(store))
    with running_gateway() as gw:
        page = ui_resource(gw)
        page.refresh = 1.0
        t0 = time.monotonic()
        for _ in range(10):
            assert httpx.get(gw.origin + "/ui").status_code == 200
        elapsed = time.monotonic() - t0
        # The first request's query, then at most one per refresh period (a loaded machine may take longer
        # than one for the ten requests): the other requests read what was found, they never query.
        assert 1 <= len(queries) <= 1 + int(elapsed / page.refresh), (len(queries), elapsed)
        add_audit_rows(Store(), [{"ts": time.time(), "route": "prefix:gpt-", "duration_ms": 12.0}])
        deadline = time.monotonic() + 20  # a poll: this tells a hang from a slow machine
        while ">12 ms<" not in httpx.get(gw.origin + "/ui").text:  # the next periodic query finds it
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert len(queries) >= 2


# --- pieces --------------------------------------------------------------------------------------------

def test_ui_build_to_stdout_and_errors(home, cli, tmp_path):
    apply_config(cli, tmp_path, (EXAMPLES / "cloud-only.yaml").read_text())
    lan_key = "sk-lan-SENTINEL-93b1d0"
    code, out, err = cli("providers", "set-key", "lan-box", input=lan_key + "\n")
    assert code == 0, err
    code, out, err = cli("ui", "build", "-o", "-")
    assert code == 0 and out.startswith("<!DOCTYPE html>") and out.rstrip().endswith("</html>")
    assert_no_secret(out)
    assert lan_key not in out and "SENTINEL" not in out
    fp = data.fingerprints_from_store(Store())["lan-box"]
    assert fp["source"] == "set-key" and f"<code>{fp['key']}</code> <span class=\"muted\">from set-key</span>" in out
    code, out, err = cli("ui", "build", "-o", str(tmp_path / "missing" / "dir" / "x.html"))
    assert code == 1 and "cannot write" in err and "Traceback" not in err
    assert not list((tmp_path).glob(".x.html.*"))


def test_export_and_providers_list_hold_no_key(home, cli, tmp_path):
    apply_config(cli, tmp_path, (EXAMPLES / "cloud-only.yaml").read_text())
    for args in (("export",), ("providers", "list"), ("providers", "list", "--json")):
        code, out, err = cli(*args)
        assert code == 0
        assert_no_secret(out + err)


def test_embedded_json_cannot_close_the_script():
    text = render.script_json({"a": "</script><!-- & \u2028"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"a": "</script><!-- & \u2028"}


@pytest.mark.parametrize("pattern, exact, translatable", [
    (r"^claude-", True, True), (r".*", True, True), (r"\bmini\b", True, True), (r"(?m)^a$", True, True),
    (r"x{,3}[]a-]", True, True), (r"(?a)\w+\d", True, True), (r"(?i)^gpt", False, True),
    (r"^(?P<x>a)(?P=x)", False, True), (r"(?i:gpt)-", False, True),
    (r"a*+", False, False), (r"(?>ab|a)c", False, False), (r"(a)?(?(1)b|c)", False, False),
])
def test_regex_translation_subset(pattern, exact, translatable):
    t = jsregex.translate(pattern)
    assert t.exact is exact and (t.js is not None) is translatable
    assert exact or t.note


def test_figures_windows():
    now = 100_000.0
    rows = [(now - 10, "a", 200, None, 0, 10.0), (now - 20, "a", 500, None, 1, 30.0),
            (now - 7200, "a", 200, "cut", 0, 50.0), (now - 7200, None, 404, None, 0, 1.0)]
    f = data.figures_from_rows(rows, now)
    assert f["routes"]["a"]["hour"] == {"requests": 2, "errors": 1, "failovers": 1, "p50_ms": 10.0}
    assert f["routes"]["a"]["day"] == {"requests": 3, "errors": 2, "failovers": 1, "p50_ms": 30.0}
    assert f["routes"]["(no route)"]["day"]["requests"] == 1
    assert [b["requests"] for b in f["buckets"]][-3:] == [2, 0, 2]
