"""Prometheus metrics, derived from what the gateway already produces.

Every request ends in exactly one audit row (mlxgw.server.audited), so the per-request series are
updated from that finished row: `Metrics.observe(row)` runs inside `AuditWriter.record`, and no endpoint
knows metrics exist. What is not a request (circuit breakers, the audit queue, local engines, requests
in flight) is read from the live objects when /metrics is scraped, by `_LiveCollector`.

Names follow OpenTelemetry's GenAI semantic conventions in their Prometheus form where one exists
(`gen_ai_client_token_usage`, `gen_ai_server_request_duration_seconds`,
`gen_ai_server_time_to_first_token_seconds`, with `gen_ai_*` labels); the rest are `mlxgw_*`.

Cost on the request path: a finished row's values are appended to those of its shape, added to the
series in batches (`Metrics.fold`: every FOLD_EVERY rows and at each scrape); the
prometheus_client families are built only when /metrics is scraped, and the library itself is imported
then (its first scrape), so a gateway nobody scrapes never loads it.
Label values come from the config (route, provider) or from the upstream's own answer (model, only for
answered requests), never from a raw client string, so a client cannot grow the series without bound.
"""

from __future__ import annotations

import logging

import asyncio

from bisect import bisect_right
from collections import defaultdict
from functools import partial
from itertools import repeat
from operator import add, is_not, itemgetter, sub, truediv


log = logging.getLogger("mlxgw.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# OpenTelemetry's advised bucket boundaries for these instruments.
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)
LOAD_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
MODEL_STATES = ("stopped", "starting", "ready", "stopping", "failed")
OPERATION = {"openai": "chat", "anthropic": "chat", "responses": "chat"}


def failover_reason(outcome: str) -> str:
    """The reason label of a failover: HTTP 5xx statuses grouped, everything else as the audit row says."""
    if outcome.startswith("http_5"):
        return "http_5xx"
    return outcome


def failovers(attempts: list[dict] | None):
    """(target moved away from, reason) for each move to a next target in an audit row's attempts: the
    last outcome on a target before a different target was tried."""
    if not attempts:
        return
    for a, b in zip(attempts, attempts[1:]):
        if a.get("target") != b.get("target"):
            yield a.get("target") or "", failover_reason(a.get("outcome") or "unknown")


class _Hist:
    """A histogram family as plain lists, updated in batches (`add`) with no lock: the event loop is the
    only writer, and a scrape adds the rows pending first (`Metrics.fold`)."""

    __slots__ = ("name", "doc", "labels", "bounds", "scale", "series")

    def __init__(self, name: str, doc: str, labels: tuple, bounds: tuple, scale: int | None = None):
        self.name, self.doc, self.labels, self.bounds = name, doc, labels, bounds
        self.scale = scale  # what a value is divided by first (milliseconds to seconds), if anything
        self.series: dict[tuple, list] = {}  # labels -> [count per bucket..., +Inf bucket, sum]

    def add(self, key: tuple, values: list) -> None:
        """Observe `values` in the series of `key` (made on first use). All or nothing: a value that is
        no number raises before anything changes. The work per value is done in C (divide, sum, sort);
        the interpreter's is a bisect per bucket bound, however many the values."""
        if self.scale:
            values = list(map(truediv, values, repeat(self.scale)))
        h = self.series.get(key)
        total = sum(values, h[-1] if h else 0.0)  # onto the running sum, in the rows' order
        ordered = sorted(values)
        # Values <= each bound (what `le` means), then per bucket: the running counts' differences.
        within = [*map(bisect_right, repeat(ordered), self.bounds), len(ordered)]
        if h is None:
            h = self.series[key] = [0] * (len(self.bounds) + 1) + [0.0]
        h[:-1] = map(add, h[:-1], map(sub, within, [0, *within]))
        h[-1] = total

    def family(self):
        from prometheus_client.core import HistogramMetricFamily

        f = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        names = [str(b) for b in self.bounds] + ["+Inf"]
        for key, h in list(self.series.items()):
            running, buckets = 0, []
            for name, n in zip(names, h):
                running += n
                buckets.append((name, running))
            f.add_metric(key, buckets, sum_value=h[-1])
        return f


