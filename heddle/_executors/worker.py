"""A worker process of the process executor: runs one action attempt at a time
(the driver may send the next one ahead; it starts when the current one ends).

It resolves the task from its ref, applies the attempt's environment, memory limit
and GPUs, captures stdout/stderr into the object store, and sends child calls and
durable steps back to the driver. It exits as soon as the driver goes away.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import itertools
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
from heddle._faults import WORKER, crashpoint, set_role
from heddle._runtime import failures
from heddle._runtime.context import ActionContext, current_action, current_group
from heddle._runtime.remote import (
    BATCH,
    DONE,
    READY,
    REPLY,
    RUN,
    SKIPPED,
    STOP,
    UNQUEUE,
    RemoteController,
)

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
    """The worker's fds 1 and 2 go to one file for its whole life; each attempt
    truncates it, and a long-lived thread uploads it while it grows. Setting this
    up once per worker (not per attempt) keeps short tasks cheap."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="heddle-log-")  # noqa: SIM115
        sys.stdout.flush()
        sys.stderr.flush()
        for fd in (1, 2):
            os.dup2(self._file.fileno(), fd)
        self._lock = threading.Lock()
        self._job: Job | None = None
        self._uploaded = 0
        threading.Thread(target=self._pump, daemon=True, name="heddle-log").start()

    def begin(self, job: Job) -> None:
        with self._lock:
            os.ftruncate(self._file.fileno(), 0)
            os.lseek(self._file.fileno(), 0, os.SEEK_SET)
            self._job = job
            self._uploaded = 0

    def end(self) -> None:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        with self._lock:
            with contextlib.suppress(Exception):
                self._upload()
            self._job = None

    def _pump(self) -> None:
        while True:
            time.sleep(LOG_FLUSH_SECONDS)
            with self._lock, contextlib.suppress(Exception):
                self._upload()

    def _upload(self) -> None:
        job = self._job
        if job is None:
            return
        size = os.fstat(self._file.fileno()).st_size
        if size == self._uploaded:
            return  # nothing new (an attempt that printed nothing leaves no log)
        data = os.pread(self._file.fileno(), size, 0)
        for secret in job.secrets:
            if secret:
                data = data.replace(secret.encode(), b"****")
        _blobs(job.storage_url).put_text(job.log_key, data)
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
    """Gives each job its env vars, GPUs and memory limit.

    Variables stay set between jobs and only what differs is changed: consecutive
    jobs of one run carry the same variables, and os.environ writes are not free.
    A variable the previous job set and this one does not is put back as it was.
    """

    def __init__(self) -> None:
        self._original: dict[str, str | None] = {}  # before any job set them
        self._saved_limit: tuple[int, int] | None = None

    def apply(self, job: Job) -> None:
        env = job.env
        if job.gpus is not None:
            env = {**env, "CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in job.gpus)}
        environ = os.environ
        for k in [k for k in self._original if k not in env]:
            v = self._original.pop(k)
            if v is None:
                environ.pop(k, None)
            else:
                environ[k] = v
        for k, v in env.items():
            current = environ.get(k)
            if current != v:
                if k not in self._original:
                    self._original[k] = current
                environ[k] = v
        if job.memory_limit:
            # A backstop for the driver's RSS watchdog: allocations far past the limit
            # fail here (MemoryError, reported as OOM) instead of taking the machine down.
            # Address space is larger than RSS (thread stacks, arenas, and whatever this
            # warm worker mapped for earlier jobs), hence the slack over what it maps now.
            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            self._saved_limit = (soft, hard)
            limit = _address_space() + job.memory_limit * 2 + 2**31
            if hard == resource.RLIM_INFINITY or limit < hard:
                resource.setrlimit(resource.RLIMIT_AS, (limit, hard))

    def after(self) -> None:
        if self._saved_limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, self._saved_limit)
            self._saved_limit = None


