"""The route view as one HTML document: server-rendered (readable without JavaScript), inline CSS and
script (allowed by hash in a Content-Security-Policy that forbids every network fetch but the page's own
server), every piece of config text escaped.

`render(view, figures, ...)` returns the page. Two optional slots let `GET /ui` add what only a running
server knows without re-rendering the rest: LIVE_SLOT (live state section) and ANSWER_SLOT (a
server-side resolver answer for clients without JavaScript).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from html import escape

from mlxgw.ui import assets

LIVE_SLOT = "<!--mlxgw:live-->"
ANSWER_SLOT = "<!--mlxgw:answer-->"
MODEL_SLOT = "<!--mlxgw:model-->"

_KIND_LABEL = {"local": "local engine", "api": "HTTP API"}
_MATCH_WHY = {
    "exact": "the name equals it",
    "prefix": "the name starts with it",
    "regex": "Python re.search finds it in the name",
}


def e(value) -> str:
    """Escaped text for element content and quoted attribute values."""
    return escape("" if value is None else str(value), quote=True)


def script_json(obj) -> str:
    """JSON safe inside <script>: no '<', '>' or '&' survives, so neither </script> nor <!-- can appear."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _fmt_ms(v) -> str:
    if v is None:
        return "–"
    return f"{v / 1000:.2f} s" if v >= 1000 else f"{v:.0f} ms"


def _arrow(label: str) -> str:
    return ('<span class="arrow" aria-hidden="true"><svg width="34" height="14" viewBox="0 0 34 14" focusable="false">'
            '<path d="M1 7 H26"/><polygon points="25,2 33,7 25,12"/></svg>'
            f'<span>{e(label)}</span></span>')


def _target_box(t: dict, n: int) -> str:
    cls = "box" + (" local" if t["local"] else "") + (" fallback" if n else "") + ("" if t["known"] else " unknown")
    model = t["model"] if t["model"] else "model as requested"
    kind = "local" if t["local"] else "api"
    title = "target" if n == 0 else f"fallback {n}"
    prov = f'<a href="#provider-{e(t["provider"])}">{e(t["provider"])}</a>' if t["known"] else e(t["provider"])
    unknown = '' if t["known"] else ' <span class="badge b-err">unknown provider</span>'
    return (f'<span class="{cls}" data-provider="{e(t["provider"])}" data-model="{e(t["model"] or "")}">'
            f'<span class="sr-only">{e(title)}: </span><span class="prov">{prov}</span>'
            f' <span class="badge b-{kind}">{_KIND_LABEL[kind]}</span>{unknown}<br>'
            f'<span class="model mono">{e(model)}</span>'
            f'<span class="state" data-state-for="{e(t["provider"])}/{e(t["model"] or "")}"></span></span>')


def _chain(targets: list[dict]) -> str:
    if not targets:
        return '<p class="muted">no targets</p>'
    items = []
    for n, t in enumerate(targets):
        arrow = _arrow("fallback" if n == 1 else "then") if n else ""
        items.append(f"<li>{arrow}{_target_box(t, n)}</li>")
    return f'<ol class="chain" aria-label="attempt order">{"".join(items)}</ol>'


def _route(r: dict) -> str:
    mt = r["match_type"]
    regex = r.get("regex")
    flag = ""
    if regex is not None and regex["js"] is None:
        flag = (f' <span class="badge b-err" title="{e(regex["note"])}">server decides</span>'
                f'<br><span class="why muted">{e(regex["note"])}</span>')
    elif regex is not None and not regex["exact"]:
        flag = (f' <span class="badge b-warn" title="{e(regex["note"])}">may differ in page</span>'
                f'<br><span class="why muted">{e(regex["note"])}</span>')
    shadow = (' <span class="badge b-err">never matches</span><br><span class="why muted">an earlier exact route '
              'has the same name</span>' if r["shadowed"] else "")
    named = r["key"] if not r["key"].startswith(f"{mt}:") else ""
    name = f'<span class="name">{e(named)}</span> ' if named else ""
    return (f'<li class="route" id="route-{r["precedence"]}" data-route="{e(r["key"])}" data-match="{e(mt)}">'
            f'<div class="rule"><span class="num">#{r["precedence"]}</span>{name}'
            f'<span class="badge b-{e(mt)}">{e(mt)}</span>{flag}{shadow}<br>'
            f'<code class="pattern">{e(r["pattern"])}</code><br>'
            f'<span class="why muted">{e(_MATCH_WHY.get(mt, ""))}; declared #{r["declared"]}; '
            f'total timeout {e(r["targets"][0]["timeouts"]["total"]) if r["targets"] else "–"}</span></div>'
            f'{_chain(r["targets"])}</li>')


