"""A minimal OpenAI-compatible chat server on loopback, for faults a real server will not produce on demand
(errors, time-outs, latency). Used only where those faults are the point of the test."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StubServer:
    """``behaviour(messages) -> ("ok", text) | ("error", status) | ("sleep", seconds)``."""

    def __init__(self, behaviour, delay_s: float = 0.0, root: str | None = None):
        self.behaviour, self.delay_s = behaviour, delay_s
        self.root = root  # the weights path /v1/models reports (vLLM's "root"), when set
        self.requests = 0
        self.bodies: list[dict] = []  # every chat request as received (extra_body fields included)
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, payload: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

            def do_GET(self):
                model = {"id": "stub-teacher", "object": "model", **({"root": stub.root} if stub.root else {})}
                self._send(200, {"object": "list", "data": [model]})

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                request = json.loads(self.rfile.read(length))
                stub.requests += 1
                stub.bodies.append(request)
                if stub.delay_s:
                    time.sleep(stub.delay_s)
                kind, value = stub.behaviour(request["messages"])
                if kind == "error":
                    self._send(int(value), {"error": {"message": "stub failure", "type": "server_error"}})
                    return
                if kind == "sleep":
                    time.sleep(float(value))
                    value = ""
                n = int(request.get("n", 1))
                self._send(200, {"id": "x", "object": "chat.completion", "created": 0, "model": "stub-teacher",
                                 "choices": [{"index": i, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": value}}
                                             for i in range(n)],
                                 "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> StubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def user_text(messages: list[dict]) -> str:
    content = messages[-1]["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


def echo_draft(messages: list[dict]) -> tuple[str, str]:
    """A 'teacher' that returns the draft it was given, lightly reworded (keeps the evidence)."""
    draft = user_text(messages).split("Draft response:\n", 1)[1]
    return "ok", draft.replace("Observations: ", "Observations: Looking closely, ", 1)