class Worker:
    """The worker's threads: a reader for the pipe, and the main thread running jobs.

    Sync task bodies run right on the main thread (their calls to other tasks are
    blocking requests answered through the reader), async ones on the worker's
    event loop: a short task costs no thread hand-off beyond the pipe itself.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self._send_lock = threading.Lock()
        # Jobs sent ahead: the driver may send the next job while one runs, so the
        # worker starts it the moment the current one is done. None means stop.
        self._jobs: collections.deque[Job | None] = collections.deque()
        self._jobs_changed = threading.Condition()
        self.controller: RemoteController | None = None
        self._request_ids = itertools.count(1)
        self.logs = _LogCapture()
        self.env = _Environment()
        try:
            self._statm: int | None = os.open("/proc/self/statm", os.O_RDONLY)
        except OSError:
            self._statm = None

    def _rss(self) -> int:
        """This process's resident set size now, in bytes."""
        if self._statm is None:
            return 0
        try:
            return int(os.pread(self._statm, 128, 0).split()[1]) * _PAGE_SIZE
        except (OSError, ValueError, IndexError):
            return 0

    def send(self, message: tuple[Any, ...]) -> None:
        with self._send_lock:
            self.conn.send(message)

    def read_forever(self) -> None:
        """Reader thread: replies go to the running job, jobs to the main thread."""
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                # The driver is gone: nobody will record what we do. Stop now.
                os._exit(3)
            messages = message[1] if message[0] == BATCH else (message,)
            replies = []
            for m in messages:
                kind = m[0]
                if kind == REPLY:
                    replies.append(m[1:])
                elif kind == RUN:
                    self._enqueue(Job(*m[1:]))
                elif kind == UNQUEUE:
                    self._unqueue(m[1])
                elif kind == STOP:
                    self._enqueue(None)
                    return
            controller = self.controller
            if replies and controller is not None:
                controller.deliver(replies)

    def _enqueue(self, job: Job | None) -> None:
        with self._jobs_changed:
            self._jobs.append(job)
            self._jobs_changed.notify()

    def _unqueue(self, job_id: int) -> None:
        """The driver takes back a job sent ahead; say so if it had not started."""
        with self._jobs_changed:
            for job in self._jobs:
                if job is not None and job.job_id == job_id:
                    self._jobs.remove(job)
                    break
            else:
                return  # it started already: its DONE will come
        self.send((SKIPPED, job_id))

    def _next_job(self, wait: bool) -> Job | None:
        with self._jobs_changed:
            while wait and not self._jobs:
                self._jobs_changed.wait()
            if not self._jobs:
                return None
            job = self._jobs.popleft()
            if job is None:
                self._jobs.appendleft(None)
            return job

    def serve(self) -> None:
        job = self._next_job(wait=True)
        while job is not None:
            done = self.run_job(job)
            # The job queued behind this one starts now, and the driver learns so from
            # this DONE: from then on it is the running job.
            job = self._next_job(wait=False)
            self.send((*done, None if job is None else job.job_id))
            if job is None:
                job = self._next_job(wait=True)

    def run_job(self, job: Job) -> tuple[Any, ...]:
        from heddle._sdk.task import resolve_task

        cpu_before = time.process_time()
        ok = False
        payload: Any
        try:
            _blobs(job.storage_url)
            task = resolve_task(job.ref)
            self.controller = RemoteController(
                self.send, job.run_id, job.job_id, self.loop, self._request_ids
            )
            ctx = ActionContext(self.controller, job.run_id, job.action_id, job.task_name)
            self.logs.begin(job)
            try:
                self.env.apply(job)
                inputs = task.spec.decode_inputs(job.encoded_inputs)
                result = run_body(self.loop, task, inputs, ctx)
                payload = task.spec.encode_output(result)
            finally:
                self.env.after()
                self.logs.end()
            ok = True
            crashpoint("worker.after_body")
        except BaseException as exc:
            payload = failure_payload(exc, job.task_name, job.memory_limit)
        finally:
            if self.controller is not None:
                self.controller.flush()
                self.controller.fail_all(RuntimeError("attempt finished"))
            self.controller = None
        return (DONE, job.job_id, ok, payload, time.process_time() - cpu_before, self._rss())


def run_body(
    loop: asyncio.AbstractEventLoop, task: Any, inputs: dict[str, Any], ctx: ActionContext
) -> Any:
    """Run a task's body on this thread as the action ``ctx`` (in a copy of the current
    context), an async body on ``loop``: how both worker kinds run an attempt."""

    def call() -> Any:
        current_group.set(None)
        current_action.set(ctx)
        if task.spec.is_async:
            try:
                return loop.run_until_complete(task.fn(**inputs))
            finally:
                cancel_leftover_tasks(loop)
        return task.fn(**inputs)

    return contextvars.copy_context().run(call)


LEFTOVER_GRACE_SECONDS = 5.0


def cancel_leftover_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what the body started and left running (a child call it never awaited):
    the loop is reused by the next job, which must not resume another job's code.
    Cancelling a pending call tells the driver, which cancels that action too."""
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    if not tasks:
        return
    for t in tasks:
        t.cancel()
    loop.run_until_complete(asyncio.wait(tasks, timeout=LEFTOVER_GRACE_SECONDS))


def failure_payload(exc: BaseException, task_name: str, memory_limit: int | None) -> str:
    """A failed attempt as a worker reports it; a MemoryError (the address-space limit
    set for the attempt) is the task running out of memory, caused where it ran out."""
    if isinstance(exc, MemoryError):
        oom = OOMError(task_name, memory_limit, None)
        oom.__cause__ = exc
        exc = oom
    return failures.failure_of(exc).to_json()


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _address_space() -> int:
    """The bytes this process maps now (its virtual size)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0


def main(conn: Connection) -> None:
    """Entry point of a worker process."""
    set_role(WORKER)
    worker = Worker(conn)
    reader = threading.Thread(target=worker.read_forever, daemon=True, name="heddle-reader")
    reader.start()
    worker.send((READY, os.getpid()))
    try:
        worker.serve()
    except BaseException:
        traceback.print_exc()
    os._exit(0)