# What decides a row's series (the labels `_keys` derives), and the values it adds to them: each read in
# one call.
_SHAPE = itemgetter("route", "provider", "client_api", "backend_api", "status", "stream", "backend_model")
_POINT = itemgetter("duration_ms", "ttfb_ms", "input_tokens", "output_tokens", "cached_tokens")
_TOKEN_TYPES = ("input", "output", "cached")
_NOT_NONE = partial(is_not, None)
FOLD_EVERY = 1024  # rows kept pending at most before they are added to the series


class Metrics:
    """The series of one gateway (tests run several gateways in one process, so nothing is global).

    prometheus_client's Counter and Histogram take a lock per update, which cost about 10 µs a request
    here; these are plain dicts updated on the event loop and turned into metric families at scrape.

    A finished row is not added to its series at once: its values are kept with those of the rows of its
    shape (same labels), and every FOLD_EVERY rows, or at a scrape, each shape's rows are added together
    (`fold`). Per row that is two C calls and an append; a row's own bisects and additions were 200
    bytecodes of the event loop's, per request."""

    def __init__(self, gateway=None):
        self._gateway = gateway
        self._registry = None
        self.requests: dict[tuple, int] = {}
        self.duration = _Hist("gen_ai_server_request_duration_seconds", "Time from the request to the end of its "
                              "answer.", ("gen_ai_operation_name", "gen_ai_provider_name", "route", "client_api",
                                          "error_type"), DURATION_BUCKETS, scale=1000)
        self.ttft = _Hist("gen_ai_server_time_to_first_token_seconds", "Time from the request to the chosen "
                          "backend's first byte.", ("gen_ai_operation_name", "gen_ai_provider_name", "route", "stream"),
                          TTFT_BUCKETS, scale=1000)
        self.tokens = _Hist("gen_ai_client_token_usage", "Tokens per answered request (input, output, and cached: "
                            "the part of the input read from a prompt cache).", ("gen_ai_operation_name",
                            "gen_ai_provider_name", "gen_ai_response_model", "gen_ai_token_type"), TOKEN_BUCKETS)
        self.failovers: dict[tuple, int] = {}
        self.errors = 0
        self._pending: defaultdict[tuple, list] = defaultdict(list)  # a shape -> its rows' values not yet added
        self._left = FOLD_EVERY  # rows until the next fold

    @property
    def registry(self):
        """The prometheus_client registry of these series, made (and the library imported) on first use."""
        if self._registry is None:
            from prometheus_client import CollectorRegistry, ProcessCollector

            registry = CollectorRegistry(auto_describe=False)
            registry.register(_RequestCollector(self))
            if self._gateway is not None:
                registry.register(_LiveCollector(self._gateway))
                ProcessCollector(registry=registry)  # process_resident_memory_bytes, process_open_fds...
            self._registry = registry
        return self._registry

    def observe(self, row: dict) -> None:
        """Count one finished request from its audit row. Never raises (a metrics bug must not fail a
        request or lose its audit row)."""
        try:
            self._pending[_SHAPE(row)].append(_POINT(row))
            detail = row["attempts_detail"]
            if detail and len(detail) > 1:
                for pair in failovers(detail):
                    self.failovers[pair] = self.failovers.get(pair, 0) + 1
            self._left -= 1
            if not self._left:
                self.fold()
        except Exception:
            self.errors += 1
            log.exception("metrics: cannot read audit row %s", row.get("id"))

    def fold(self) -> None:
        """Add the rows pending to their series (every FOLD_EVERY rows, and before a scrape)."""
        pending, self._pending, self._left = self._pending, defaultdict(list), FOLD_EVERY
        for shape, points in pending.items():
            if not points:  # a row that failed between its shape and its values
                continue
            try:
                self._fold(shape, points)
            except Exception:  # a shape no series can have (a caller's bug): its rows are not counted
                self.errors += len(points)
                log.exception("metrics: cannot count %d audit row(s) of shape %r", len(points), shape)

    def _fold(self, shape: tuple, points: list[tuple]) -> None:
        count, duration, ttft, tokens = self._keys(shape)
        durations, ttfbs, *counts = zip(*points)
        self.requests[count] = self.requests.get(count, 0) + len(points)
        self._add(self.duration, duration, durations)
        self._add(self.ttft, ttft, [*filter(_NOT_NONE, ttfbs)])
        for key, values in zip(tokens, counts):
            self._add(self.tokens, key, [*filter(_NOT_NONE, values)])

    def _add(self, hist: _Hist, key: tuple, values) -> None:
        """`hist.add`, value by value if some value is no number (a bug upstream of the row): the others
        still count."""
        if not values:
            return  # no series is made without a value, so /metrics lists no empty series
        try:
            hist.add(key, values)
        except Exception:
            for v in values:
                try:
                    hist.add(key, [v])
                except Exception as exc:
                    self.errors += 1
                    log.error("metrics: cannot count %r in %s: %s", v, hist.name, exc)

    @staticmethod
    def _keys(shape: tuple) -> tuple:
        """The labels of the series a row of this shape updates: its request count, its duration, its
        time to first byte and its token counts (none for an error)."""
        route, provider, client, backend_api, status, stream, model = shape
        route, provider, client = route or "", provider or "", client or ""
        stream = "true" if stream else "false"
        op = OPERATION.get(client, client)
        tokens = () if status >= 400 else tuple((op, provider, model or "", kind) for kind in _TOKEN_TYPES)
        return ((route, provider, client, backend_api or "", str(status), stream),
                (op, provider, route, client, "" if status < 400 else str(status)),
                (op, provider, route, stream), tokens)

    def render(self) -> bytes:
        from prometheus_client.exposition import generate_latest

        return generate_latest(self.registry)


