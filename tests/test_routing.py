"""Snapshot: route precedence, target chains, alias resolution, timeouts, model listing."""

from __future__ import annotations

from mlxgw.backends.base import Timeouts
from mlxgw.routing import Snapshot, fails_over
from mlxgw.backends.base import UpstreamConnectError, UpstreamProtocolError, UpstreamStatusError, UpstreamTimeout

CONFIG = {
    "version": 1,
    "defaults": {"timeouts": {"connect": "2s", "idle": "20s"}},
    "providers": [
        {"name": "local", "kind": "mlx-openai-server",
         "models": [{"name": "qwen-small", "path": "/m/q", "aliases": ["qwen", "q-s"]},
                    {"name": "llama", "path": "/m/l"}]},
        {"name": "openai", "kind": "openai", "api_key": "${env:OPENAI_API_KEY}",
         "timeouts": {"first_token": "30s", "total": "5m"}, "models": [{"name": "gpt-4o-mini"}]},
        {"name": "anthropic", "kind": "anthropic"},
    ],
    "routes": [
        {"name": "small", "match": {"exact": "qwen-small"}, "target": "local/qwen",
         "fallback": ["openai/gpt-4o-mini"]},
        {"match": {"prefix": "gpt-"}, "target": "openai", "timeouts": {"total": "10s"}},
        {"match": {"prefix": "gpt-4o"}, "target": "openai/gpt-4o-2024"},
        {"match": {"prefix": "gpt-4"}, "target": "anthropic"},
        {"match": {"regex": "^claude-"}, "target": "anthropic"},
        {"match": {"regex": "sonnet"}, "target": "openai"},
        {"name": "chain", "match": {"exact": "any"}, "target": "anthropic",
         "fallback": ["@small", "openai/gpt-4o-mini", "anthropic", "@chain"]},
        {"match": {"exact": "llama"}, "target": "local"},
    ],
}


def snap() -> Snapshot:
    return Snapshot(CONFIG, {"openai": "sk-x"}, revision=7)


def test_exact_wins_over_prefix_and_regex():
    s = snap()
    r = s.route("qwen-small")
    assert r.key == "small" and r.match_type == "exact"
    assert s.revision == 7


def test_longest_prefix_wins_regardless_of_order():
    s = snap()
    assert s.route("gpt-4o-mini").pattern == "gpt-4o"
    assert s.route("gpt-4-turbo").pattern == "gpt-4"
    assert s.route("gpt-3.5").pattern == "gpt-"


def test_regex_in_declared_order_with_search_semantics():
    s = snap()
    assert s.route("claude-sonnet-4").pattern == "^claude-"  # first declared wins
    assert s.route("my-sonnet").pattern == "sonnet"  # re.search: unanchored matches inside
    assert s.route("nothing-matches") is None
    assert s.route("") is None


def test_targets_resolve_aliases_and_pass_through():
    s = snap()
    small = s.route("qwen-small")
    assert [(t.provider, t.model) for t in small.targets] == [("local", "qwen-small"), ("openai", "gpt-4o-mini")]
    gpt = s.route("gpt-3.5")
    assert gpt.targets[0].model is None
    assert s.backend_model(gpt.targets[0], "gpt-3.5") == "gpt-3.5"
    llama = s.route("llama")
    assert s.backend_model(llama.targets[0], "llama") == "llama"


def test_fallback_route_reference_expands_without_duplicates_or_cycles():
    chain = snap().route("any")
    assert [t.label for t in chain.targets] == ["anthropic", "local/qwen-small", "openai/gpt-4o-mini"]


def test_timeouts_defaults_then_provider_then_route():
    s = snap()
    # A local engine's built-in first_token/total fit a long prefill; the config's defaults still apply.
    assert s.providers["local"].timeouts == Timeouts(connect=2, first_token=600, idle=20, total=1800)
    assert s.providers["openai"].timeouts == Timeouts(connect=2, first_token=30, idle=20, total=300)
    gpt = s.route("gpt-3.5").targets[0]
    assert gpt.timeouts == Timeouts(connect=2, first_token=30, idle=20, total=10)
    assert Snapshot({"providers": [], "routes": []}).defaults == Timeouts(5, 60, 30, 600)


