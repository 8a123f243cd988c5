"""The driver's side of worker processes: a job (one attempt, queued to reported
back), a worker's handle, how a worker is started, and the spare pool that keeps idle
workers warm between runs of this process."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import types
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import psutil

from heddle._executors import frames
from heddle._executors import worker as worker_module
from heddle._runtime.remote import BATCH, RUN

if TYPE_CHECKING:
    from heddle._executors.resources import Grant, Request
    from heddle._runtime.calls import PreparedCall
    from heddle._runtime.controller import Attempt, Controller

# Idle workers left by finished runs, handed to the next run of this process.
SPARE_WORKERS = 8


@dataclass(eq=False)
class Job:
    """One attempt from the moment it is queued until its worker reports back."""

    id: int
    call: PreparedCall
    attempt: Attempt
    controller: Controller
    run_id: str
    request: Request
    done: asyncio.Future[tuple[bool, Any, float]]
    memory_limit: int | None
    env: dict[str, str]
    secrets: list[str]
    grant: Grant | None = None
    worker: WorkerHandle | None = None
    timer: asyncio.TimerHandle | None = None
    started_at: float = 0.0  # loop time at which it became its worker's running job
    # Memory its warm worker held from earlier jobs beyond a fresh worker's: not this
    # job's, so not counted against its memory limit or in its peak.
    carried_rss: int = 0
    # Sent ahead to a busy worker, then asked back (UNQUEUE): the worker says which won.
    recalled: bool = False
    # Has called other tasks: no job is ever queued behind it on its worker.
    called: bool = False
    children: int = 0
    # The calls its body made that have not returned, by the worker's request id.
    child_calls: dict[int, asyncio.Future[bytes]] = field(default_factory=dict)
    peak_rss: int = 0
    oom: bool = False
    # Loop time since when its worker has not held it (the liveness check).
    lost_since: float | None = None


async def cancel_children(job: Job) -> None:
    """A job that stops takes its children with it (their workers are killed too),
    and waits until their end is journalled."""
    children = list(job.child_calls.values())
    for f in children:
        f.cancel()
    if children:
        await asyncio.gather(*children, return_exceptions=True)


@dataclass(eq=False)
class WorkerHandle:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    ready: asyncio.Future[None]
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    job: Job | None = None
    # Sent ahead while `job` runs: the worker starts it as soon as `job` is done.
    next: Job | None = None
    dead: bool = False
    gpu_used: bool = False
    ps: psutil.Process | None = None
    fresh_rss: int = 0  # its RSS when it started, before any job
    last_rss: int = 0  # its RSS when its last job ended
    subprocesses: list[psutil.Process] = field(default_factory=list)
    # Messages posted during this turn of the driver's loop, sent together at its end.
    outbox: list[tuple[Any, ...]] = field(default_factory=list)
    reader: frames.FrameReader | None = None

    @property
    def label(self) -> str:
        return f"process:{self.process.pid}"

    def send(self, message: tuple[Any, ...]) -> None:
        data = frames.encode(message)
        with self.send_lock:
            frames.write_all(self.conn.fileno(), data)

    def send_now(self, message: tuple[Any, ...]) -> None:
        """Send at once, ahead of anything posted this turn (a dead worker's reader
        reports the failure)."""
        if not self.dead:
            with contextlib.suppress(Exception):
                self.send(message)

    def flush(self) -> None:
        """Send what was posted this turn: one pickle and one write however many."""
        out, self.outbox = self.outbox, []
        if self.dead or not out:
            return
        with contextlib.suppress(Exception):  # a dead worker is handled by its reader
            self.send(out[0] if len(out) == 1 else (BATCH, out))

    def send_run(self, job: Job, storage_url: str) -> None:
        spec = job.call.spec
        gpus = job.grant.gpus if job.grant is not None and job.request.gpu else None
        self.send_now(
            (
                RUN,
                job.id,
                spec.ref.get(),
                job.call.encoded_inputs,
                job.run_id,
                job.call.action_id,
                spec.name,
                job.env,
                job.memory_limit,
                gpus,
                job.attempt.log_key,
                storage_url,
                job.secrets,
            ),
        )

    def sample_rss(self, refresh_children: bool) -> int | None:
        """The RSS of the worker and of the subprocesses its task started, or None if it
        cannot be read. Finding subprocesses walks /proc: their list is refreshed only
        when asked."""
        if self.ps is None:
            return None
        try:
            rss: int = self.ps.memory_info().rss
            if refresh_children:
                self.subprocesses = self.ps.children(recursive=True)
        except psutil.Error:
            return None
        for child in self.subprocesses:
            with contextlib.suppress(psutil.Error):
                rss += child.memory_info().rss
        return rss

    def kill(self) -> None:
        # Never handed another job: its reader finishes the bookkeeping when the pipe closes.
        self.dead = True
        if self.process.pid is not None and self.process.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)


def mp_context() -> multiprocessing.context.ForkServerContext:
    # Workers fork from a small server process that has imported Heddle once: fast to
    # start, and never a fork of the driver with its threads and open connections.
    ctx = multiprocessing.get_context("forkserver")
    assert isinstance(ctx, multiprocessing.context.ForkServerContext)
    ctx.set_forkserver_preload(["heddle", "heddle._executors.worker"])
    return ctx


_forkserver_started = False
_spare: list[WorkerHandle] = []
_spare_lock = threading.Lock()
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


async def start_worker(
    ctx: multiprocessing.context.ForkServerContext, loop: asyncio.AbstractEventLoop
) -> WorkerHandle:
    """Start a worker process; its handle's ``ready`` resolves when it says READY."""
    parent, child = ctx.Pipe(duplex=True)
    process = ctx.Process(
        target=worker_module.main, args=(child,), daemon=True, name="heddle-worker"
    )
    if not _forkserver_started:
        # The first start launches the fork server (it imports Heddle): off the loop.
        await asyncio.to_thread(_start_without_main, process)
    else:
        _start_without_main(process)
    child.close()
    w = WorkerHandle(process, parent, loop.create_future())
    w.reader = frames.FrameReader(parent.fileno())
    return w


def take_spare() -> WorkerHandle | None:
    """An idle worker an earlier run of this process left, still alive (warm: imports
    done), or None."""
    while True:
        with _spare_lock:
            if not _spare:
                return None
            w = _spare.pop()
        if w.process.is_alive():
            return w
        with contextlib.suppress(Exception):
            w.conn.close()


def keep_spare(w: WorkerHandle) -> bool:
    """Keep an idle worker for the next run, if the pool has room and the worker has no
    message half-read."""
    if w.reader is None or w.reader.pending():
        return False
    w.outbox.clear()
    with _spare_lock:
        if len(_spare) >= SPARE_WORKERS:
            return False
        _spare.append(w)
        return True