class _RequestCollector:
    def __init__(self, metrics: Metrics):
        self.m = metrics

    def collect(self):
        from prometheus_client.core import CounterMetricFamily

        m = self.m
        m.fold()
        requests = CounterMetricFamily("mlxgw_requests", "Requests answered, by route, provider, client and "
                                       "backend API, HTTP status and streaming.",
                                       labels=("route", "provider", "client_api", "backend_api", "status", "stream"))
        for key, n in list(m.requests.items()):
            requests.add_metric(key, n)
        yield requests
        yield m.duration.family()
        yield m.ttft.family()
        yield m.tokens.family()
        failovers = CounterMetricFamily("mlxgw_failovers", "Moves from a target to the route's next one, by the "
                                        "target left and why (unreachable, timeout_first_token, http_5xx, cold...).",
                                        labels=("target", "reason"))
        for key, n in list(m.failovers.items()):
            failovers.add_metric(key, n)
        yield failovers
        yield CounterMetricFamily("mlxgw_metrics_errors", "Audit rows the metrics could not read (a bug).",
                                  value=m.errors)


class EngineCounters:
    """Local engine events the supervisor reports (`Supervisor.on_event`): loads with their seconds,
    evictions, crashes. Counted here, not on the model objects, so a model removed from the config keeps
    its history and counters never go down."""

    def __init__(self):
        self.loads: dict[tuple, int] = {}
        self.load_seconds: dict[tuple, list] = {}  # key -> [bucket counts..., +Inf count, sum]
        self.evictions: dict[tuple, int] = {}
        self.crashes: dict[tuple, int] = {}

    def __call__(self, event: str, provider: str, model: str, seconds: float | None = None) -> None:
        key = (provider, model)
        if event == "loaded":
            self.loads[key] = self.loads.get(key, 0) + 1
            h = self.load_seconds.setdefault(key, [0] * (len(LOAD_BUCKETS) + 1) + [0.0])
            for i, bound in enumerate(LOAD_BUCKETS):
                if seconds <= bound:
                    h[i] += 1
            h[len(LOAD_BUCKETS)] += 1
            h[-1] += seconds
        elif event == "evicted":
            self.evictions[key] = self.evictions.get(key, 0) + 1
        elif event == "crashed":
            self.crashes[key] = self.crashes.get(key, 0) + 1


