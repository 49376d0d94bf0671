"""A real `mlxgw serve` imports only what it uses (issue 15: idle memory). Each package here costs 1 to 13 MiB
of resident memory once imported; the server needs none of them until a config or a request does.

The server writes its sorted sys.modules once started when MLXGW_DEBUG_MODULES names a file (a debug hook
in mlxgw.server.lifespan). How much memory that saves is bench/'s business, not asserted here.
"""

from __future__ import annotations

import signal

from tests.gateway_harness import apply_config
from tests.test_cli_serve import start

# Never on the serve path: the CLI's libraries, and what the server loads only on demand.
NEVER = ("sqlalchemy", "jsonschema", "yaml", "httpx", "rich", "pydantic", "websockets")
ON_DEMAND = ("cryptography", "prometheus_client", "re2", "tokenizers", "jinja2")

PLAIN = """\
version: 1
providers:
  - name: up
    kind: openai-compatible
    base_url: http://127.0.0.1:9/v1
routes:
  - name: bench
    match: {prefix: "bench-"}
    target: up
"""


def served_modules(tmp_path, monkeypatch) -> set[str]:
    dump = tmp_path / "modules.txt"
    monkeypatch.setenv("MLXGW_DEBUG_MODULES", str(dump))
    proc, _port, _ = start()  # returns once /health answers 200, i.e. after the start-up hook ran
    try:
        modules = set(dump.read_text().split())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert "mlxgw.server.app" in modules and "uvicorn" in modules  # the list is the server's own
    return modules


def test_serve_loads_no_orm_crypto_or_metrics_library_it_does_not_need(home, cli, tmp_path, monkeypatch):
    apply_config(cli, tmp_path, PLAIN)  # one keyless provider, one prefix route: what bench/run.py serves
    modules = served_modules(tmp_path, monkeypatch)
    for name in NEVER + ON_DEMAND:
        assert name not in modules, f"mlxgw serve imported {name}"


def test_a_stored_key_and_a_regex_route_load_what_they_need(home, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("UP_KEY", "sk-test-not-secret")
    apply_config(cli, tmp_path, PLAIN.replace("/v1\n", "/v1\n    api_key: ${env:UP_KEY}\n").replace(
        "routes:\n", 'routes:\n  - match: {regex: "^re-[a-z]+$"}\n    target: up\n'))
    modules = served_modules(tmp_path, monkeypatch)
    assert {"cryptography", "re2"} <= modules  # decrypting the key, compiling the route's regex
    for name in NEVER:
        assert name not in modules, f"mlxgw serve imported {name}"
