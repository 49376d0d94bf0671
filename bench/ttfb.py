"""Streaming time-to-first-byte client for the benchmark (raw asyncio sockets, uvloop when installed).

    python bench/ttfb.py --port P --concurrency C --duration S [--path /v1/chat/completions]

Opens C keep-alive connections; each sends streaming chat-completion requests back to back until the
duration is over. For every request it records the time from sending the request to the first byte of
the first SSE event ("data:") and to the end of the response. Prints one JSON object (microseconds):
{"requests", "errors", "rps", "ttfb_us": {p50, p90, p99}, "total_us": {p50, p90, p99}}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


async def worker(host: str, port: int, request: bytes, deadline: float, ttfb: list, total: list, errors: list) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            writer.write(request)
            buf = b""
            first = None
            head_end = -1
            length = None
            chunked = False
            while True:
                data = await reader.read(65536)
                if not data:
                    raise ConnectionError("server closed the connection")
                buf += data
                if head_end < 0:
                    head_end = buf.find(b"\r\n\r\n")
                    if head_end < 0:
                        continue
                    head = buf[:head_end].lower()
                    if not head.startswith(b"http/1.1 200"):
                        errors.append(head.split(b"\r\n", 1)[0].decode(errors="replace"))
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name == b"content-length":
                            length = int(value)
                        elif name == b"transfer-encoding" and b"chunked" in value:
                            chunked = True
                if first is None and buf.find(b"data:", head_end) >= 0:
                    first = time.perf_counter()
                body_len = len(buf) - head_end - 4
                if length is not None and body_len >= length:
                    break
                if chunked and buf.endswith(b"0\r\n\r\n") and (buf.endswith(b"\r\n0\r\n\r\n") or body_len == 5):
                    break
                if length is None and not chunked and head_end >= 0:
                    raise ConnectionError("response without content-length or chunked encoding")
            t1 = time.perf_counter()
            ttfb.append(((first or t1) - t0) * 1e6)
            total.append((t1 - t0) * 1e6)
    finally:
        writer.close()


async def run(args: argparse.Namespace) -> dict:
    body = os.environ.get("BENCH_BODY") or json.dumps({
        "model": "bench-model", "messages": [{"role": "user", "content": "Say hello."}], "stream": True})
    request = (f"POST {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\nContent-Type: application/json\r\n"
               f"Accept: text/event-stream\r\nContent-Length: {len(body.encode())}\r\n\r\n").encode() + body.encode()
    ttfb: list[float] = []
    total: list[float] = []
    errors: list[str] = []
    start = time.perf_counter()
    deadline = start + args.duration
    results = await asyncio.gather(*(worker(args.host, args.port, request, deadline, ttfb, total, errors)
                                     for _ in range(args.concurrency)), return_exceptions=True)
    elapsed = time.perf_counter() - start
    failures = [repr(r) for r in results if isinstance(r, BaseException)]
    return {
        "requests": len(total),
        "errors": len(errors) + len(failures),
        "error_samples": (errors + failures)[:3],
        "rps": len(total) / elapsed if elapsed else 0.0,
        "ttfb_us": {"p50": pct(ttfb, 50), "p90": pct(ttfb, 90), "p99": pct(ttfb, 99)},
        "total_us": {"p50": pct(total, 50), "p90": pct(total, 90), "p99": pct(total, 99)},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/v1/chat/completions")
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--duration", type=float, default=2.0)
    args = ap.parse_args()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
