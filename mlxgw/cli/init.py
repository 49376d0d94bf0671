"""mlxgw init: find local MLX models, engines and cloud keys, and write a gateway.yaml that validates.

The discovery is mlxgw.discover, the file mlxgw.initconfig; this module prints what was found and what to
run next. An existing file is kept unless --yes (then its previous text goes to FILE.bak)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated, Optional

import typer

from mlxgw.cli import _output, app
from mlxgw.errors import MlxgwError


@app.command()
def init(
    output: Annotated[str, typer.Option("-o", "--output", help="The gateway.yaml to write.")] = "gateway.yaml",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Overwrite an existing file (keeping FILE.bak).")] = False,
    scan: Annotated[Optional[list[str]], typer.Option(
        "--scan", help="Another folder to look for models in (repeatable).")] = None,
) -> None:
    """Find local MLX models (Hugging Face cache, LM Studio, ~/models, --scan folders), the engines that
    serve them and cloud keys in the environment, and write a commented gateway.yaml for them."""
    from mlxgw import discover, initconfig
    from mlxgw.config.loader import load_text
    from mlxgw.config.validate import check

    path = Path(output)
    if path.exists() and not yes:
        raise MlxgwError(f"{output} exists; nothing was written",
                         f"pass --yes to replace it (the old one is kept as {output}.bak), or -o another file")
    missing = [s for s in scan or [] if not Path(s).expanduser().is_dir()]
    if missing:
        raise MlxgwError(f"--scan {missing[0]}: no such folder; nothing was written",
                         "give folders that exist (they are searched up to four levels deep)")
    found = discover.discover([Path(s) for s in scan or []])
    engine = found.engine
    on_path = bool(engine) and shutil.which(engine) == found.engines[engine]
    text = initconfig.render(found, on_path)
    problems = check(load_text(text, output), offline=True)
    if problems:  # a bug in init, not the user's doing: never write a file that does not validate
        raise MlxgwError("the generated file does not validate: " + "; ".join(p.format() for p in problems))
    if path.exists():
        shutil.copyfile(path, str(path) + ".bak")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    _report(found, output)


def _report(found, output: str) -> None:
    from rich.table import Table

    from mlxgw.discover import INSTALL_HINT
    from mlxgw.supervisor.memory import budget, human

    out = _output.out
    if found.models:
        limit = budget()
        table = Table("name", "repository", "where", "quant", "size", "memory estimate", title="Local models")
        for m in found.models:
            est = m.estimate.total if m.estimate else None
            note = " (over the memory budget)" if est and est > limit else ""
            table.add_row(m.name, m.repo, m.source, f"{m.bits}-bit" if m.bits else "-", human(m.size),
                          human(est) + note)
        out.print(table)
    else:
        _output.say("No local MLX models found in: " + ", ".join(found.searched))
    for line in found.skipped:
        _output.warn(f"skipped {line}")
    table = Table("engine / key", "found", title="Engines and cloud keys")
    for engine in ("vllm-mlx", "mlx-openai-server"):
        where = found.engines.get(engine)
        table.add_row(engine, (where + (" (used)" if engine == found.engine else "")) if where else "-")
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        table.add_row(var, "set (written as ${env:%s})" % var if var in found.keys.values() else "-")
    out.print(table)
    if found.models and not found.engine:
        _output.warn(f"no engine to serve the local models: install one ({INSTALL_HINT}), then run "
                     "`mlxgw init --yes` again")
    _output.say(f"wrote {output}", style="green")
    from mlxgw.initconfig import default_target

    if default_target(found) is None:
        _output.warn("nothing to serve yet: every model name gets 404 until you add a model or a key. "
                     f"See the end of {output} for what to do.")
    _output.say("next:")
    _output.say(f"  mlxgw apply -f {output} --yes")
    _output.say("  mlxgw serve")
