"""The bench's bare passthrough: mlxgw's stack with none of mlxgw's own work, the ceiling to compare with.

    python bench/passthrough.py --port P --upstream http://127.0.0.1:U

Falcon ASGI on uvicorn (uvloop + httptools), one aiohttp ClientSession made at start-up. POST
/v1/chat/completions is relayed as bytes: the request body is read and posted as it is; a JSON answer is
read and written as bytes; a stream is relayed chunk by chunk as aiohttp reads it. GET /health answers
200. No parsing, no routing, no audit, no ids: whatever the gateway costs beyond this is its own work.
The uvicorn settings mirror `mlxgw serve`'s defaults (mlxgw/cli/serve.py), except that mlxgw's http
protocol is httptools with header/body deadlines added and this one is plain httptools.
"""

from __future__ import annotations

import argparse
import importlib.util

import aiohttp
import falcon
import falcon.asgi
import uvicorn


class Relay:
    def __init__(self, upstream: str) -> None:
        self.url = upstream.rstrip("/") + "/v1/chat/completions"
        self.session: aiohttp.ClientSession | None = None

    async def process_startup(self, scope, event) -> None:  # Falcon's lifespan hook
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1000, keepalive_timeout=30.0),
            timeout=aiohttp.ClientTimeout(total=None), skip_auto_headers=("User-Agent",))

    async def process_shutdown(self, scope, event) -> None:
        await self.session.close()

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = await req.stream.read()
        up = await self.session.post(self.url, data=body, headers={"Content-Type": "application/json"})
        resp.status = up.status
        resp.content_type = up.headers.get("Content-Type", "application/json")
        if resp.content_type.startswith("text/event-stream"):
            async def chunks():
                async with up:
                    async for chunk in up.content.iter_any():
                        yield chunk
            resp.stream = chunks()
        else:
            async with up:
                resp.data = await up.read()


class Health:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.data = b'{"status":"ok"}'


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True, help="base URL of the upstream, e.g. http://127.0.0.1:9000")
    args = ap.parse_args()
    relay = Relay(args.upstream)
    app = falcon.asgi.App(middleware=[relay], cors_enable=False)
    app.add_route("/v1/chat/completions", relay)
    app.add_route("/health", Health())
    uvicorn.run(app, host="127.0.0.1", port=args.port, lifespan="on", access_log=False, log_level="info",
                loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio", http="httptools",
                timeout_keep_alive=5.0, limit_concurrency=1000, timeout_graceful_shutdown=30.0,
                server_header=False, proxy_headers=False)


if __name__ == "__main__":
    main()
