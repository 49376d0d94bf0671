"""Bytecodes executed per Python function, in a running server: the in-process half of bench/opcodes.py.

    python bench/optrace.py OUT -m mlxgw serve --port P      (or: python bench/optrace.py OUT script.py ...)

Runs the module or script as `python -m` / `python script.py` would, with two signal handlers: SIGUSR1
starts counting (a trace function with `f_trace_opcodes` on every frame entered from then on, in the main
thread: the event loop), SIGUSR2 stops and writes one line per function to OUT: bytecodes, calls,
`file:line:qualified name`. A coroutine or generator created before SIGUSR1 is not counted, so start
after a warm-up. Counting slows the process about a hundredfold; the counts do not depend on its speed.
"""

from __future__ import annotations

import collections
import runpy
import signal
import sys

_opcodes: collections.Counter = collections.Counter()
_calls: collections.Counter = collections.Counter()


def _trace(frame, event, arg):
    if event != "call":
        return None
    frame.f_trace_opcodes = True
    code = frame.f_code
    key = f"{code.co_filename}:{code.co_firstlineno}:{code.co_qualname}"
    _calls[key] += 1

    def local(frame, event, arg):
        if event == "opcode":
            _opcodes[key] += 1
        return local

    return local


def main() -> None:
    out, target, args = sys.argv[1], sys.argv[2], sys.argv[3:]

    def start(signum, frame) -> None:
        _opcodes.clear()
        _calls.clear()
        sys.settrace(_trace)

    def stop(signum, frame) -> None:
        sys.settrace(None)
        with open(out, "w") as f:
            for key, n in _opcodes.most_common():
                f.write(f"{n}\t{_calls[key]}\t{key}\n")

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    if target == "-m":
        sys.argv = [args[0], *args[1:]]
        runpy.run_module(args[0], run_name="__main__", alter_sys=True)
    else:
        sys.argv = [target, *args]
        runpy.run_path(target, run_name="__main__")


if __name__ == "__main__":
    main()
