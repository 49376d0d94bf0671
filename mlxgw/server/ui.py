"""GET /ui: the route view of `mlxgw ui build`, served live; GET /ui/resolve?model=NAME: the server's own
answer for one model name (the page asks it for regexes JavaScript cannot evaluate).

Cost on the request path: the page is rendered once per (Runtime, audit figures) pair and cached, so a
config reload or a figures refresh re-renders it once, on the next request. The audit figures come from
one query over the last day's rows, run in a worker thread on the first request and then about every
`REFRESH` seconds by a background task, never per request. Per request only in-memory state is read: the
current Runtime, the supervisor's models (state, port, requests in flight), provider cooldowns and the
audit writer's counter, which fill the page's live section.

Cooldowns are the gateway's circuit breakers that are open now (`Breakers.open_until()`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import falcon

from mlxgw.dialects.jsonfast import dumps
from mlxgw.server.gateway import Gateway
from mlxgw.ui import data, render
from mlxgw.ui.render import e, script_json

log = logging.getLogger("mlxgw.server")
REFRESH = 60.0
RESOLVE_PATH = "/ui/resolve"


def resolve(snapshot, model: str) -> dict:
    """The server's routing decision for `model`, as the page shows it."""
    rt = snapshot.route(model)
    if rt is None:
        return {"model": model, "route": None, "targets": []}
    return {"model": model, "route": rt.key, "match_type": rt.match_type, "pattern": rt.pattern,
            "targets": [f"{t.provider}/{snapshot.backend_model(t, model)}" for t in rt.targets]}