def _key_form(p: dict) -> str:
    """On the live page, a cloud provider's card offers to store (or replace) its key; the key goes to the
    gateway only (POST, same origin), and only its fingerprint ever comes back. The page's referrer policy
    is same-origin, not no-referrer: under no-referrer Chromium sends `Origin: null` even to the page's own
    server, and the endpoint accepts only its own origin."""
    name, verb = p["name"], ("Replace the stored key" if p["key"] else "Store a key")
    return (f'<form class="keyform" method="post" action="/admin/providers/{e(name)}/key" autocomplete="off">'
            f'<label for="key-{e(name)}">{verb} of {e(name)}</label><div class="row">'
            f'<input id="key-{e(name)}" name="key" type="password" required maxlength="4096" spellcheck="false" '
            f'autocomplete="off"><button type="submit">{"Replace key" if p["key"] else "Store key"}</button></div>'
            '<p class="muted">Stored encrypted in the gateway\'s store; never shown again, only its fingerprint.</p>'
            '</form>')


def _change_lines(p: dict) -> str:
    """The gateway.yaml lines (and commands) that change everything else: git stays the truth."""
    lines = [f"  - name: {p['name']}", f"    kind: {p['kind']}"]
    if p["base_url"] and not p["base_url_default"]:
        lines.append(f"    base_url: {p['base_url']}")
    if not p["local"]:
        lines.append("    api_key: ${env:VARIABLE}   # or this page's form, or: mlxgw providers set-key " + p["name"])
    return (f'<details class="change"><summary>Change the base URL or anything else</summary><pre><code>providers:\n'
            f'{e(chr(10).join(lines))}</code></pre><p class="muted">Edit gateway.yaml, then <code>mlxgw apply -f '
            'gateway.yaml</code>; a running gateway picks it up within a second.</p></details>')


def _provider(p: dict, live: bool = False) -> str:
    key = (f'<code>{e(p["key"])}</code>' + (f' <span class="muted">from {e(p["key_source"])}</span>' if p["key_source"] else "")
           if p["key"] else '<span class="muted">none stored</span>')
    base = (f'<code>{e(p["base_url"])}</code>' + (' <span class="muted">(default)</span>' if p["base_url_default"] else "")
            if p["base_url"] else '<span class="muted">– (local engine, port chosen at start)</span>' if p["local"]
            else '<span class="muted">–</span>')
    timeouts = ", ".join(f"{k.replace('_', ' ')} {e(v)}" for k, v in p["timeouts"].items())
    kind = "local" if p["local"] else "api"
    rows = [f"<dt>kind</dt><dd>{e(p['kind'])} <span class=\"badge b-{kind}\">{_KIND_LABEL[kind]}</span></dd>",
            f"<dt>base URL</dt><dd>{base}</dd>", f"<dt>API key</dt><dd>{key}</dd>",
            f"<dt>timeouts</dt><dd>{timeouts}</dd>"]
    if p["command"]:
        rows.append(f"<dt>command</dt><dd><code>{e(p['command'])}</code></dd>")
    if p["max_loaded"]:
        rows.append(f"<dt>max loaded</dt><dd>{e(p['max_loaded'])}</dd>")
    models = ""
    if p["models"]:
        head = "<th scope=\"col\">model</th><th scope=\"col\">aliases</th>"
        if p["local"]:
            head += "<th scope=\"col\">path</th><th scope=\"col\">idle TTL</th>"
        body = []
        for m in p["models"]:
            cells = (f"<th scope=\"row\"><code>{e(m['name'])}</code></th>"
                     f"<td>{', '.join(f'<code>{e(a)}</code>' for a in m['aliases']) or '–'}</td>")
            if p["local"]:
                cells += (f"<td><code>{e(m['path'])}</code></td>"
                          f"<td>{e(m['idle_ttl'] or '–')}</td>")
            body.append(f"<tr>{cells}</tr>")
        caption = "local models" if p["local"] else "declared models"
        models = (f'<table><caption class="sr-only">{caption} of {e(p["name"])}</caption>'
                  f'<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>')
    if live:
        models += (_key_form(p) if not p["local"] else "") + _change_lines(p)
    wide = " wide" if p["local"] and p["models"] else ""
    return (f'<article class="card{wide}" id="provider-{e(p["name"])}" aria-labelledby="provider-h-{e(p["name"])}">'
            f'<h3 id="provider-h-{e(p["name"])}">{e(p["name"])}</h3><dl class="kv">{"".join(rows)}</dl>'
            f'{models}</article>')


