"""The process executor: each action attempt runs in a worker process of a warm pool.

The driver keeps the controller (the single writer of the run's log); it admits
attempts by their declared resources, watches workers' memory, kills them on
timeout, abort or OOM, and serves the calls their tasks make to other tasks.

Short jobs cost little: admission runs in the loop turn that frees resources, and a
job may be sent ahead to a busy worker to start the moment the job in front ends
(see ``_send_ahead``); idle workers are kept warm for the next run in this process.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
from collections.abc import Callable
from typing import Any

import psutil

from heddle._errors import OOMError, WorkerLostError
from heddle._errors import TimeoutError as HeddleTimeout
from heddle._executors.handles import (
    Job,
    WorkerHandle,
    cancel_children,
    keep_spare,
    mp_context,
    start_worker,
    take_spare,
)
from heddle._executors.resources import Capacity, Ledger, Request, capacity_from
from heddle._runtime import failures
from heddle._runtime.calls import PreparedCall
from heddle._runtime.context import ActionContext
from heddle._runtime.controller import Attempt, Controller
from heddle._runtime.remote import (
    BATCH,
    CALL,
    CANCEL,
    DONE,
    READY,
    REPLY,
    SKIPPED,
    STEP,
    STOP,
    UNQUEUE,
)
from heddle._runtime.spec import Resources, TaskSpec

WATCH_SECONDS = 0.05
CHILDREN_EVERY = 10
IDLE_WORKERS = 8
# A job is sent ahead only behind a job that started less than this long ago, and taken
# back (by the watchdog, within WATCH_SECONDS) once the job in front has run longer:
# it never waits long behind a slow job.
SEND_AHEAD_WINDOW = 0.05
# The liveness check runs every LIVENESS_EVERY watchdog ticks; a job its worker does not
# hold for LOST_JOB_SECONDS is failed as lost (retried).
LIVENESS_EVERY = 10
LOST_JOB_SECONDS = 2.0


class ProcessExecutor:
    """Runs attempts in worker processes, admitted by declared resources."""

    name = "process"
    # Loop turns a journal commit waits for workers' messages already on their way.
    gather_turns = 4

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
        # Read once per executor, i.e. once per run.
        self._env: dict[str, str] = session_env() if session_env is not None else {}
        self._resolve = resolve
        self._secrets = secrets or (lambda spec: {})
        self.ledger = Ledger(capacity_from(capacity))
        self._ctx = mp_context()
        self._idle: list[WorkerHandle] = []
        self._queue: collections.deque[Job] = collections.deque()
        self._all: set[WorkerHandle] = set()
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._to_flush: list[WorkerHandle] = []
        self._starting: set[asyncio.Task[None]] = set()
        # Every job not yet reported back, by id (for the liveness check).
        self._live: dict[int, Job] = {}

    # -- workers ---------------------------------------------------------------------

    def _start_loop_services(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._watchdog = loop.create_task(self._watch())

    def _idle_worker(self) -> WorkerHandle | None:
        while self._idle:
            w = self._idle.pop()
            if not w.dead:
                return w
        return self._spare_worker()

    def _spare_worker(self) -> WorkerHandle | None:
        w = take_spare()
        if w is not None:
            self._adopt(w)
        return w

    def _adopt(self, w: WorkerHandle) -> None:
        assert self._loop is not None
        self._all.add(w)
        # The pipe is read on the loop itself: no reader thread, no hand-off per message.
        self._loop.add_reader(w.conn.fileno(), self._readable, w)

    async def _new_worker(self) -> WorkerHandle:
        assert self._loop is not None
        w = await start_worker(self._ctx, self._loop)
        self._adopt(w)
        await w.ready
        return w

    def _release_worker(self, w: WorkerHandle) -> None:
        w.job = None
        if w.dead:
            return
        if w.gpu_used:
            # CUDA fixes its devices when a process first uses it: a worker that had
            # GPUs never runs another job, which could be given other devices.
            self._stop_worker(w)
        elif len(self._idle) < IDLE_WORKERS:
            self._idle.append(w)
        else:
            self._stop_worker(w)

    def _post(self, w: WorkerHandle, message: tuple[Any, ...]) -> None:
        """Queue a message to a worker; everything posted in this loop turn goes together."""
        if not w.outbox:
            if not self._to_flush:
                assert self._loop is not None
                self._loop.call_soon(self._flush)
            self._to_flush.append(w)
        w.outbox.append(message)

    def _flush(self) -> None:
        workers, self._to_flush = self._to_flush, []
        for w in workers:
            w.flush()

    def _stop_worker(self, w: WorkerHandle) -> None:
        with contextlib.suppress(Exception):
            w.send((STOP,))
        self._all.discard(w)

    def _readable(self, w: WorkerHandle) -> None:
        """The worker's pipe has data (or was closed): handle every complete message."""
        assert w.reader is not None
        try:
            messages = w.reader.read()
        except (EOFError, OSError):
            assert self._loop is not None
            self._loop.remove_reader(w.conn.fileno())
            w.process.join(timeout=1)
            self._on_exit(w)
            return
        for message in messages:
            self._on_message(w, message)

    def _on_exit(self, w: WorkerHandle) -> None:
        w.dead = True
        self._all.discard(w)
        if not w.ready.done():
            w.ready.set_exception(
                WorkerLostError("(starting)", f"worker exited with code {w.process.exitcode}")
            )
        ahead, w.next = w.next, None
        if ahead is not None:  # never started: it goes back to the head of the queue
            self._requeue(ahead)
            self._dispatch()
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

    def _on_message(self, w: WorkerHandle, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == BATCH:
            for m in message[1]:
                self._on_message(w, m)
        elif kind == READY:
            w.ps = psutil.Process(message[1])
            with contextlib.suppress(psutil.Error):
                w.fresh_rss = w.last_rss = w.ps.memory_info().rss
            if not w.ready.done():
                w.ready.set_result(None)
        elif kind == DONE:
            _, job_id, ok, payload, cpu, rss, next_id = message
            job = w.job
            if job is None or job.id != job_id:
                self._done_out_of_turn(w, job_id, ok, payload, cpu)
            elif job is not None and job.id == job_id:
                job.peak_rss = max(job.peak_rss, rss - job.carried_rss)
                w.last_rss = rss
                if not job.done.done():
                    job.done.set_result((ok, payload, cpu))
                self._hand_over(w, job, next_id)
                # Free the worker and the resources now, in this turn: the next queued
                # job is sent before the controller even records this one.
                self._complete(job)
        elif kind == SKIPPED:
            self._on_skipped(w, message[1])
        elif kind == CALL:
            self._on_call(w, *message[1:])
        elif kind == CANCEL:
            self._on_cancel(w, message[1], message[2])
        elif kind == STEP:
            self._on_step(w, *message[1:])

    def _done_out_of_turn(
        self, w: WorkerHandle, job_id: int, ok: bool, payload: Any, cpu: float
    ) -> None:
        """A worker finished a job that is not the one the driver thinks it runs. That
        should not happen; if it does, the job's result must not be lost (the run would
        wait for it forever): record it, and take the worker out of service."""
        job = self._live.get(job_id)
        if job is None or job.done.done():
            return
        job.done.set_result((ok, payload, cpu))
        if w.next is job:
            w.next = None
        self._complete(job)
        self._retire(w)

    def _retire(self, w: WorkerHandle) -> None:
        """Stop a worker whose state the driver can no longer be sure of; whatever the
        driver thought it held is lost with it (its reader reports that)."""
        if not w.dead:
            w.kill()

    def _reply(self, w: WorkerHandle, req_id: int, ok: bool, payload: Any) -> None:
        if not w.dead:
            self._post(w, (REPLY, req_id, ok, payload))

    def _on_call(
        self,
        w: WorkerHandle,
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
        job.called = True
        if w.next is not None:
            # A job queued behind a parent could be what the parent ends up waiting on.
            self._recall(w, w.next)
        job.children += 1
        if job.children == 1 and job.grant is not None:
            self.ledger.lend_cpu(job.grant)
            self._dispatch()
        fut = asyncio.ensure_future(job.controller.run_encoded(call))
        job.child_calls[req_id] = fut

        def finished(f: asyncio.Future[bytes]) -> None:
            job.child_calls.pop(req_id, None)
            job.children -= 1
            if job.children == 0 and job.grant is not None:
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

    def _on_cancel(self, w: WorkerHandle, job_id: int, req_id: int) -> None:
        """The body stopped awaiting a call it made: cancel it (its worker is killed and
        the action recorded as aborted)."""
        job = w.job
        if job is None or job.id != job_id:
            return
        fut = job.child_calls.get(req_id)
        if fut is not None:
            fut.cancel()

    def _on_step(
        self, w: WorkerHandle, job_id: int, req_id: int, op: str, args: tuple[Any, ...]
    ) -> None:
        job = w.job
        if job is None or job.id != job_id:
            return
        c = job.controller
        if op == "note":
            c.note_step(args[0])
        elif op == "open":
            try:
                state, out = c.open_step(*args)
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
        assert self._loop is not None
        spec = call.spec
        request = Request.of(attempt.resources)
        self.ledger.check(request, spec.name)
        controller = ctx.controller
        assert isinstance(controller, Controller)
        secrets = self._secrets(spec)
        env = {**self._env, **spec.env_vars, **secrets} if spec.env_vars or secrets else self._env
        job = Job(
            next(self._ids),
            call,
            attempt,
            controller,
            ctx.run_id,
            request,
            self._loop.create_future(),
            request.memory or None,
            env,
            list(secrets.values()),
        )
        attempt.log_key = f"logs/{ctx.run_id}/{call.action_id}/{attempt.number}.log"
        queued = spec.timeout.queued_seconds if spec.timeout else None
        if queued is not None:
            job.timer = self._loop.call_later(queued, self._queue_timeout, job, queued)
        self._queue.append(job)
        self._live[job.id] = job
        self._dispatch()
        try:
            ok, payload, cpu = await job.done
        except asyncio.CancelledError:
            # job.done is cancelled with us: the job is dropped wherever it waits.
            w = job.worker
            if w is not None:
                if w.next is job:
                    self._recall(w, job)
                else:
                    w.kill()
            await cancel_children(job)
            raise
        except HeddleTimeout:
            await cancel_children(job)
            raise
        finally:
            self._live.pop(job.id, None)
            attempt.peak_rss = job.peak_rss or attempt.peak_rss
            self._complete(job)
        attempt.cpu_seconds = cpu
        if ok:
            return bytes(payload)
        raise failures.rebuild(
            failures.Failure.from_json(payload), spec.name, call.action_id, ctx.run_id
        )

    # -- admission -------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Start queued jobs, in order, while the one at the head fits what is free."""
        queue = self._queue
        while queue:
            job = queue[0]
            if job.done.done():  # aborted or timed out while it waited
                queue.popleft()
                continue
            grant = self.ledger.take(job.request)
            if grant is None:
                if not self._send_ahead(job):
                    return
                queue.popleft()
                continue
            queue.popleft()
            job.grant = grant
            if job.timer is not None:
                job.timer.cancel()
                job.timer = None
            # A GPU job gets a worker of its own that no earlier job could have pinned
            # to other devices (CUDA_VISIBLE_DEVICES is read once, when CUDA starts).
            w = None if job.request.gpu else self._idle_worker()
            if w is None:
                assert self._loop is not None
                starting = self._loop.create_task(self._start_on_new_worker(job))
                self._starting.add(starting)
                starting.add_done_callback(self._starting.discard)
            else:
                self._start(w, job)

    async def _start_on_new_worker(self, job: Job) -> None:
        try:
            w = await self._new_worker()
        except Exception as exc:
            if not job.done.done():
                job.done.set_exception(exc)
            return
        if job.done.done():  # aborted while the worker started
            self._release_worker(w)
            self._dispatch()
        else:
            self._start(w, job)

    def _send_ahead(self, job: Job) -> bool:
        """Queue a job on a busy worker running a job of the same request, to start the
        moment that one ends (its resources pass straight to it): the worker never
        waits for the driver between two short jobs. Not behind a job that calls other
        tasks, nor for jobs with GPUs or a max queued time."""
        spec = job.call.spec
        if job.request.gpu or (spec.timeout is not None and spec.timeout.queued_seconds):
            return False
        assert self._loop is not None
        now = self._loop.time()
        for w in self._all:
            running = w.job
            if (
                running is not None
                and w.next is None
                and not w.dead
                and not running.called
                # A job asked back whose worker has not yet said whether it started:
                # nothing may queue behind it until the worker answers.
                and not running.recalled
                and running.request == job.request
                and now - running.started_at < SEND_AHEAD_WINDOW
                and not running.done.done()
            ):
                w.next = job
                job.worker = w
                self._send_run(w, job)
                return True
        return False

    def _hand_over(self, w: WorkerHandle, job: Job, next_id: int | None) -> None:
        """At `job`'s end, the job sent ahead (if any) becomes the worker's running job."""
        ahead = w.next
        if ahead is None:
            return
        if next_id != ahead.id and ahead.recalled:
            # Asked back and not started with this DONE: it may have arrived after the
            # worker went idle (and runs) or been skipped (SKIPPED comes). Until the
            # worker says which, it holds the worker and the resources.
            pass
        elif ahead.done.done():
            # Aborted after it was sent, and started anyway: stop it.
            w.next = None
            w.kill()
            return
        w.next = None
        grant, job.grant = job.grant, None
        if grant is not None:
            # The job in front may end with children still running (never awaited):
            # the cpu it lent them is taken back for the job that now runs.
            self.ledger.reclaim_cpu(grant)
        ahead.grant = grant
        self._running(w, ahead)

    def _recall(self, w: WorkerHandle, job: Job) -> None:
        if not job.recalled:
            job.recalled = True
            w.send_now((UNQUEUE, job.id))

    def _on_skipped(self, w: WorkerHandle, job_id: int) -> None:
        """The worker dropped a job sent ahead, unstarted: it goes back to the queue."""
        if w.next is not None and w.next.id == job_id:
            job = w.next
            w.next = None
        elif w.job is not None and w.job.id == job_id:
            job = w.job
            if job.timer is not None:
                job.timer.cancel()
                job.timer = None
            ahead, w.next = w.next, None
            if ahead is not None:
                # The worker is idle and starts the job sent behind the skipped one:
                # that job is its running job now, with the skipped one's resources.
                ahead.grant, job.grant = job.grant, None
                self._running(w, ahead)
            else:
                if job.grant is not None:
                    self.ledger.release(job.grant)
                    job.grant = None
                self._release_worker(w)
        else:
            return
        self._requeue(job)
        self._dispatch()

    def _requeue(self, job: Job) -> None:
        if job.timer is not None:
            job.timer.cancel()
            job.timer = None
        job.worker = None
        job.recalled = False
        job.attempt.requeued()
        if not job.done.done():
            self._queue.appendleft(job)

    def _start(self, w: WorkerHandle, job: Job) -> None:
        if job.request.gpu:
            w.gpu_used = True
        self._send_run(w, job)
        self._running(w, job)

    def _running(self, w: WorkerHandle, job: Job) -> None:
        job.worker = w
        w.job = job
        job.carried_rss = max(0, w.last_rss - w.fresh_rss)
        assert self._loop is not None
        job.started_at = self._loop.time()
        job.attempt.worker = w.label
        job.attempt.started()
        if job.timer is not None:
            job.timer.cancel()
            job.timer = None
        spec = job.call.spec
        runtime = spec.timeout.runtime_seconds if spec.timeout else None
        if runtime is not None:
            assert self._loop is not None
            job.timer = self._loop.call_later(runtime, self._runtime_timeout, job, runtime)

    def _send_run(self, w: WorkerHandle, job: Job) -> None:
        job.attempt.worker = w.label
        w.send_run(job, self.storage_url)

    def _queue_timeout(self, job: Job, seconds: float) -> None:
        if job.grant is None and not job.done.done():
            job.done.set_exception(HeddleTimeout(job.call.spec.name, seconds, phase="queued"))

    def _runtime_timeout(self, job: Job, seconds: float) -> None:
        if not job.done.done():
            if job.worker is not None:
                job.worker.kill()
            job.done.set_exception(HeddleTimeout(job.call.spec.name, seconds))

    def _complete(self, job: Job) -> None:
        """The job is over: free its worker and resources, and start what now fits
        (safe to call more than once)."""
        if job.timer is not None:
            job.timer.cancel()
            job.timer = None
        w = job.worker
        if w is not None and w.job is job:
            self._release_worker(w)
        if job.grant is not None:
            self.ledger.release(job.grant)
        self._dispatch()

    async def _watch(self) -> None:
        """Sample busy workers' RSS: record peaks, kill those past their memory limit;
        take back jobs sent ahead to a worker whose job turned out slow."""
        assert self._loop is not None
        tick = 0
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            tick += 1
            now = self._loop.time()
            if tick % LIVENESS_EVERY == 0:
                self._check_liveness()
            for w in list(self._all):
                job = w.job
                if job is None or w.ps is None or w.dead:
                    continue
                ahead = w.next
                if ahead is not None and now - job.started_at > SEND_AHEAD_WINDOW:
                    self._recall(w, ahead)  # it runs wherever fits first instead
                rss = w.sample_rss(refresh_children=tick % CHILDREN_EVERY == 0)
                if rss is None:
                    continue
                rss -= job.carried_rss
                job.peak_rss = max(job.peak_rss, rss)
                if job.memory_limit and rss > job.memory_limit and not job.oom:
                    job.oom = True
                    w.kill()

    def _check_liveness(self) -> None:
        """Fail, as a lost worker, any job whose worker is gone or no longer holds it
        (neither running it nor keeping it queued) for LOST_JOB_SECONDS: its DONE can
        never come. The worker's reader normally reports a death at once; this is the
        net under it, so that no run ever waits forever. Retried on the system budget."""
        assert self._loop is not None
        now = self._loop.time()
        for job in list(self._live.values()):
            w = job.worker
            if w is None or job.done.done():
                continue
            held = w.job is job or w.next is job
            if held and not w.dead and w.process.is_alive():
                job.lost_since = None
                continue
            if job.lost_since is None:
                job.lost_since = now
                continue
            if now - job.lost_since < LOST_JOB_SECONDS:
                continue
            task = job.call.spec.name
            if job.oom:
                job.done.set_exception(OOMError(task, job.memory_limit, job.peak_rss or None))
            else:
                job.done.set_exception(
                    WorkerLostError(
                        task, f"worker process {w.process.pid} no longer runs this attempt"
                    )
                )

    def shutdown(self) -> None:
        """Called once the run's loop has stopped: idle workers are kept for the next run
        in this process (up to SPARE_WORKERS), the others are stopped."""
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._loop is not None and not self._loop.is_closed():
            for w in self._all:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(w.conn.fileno())
        idle = set(self._idle)
        stopping = []
        for w in self._all:
            clean = w in idle and w.job is None and w.next is None and not w.dead
            if not (clean and keep_spare(w)):
                stopping.append(w)
        for w in stopping:
            with contextlib.suppress(Exception):
                w.send((STOP,))
        for w in stopping:
            w.process.join(timeout=2)
            w.kill()
        self._idle.clear()
        self._all.clear()
