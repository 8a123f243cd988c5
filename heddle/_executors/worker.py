"""A worker process of the process executor: runs one action attempt at a time.

It resolves the task from its ref, applies the attempt's environment, memory limit
and GPUs, captures stdout/stderr into the object store, and sends child calls and
durable steps back to the driver. It exits as soon as the driver goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from heddle._errors import OOMError
from heddle._runtime import failures
from heddle._runtime.context import ActionContext, current_action, current_group
from heddle._runtime.remote import DONE, READY, REPLY, RUN, STOP, RemoteController

LOG_FLUSH_SECONDS = 1.0


@dataclass
class Job:
    """What the driver sends with RUN."""

    job_id: int
    ref: Any
    encoded_inputs: bytes
    run_id: str
    action_id: str
    task_name: str
    env: dict[str, str]
    memory_limit: int | None
    gpus: list[int] | None
    log_key: str
    storage_url: str
    secrets: list[str]


class _LogCapture:
    """Sends fds 1 and 2 to a file for the attempt and uploads it while it grows."""

    def __init__(self, job: Job) -> None:
        self._job = job
        self._file = tempfile.NamedTemporaryFile(prefix="heddle-log-", delete=False)  # noqa: SIM115
        self._saved: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._uploaded = -1

    def __enter__(self) -> _LogCapture:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd in (1, 2):
            self._saved.append(os.dup(fd))
            os.dup2(self._file.fileno(), fd)
        self._thread = threading.Thread(target=self._pump, daemon=True, name="heddle-log")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        for fd, saved in zip((1, 2), self._saved, strict=True):
            os.dup2(saved, fd)
            os.close(saved)
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._upload()
        self._file.close()
        with contextlib.suppress(OSError):
            os.unlink(self._file.name)

    def _pump(self) -> None:
        while not self._stop.wait(LOG_FLUSH_SECONDS):
            with contextlib.suppress(Exception):
                self._upload()

    def _upload(self) -> None:
        size = os.fstat(self._file.fileno()).st_size
        if size == self._uploaded:
            return
        with open(self._file.name, "rb") as f:
            data = f.read()
        for secret in self._job.secrets:
            if secret:
                data = data.replace(secret.encode(), b"****")
        _blobs(self._job.storage_url).put_text(self._job.log_key, data)
        self._uploaded = size


_blob_stores: dict[str, Any] = {}


def _blobs(url: str) -> Any:
    store = _blob_stores.get(url)
    if store is None:
        from heddle._storage import BlobStore
        from heddle._types.sink import set_default_sink

        store = BlobStore(url)
        set_default_sink(store)
        _blob_stores[url] = store
    return store


class _Environment:
    """Applies a job's env vars, GPUs and memory limit, and puts them back after."""

    def __init__(self, job: Job) -> None:
        self._job = job
        self._saved_env: dict[str, str | None] = {}
        self._saved_limit: tuple[int, int] | None = None

    def __enter__(self) -> None:
        env = dict(self._job.env)
        if self._job.gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in self._job.gpus)
        for k, v in env.items():
            self._saved_env[k] = os.environ.get(k)
            os.environ[k] = v
        if self._job.memory_limit:
            # A backstop for the driver's RSS watchdog: allocations far past the limit
            # fail here (MemoryError, reported as OOM) instead of taking the machine down.
            # Address space is larger than RSS (thread stacks, arenas), hence the slack.
            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            self._saved_limit = (soft, hard)
            limit = self._job.memory_limit * 2 + 2**31
            if hard == resource.RLIM_INFINITY or limit < hard:
                resource.setrlimit(resource.RLIMIT_AS, (limit, hard))

    def __exit__(self, *exc: object) -> None:
        for k, v in self._saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if self._saved_limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, self._saved_limit)


class Worker:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.loop = asyncio.new_event_loop()
        self._send_lock = threading.Lock()
        self.controller: RemoteController | None = None

    def send(self, message: tuple[Any, ...]) -> None:
        with self._send_lock:
            self.conn.send(message)

    def read_forever(self) -> None:
        """Reader thread: route replies to the running job, jobs to the loop."""
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                # The driver is gone: nobody will record what we do. Stop now.
                os._exit(3)
            kind = message[0]
            if kind == REPLY and self.controller is not None:
                _, req_id, ok, payload = message
                self.controller.deliver(req_id, ok, payload)
            elif kind == RUN:
                self.loop.call_soon_threadsafe(self._start, Job(*message[1:]))
            elif kind == STOP:
                self.loop.call_soon_threadsafe(self.loop.stop)
                return

    def _start(self, job: Job) -> None:
        self.loop.create_task(self.run_job(job))

    async def run_job(self, job: Job) -> None:
        from heddle._sdk.task import resolve_task

        cpu_before = time.process_time()
        ok = False
        payload: Any
        try:
            _blobs(job.storage_url)
            task = resolve_task(job.ref)
            self.controller = RemoteController(self.send, job.run_id, job.job_id, self.loop)
            ctx = ActionContext(self.controller, job.run_id, job.action_id, job.task_name)
            with _LogCapture(job), _Environment(job):
                inputs = task.spec.decode_inputs(job.encoded_inputs)
                result = await self._call(task, inputs, ctx)
                payload = task.spec.encode_output(result)
            ok = True
        except MemoryError:
            payload = failures.failure_of(
                OOMError(job.task_name, job.memory_limit, None), failures.OOM
            ).to_json()
        except BaseException as exc:
            payload = failures.failure_of(exc).to_json()
        finally:
            if self.controller is not None:
                self.controller.fail_all(RuntimeError("attempt finished"))
            self.controller = None
        self.send((DONE, job.job_id, ok, payload, time.process_time() - cpu_before, _rss()))

    async def _call(self, task: Any, inputs: dict[str, Any], ctx: ActionContext) -> Any:
        current_group.set(None)
        if task.spec.is_async:
            token = current_action.set(ctx)
            try:
                return await task.fn(**inputs)
            finally:
                current_action.reset(token)

        def body() -> Any:
            current_action.set(ctx)
            return task.fn(**inputs)

        import contextvars

        context = contextvars.copy_context()
        return await self.loop.run_in_executor(None, context.run, body)


def _rss() -> int:
    """This process's resident set size now, in bytes."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def main(conn: Connection) -> None:
    """Entry point of a worker process."""
    worker = Worker(conn)
    reader = threading.Thread(target=worker.read_forever, daemon=True, name="heddle-reader")
    reader.start()
    worker.send((READY, os.getpid()))
    try:
        worker.loop.run_forever()
    except BaseException:
        traceback.print_exc()
    os._exit(0)
