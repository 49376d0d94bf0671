"""Issue 12, item 3: route regexes run in linear time (RE2) with Python's meaning, the constructs RE2
cannot run are refused by validate with FILE:LINE, and route answers are cached per snapshot."""

from __future__ import annotations

import re

import httpx
import pytest

from mlxgw.routing import Snapshot
from mlxgw.regex import Matcher, problem
from mlxgw.server import ServerConfig
from tests.gateway_harness import apply_config, openai_config, running_gateway
from tests.test_ui import TRICKY_NAMES
from tests.upstream import upstream, upstream_server  # noqa: F401

PATTERNS = [
    "mini$", r"^o\d", "(?i)^CLAUDE", r"^\w+!$", r"(?a)\bbeta\b", r"^x{,2}y$", "^a.b$", r"^sp\sce$", "^[]a]z$",
    r"^\d+b\Z", "(?m)^tail$", "(?s)^dot.all$", "^(o1|o3|o4)(-|$)", "^claude-", ".*", "^(a+)+$", r"[^\W\d]+-\S",
    r"(?i:gpt)-\D", "^(?:ab|a)*c$", r"\Aq[^x]?\Z|^z$", "(?m)a$", "é+", "^(mini$)?", r"(?a)\w\B\w",
]
# (Short runs of "a": Python itself backtracks exponentially on "^(a+)+$".)
NAMES = TRICKY_NAMES + ["a" * 12, "a" * 12 + "!", "gpt-4", "GPT-x", "abababc", "q", "qy", "z", "z\n", "éé", "Éé",
                        "mini\n\n", "a\nmini\n", "٣-x", "ss", "x\u212a"]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_re2_means_what_python_means(pattern):
    m = Matcher(pattern)
    assert problem(pattern) is None
    wrong = [n for n in NAMES if m.search(n) != bool(re.search(pattern, n))]
    assert wrong == []


@pytest.mark.parametrize("pattern, construct", [
    ("^(?=a)", "lookaround"), ("(?<!x)y", "lookaround"), (r"^(a)\1$", "backreference"), ("a*+", "possessive"),
    ("(?>ab|a)c", "atomic"), ("(a)?(?(1)b|c)", "conditional"), (r"\bbeta", "word boundary"),
    ("a$b", "`$` with more pattern"), ("(a$)+", "`$` with more pattern"), ("a{2000}", "too large"),
    ("([a-", "does not compile"),
])
def test_what_re2_cannot_run_is_refused(pattern, construct):
    assert construct in problem(pattern)
    assert Matcher(pattern).search("a") is False  # a route stored before this check matches nothing


def test_validate_points_at_the_line(home, cli, tmp_path):
    f = tmp_path / "g.yaml"
    f.write_text("version: 1\nproviders: [{name: up, kind: openai}]\nroutes:\n"
                 "  - {match: {regex: '^ok$'}, target: up}\n  - {match: {regex: '^(a)\\1$'}, target: up}\n")
    code, out, err = cli("validate", "-f", str(f), "--offline")
    assert code == 1 and f"{f}:5:" in out + err and "routes[1].match.regex: regex uses a backreference" in out + err


def test_a_backtracking_pattern_runs_in_linear_time():
    snap = Snapshot({"providers": [{"name": "up", "kind": "openai"}],
                     "routes": [{"match": {"regex": "^(a+)+$"}, "target": "up"}]})
    # Python's backtracking would take about 2**100000 steps here; RE2 answers at once.
    assert snap.route("a" * 100_000 + "!") is None
    assert snap.route("a" * 100_000).key == "regex:^(a+)+$"


def test_route_answers_are_cached_per_snapshot():
    snap = Snapshot({"providers": [{"name": "up", "kind": "openai"}],
                     "routes": [{"match": {"regex": "^gpt"}, "target": "up"}]})
    for _ in range(3):
        assert snap.route("gpt-4").key == "regex:^gpt"
    info = snap._cached.cache_info()  # noqa: SLF001
    assert (info.hits, info.misses) == (2, 1) and info.maxsize == 4096


def test_model_names_are_capped_and_health_answers(home, cli, tmp_path, upstream):  # noqa: F811
    apply_config(cli, tmp_path, openai_config(upstream.base_url, routes='- match: {regex: "^(a+)+$"}\n  target: up\n'))
    with running_gateway(ServerConfig()) as gw:
        for path, body in (("/chat/completions", {"messages": [{"role": "user", "content": "x"}]}),
                           ("/messages", {"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})):
            r = httpx.post(gw.base_url + path, json={"model": "a" * 257, **body})
            assert r.status_code == 400 and "model" in r.text and "256" in r.text
            r = httpx.post(gw.base_url + path, json={"model": "a" * 255 + "!", **body})
            assert r.status_code == 404
        assert httpx.get(gw.origin + "/health").status_code == 200