class UiPage:
    def __init__(self, gateway: Gateway, lifespan, refresh: float = REFRESH):
        self.gw = gateway
        self.lifespan = lifespan  # its `store` is opened at start-up
        self.refresh = refresh
        self.figures: dict | None = None
        self._page: tuple[object, object, str] | None = None
        self._task: asyncio.Task | None = None
        self._first: asyncio.Lock | None = None

    # --- audit figures, off the request path ---------------------------------------------------------

    async def _query(self) -> None:
        store = self.lifespan.store
        if store is None:
            return
        try:
            self.figures = await asyncio.to_thread(data.audit_figures, store)
        except Exception as exc:  # keep the figures we have; the page says how old they are
            log.warning("mlxgw /ui could not read the audit log: %s", exc)

    async def _refresh_loop(self) -> None:
        while self.gw.ready:
            await asyncio.sleep(self.refresh)
            if self.gw.ready:
                await self._query()

    async def _ensure_figures(self) -> None:
        if self._task is not None:
            return
        self._first = self._first or asyncio.Lock()
        async with self._first:
            if self._task is None:
                await self._query()
                self._task = asyncio.create_task(self._refresh_loop(), name="mlxgw-ui-figures")

    # --- the page ------------------------------------------------------------------------------------

    def page(self, rt) -> str:
        figures = self.figures
        cached = self._page
        if cached is None or cached[0] is not rt or cached[1] is not figures:
            snap = rt.snapshot
            view = data.view(snap, data.fingerprints_from_snapshot(snap))
            html = render.render(view, figures, live=True, resolve_url=RESOLVE_PATH)
            self._page = cached = (rt, figures, html)
        return cached[2]

    def live_state(self, rt) -> dict:
        """In-memory state only: no database, no /proc."""
        now = time.time()
        models = []
        sup = self.gw.supervisor
        if sup is not None:
            with contextlib.suppress(AttributeError, TypeError):
                for m in list(sup.models.values()):
                    if m.retired:
                        continue
                    models.append({"provider": m.provider, "name": m.name, "state": str(m.state),
                                   "port": m.port, "in_flight": m.inflight, "last_used": m.last_used_wall,
                                   "error": m.error})
        cooldowns = []
        for name, until in self.gw.breakers.open_until().items():
            cooldowns.append({"provider": name, "seconds_left": round(until - now, 1)})
        audit = self.gw.audit
        answered = None
        if audit is not None:
            answered = audit.written + audit.pending
        return {"now": now, "revision": rt.revision, "supervisor": sup is not None, "models": models,
                "cooldowns": cooldowns, "answered": answered, "unavailable": dict(rt.unavailable)}

    @staticmethod
    def live_html(state: dict, figures: dict | None) -> str:
        parts = ['<section aria-labelledby="live"><h2 id="live">Live state</h2>']
        hour = figures["total"]["hour"]["requests"] if figures else None
        counts = []
        if state["answered"] is not None:
            counts.append(f"{state['answered']} requests answered since this server started")
        if hour is not None:
            counts.append(f"{hour} in the last hour (audit log)")
        parts.append(f"<p>Serving config revision {e(state['revision'])}"
                     + (f"; {e('; '.join(counts))}" if counts else "") + ".</p>")
        if state["models"]:
            rows = "".join(
                f'<tr data-model="{e(m["provider"])}/{e(m["name"])}"><th scope="row"><code>{e(m["provider"])}/'
                f'{e(m["name"])}</code></th><td><span class="badge {_state_class(m["state"])}">{e(m["state"])}</span>'
                f'{"<br><span class=muted>" + e(m["error"]) + "</span>" if m["error"] else ""}</td>'
                f'<td class="num">{e(m["port"] or "–")}</td><td class="num">{e(m["in_flight"])}</td>'
                f'<td>{e(_ago(m["last_used"], state["now"]))}</td></tr>'
                for m in state["models"])
            parts.append('<table id="live-models"><caption class="sr-only">Local models</caption><thead><tr>'
                         '<th scope="col">local model</th><th scope="col">state</th><th scope="col" class="num">port'
                         '</th><th scope="col" class="num">in flight</th><th scope="col">last used</th></tr></thead>'
                         f'<tbody>{rows}</tbody></table>')
        elif state["supervisor"]:
            parts.append('<p class="muted">No local models are configured.</p>')
        else:
            parts.append('<p class="muted">This gateway runs no local engines.</p>')
        if state["cooldowns"]:
            items = "".join(f"<li><code>{e(c['provider'])}</code>: skipped by failover for {e(c['seconds_left'])} s more"
                            "</li>" for c in state["cooldowns"])
            parts.append(f'<h3>Providers cooling down</h3><ul id="live-cooldowns">{items}</ul>')
        if state["unavailable"]:
            items = "".join(f"<li><code>{e(k)}</code>: {e(v)}</li>" for k, v in state["unavailable"].items())
            parts.append(f'<h3>Providers without an adapter</h3><ul>{items}</ul>')
        parts.append(f'<script type="application/json" id="mlxgw-live">{script_json(state)}</script></section>')
        return "".join(parts)

    @staticmethod
    def answer_html(result: dict) -> str:
        if result["route"] is None:
            return f"<p><code>{e(result['model'])}</code>: no route matches; the server answers 404.</p>"
        chain = " → ".join(f"<code>{e(t)}</code>" for t in result["targets"])
        return (f"<p><code>{e(result['model'])}</code> matches route <code>{e(result['route'])}</code> "
                f"({e(result['match_type'])} <code>{e(result['pattern'])}</code>): {chain}</p>")

    async def on_get(self, req, resp) -> None:
        rt = self.gw.runtime
        await self._ensure_figures()
        model = req.get_param("model")
        answer = self.answer_html(resolve(rt.snapshot, model)) if model is not None else ""
        live = self.live_html(self.live_state(rt), self.figures)
        stored = req.get_param("key_stored")
        if stored and stored in rt.snapshot.providers and rt.snapshot.providers[stored].api_key:
            fp = data.fingerprints_from_snapshot(rt.snapshot)[stored]["key"]
            live = (f'<p class="notice" role="status" id="key-stored">Stored the key of <code>{e(stored)}</code>; '
                    f'its fingerprint is now <code>{e(fp)}</code>.</p>') + live
        resp.content_type = "text/html; charset=utf-8"
        resp.set_header("Cache-Control", "no-store")
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.text = render.fill(self.page(rt), live=live, answer=answer, model=model)

    async def on_get_resolve(self, req, resp) -> None:
        model = req.get_param("model", required=True)
        resp.content_type = falcon.MEDIA_JSON
        resp.set_header("Cache-Control", "no-store")
        resp.data = dumps(resolve(self.gw.runtime.snapshot, model))


def _state_class(state: str) -> str:
    return {"ready": "b-ok", "starting": "b-warn", "stopping": "b-warn", "failed": "b-err"}.get(state, "b-api")


def _ago(ts: float | None, now: float) -> str:
    if not ts:
        return "never"
    s = max(0, int(now - ts))
    return f"{s} s ago" if s < 120 else f"{s // 60} min ago" if s < 7200 else f"{s // 3600} h ago"


def add_routes(app, gateway: Gateway, lifespan) -> UiPage:
    page = UiPage(gateway, lifespan)
    app.add_route("/ui", page)
    app.add_route(RESOLVE_PATH, page, suffix="resolve")
    from mlxgw.server.keyform import PATH, ProviderKey

    app.add_route(PATH, ProviderKey(gateway, lifespan))  # the provider cards' key forms post here
    return page