class _LiveCollector:
    """Series read from live state at scrape time (nothing to update on the request path)."""

    def __init__(self, gateway):
        self.gw = gateway

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        gw = self.gw
        yield GaugeMetricFamily("mlxgw_requests_in_flight", "HTTP requests being answered now (streams until "
                                "their last byte).", value=getattr(gw, "in_flight", 0))
        try:
            tasks = len(asyncio.all_tasks())
        except RuntimeError:  # collected outside the server's loop (a test reading the registry directly)
            tasks = 0
        yield GaugeMetricFamily("mlxgw_event_loop_tasks", "asyncio tasks alive in the gateway's loop (a leak "
                                "shows as growth under steady load).", value=tasks)
        breaker = GaugeMetricFamily("mlxgw_circuit_breaker_state", "Failover circuit breaker per provider: 1 for "
                                    "its current state (closed, open, half_open).", labels=("provider", "state"))
        known = {d["provider"]: d["state"].replace("-", "_") for d in gw.breakers.describe()}
        rt = gw.runtime
        if rt is not None:
            for name in rt.snapshot.providers:
                known.setdefault(name, "closed")
        for name, state in sorted(known.items()):
            for s in ("closed", "open", "half_open"):
                breaker.add_metric((name, s), 1.0 if s == state else 0.0)
        yield breaker
        audit = gw.audit
        if audit is not None:
            yield GaugeMetricFamily("mlxgw_audit_queue_depth", "Audit rows waiting to be written.",
                                    value=audit.pending)
            yield CounterMetricFamily("mlxgw_audit_rows_written", "Audit rows written to the store.",
                                      value=audit.written)
            yield CounterMetricFamily("mlxgw_audit_rows_dropped", "Audit rows lost because the store refused "
                                      "them for too long.", value=audit.dropped)
        yield from self._engines()

    def _engines(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        sup = self.gw.supervisor
        if sup is None:
            return
        state = GaugeMetricFamily("mlxgw_local_model_state", "Local model state: 1 for its current state.",
                                  labels=("provider", "model", "state"))
        in_flight = GaugeMetricFamily("mlxgw_local_model_in_flight", "Requests a local model is answering now.",
                                      labels=("provider", "model"))
        for m in sorted(sup.models.values(), key=lambda x: x.key):
            if m.retired:
                continue
            for s in MODEL_STATES:
                state.add_metric((m.provider, m.name, s), 1.0 if s == m.state else 0.0)
            in_flight.add_metric((m.provider, m.name), m.inflight)
        yield state
        yield in_flight
        ev: EngineCounters | None = getattr(self.gw, "engine_counters", None)
        if ev is None:
            return
        loads = CounterMetricFamily("mlxgw_local_model_loads", "Engine processes started and ready.",
                                    labels=("provider", "model"))
        seconds = HistogramMetricFamily("mlxgw_local_model_load_seconds", "Seconds from spawning an engine to "
                                        "its first healthy answer.", labels=("provider", "model"))
        for key, n in sorted(ev.loads.items()):
            loads.add_metric(key, n)
            h = ev.load_seconds[key]
            seconds.add_metric(key, [(str(b), h[i]) for i, b in enumerate(LOAD_BUCKETS)]
                               + [("+Inf", h[len(LOAD_BUCKETS)])], sum_value=h[-1])
        evictions = CounterMetricFamily("mlxgw_local_model_evictions", "Idle models stopped to make room for "
                                        "another.", labels=("provider", "model"))
        for key, n in sorted(ev.evictions.items()):
            evictions.add_metric(key, n)
        crashes = CounterMetricFamily("mlxgw_local_model_crashes", "Engines that exited on their own.",
                                      labels=("provider", "model"))
        for key, n in sorted(ev.crashes.items()):
            crashes.add_metric(key, n)
        yield from (loads, seconds, evictions, crashes)