def _chart(buckets: list[dict], now: float) -> str:
    total = sum(b["requests"] for b in buckets)
    errors = sum(b["errors"] for b in buckets)
    if not total:
        return '<p class="muted" id="traffic-empty">No requests in the last 24 hours.</p>'
    width, height, pad_l, pad_b, pad_t = 480, 140, 34, 18, 8
    top = max([b["requests"] for b in buckets] + [1])
    plot_h = height - pad_b - pad_t
    bw = (width - pad_l) / len(buckets)
    parts = [f'<line class="axis" x1="{pad_l}" y1="{height - pad_b}" x2="{width}" y2="{height - pad_b}"/>',
             f'<text x="{pad_l - 4}" y="{pad_t + 8}" text-anchor="end">{top}</text>',
             f'<text x="{pad_l - 4}" y="{height - pad_b}" text-anchor="end">0</text>']
    for i, b in enumerate(buckets):
        x = pad_l + i * bw + 1
        h_all = plot_h * b["requests"] / top
        h_err = plot_h * b["errors"] / top
        start = time.strftime("%H:%M", time.gmtime(now - (24 - i) * 3600))
        label = f"{start} UTC +1h: {b['requests']} requests, {b['errors']} errors"
        parts.append(f'<g><title>{e(label)}</title>'
                     f'<rect class="bar-ok" x="{x:.1f}" y="{height - pad_b - h_all:.1f}" width="{bw - 2:.1f}" height="{h_all - h_err:.1f}"/>'
                     f'<rect class="bar-err" x="{x:.1f}" y="{height - pad_b - h_err:.1f}" width="{bw - 2:.1f}" height="{h_err:.1f}"/></g>')
    parts.append(f'<text x="{pad_l}" y="{height - 4}">24 h ago</text>'
                 f'<text x="{width}" y="{height - 4}" text-anchor="end">now</text>')
    summary = f"Requests per hour over the last 24 hours: {total} requests, {errors} errors in total."
    return (f'<figure class="chart"><svg viewBox="0 0 {width} {height}" role="img" aria-label="{e(summary)}">'
            f'{"".join(parts)}</svg><figcaption class="legend"><span><span class="swatch ok"></span>requests</span>'
            f'<span><span class="swatch err"></span>errors</span><span class="muted">per hour, last 24 h (UTC)</span>'
            f'</figcaption></figure>')


def _traffic(view: dict, figures: dict | None) -> str:
    if figures is None:
        return '<p class="muted">Audit figures are not available yet.</p>'
    known = [r["key"] for r in view["routes"]]
    keys = known + [k for k in figures["routes"] if k not in known]
    empty = {"requests": 0, "errors": 0, "failovers": 0, "p50_ms": None}
    rows = []
    for k in [*keys, None]:
        f = figures["total"] if k is None else figures["routes"].get(k, {"hour": empty, "day": empty})
        label = "<strong>all routes</strong>" if k is None else f"<code>{e(k)}</code>"
        cells = "".join(f'<td class="num">{f[w]["requests"]}</td><td class="num">{f[w]["errors"]}</td>'
                        f'<td class="num">{f[w]["failovers"]}</td><td class="num">{_fmt_ms(f[w]["p50_ms"])}</td>'
                        for w in ("hour", "day"))
        rows.append(f'<tr data-route="{e(k or "")}"><th scope="row">{label}</th>{cells}</tr>')
    sub = "".join('<th scope="col" class="num">requests</th><th scope="col" class="num">errors</th>'
                  '<th scope="col" class="num">failovers</th><th scope="col" class="num">p50</th>' for _ in range(2))
    table = ('<table id="traffic-table"><caption class="sr-only">Requests, errors, failovers and median latency per '
             'route</caption><thead><tr><td></td><th scope="colgroup" colspan="4">last hour</th>'
             '<th scope="colgroup" colspan="4">last 24 hours</th></tr>'
             f'<tr><th scope="col">route</th>{sub}</tr></thead><tbody>{"".join(rows)}</tbody></table>')
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(figures["now"]))
    return (f'{_chart(figures["buckets"], figures["now"])}{table}'
            f'<p class="muted">From the audit log as of {e(when)}. A failover is a request that moved on from its '
            'route\'s first target to a fallback; an error is a status of 400 or more or a failure after the first byte.</p>')


