"""Local engines for tests: where the installed engines and the tiny model are, and gateway configs that
serve them.

In CI (see tests/ci.py) a missing engine is a test failure (the install step in .ci/run went wrong); on a
developer's machine it is a skip that names the install command.
"""

from __future__ import annotations

import yaml

from tests.ci import missing
from tests.engines import install, tiny_model

ENGINES = tuple(install.ENGINES)


def engine_executable(engine: str) -> str:
    if install.is_installed(engine):
        return str(install.executable(engine))
    missing(f"{engine} (in {install.venv_dir(engine)})", f"python3 tests/engines/install.py {engine}")


def tiny_model_dir() -> str:
    return str(tiny_model.ensure())


def local_config(kind: str, command: str, models: list[dict], *, provider: str = "eng", env: dict | None = None,
                 routes: list[dict] | None = None, **provider_extra) -> str:
    """gateway.yaml text: one local provider and a route per model name and alias."""
    p = {"name": provider, "kind": kind, "command": command, "models": models, **provider_extra}
    if env:
        p["env"] = env
    if routes is None:
        routes = []
        for m in models:
            for name in [m["name"], *(m.get("aliases") or [])]:
                routes.append({"match": {"exact": name}, "target": f"{provider}/{name}"})
    return yaml.safe_dump({"version": 1, "providers": [p], "routes": routes}, sort_keys=False)
