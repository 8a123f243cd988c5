"""A real server on a free loopback port, in a background thread: for tests, notebooks
and scripts that want the UI next to a run they drive themselves."""

from __future__ import annotations

import re
import socket
import threading
import time
from types import TracebackType

import uvicorn
from fastapi import FastAPI

from heddle._store import RunRecord, Store, WriteBatch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


_CSRF_META = re.compile(r'<meta name="heddle-csrf" content="([0-9a-f]+)">')


def csrf_token_in(page: str) -> str:
    """The CSRF token in the HTML of one of the UI's pages, as its scripts read it."""
    found = _CSRF_META.search(page)
    if found is None:
        raise ValueError("no heddle-csrf meta tag in this page")
    return found.group(1)


class LiveServer:
    """``with LiveServer(create_app()) as server: httpx.get(server.url + "/api/v1/health")``"""

    def __init__(self, app: FastAPI, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="heddle-server", daemon=True)

    def start(self, timeout: float = 10.0) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def insert_synthetic_run(store: Store, n_actions: int, run_id: str = "rbig") -> str:
    """Write a finished run with ``n_actions`` actions straight into the store (a root
    and its children, some failed, cached or retried): a cheap stand-in for a huge
    heddle.map, for load tests of the API and the UI. Returns the run id."""
    now = time.time() - 3600
    root = "a" + "0" * 32
    store.create_run(
        RunRecord(
            id=run_id,
            name=f"{n_actions} actions",
            root_task="scale.main",
            root_action_id=root,
            status="failed",
            program="{}",
            inputs=b"i\x91\xcd\x03\xe8",
            output=None,
            error=None,
            executor="inline",
            owner=None,
            heartbeat_at=None,
            abort_requested=False,
            created_at=now,
            started_at=now,
            finished_at=now + 600,
        )
    )

    def action(i: int) -> dict[str, object]:
        failed = i % 1000 == 7
        start = now + (i % 600)
        return {
            "run_id": run_id,
            "id": root if i == 0 else f"a{i:032x}",
            "parent_id": None if i == 0 else root,
            "seq": i,
            "kind": "task",
            "task_name": "scale.main" if i == 0 else "scale.item",
            "task_version": "v1",
            "group_name": None,
            "status": "failed" if failed else "succeeded",
            "attempts": 2 if i % 97 == 0 else 1,
            "cached": int(i % 10 == 3),
            "cache_key": None,
            "inputs": b"i\x91" + bytes([i % 128]),
            "output": None if failed else b"i" + bytes([i % 128]),
            "error": None,
            "queued_at": start,
            "started_at": start,
            "finished_at": start + 0.5 if i else now + 600,
        }

    writer = store.writer()
    try:
        for lo in range(0, n_actions, 20_000):
            rows = [action(i) for i in range(lo, min(n_actions, lo + 20_000))]
            writer.write(WriteBatch(action_inserts=rows))
    finally:
        writer.close()
    store.checkpoint()  # as the runtime does off its hot path
    return run_id
