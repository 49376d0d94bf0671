"""A stand-in local engine for the supervisor's fast tests: a real process with a real HTTP server.

It accepts both engines' command lines (`launch --model-path DIR ... --port P` and `serve DIR --port P`),
answers GET /health like vllm-mlx (`model_loaded: true`), POST /v1/chat/completions (JSON or SSE) and
POST /v1/messages (JSON) and /v1/messages/count_tokens (always 4242 tokens). Its answer's content echoes the request parameters it received, so tests can
check request defaults. Behaviour is set by environment variables (the provider's `env`):

    FAKE_START_DELAY=SECONDS   wait before listening (a slow load)
    FAKE_READY_FILE=PATH       then wait until PATH exists (a load the test ends when it chooses)
    FAKE_MODE=exit             print a line and exit 3 during start (so does an `--explode` argument)
    FAKE_MODE=never_ready      /health answers 503 forever
    FAKE_MODE=ignore_term      ignore SIGTERM (the supervisor must SIGKILL)
    FAKE_CHILD=1               start a child process in the same process group (like mlx-openai-server)
    FAKE_TOKEN_DELAY=SECONDS   pause between streamed chunks
    FAKE_FIRST_TOKEN_DELAY=S   a long prefill: a stream's headers go out at once, its first chunk S later
    FAKE_ROLE_CHUNK=1          a stream starts with a role-only chunk, before that delay (mlx-openai-server)
    FAKE_STARTS=FILE           append "pid port" to FILE when the server listens
    FAKE_CASSETTES=DIR         answer each POST with a real engine's recorded answer (the vcrpy cassettes in
                               DIR, tests/cassettes/<engine>) to a well-formed request of the same path
                               and streaming mode
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit


COUNT_TOKENS = 4242


def arg(argv: list[str], flag: str, default=None):
    return argv[argv.index(flag) + 1] if flag in argv else default


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    served = "model"

    def log_message(self, fmt, *args):
        print("fake-engine:", fmt % args, flush=True)

    def _json(self, status: int, obj) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            if os.environ.get("FAKE_MODE") == "never_ready":
                return self._json(503, {"status": "loading", "model_loaded": False})
            return self._json(200, {"status": "healthy", "model_loaded": True, "model_name": self.served})
        if self.path == "/v1/models":
            return self._json(200, {"object": "list", "data": [{"id": self.served, "object": "model"}]})
        self._json(404, {"error": {"message": "not found"}})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
        if body.get("model") != self.served:
            return self._json(404, {"error": {"message": f"model {body.get('model')!r} not found",
                                              "code": "model_not_found"}})
        if os.environ.get("FAKE_CASSETTES"):
            return self._recorded(bool(body.get("stream")))
        params = {k: body.get(k) for k in ("temperature", "top_p", "max_tokens", "max_completion_tokens")}
        text = "echo " + json.dumps(params, sort_keys=True)
        n = int(body.get("max_tokens") or 5)
        usage = {"prompt_tokens": 3, "completion_tokens": n, "total_tokens": 3 + n}
        if self.path == "/v1/messages/count_tokens":  # a count no estimate would give
            return self._json(200, {"input_tokens": COUNT_TOKENS})
        if self.path == "/v1/messages":
            return self._json(200, {"id": "msg_fake", "type": "message", "role": "assistant", "model": self.served,
                                    "content": [{"type": "text", "text": text}], "stop_reason": "max_tokens",
                                    "usage": {"input_tokens": 3, "output_tokens": n}})
        if self.path != "/v1/chat/completions":
            return self._json(404, {"error": {"message": "not found"}})
        if not body.get("stream"):
            return self._json(200, {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                                    "model": self.served, "usage": usage, "choices": [
                                        {"index": 0, "finish_reason": "length",
                                         "message": {"role": "assistant", "content": text}}]})
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        delay = float(os.environ.get("FAKE_TOKEN_DELAY") or 0)
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": self.served}
        if os.environ.get("FAKE_ROLE_CHUNK"):
            role = {**base, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}
            self.wfile.write(b"data: " + json.dumps(role).encode() + b"\n\n")
        self.wfile.flush()
        time.sleep(float(os.environ.get("FAKE_FIRST_TOKEN_DELAY") or 0))
        try:
            for i in range(n):
                delta = {"content": text if i == 0 else f" t{i}"}
                finish = "length" if i == n - 1 else None
                chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                if finish:
                    chunk["usage"] = usage
                self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                self.wfile.flush()
                if delay and i < n - 1:
                    time.sleep(delay)
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            print("fake-engine: stream complete", flush=True)
        except (BrokenPipeError, ConnectionResetError):
            print("fake-engine: client disconnected mid-stream", flush=True)
        self.close_connection = True


    def _recorded(self, stream: bool) -> None:
        import yaml  # only this mode needs it

        for path in sorted(Path(os.environ["FAKE_CASSETTES"]).glob("*.yaml")):
            for i in yaml.safe_load(path.read_text())["interactions"]:
                req, resp = i["request"], i["response"]
                sent = json.loads(req["body"] or "{}")
                if req["method"] == "POST" and urlsplit(req["uri"]).path == self.path \
                        and bool(sent.get("stream")) == stream and isinstance(sent.get("messages"), list):
                    data = resp["body"]["string"]
                    data = data.encode() if isinstance(data, str) else data
                    self.send_response(resp["status"]["code"])
                    headers = {k.lower(): v[0] for k, v in resp["headers"].items()}
                    self.send_header("content-type", headers.get("content-type", "application/json"))
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
        self._json(404, {"error": {"message": f"no recorded answer for {self.path} (stream={stream})"}})


def main(argv: list[str]) -> int:
    port = int(arg(argv, "--port"))
    Handler.served = arg(argv, "--served-model-name", "model")
    print(f"fake-engine: starting {' '.join(argv)}", flush=True)
    mode = os.environ.get("FAKE_MODE", "")
    if mode == "ignore_term":
        signal.signal(signal.SIGTERM, lambda *a: print("fake-engine: ignoring SIGTERM", flush=True))
    if os.environ.get("FAKE_CHILD"):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        print(f"fake-engine: child {child.pid}", flush=True)
    time.sleep(float(os.environ.get("FAKE_START_DELAY") or 0))
    while os.environ.get("FAKE_READY_FILE") and not os.path.exists(os.environ["FAKE_READY_FILE"]):
        time.sleep(0.02)
    if mode == "exit" or "--explode" in argv:
        print("fake-engine: boom: cannot load the model weights", flush=True)
        return 3
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    if os.environ.get("FAKE_STARTS"):
        with open(os.environ["FAKE_STARTS"], "a") as f:
            f.write(f"{os.getpid()} {port}\n")
    print(f"fake-engine: listening on {port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
