"""Inside a Ray worker: runs one action attempt, and the controller of its children.

The task body runs on the worker's main thread. Its child calls are recorded by a
controller of its own over the run's shared store (ids are derived, so no round trip
to the driver is needed) and submitted to Ray like any action. While the body waits
for children, the main thread blocks in ``ray.wait``, which lends its CPU back to Ray:
nested fan-out cannot deadlock a small cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import selectors
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import psutil
import ray

from heddle._errors import HeddleError
from heddle._executors.ray import ActionJob, Outcome, RayExecutor, oom_marker
from heddle._executors.worker import failure_payload, run_body
from heddle._runtime.calls import PreparedCall
from heddle._runtime.context import ActionContext
from heddle._runtime.controller import Controller
from heddle._runtime.journal import ActionState
from heddle._runtime.literals import LiteralStore
from heddle._runtime.spec import TaskSpec
from heddle._storage import BlobStore
from heddle._store import Store

# While children run, the loop blocks in ray.wait for at most this long at a time, so
# wake-ups from other threads (a sync body's calls) are seen soon enough.
WAIT_SLICE = 0.02
WAIT_AT_MOST = 32  # refs handed to one ray.wait: the oldest, which finish first
WATCH_SECONDS = 0.1
CHILDREN_EVERY = 10


class RayAwareSelector(selectors.DefaultSelector):
    """An event-loop selector that, when the loop would sleep while Ray tasks are
    pending, sleeps in ``ray.wait`` on the main thread instead: Ray then knows the
    task is blocked and lends its CPU to others (as it does for ``ray.get``)."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: dict[ray.ObjectRef[Any], None] = {}

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if self.pending and (timeout is None or timeout > 0):
            wait = WAIT_SLICE if timeout is None else min(timeout, WAIT_SLICE)
            head = list(itertools.islice(self.pending, WAIT_AT_MOST))
            ready, _ = ray.wait(head, num_returns=1, timeout=wait, fetch_local=False)
            for ref in ready:
                # Its result arrives through the awaiting coroutine's callback.
                self.pending.pop(ref, None)
            timeout = 0.001 if ready else 0
        result: list[tuple[selectors.SelectorKey, int]] = super().select(timeout)
        return result

    async def wait(self, ref: ray.ObjectRef[Any]) -> Any:
        self.pending[ref] = None
        try:
            return await ref
        finally:
            self.pending.pop(ref, None)


class _Session:
    """The run's store and storage as this worker process sees them (opened once)."""

    def __init__(self, db_url: str, storage_url: str) -> None:
        self.db_url = db_url
        self.blobs = BlobStore(storage_url, cache_dir=_cache_dir())
        self.literals = LiteralStore(self.blobs)
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.db_url)
        return self._store


def _cache_dir() -> str:
    import tempfile

    return os.path.join(tempfile.gettempdir(), f"heddle-cache-{os.getuid()}")


class _Watchdog:
    """Samples the attempt's memory (this process and its subprocesses): records the
    peak, and stops the worker when the attempt grows past its memory limit.

    Finding subprocesses walks /proc (milliseconds), so their list is refreshed only
    every CHILDREN_EVERY samples, never on an attempt's own path.
    """

    def __init__(self) -> None:
        self._ps = psutil.Process()
        self._lock = threading.Lock()
        self._job: ActionJob | None = None
        self._blobs: BlobStore | None = None
        self._subprocesses: list[psutil.Process] = []
        self._baseline = 0
        self.peak = 0
        threading.Thread(target=self._watch, daemon=True, name="heddle-memory").start()

    def _rss(self) -> int:
        rss = int(self._ps.memory_info().rss)
        for child in self._subprocesses:
            with contextlib.suppress(psutil.Error):
                rss += int(child.memory_info().rss)
        return rss

    def begin(self, job: ActionJob, blobs: BlobStore) -> None:
        with self._lock:
            # A Ray worker carries its runtime (and earlier tasks' heap): the limit
            # applies to what this attempt adds.
            self._subprocesses = []
            self._baseline = self._rss()
            self.peak = 0
            self._job = job
            self._blobs = blobs

    def end(self) -> int:
        with self._lock:
            self._job = None
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self._rss() - self._baseline)
            return max(self.peak, 0)

    def _watch(self) -> None:
        for tick in itertools.count(1):
            time.sleep(WATCH_SECONDS)
            with self._lock:
                job = self._job
                if job is None:
                    continue
                try:
                    if tick % CHILDREN_EVERY == 0:
                        self._subprocesses = self._ps.children(recursive=True)
                    used = self._rss() - self._baseline
                except psutil.Error:
                    continue
                self.peak = max(self.peak, used)
                if job.memory_limit and used > job.memory_limit:
                    # Leave a note for the caller (a crash alone would read as a lost
                    # worker), then die the way an OOM kill would.
                    with contextlib.suppress(Exception):
                        assert self._blobs is not None
                        self._blobs.put_text(
                            oom_marker(job.run_id, job.action_id, job.attempt),
                            str(used).encode(),
                        )
                    os._exit(137)


