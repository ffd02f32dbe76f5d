"""Local stand-ins on 127.0.0.1: a dataset file server, the Browser Agent and the ML Worker."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import sys
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.types import ASGIApp


class ServerThread:
    """uvicorn serving one app on a free loopback port, in its own thread and event loop.

    A thread of its own keeps the stand-in answering while the test's loop is busy, and lets
    a test that blocks (or is cancelled) never stall the server.
    """

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1") -> None:
        # Another loopback address (127.0.0.2, ::1) lets a test tell two servers apart by address.
        self.host = host
        self._socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self._socket.bind((host, 0))
        self.port = int(self._socket.getsockname()[1])
        config = uvicorn.Config(
            app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __enter__(self) -> ServerThread:
        self._thread.start()
        for _ in range(200):
            if self._server.started:
                return self
            self._thread.join(0.05)
        raise RuntimeError("stand-in server did not start")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._socket.close()


# --- Dataset files ----------------------------------------------------------------------------


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str = "text/csv"
    chunked: bool = False  # stream without Content-Length
    pause_after_first_chunk: float = 0.0  # a server that stalls mid-download
    chunk_delay: float = 0.0  # a server that drips its chunks
    chunk_size: int = 1024
    fail_first: int = 0  # answer 503 this many times first


@dataclass
class FileServerState:
    routes: dict[str, Route] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)


def file_server_app(state: FileServerState) -> FastAPI:
    app = FastAPI()

    @app.get("/{path:path}")
    async def serve(path: str) -> Response:
        state.requests[path] += 1
        route = state.routes.get(path)
        if route is None:
            return Response("not here", status_code=404, media_type="text/plain")
        if state.requests[path] <= route.fail_first:
            return Response("busy", status_code=503, media_type="text/plain")
        if not route.chunked and not route.pause_after_first_chunk and not route.chunk_delay:
            return Response(route.body, status_code=route.status, media_type=route.content_type)

        async def chunks() -> object:
            for index in range(0, len(route.body), route.chunk_size):
                yield route.body[index : index + route.chunk_size]
                if index == 0 and route.pause_after_first_chunk:
                    await asyncio.sleep(route.pause_after_first_chunk)
                await asyncio.sleep(route.chunk_delay)

        return StreamingResponse(
            chunks(),  # type: ignore[arg-type]
            status_code=route.status,
            media_type=route.content_type,
        )

    return app


# --- Browser Agent and ML Worker --------------------------------------------------------------


@dataclass
class ExecutorState:
    """What a stand-in saw and how it should behave."""

    payloads: list[dict[str, object]] = field(default_factory=list)
    idempotency_keys: list[str | None] = field(default_factory=list)
    received: threading.Event = field(default_factory=threading.Event)  # set on each request
    fail_first: int = 0  # answer 503 this many times first
    reject_with: int | None = None  # answer this 4xx status
    delay_seconds: float = 0.0  # a long job
    disconnected: int = 0  # requests whose client went away while the job ran


async def _wait_or_notice_disconnect(request: Request, state: ExecutorState) -> bool:
    """Sleep for the job's duration; False if the client hung up meanwhile."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + state.delay_seconds
    while loop.time() < deadline:
        if await request.is_disconnected():
            state.disconnected += 1
            return False
        await asyncio.sleep(0.05)
    return True


async def _run_code(code: str, dataset: str | None) -> dict[str, object]:
    """What the real services do, minus Colab: run the code and send back what it produced."""
    with tempfile.TemporaryDirectory() as workdir:
        env = {"PATH": os.environ.get("PATH", ""), "OUTPUT_DIR": workdir}
        if dataset:
            env["DATASET_PATH"] = dataset
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            code,
            cwd=workdir,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await process.communicate()
        files = await asyncio.to_thread(_encoded_files, Path(workdir))
    return {
        "exit_code": process.returncode,
        "stdout": stdout.decode(),
        "stderr": stderr.decode(),
        "files": files,
    }


def _encoded_files(folder: Path) -> dict[str, object]:
    return {
        path.name: {"base64": base64.b64encode(path.read_bytes()).decode()}
        for path in sorted(folder.iterdir())
        if path.is_file()
    }


def _count_rows(dataset: Path) -> int | None:
    if not dataset.is_file():
        return None
    return len(dataset.read_text().splitlines()) - 1


async def _receive(request: Request, state: ExecutorState) -> tuple[Any, Response | None]:
    """Record a job; also the answer that ends it early (refused, or the client hung up)."""
    payload = json.loads(await request.body())
    state.payloads.append(payload)
    state.idempotency_keys.append(request.headers.get("idempotency-key"))
    state.received.set()
    if len(state.payloads) <= state.fail_first:
        return payload, JSONResponse({"detail": "worker overloaded"}, status_code=503)
    if state.reject_with is not None:
        return payload, JSONResponse({"detail": "bad job"}, status_code=state.reject_with)
    if not await _wait_or_notice_disconnect(request, state):
        return payload, Response(status_code=499)
    return payload, None


def browser_agent_app(state: ExecutorState) -> FastAPI:
    """POST /execute {"code": ...}: runs the EDA code."""
    app = FastAPI()

    @app.post("/execute")
    async def execute(request: Request) -> Response:
        payload, early = await _receive(request, state)
        if early is not None:
            return early
        return JSONResponse(await _run_code(payload["code"], payload.get("dataset")))

    return app


def ml_worker_app(state: ExecutorState) -> FastAPI:
    """POST /train {"dataset": <path>}: trains; runs the given code when there is one."""
    app = FastAPI()

    @app.post("/train")
    async def train(request: Request) -> Response:
        payload, early = await _receive(request, state)
        if early is not None:
            return early
        dataset = Path(str(payload["dataset"]))
        rows = await asyncio.to_thread(_count_rows, dataset)
        if rows is None:
            return JSONResponse({"detail": f"no dataset at {dataset}"}, status_code=422)
        if payload.get("code"):
            return JSONResponse(await _run_code(str(payload["code"]), str(dataset)))
        return JSONResponse({"status": "completed", "metrics": {"rows": rows}})

    return app