def render(view: dict, figures: dict | None, *, title: str = "mlxgw routes", live: bool = False,
           resolve_url: str | None = None, generated: float | None = None) -> str:
    generated = time.time() if generated is None else generated
    data = {"view": {"routes": view["routes"], "table": view["table"]}, "live": live, "resolveUrl": resolve_url}
    style = assets.CSS
    script = assets.JS
    connect = "'self'" if live else "'none'"
    csp = (f"default-src 'none'; style-src {_csp_hash(style)}; script-src {_csp_hash(script)}; "
           f"img-src data:; connect-src {connect}; base-uri 'none'; form-action 'self'")
    routes = "".join(_route(r) for r in view["routes"])
    if not routes:
        routes = '<li class="muted">No routes: every model name gets 404. Add routes to gateway.yaml and apply it.</li>'
    providers = "".join(_provider(p, live) for p in view["providers"]) or '<p class="muted">No providers.</p>'
    untranslatable = [r for r in view["routes"] if r.get("regex") and r["regex"]["js"] is None]
    approx = [r for r in view["routes"] if r.get("regex") and r["regex"]["js"] is not None and not r["regex"]["exact"]]
    caveat = ""
    if untranslatable or approx:
        def routes_n(n: int) -> str:
            return "1 regex route" if n == 1 else f"{n} regex routes"

        notes = []
        if approx:
            notes.append(f"{routes_n(len(approx))} may match differently here than on the server for some names "
                         "(marked “may differ in page”)")
        if untranslatable:
            notes.append(f"{routes_n(len(untranslatable))} {'uses' if len(untranslatable) == 1 else 'use'} "
                         "Python-only syntax, where the page stops and "
                         f"{'asks the server' if live else 'says the server decides'} (marked “server decides”)")
        caveat = ('<p class="notice">The page evaluates regexes in JavaScript, translated from Python. '
                  + "; ".join(notes) + ".</p>")
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(generated))
    source = "live from this gateway" if live else "a snapshot of the store"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{e(csp)}">
<meta name="referrer" content="same-origin">
<meta name="color-scheme" content="light dark">
<title>{e(title)}</title>
<style>{style}</style>
</head>
<body>
<a class="skip" href="#resolve">Skip to the resolver</a>
<header>
<h1>{e(title)}</h1>
<p class="muted">Config revision {e(view["revision"])} · {e(source)} · generated {e(when)}</p>
<nav aria-label="sections"><ul><li><a href="#resolve">Resolver</a></li><li><a href="#routes">Routes</a></li>
<li><a href="#providers">Providers</a></li><li><a href="#traffic">Traffic</a></li></ul></nav>
</header>
<main>
{LIVE_SLOT}
<section aria-labelledby="resolve">
<h2 id="resolve">Where does a model name go?</h2>
<form class="resolver" id="resolver" method="get" role="search">
<label for="resolver-input">Model name</label>
<div class="row"><input id="resolver-input" name="model" type="text" autocomplete="off" autocapitalize="off"
 spellcheck="false" placeholder="e.g. gpt-4o-mini" aria-describedby="resolver-help"{MODEL_SLOT}>
<button type="submit">Resolve</button></div>
<p id="resolver-help" class="muted">Same rules as the server: an exact name first, then the longest matching
prefix, then the regexes in the order they are declared. The first target is tried first; the fallbacks
follow in order.</p>
<div id="resolver-answer" role="status" aria-live="polite">{ANSWER_SLOT}<noscript>The resolver needs
JavaScript{'; or press Resolve to ask the server' if live else ''}. The routes below are listed in the order the
server tries them.</noscript></div>
</form>
</section>
<section aria-labelledby="routes">
<h2 id="routes">Routes, in the order the server tries them</h2>
{caveat}
<ol class="routes" id="route-list">{routes}</ol>
</section>
<section aria-labelledby="providers">
<h2 id="providers">Providers</h2>
<div class="cards">{providers}</div>
<p class="muted">Keys are never shown: a fingerprint (<code>sha256:</code> and 10 hex digits) says which key is
stored. Change one with <code>mlxgw providers set-key NAME</code>.</p>
</section>
<section aria-labelledby="traffic">
<h2 id="traffic">Traffic</h2>
{_traffic(view, figures)}
</section>
</main>
<footer class="muted">mlxgw route view · one self-contained file: no network, no external assets.</footer>
<script type="application/json" id="mlxgw-data">{script_json(data)}</script>
<script>{script}</script>
</body>
</html>
"""


def build(store, *, now: float | None = None) -> str:
    """The page for `mlxgw ui build`: config, fingerprints and audit figures read from `store`."""
    from mlxgw.routing.snapshot import Snapshot
    from mlxgw.store.state import current_revision, read_config
    from mlxgw.ui import data

    with store.session() as s:
        config = read_config(s)
    snapshot = Snapshot(config, {}, current_revision(store))
    view = data.view(snapshot, data.fingerprints_from_store(store))
    figures = data.audit_figures(store, now)
    return fill(render(view, figures, generated=now))


def fill(page: str, live: str = "", answer: str = "", model: str | None = None) -> str:
    """The page with its slots filled (all empty for the static file)."""
    value = "" if model is None else f' value="{e(model)}"'
    return page.replace(LIVE_SLOT, live, 1).replace(ANSWER_SLOT, answer, 1).replace(MODEL_SLOT, value, 1)