class _Environment:
    """The attempt's session settings and secrets as env vars, put back afterwards."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self._saved: dict[str, str | None] = {}

    def __enter__(self) -> None:
        for k, v in self._env.items():
            self._saved[k] = os.environ.get(k)
            os.environ[k] = v

    def __exit__(self, *exc: object) -> None:
        for k, v in self._saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class WorkerController:
    """The ControllerAPI of an action running in a Ray worker.

    The real Controller (a store connection, a journal) is made on the first child
    call or recorded step, so leaf actions cost nothing extra. Children of earlier
    attempts are loaded into it, so a retried body replays what already succeeded.
    """

    def __init__(self, runtime: _Runtime, job: ActionJob, session: _Session) -> None:
        self._runtime = runtime
        self._job = job
        self._session = session
        self.run_id = job.run_id
        self.aborting = False
        self.loop = runtime.loop
        self.loop_thread = threading.get_ident()
        self._real: Controller | None = None

    @property
    def real(self) -> Controller:
        if self._real is None:
            self._real = self._open()
        return self._real

    def _open(self) -> Controller:
        job, session = self._job, self._session
        store = session.store
        prior: dict[str, Any] = {}
        attempts: list[Any] = []
        if job.attempt > 1:
            prior = {a.id: a for a in store.actions_of_parent(job.run_id, job.action_id)}
            if prior:
                attempts = [t for t in store.attempts_of_run(job.run_id) if t.action_id in prior]
        from heddle._sdk.image import runtime_env_for

        executor = RayExecutor(
            job.config,
            session.blobs,
            runtime_env_for,
            secrets=job.secrets,
            waiter=self._runtime.selector.wait,
            check=False,
        )
        return Controller(store, session.literals, job.run_id, executor, self.loop, prior, attempts)

    def deps(self) -> str | None:
        """What the body called (tasks and traces, transitively), for its cache entry."""
        return None if self._real is None else self._real.deps.close(self._job.action_id)

    def close(self) -> None:
        """Make everything the children recorded durable, and give the connection back."""
        c = self._real
        if c is None:
            return
        try:
            if c.journal.failed is None:
                c.journal.flush_now()
        finally:
            c.journal.close()

    # -- calls -----------------------------------------------------------------------

    def prepare(
        self,
        spec: TaskSpec,
        inputs: Mapping[str, Any],
        parent: ActionContext,
        limiter: asyncio.Semaphore | None = None,
    ) -> PreparedCall:
        return self.real.prepare(spec, inputs, parent, limiter)

    async def run(self, call: PreparedCall) -> Any:
        return await self.real.run(call)

    async def run_encoded(self, call: PreparedCall) -> bytes:
        return await self.real.run_encoded(call)

    def run_blocking(self, call: PreparedCall) -> Any:
        return self.call_on_loop(lambda: self.run(call), call.spec.name)

    # -- recorded steps --------------------------------------------------------------

    def begin_step(
        self,
        parent: ActionContext,
        kind: str,
        name: str,
        encoded_inputs: bytes,
        version: str = "",
    ) -> tuple[ActionState, bytes | None]:
        return self.real.begin_step(parent, kind, name, encoded_inputs, version)

    def step_prior_output(self, state: ActionState) -> bytes | None:
        return self.real.step_prior_output(state)

    def note_step(self, state: ActionState) -> None:
        self.real.note_step(state)

    async def record_step(
        self,
        state: ActionState,
        out: bytes | None = None,
        exc: BaseException | None = None,
        *,
        final: bool = True,
    ) -> None:
        await self.real.record_step(state, out, exc, final=final)

    def record_step_sync(
        self,
        state: ActionState,
        out: bytes | None = None,
        exc: BaseException | None = None,
        *,
        final: bool = True,
    ) -> None:
        # On the main thread (loop idle or running) the controller writes at once;
        # from another thread it goes through the running loop.
        self.real.record_step_sync(state, out, exc, final=final)

    def call_on_loop(self, make: Callable[[], Awaitable[Any]], what: str = "") -> Any:
        async def runner() -> Any:
            return await make()

        on_main = threading.get_ident() == self.loop_thread
        if on_main and not self.loop.is_running():
            # A sync body on the main thread: the loop is free to drive the call.
            return self.loop.run_until_complete(runner())
        if on_main:
            raise HeddleError(
                f"task {what!r} is a sync task called from async code: "
                f"use `await {what.rsplit('.', 1)[-1]}.aio(...)`"
            )
        return asyncio.run_coroutine_threadsafe(runner(), self.loop).result()

    def on_loop_thread(self) -> bool:
        return self.loop.is_running() and threading.get_ident() == self.loop_thread


class _Runtime:
    """What a worker process keeps between attempts: its loop, sessions and watchdog."""

    def __init__(self) -> None:
        self.selector = RayAwareSelector()
        self.loop = asyncio.SelectorEventLoop(self.selector)
        self._sessions: dict[tuple[str, str], _Session] = {}
        self._watchdog: _Watchdog | None = None
        self._logs: Any = None
        self.label = f"ray:{socket.gethostname()}:{os.getpid()}"

    def session(self, job: ActionJob) -> _Session:
        key = (job.config.db_url, job.config.storage_url)
        s = self._sessions.get(key)
        if s is None:
            s = self._sessions[key] = _Session(*key)
        from heddle._types.sink import set_default_sink

        set_default_sink(s.blobs)
        return s

    def run(self, job: ActionJob) -> Outcome:
        from heddle._sdk.task import resolve_task

        cpu_before = time.process_time()
        if self._watchdog is None:
            self._watchdog = _Watchdog()
        ok = False
        payload: bytes | str
        deps: str | None = None
        controller: WorkerController | None = None
        env = {
            **job.config.env,
            "HEDDLE_DB_URL": job.config.db_url,
            "HEDDLE_STORAGE_URL": job.config.storage_url,
            **{name: job.secrets[key] for name, key in job.secret_names},
        }
        try:
            session = self.session(job)
            self._watchdog.begin(job, session.blobs)
            with _Environment(env):
                task = resolve_task(job.ref)
                controller = WorkerController(self, job, session)
                ctx = ActionContext(controller, job.run_id, job.action_id, job.task_name)
                logs = self._begin_logs(job)
                try:
                    inputs = task.spec.decode_inputs(job.encoded_inputs)
                    result = run_body(self.loop, task, inputs, ctx)
                    payload = task.spec.encode_output(result)
                    deps = controller.deps()
                finally:
                    with contextlib.suppress(Exception):
                        logs.end()
                    controller.close()
            ok = True
        except BaseException as exc:
            payload = failure_payload(exc, job.task_name, job.memory_limit)
        peak = self._watchdog.end()
        return Outcome(ok, payload, self.label, time.process_time() - cpu_before, peak, deps)

    def _begin_logs(self, job: ActionJob) -> Any:
        """Capture the attempt's stdout/stderr into the object store, like the process
        executor's workers (one attempt runs at a time in a Ray worker)."""
        from heddle._executors.worker import Job, _LogCapture

        if self._logs is None:
            self._logs = _LogCapture()
        self._logs.begin(
            Job(
                0,
                job.ref,
                b"",
                job.run_id,
                job.action_id,
                job.task_name,
                {},
                job.memory_limit,
                None,
                job.log_key,
                job.config.storage_url,
                list(job.secrets.values()),
            )
        )
        return self._logs


_runtime: _Runtime | None = None


def run_action(job: ActionJob) -> Outcome:
    """The Ray task of every action attempt (one at a time per worker process)."""
    global _runtime
    if _runtime is None:
        _runtime = _Runtime()
    return _runtime.run(job)
