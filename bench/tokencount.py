#!/usr/bin/env python3
"""What an exact prompt count costs (issue 13): Claude Code's request shape (tests/claude_code_shape.py),
grown to about 30k tokens of the model's tokenizer, counted the way the gateway counts it for a local
model (backends/tokencount.py: render the chat template, encode with tokenizer.json).

    python bench/tokencount.py [--model DIR] [--tokens 30000] [--runs 20] [--tools-template]

Default model: the tests' tiny model (a 512-token byte-level BPE vocabulary; a real model's 150k-token
vocabulary makes fewer, longer tokens of the same text, so per token a real tokenizer costs about the
same or more per character). The tiny model's template ignores tools; `--tools-template` swaps in a
Qwen-style one that renders every tool's JSON schema with `tojson`, as agent-capable models do. Prints
the load time (once per model folder), and the median and worst of
render, encode and the whole count.
"""

from __future__ import annotations

import argparse
import atexit
import json
import shutil
import statistics
import tempfile
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlxgw.backends import tokencount  # noqa: E402
from mlxgw.dialects import anthropic as an  # noqa: E402
from tests import claude_code_shape  # noqa: E402
from tests.engines import tiny_model  # noqa: E402


def with_tools_template(folder: str) -> str:
    """A copy of the model folder whose chat template renders tools."""
    out = Path(tempfile.mkdtemp(prefix="tokencount-"))
    for name in ("tokenizer.json", "config.json"):
        shutil.copy(Path(folder) / name, out / name)
    config = json.loads((Path(folder) / "tokenizer_config.json").read_text())
    (out / "tokenizer_config.json").write_text(json.dumps({**config,
                                                           "chat_template": claude_code_shape.TOOLS_TEMPLATE}))
    atexit.register(shutil.rmtree, out, True)
    return str(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="a model folder with tokenizer.json (default: the tiny model)")
    ap.add_argument("--tokens", type=int, default=30000)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--tools-template", action="store_true", help="a chat template that renders the tools")
    args = ap.parse_args()
    folder = str(args.model or tiny_model.ensure())
    if args.tools_template:
        folder = with_tools_template(folder)
    t0 = time.perf_counter()
    c = tokencount.counter(folder)
    load = time.perf_counter() - t0
    if c is None:
        print(f"{folder}: no tokenizer.json or chat template", file=sys.stderr)
        return 1
    scale = 1.0
    for _ in range(20):  # grow or shrink the prose until the prompt is within 2% of the target
        chat = an.to_openai_request(claude_code_shape.request("m", scale), "m")
        n = c.count(chat)
        if abs(n - args.tokens) <= args.tokens * 0.02:
            break
        scale *= args.tokens / n
    renders, encodes, totals = [], [], []
    for _ in range(args.runs):
        a = time.perf_counter()
        text = c.render(chat)
        b = time.perf_counter()
        c.tokenizer.encode(text, add_special_tokens=False)
        e = time.perf_counter()
        c.count(chat)
        totals.append(time.perf_counter() - e)
        renders.append(b - a)
        encodes.append(e - b)

    def ms(xs):
        return f"median {statistics.median(xs) * 1000:.1f} ms, worst {max(xs) * 1000:.1f} ms"

    print(f"model {folder}: prompt of {n} tokens ({len(text.encode()) / 1024:.0f} KiB rendered, "
          f"{len(chat.get('tools') or [])} tools), {args.runs} runs")
    print(f"load (once per model folder): {load * 1000:.1f} ms")
    print(f"render chat template: {ms(renders)}")
    print(f"encode:               {ms(encodes)}")
    print(f"count (both):         {ms(totals)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
