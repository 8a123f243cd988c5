"""The process executor: each action attempt runs in a worker process of a warm pool.

The driver keeps the controller (the single writer of the run's log); it admits
attempts by their declared resources, watches workers' memory, kills them on
timeout, abort or OOM, and serves the calls their tasks make to other tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import os
import signal
import sys
import threading
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import psutil

from heddle._errors import OOMError, WorkerLostError
from heddle._errors import TimeoutError as HeddleTimeout
from heddle._executors import worker as worker_module
from heddle._executors.resources import Capacity, Grant, Ledger, Request, capacity_from
from heddle._runtime import failures
from heddle._runtime.calls import PreparedCall
from heddle._runtime.context import ActionContext
from heddle._runtime.controller import Attempt, Controller
from heddle._runtime.remote import CALL, DONE, READY, REPLY, RUN, STEP, STOP
from heddle._runtime.spec import Resources, TaskSpec

WATCH_SECONDS = 0.05
CHILDREN_EVERY = 10
IDLE_WORKERS = 8


@dataclass
class _Job:
    id: int
    call: PreparedCall
    attempt: Attempt
    controller: Controller
    grant: Grant
    done: asyncio.Future[tuple[bool, Any, float]]
    memory_limit: int | None
    children: int = 0
    child_calls: set[asyncio.Future[bytes]] = field(default_factory=set)
    peak_rss: int = 0
    oom: bool = False


@dataclass(eq=False)
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    ready: asyncio.Future[None]
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    job: _Job | None = None
    dead: bool = False
    ps: psutil.Process | None = None
    subprocesses: list[psutil.Process] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"process:{self.process.pid}"

    def send(self, message: tuple[Any, ...]) -> None:
        with self.send_lock:
            self.conn.send(message)

    def kill(self) -> None:
        if self.process.pid is not None and self.process.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)


def _mp_context() -> multiprocessing.context.ForkServerContext:
    # Workers fork from a small server process that has imported Heddle once: fast to
    # start, and never a fork of the driver with its threads and open connections.
    ctx = multiprocessing.get_context("forkserver")
    assert isinstance(ctx, multiprocessing.context.ForkServerContext)
    ctx.set_forkserver_preload(["heddle", "heddle._executors.worker"])
    return ctx


async def _cancel_children(job: _Job) -> None:
    """A job that stops takes its children with it (their workers are killed too),
    and waits until their end is journalled."""
    children = list(job.child_calls)
    for f in children:
        f.cancel()
    if children:
        await asyncio.gather(*children, return_exceptions=True)


_forkserver_started = False
_start_lock = threading.Lock()


def _start_without_main(process: multiprocessing.process.BaseProcess) -> None:
    """Start a worker without multiprocessing importing the driver's __main__ in it.

    multiprocessing re-runs the parent's main script in every child it starts, which
    re-runs a user's script that lacks an ``if __name__ == "__main__":`` guard. Tasks
    travel by reference or by value instead, so the script is never needed there.
    """
    global _forkserver_started
    with _start_lock:
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            process.start()
        finally:
            if main is not None:
                sys.modules["__main__"] = main
        _forkserver_started = True


class ProcessExecutor:
    """Runs attempts in worker processes, admitted by declared resources."""

    name = "process"

    def __init__(
        self,
        storage_url: str,
        resolve: Callable[[Any], TaskSpec],
        capacity: Resources | Capacity | None = None,
        secrets: Callable[[TaskSpec], dict[str, str]] | None = None,
        session_env: Callable[[], dict[str, str]] | None = None,
    ) -> None:
        self.storage_url = storage_url
        # HEDDLE_HOME/DB_URL/STORAGE_URL of the driver's session: code in a worker
        # that opens the session (heddle.get_run, reports) sees the same store.
        self._session_env = session_env or dict
        self._resolve = resolve
        self._secrets = secrets or (lambda spec: {})
        self.ledger = Ledger(capacity_from(capacity))
        self._ctx = _mp_context()
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watchdog: asyncio.Task[None] | None = None

    # -- workers ---------------------------------------------------------------------

    def _start_loop_services(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._watchdog = loop.create_task(self._watch_memory())

    async def _acquire_worker(self) -> _Worker:
        while self._idle:
            w = self._idle.pop()
            if not w.dead:
                return w
        assert self._loop is not None
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=worker_module.main, args=(child,), daemon=True, name="heddle-worker"
        )
        if not _forkserver_started:
            # The first start launches the fork server (it imports Heddle): off the loop.
            await asyncio.to_thread(_start_without_main, process)
        else:
            _start_without_main(process)
        child.close()
        w = _Worker(process, parent, self._loop.create_future())
        self._all.add(w)
        # The pipe is read on the loop itself: no reader thread, no hand-off per message.
        self._loop.add_reader(parent.fileno(), self._readable, w)
        await w.ready
        return w

    def _release_worker(self, w: _Worker) -> None:
        w.job = None
        if w.dead:
            return
        if len(self._idle) < IDLE_WORKERS:
            self._idle.append(w)
        else:
            self._stop_worker(w)

    def _stop_worker(self, w: _Worker) -> None:
        with contextlib.suppress(Exception):
            w.send((STOP,))
        self._all.discard(w)

    def _readable(self, w: _Worker) -> None:
        """The worker's pipe has data (or was closed): handle every complete message."""
        try:
            while w.conn.poll(0):
                self._on_message(w, w.conn.recv())
        except (EOFError, OSError):
            assert self._loop is not None
            self._loop.remove_reader(w.conn.fileno())
            w.process.join(timeout=1)
            self._on_exit(w)

    def _on_exit(self, w: _Worker) -> None:
        w.dead = True
        self._all.discard(w)
        if not w.ready.done():
            w.ready.set_exception(
                WorkerLostError("(starting)", f"worker exited with code {w.process.exitcode}")
            )
        job = w.job
        if job is None or job.done.done():
            return
        task = job.call.spec.name
        if job.oom:
            job.done.set_exception(OOMError(task, job.memory_limit, job.peak_rss or None))
        else:
            job.done.set_exception(
                WorkerLostError(
                    task, f"worker process {w.process.pid} exited with code {w.process.exitcode}"
                )
            )

    # -- messages --------------------------------------------------------------------

    def _on_message(self, w: _Worker, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == READY:
            w.ps = psutil.Process(message[1])
            if not w.ready.done():
                w.ready.set_result(None)
        elif kind == DONE:
            _, job_id, ok, payload, cpu, rss = message
            job = w.job
            if job is not None and job.id == job_id and not job.done.done():
                job.peak_rss = max(job.peak_rss, rss)
                job.done.set_result((ok, payload, cpu))
        elif kind == CALL:
            self._on_call(w, *message[1:])
        elif kind == STEP:
            self._on_step(w, *message[1:])

    def _reply(self, w: _Worker, req_id: int, ok: bool, payload: Any) -> None:
        if not w.dead:
            with contextlib.suppress(Exception):
                w.send((REPLY, req_id, ok, payload))

    def _on_call(
        self,
        w: _Worker,
        job_id: int,
        req_id: int,
        ref: Any,
        action_id: str,
        encoded: bytes,
        in_hash: str,
        seq: int,
        parent_id: str,
        group: str | None,
    ) -> None:
        job = w.job
        if job is None or job.id != job_id:
            return
        try:
            spec = self._resolve(ref)
        except Exception as exc:
            self._reply(w, req_id, False, failures.failure_of(exc).to_json())
            return
        call = PreparedCall(spec, action_id, encoded, in_hash, seq, parent_id, group, None)
        job.children += 1
        if job.children == 1:
            self.ledger.lend_cpu(job.grant)
        fut = asyncio.ensure_future(job.controller.run_encoded(call))
        job.child_calls.add(fut)

        def finished(f: asyncio.Future[bytes]) -> None:
            job.child_calls.discard(f)
            job.children -= 1
            if job.children == 0:
                self.ledger.reclaim_cpu(job.grant)
            if f.cancelled():
                self._reply(
                    w,
                    req_id,
                    False,
                    failures.failure_of(asyncio.CancelledError(), failures.ABORTED).to_json(),
                )
            elif f.exception() is not None:
                exc = f.exception()
                assert exc is not None
                self._reply(w, req_id, False, failures.failure_of(exc).to_json())
            else:
                self._reply(w, req_id, True, f.result())

        fut.add_done_callback(finished)

    def _on_step(
        self, w: _Worker, job_id: int, req_id: int, op: str, args: tuple[Any, ...]
    ) -> None:
        job = w.job
        if job is None or job.id != job_id:
            return
        c = job.controller
        if op == "note":
            c.note_step(args[0])
        elif op == "open":
            parent_id, seq, kind, name, encoded, ih, n, group = args
            try:
                state, out = c.open_step(parent_id, seq, kind, name, encoded, ih, n, group)
                self._reply(w, req_id, True, (state, out, c.step_prior_output(state)))
            except Exception as exc:
                self._reply(w, req_id, False, str(exc))
        elif op == "record":
            state, out, failure_json, final = args
            fut = asyncio.ensure_future(c.record_step_failure(state, out, failure_json, final))
            fut.add_done_callback(
                lambda f: self._reply(
                    w,
                    req_id,
                    f.exception() is None,
                    None if f.exception() is None else str(f.exception()),
                )
            )

    # -- execution -------------------------------------------------------------------

    async def execute(self, call: PreparedCall, attempt: Attempt, ctx: ActionContext) -> bytes:
        self._start_loop_services()
        spec = call.spec
        request = Request.of(attempt.resources)
        self.ledger.check(request, spec.name)
        queued = spec.timeout.queued_seconds if spec.timeout else None
        try:
            async with asyncio.timeout(queued):
                grant = await self.ledger.acquire(request)
        except TimeoutError:
            raise HeddleTimeout(spec.name, queued or 0, phase="queued") from None
        w: _Worker | None = None
        try:
            w = await self._acquire_worker()
            assert self._loop is not None
            controller = ctx.controller
            assert isinstance(controller, Controller)
            job = _Job(
                next(self._ids),
                call,
                attempt,
                controller,
                grant,
                self._loop.create_future(),
                request.memory or None,
            )
            w.job = job
            attempt.worker = w.label
            attempt.log_key = f"logs/{ctx.run_id}/{call.action_id}/{attempt.number}.log"
            secrets = self._secrets(spec)
            w.send(
                (
                    RUN,
                    job.id,
                    spec.ref.get(),
                    call.encoded_inputs,
                    ctx.run_id,
                    call.action_id,
                    spec.name,
                    {**self._session_env(), **spec.env_vars, **secrets},
                    job.memory_limit,
                    grant.gpus if request.gpu else None,
                    attempt.log_key,
                    self.storage_url,
                    list(secrets.values()),
                )
            )
            runtime = spec.timeout.runtime_seconds if spec.timeout else None
            try:
                async with asyncio.timeout(runtime):
                    ok, payload, cpu = await job.done
            except TimeoutError:
                w.kill()
                await _cancel_children(job)
                raise HeddleTimeout(spec.name, runtime or 0) from None
            except asyncio.CancelledError:
                w.kill()
                await _cancel_children(job)
                raise
            finally:
                attempt.peak_rss = job.peak_rss or attempt.peak_rss
            attempt.cpu_seconds = cpu
            if ok:
                return bytes(payload)
            raise failures.rebuild(
                failures.Failure.from_json(payload), spec.name, call.action_id, ctx.run_id
            )
        finally:
            self.ledger.release(grant)
            if w is not None:
                self._release_worker(w)

    async def _watch_memory(self) -> None:
        """Sample busy workers' RSS: record peaks, kill those past their memory limit.

        A task's own subprocesses count too; finding them walks /proc, so their list
        is refreshed only every CHILDREN_EVERY samples.
        """
        tick = 0
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            tick += 1
            for w in list(self._all):
                job = w.job
                if job is None or w.ps is None or w.dead:
                    continue
                try:
                    rss = w.ps.memory_info().rss
                    if tick % CHILDREN_EVERY == 0:
                        w.subprocesses = w.ps.children(recursive=True)
                    for child in w.subprocesses:
                        with contextlib.suppress(psutil.Error):
                            rss += child.memory_info().rss
                except psutil.Error:
                    continue
                job.peak_rss = max(job.peak_rss, rss)
                if job.memory_limit and rss > job.memory_limit and not job.oom:
                    job.oom = True
                    w.kill()

    def shutdown(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        workers = list(self._all)
        for w in workers:
            self._stop_worker(w)
        for w in workers:
            w.process.join(timeout=2)
            w.kill()
        self._idle.clear()
        self._all.clear()