def test_a_local_engines_built_in_first_token_gives_way_to_the_configs_defaults():
    local = {"name": "local", "kind": "vllm-mlx", "models": [{"name": "m", "path": "/m"}]}
    assert Snapshot({"providers": [local], "routes": []}).providers["local"].timeouts == Timeouts(5, 600, 30, 1800)
    told = Snapshot({"defaults": {"timeouts": {"first_token": "45s"}}, "providers": [local], "routes": []})
    assert told.providers["local"].timeouts == Timeouts(5, 45, 30, 1800)


def test_keys_reach_only_their_provider():
    s = snap()
    assert s.providers["openai"].api_key == "sk-x"
    assert s.providers["local"].api_key is None


def test_models_lists_exact_routes_and_declared_models_with_aliases():
    ids = [m for m, _ in snap().models()]
    assert ids == ["qwen-small", "any", "llama", "qwen", "q-s", "gpt-4o-mini"]
    assert dict(snap().models())["any"] == "anthropic"


def test_failover_policy():
    assert fails_over(UpstreamConnectError("p", "refused"))
    assert fails_over(UpstreamTimeout("p", "connect", 1))
    assert fails_over(UpstreamTimeout("p", "first_token", 1))
    assert fails_over(UpstreamStatusError("p", 503, b""))
    assert fails_over(UpstreamStatusError("p", 429, b""))
    assert fails_over(UpstreamStatusError("p", 529, b""))
    assert fails_over(UpstreamProtocolError("p", "bad"))
    for status in (400, 401, 403, 404, 413, 422):
        assert not fails_over(UpstreamStatusError("p", status, b""))
    seen = [t.provider for t in snap().route("any").targets]
    assert seen == ["anthropic", "local", "openai"]


def test_attempt_steps_are_made_once_per_runtime_and_dialect():
    """The attempt loop's per-target lookups (`attempts.steps`) are kept on the Route: made once for a
    Runtime and dialect, one entry per dialect, made afresh for other backends, and never carried over a
    reload (its Snapshot's Routes are new)."""
    from mlxgw.backends.http import HttpClient
    from mlxgw.server import attempts
    from mlxgw.server.chat import ChatCompletions
    from mlxgw.server.messages import Messages
    from mlxgw.server.runtime import Runtime, build

    http = HttpClient()
    rt = build(7, CONFIG, {"openai": "sk-x"}, http)
    route = rt.snapshot.route("any")  # anthropic, then @small (local/qwen-small, openai/gpt-4o-mini)
    chat, messages = ChatCompletions(), Messages()
    order = attempts.steps(rt, route, chat)
    assert attempts.steps(rt, route, chat) is order
    # (no supervisor here: the local provider has no backend, hence no pair)
    assert [(s.label, s.backend is rt.backends.get(s.name), s.pair and s.pair.wire, later) for s, later in order] == [
        ("anthropic", True, "anthropic", True), ("local/qwen-small", True, None, True),
        ("openai/gpt-4o-mini", True, "openai", False)]
    assert [s.pair and s.pair.wire for s, _ in attempts.steps(rt, route, messages)] == ["anthropic", None, "openai"]
    assert len(route.steps) == 2  # one per dialect

    # the same Snapshot with other backends: made afresh, in place of the old
    other = Runtime(rt.snapshot, {"openai": build(8, CONFIG, {}, http).backends["openai"]}, {})
    again = attempts.steps(other, route, chat)
    assert [s.backend is other.backends.get(s.name) for s, _ in again] == [True, True, True]
    assert [s.pair and s.pair.wire for s, _ in again] == [None, None, "openai"]
    assert again[2][0].backend is not order[2][0].backend and len(route.steps) == 2

    # a reload builds a new Snapshot: its Routes have made none yet
    assert build(9, CONFIG, {"openai": "sk-x"}, http).snapshot.route("any").steps == {}
