"""A scripted HTTP server on 127.0.0.1 that LLM SDKs can talk to, and OpenAI-format replies.

It answers POSTs from a queue of canned responses and records every request, so a test can
drive the real OpenAI and Anthropic SDKs (in-process, or in a worker subprocess through
OPENAI_BASE_URL / ANTHROPIC_BASE_URL) without a network. When the queue is empty, an optional
`responder` answers instead: a function of the request, for conversations whose order a test
does not control (e.g. a whole run, where each agent is recognised by its prompt).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.conftest import ServiceProcesses

# --- The server -----------------------------------------------------------------------------------


@dataclass
class Scripted:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class FakeLlmServer:
    """Answers POSTs from a queue of canned responses and records every request.

    With the queue empty, `responder` (if set) answers from the recorded request; without
    either, the server answers 418.
    """

    def __init__(self) -> None:
        self.queue: deque[Scripted] = deque()
        self.requests: list[Recorded] = []
        self.responder: Callable[[Recorded], Scripted] | None = None
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                recorded = Recorded(
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    json.loads(raw or b"{}"),
                )
                # One request at a time through the queue and the responder, so a stateful
                # responder sees requests in the order they were recorded.
                with server._lock:
                    server.requests.append(recorded)
                    reply = server._reply_to(recorded)
                if reply.delay:
                    time.sleep(reply.delay)
                data = (
                    reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                )
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timeout test)
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output quiet

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def _reply_to(self, recorded: Recorded) -> Scripted:
        if self.queue:
            return self.queue.popleft()
        if self.responder is not None:
            try:
                return self.responder(recorded)
            except Exception as exc:  # a bug in the test's responder: say so to the client
                # 400: not retried, so the run fails at once with this message as its last_error.
                return Scripted(400, {"error": {"message": f"stand-in responder failed: {exc!r}"}})
        return Scripted(418, {"error": {"message": "no scripted response left"}})

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def reset(self) -> None:
        self.queue.clear()
        self.requests.clear()
        self.responder = None

    def enqueue(self, *replies: Scripted) -> None:
        self.queue.extend(replies)


# --- OpenAI Chat Completions requests and replies -------------------------------------------------


def openai_messages(recorded: Recorded, role: str) -> list[str]:
    """The text of every message with `role` in a recorded Chat Completions request."""
    return [
        str(m.get("content") or "") for m in recorded.body.get("messages", []) if m["role"] == role
    ]


def openai_ok(
    text: str,
    prompt: int = 100,
    completion: int = 50,
    finish: str = "stop",
    refusal: str | None = None,
) -> Scripted:
    return Scripted(
        200,
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": finish,
                    "logprobs": None,
                    "message": {"role": "assistant", "content": text, "refusal": refusal},
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        },
    )


def openai_error(status: int, message: str, code: str | None = None) -> Scripted:
    return Scripted(
        status,
        {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": code,
            }
        },
    )


@contextmanager
def service_using(
    llm: FakeLlmServer, temporal_address: str, data_dir: Path, **settings: str
) -> Iterator[ServiceProcesses]:
    """The worker and the API with OpenAI-backed agents pointed at the stand-in."""
    defaults = {"LLM_TIMEOUT_SECONDS": "10", "APPROVAL_TIMEOUT_SECONDS": "600"}
    processes = ServiceProcesses(
        temporal_address,
        data_dir,
        LLM_PROVIDER="openai",
        OPENAI_BASE_URL=f"{llm.url}/v1",
        **{**defaults, **settings},
    )
    try:
        processes.start_worker()
        processes.start_api()
        yield processes
    finally:
        processes.stop()
