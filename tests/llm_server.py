"""A real OpenAI-compatible chat-completions server on loopback, scripted per test.

``LLMServer`` is an ``http.server.ThreadingHTTPServer`` on 127.0.0.1 and a free
port, in a thread. It speaks the protocol the LLM hook speaks -- ``POST
/v1/chat/completions`` with a JSON body, a ``chat.completion`` object back,
OpenAI's ``{"error": {...}}`` bodies on errors -- and answers each request with
the next scripted ``Reply`` (an answer, an error status with headers, a raw
body, a delay first). It records every request (path, headers, body) so tests
can read exactly what left the client. ``llm_server`` is the pytest fixture.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

PATH = "/v1/chat/completions"


@dataclass
class Reply:
    """One scripted response: a completion (``content``), else ``status`` with an error or ``raw`` body."""

    content: str | None = None
    status: int = 200
    message: str = ""  # the error's message (OpenAI's error body)
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # sent as it is (content type text/plain)
    delay_s: float = 0.0  # wait this long before answering
    finish_reason: str = "stop"
    refusal: str | None = None
    drip: str | None = None  # "headers" or "body": from there on, a byte every DRIP_S seconds


DRIP_S = 0.1


def answer(scenario: dict[str, Any] | str, **kwargs: Any) -> Reply:
    """A completion whose content is ``scenario`` (a dict goes as JSON text)."""
    return Reply(content=scenario if isinstance(scenario, str) else json.dumps(scenario), **kwargs)


def error(status: int, message: str, **headers: str) -> Reply:
    return Reply(status=status, message=message, headers=dict(headers))


def rate_limited(retry_after: str) -> Reply:
    return error(429, "Rate limit reached for requests", **{"Retry-After": retry_after})


def slow(seconds: float, then: Reply) -> Reply:
    then.delay_s = seconds
    return then


@dataclass
class Recorded:
    """A request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class LLMServer:
    """The server: ``script(*replies)``, then point a client at ``base_url``; ``requests`` records."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._ids = itertools.count(1)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="llm-server", daemon=True)

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._replies)

    def __enter__(self) -> "LLMServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stopping.set()  # a delayed reply stops waiting
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # -- called by the handler ------------------------------------------------------------------
    def _take(self, request: Recorded) -> Reply | None:
        with self._lock:
            self.requests.append(request)
            return self._replies.popleft() if self._replies else None

    def _completion(self, reply: Reply, request: dict[str, Any]) -> dict[str, Any]:
        prompt = sum(len(str(m.get("content", ""))) for m in request.get("messages", [])) // 4
        completion = len(reply.content or "") // 4
        message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": reply.refusal}
        return {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model"),
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish_reason}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion},
        }


def _error_body(message: str, status: int) -> bytes:
    kind = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
            429: "rate_limit_error"}.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": None}}).encode()


def _handler(server: LLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read ``requests``
            pass

        def do_GET(self) -> None:
            self._send(404, _error_body(f"Unknown request URL: GET {self.path}", 404))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if self.path != PATH:
                self._send(404, _error_body(f"Unknown request URL: POST {self.path}", 404))
                return
            recorded = Recorded("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            try:
                request = json.loads(body)
                if not isinstance(request.get("model"), str) or not isinstance(request.get("messages"), list):
                    raise ValueError("'model' (a string) and 'messages' (a list) are required")
            except (ValueError, AttributeError) as exc:
                server._take(recorded)
                self._send(400, _error_body(f"We could not parse the JSON body of your request: {exc}", 400))
                return
            reply = server._take(recorded)
            if reply is None:
                self._send(500, _error_body("the test scripted no reply for this request", 500))
                return
            if reply.delay_s and server._stopping.wait(reply.delay_s):
                return  # shutting down
            if reply.raw is not None:
                self._send(reply.status, reply.raw, "text/plain; charset=utf-8", reply.headers)
            elif reply.status != 200 or reply.content is None and reply.refusal is None:
                self._send(reply.status, _error_body(reply.message, reply.status), headers=reply.headers)
            else:
                self._send(200, json.dumps(server._completion(reply, request)).encode(), headers=reply.headers,
                           drip=reply.drip)

        def _send(self, status: int, body: bytes, content_type: str = "application/json",
                  headers: dict[str, str] | None = None, drip: str | None = None) -> None:
            if drip is not None:
                self._drip(status, body, content_type, drip)
                return
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test): nothing to answer

        def _drip(self, status: int, body: bytes, content_type: str, where: str) -> None:
            """A server that answers, but slower than any client should wait for: never idle long
            enough for a socket timeout, never done."""
            head = (f"HTTP/1.1 {status} OK\r\nContent-Type: {content_type}\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            sent = 0 if where == "headers" else len(head)
            try:
                self.wfile.write(head[:sent])
                for byte in head[sent:] + body:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    if server._stopping.wait(DRIP_S):
                        return
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler


@pytest.fixture
def llm_server() -> Iterator[LLMServer]:
    """A running server; fails the test if a scripted reply was left unused."""
    with LLMServer() as server:
        yield server
        assert server.pending == 0, f"{server.pending} scripted replies were never asked for"
