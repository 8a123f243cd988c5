"""The driver of one run: runs its root action and keeps the run's record.

It holds the run's lease (a heartbeat in the store), watches for an abort
request, and writes the run's final status, output or error.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from heddle._errors import HeddleError, RunAbortedError, RunTakenOverError
from heddle._executors.capture import tee_installed
from heddle._faults import crashpoint
from heddle._runtime import failures, lease
from heddle._runtime.controller import Controller, Executor
from heddle._runtime.literals import LiteralStore
from heddle._runtime.spec import TaskSpec
from heddle._store import ABORTED, FAILED, SUCCEEDED, ActionRecord, AttemptRecord, Store

HEARTBEAT_SECONDS = 2.0
LEASE_SECONDS = 30.0
# How long a run that ended waits for the calls it no longer awaits to be cancelled.
SETTLE_SECONDS = 10.0


def _abandoned() -> str:
    return failures.failure_of(
        HeddleError(
            "the run ended while this action was unfinished (nothing was left to finish it)"
        ),
        failures.ABORTED,
    ).to_json()


def new_owner() -> str:
    """An owner token for this driver: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_alive(owner: str | None, heartbeat_at: float | None, now: float | None = None) -> bool:
    """Whether the driver that owns a run may still be running it.

    On this host a dead pid settles it at once; elsewhere the lease must expire.
    """
    if owner is None:
        return False
    now = time.time() if now is None else now
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host == socket.gethostname() and pid_text.isdigit():
        pid = int(pid_text)
        if pid == os.getpid():
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
    return heartbeat_at is not None and now - heartbeat_at < LEASE_SECONDS


_GC_THRESHOLD = (50_000, 20, 100)


@contextlib.contextmanager
def _collector_tuned_for_runs() -> Iterator[None]:
    """Collect garbage less often while a run is driven.

    A fan-out keeps every child's state alive until it completes, so the default
    gen-0 threshold (700 allocations) runs hundreds of useless collections over the
    same live objects: a quarter of a 10,000-child run. Freezing what existed
    before the run also keeps full collections from walking the program's own heap.
    """
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLD)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


@dataclass
class RunOutcome:
    status: str
    output: bytes | None = None  # the root's encoded output
    error: BaseException | None = None


class Driver:
    """Drives one run in the current event loop."""

    def __init__(
        self,
        store: Store,
        literals: LiteralStore,
        executor: Executor,
        run_id: str,
        owner: str,
        spec: TaskSpec,
        encoded_inputs: bytes,
        prior_actions: dict[str, ActionRecord] | None = None,
        prior_attempts: list[AttemptRecord] | None = None,
        *,
        generation: int = 0,
    ) -> None:
        self.store = store
        self.literals = literals
        self.executor = executor
        self.run_id = run_id
        self.owner = owner
        self.spec = spec
        self.encoded_inputs = encoded_inputs
        self.prior_actions = prior_actions
        self.prior_attempts = prior_attempts
        # The run's generation when this driver took it: its writes check it (fencing).
        self.generation = generation
        self.controller: Controller | None = None

    async def drive(self) -> RunOutcome:
        with _collector_tuned_for_runs(), tee_installed():
            return await self._drive()

    async def _drive(self) -> RunOutcome:
        loop = asyncio.get_running_loop()
        controller = Controller(
            self.store,
            self.literals,
            self.run_id,
            self.executor,
            loop,
            self.prior_actions,
            self.prior_attempts,
        )
        self.controller = controller
        call = controller.prepare_root(self.spec, self.encoded_inputs)
        # The encoded output is what the run record keeps: no decode and re-encode.
        root = asyncio.ensure_future(controller.run_encoded(call))
        lease.hold(controller, self.run_id, self.generation, root)
        watcher = asyncio.ensure_future(self._watch(root))
        outcome: RunOutcome
        try:
            outcome = RunOutcome(SUCCEEDED, output=await root)
        except asyncio.CancelledError:
            outcome = RunOutcome(ABORTED, error=RunAbortedError(self.run_id))
            if not controller.aborting:
                # Cancelled from outside (Ctrl-C): record it, then let the cancel go on.
                self._finish(controller, outcome)
                raise
        except Exception as exc:
            outcome = RunOutcome(FAILED, error=exc)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        stopped = lease.must_not_record(controller)
        if stopped is not None:
            controller.journal.close()
            return RunOutcome(FAILED, error=stopped)
        # Calls the run made and no longer awaits were cancelled when their parents
        # ended: let them record that before the run's own end is written.
        with contextlib.suppress(asyncio.CancelledError):
            await controller.settle(SETTLE_SECONDS)
        self._finish(controller, outcome)
        return outcome

    def _finish(self, controller: Controller, outcome: RunOutcome) -> None:
        if controller.journal.failed is None:
            controller.journal.flush_now()
        values: dict[str, Any] = {
            "status": outcome.status,
            "finished_at": time.time(),
            "heartbeat_at": None,
        }
        if outcome.status == SUCCEEDED:
            assert outcome.output is not None
            values["output"] = self.literals.to_literal(outcome.output)
            values["error"] = None
        elif outcome.error is not None:
            kind = failures.ABORTED if outcome.status == ABORTED else None
            values["error"] = failures.failure_of(outcome.error, kind).to_json()
        # Nothing runs for this run any more: actions an earlier driver left queued or
        # running, and that this one never called again, are closed as aborted.
        self.store.close_unfinished(self.run_id, _abandoned(), self.generation)
        crashpoint("run.before_finish")
        self.store.update_run(self.run_id, generation=self.generation, **values)
        crashpoint("run.after_finish")
        controller.journal.close()
        # Fold the run's write-ahead log into the database without making the
        # caller wait for it; an interrupted checkpoint is harmless.
        threading.Thread(
            target=self._checkpoint_quietly, name="heddle-checkpoint", daemon=True
        ).start()

    def _checkpoint_quietly(self) -> None:
        with contextlib.suppress(Exception):
            self.store.checkpoint()

    async def _watch(self, root: asyncio.Future[Any]) -> None:
        """Heartbeat the lease and turn an abort request into cancellation."""
        assert self.controller is not None
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                record = await asyncio.to_thread(self.store.get_run, self.run_id)
                if record.abort_requested and not self.controller.aborting:
                    self.controller.aborting = True
                    root.cancel()
                    return
                await asyncio.to_thread(
                    self.store.update_run,
                    self.run_id,
                    generation=self.generation,
                    heartbeat_at=time.time(),
                )
                # The journal's connection never checkpoints (that would put fsyncs on
                # the commit path); do it here, off the loop's thread.
                await asyncio.to_thread(self.store.checkpoint)
            except asyncio.CancelledError:
                raise
            except RunTakenOverError as exc:
                lease.taken_over(self.controller, exc)
                return
            except Exception:
                # A missed heartbeat is not fatal; the lease is long enough for a retry.
                continue
