"""Starting, recovering and aborting runs, and the Run handle users get back."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import msgspec

from heddle._errors import ConfigError, HeddleError, RecoveryError, RunFailedError
from heddle._runtime import failures
from heddle._runtime.context import current_action
from heddle._runtime.controller import Stats
from heddle._runtime.driver import Driver, RunOutcome, new_owner, owner_alive
from heddle._runtime.ids import action_id, input_hash, new_run_id
from heddle._sdk import program
from heddle._sdk.config import Session, get_reader, get_session
from heddle._sdk.task import Task
from heddle._store import FINAL_STATES, RUNNING, SUCCEEDED, ActionRecord, RunRecord
from heddle._types.storable import text_problem

MAX_RUN_NAME = 200  # the store's column width, the same on every backend


class Run:
    """A handle on a run: its id, status and outputs."""

    def __init__(self, session: Session, run_id: str, task: Task[Any, Any] | None = None) -> None:
        self._session = session
        self.id = run_id
        self._task = task
        self._thread: threading.Thread | None = None
        self._driver: Driver | None = None
        self._outcome: RunOutcome | None = None
        self._crash: BaseException | None = None

    def __repr__(self) -> str:
        return f"<heddle run {self.id} {self.status}>"

    @property
    def url(self) -> str:
        """Where ``heddle serve`` shows this run (base from HEDDLE_UI_URL, default
        http://127.0.0.1:8080)."""
        base = os.environ.get("HEDDLE_UI_URL", "http://127.0.0.1:8080").rstrip("/")
        return f"{base}/runs/{self.id}"

    @property
    def record(self) -> RunRecord:
        return self._session.store.get_run(self.id)

    @property
    def name(self) -> str | None:
        return self.record.name

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def done(self) -> bool:
        return self._thread is None or not self._thread.is_alive()

    @property
    def progress(self) -> Stats | None:
        """Live counters while this process drives the run."""
        d = self._driver
        return None if d is None or d.controller is None else d.controller.stats

    def wait(self, timeout: float | None = None) -> Run:
        """Block until the run has finished (if this process drives it)."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"run {self.id} still running after {timeout}s")
        if self._crash is not None:
            raise self._crash
        return self

    def outputs(self) -> Any:
        """The root task's output; raises the run's error if it did not succeed."""
        self.wait()
        if (
            self._outcome is not None
            and self._outcome.error is not None
            and self._outcome.status != SUCCEEDED
        ):
            raise self._outcome.error
        rec = self.record
        if rec.status == SUCCEEDED and rec.output is not None:
            data = self._session.literals.from_literal(rec.output)
            if self._task is None:
                try:
                    self._task = program.load(rec.program)
                except Exception:
                    return msgspec.msgpack.decode(data)
            return self._task.spec.decode_output(data)
        if rec.error:
            failure = failures.Failure.from_json(rec.error)
            raise failures.rebuild(failure, rec.root_task, rec.root_action_id, rec.id)
        raise RunFailedError(rec.id, rec.status)

    def actions(self) -> list[ActionRecord]:
        return self._session.store.actions_of_run(self.id)

    def abort(self) -> None:
        abort(self.id)


def _start(run: Run, driver: Driver, wait: bool) -> Run:
    run._driver = driver

    def target() -> None:
        try:
            run._outcome = asyncio.run(driver.drive())
        except BaseException as exc:
            run._crash = exc
        finally:
            driver.executor.shutdown()

    in_loop = True
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        in_loop = False
    if wait and not in_loop:
        try:
            run._outcome = asyncio.run(driver.drive())
        finally:
            driver.executor.shutdown()
        return run
    run._thread = threading.Thread(target=target, name=f"heddle-run-{run.id}", daemon=True)
    run._thread.start()
    if wait:
        run.wait()
    return run


def run(
    task: Task[Any, Any],
    /,
    *args: Any,
    name: str | None = None,
    wait: bool = True,
    executor: str | None = None,
    **kwargs: Any,
) -> Run:
    """Start a run of ``task`` with these inputs; by default wait for it to finish.

    Inputs are checked against the task's signature before anything is recorded.
    With ``wait=False`` the run goes on in a background thread; use ``Run.wait()``.
    """
    if not isinstance(task, Task):
        raise HeddleError(
            f"heddle.run needs a task (a function decorated with @env.task), got {task!r}"
        )
    if current_action.get() is not None:
        raise HeddleError("heddle.run cannot start a run inside a task: call the task directly")
    if name is not None and (not isinstance(name, str) or not 0 < len(name) <= MAX_RUN_NAME):
        raise ConfigError(
            f"run name must be a string of 1 to {MAX_RUN_NAME} characters, got {name!r:.60}"
        )
    if name is not None and (problem := text_problem(name)) is not None:
        raise ConfigError(f"run name {name!r:.60} {problem}")
    session = get_session()
    encoded = task.spec.encode_inputs(task.bind(args, kwargs))
    run_id = new_run_id()
    root_id = action_id(run_id, None, task.name, input_hash(encoded), 0)
    owner = new_owner()
    ex = session.make_executor(executor)
    now = time.time()
    session.store.create_run(
        RunRecord(
            id=run_id,
            name=name,
            root_task=task.name,
            root_action_id=root_id,
            status=RUNNING,
            program=program.describe(task),
            inputs=session.literals.to_literal(encoded),
            output=None,
            error=None,
            executor=ex.name,
            owner=owner,
            heartbeat_at=now,
            abort_requested=False,
            created_at=now,
            started_at=now,
            finished_at=None,
        )
    )
    driver = Driver(session.store, session.literals, ex, run_id, owner, task.spec, encoded)
    return _start(Run(session, run_id, task), driver, wait)


def recover(run_id: str, *, wait: bool = True, force: bool = False) -> Run:
    """Resume a run whose driver died (or that failed): replay what succeeded, run the rest."""
    session = get_session(create=False)
    rec = session.store.get_run(run_id)
    if rec.status == SUCCEEDED:
        raise RecoveryError(f"run {rec.id} already succeeded; nothing to recover")
    alive = rec.status not in FINAL_STATES and owner_alive(rec.owner, rec.heartbeat_at)
    if alive and not force:
        age = time.time() - (rec.heartbeat_at or 0)
        raise RecoveryError(
            f"run {rec.id} is still being driven by {rec.owner} (heartbeat {age:.0f}s ago); "
            "abort it first, or wait for its lease to expire"
        )
    task = program.load(rec.program)
    if task.name != rec.root_task:
        raise RecoveryError(
            f"run {rec.id} was started with task {rec.root_task!r}, found {task.name!r}"
        )
    owner = new_owner()
    # Taking the run bumps its generation: a driver still running it (forced) finds
    # itself fenced at its next write and stops.
    previous = f"{rec.owner} (still alive: forced)" if alive else f"{rec.owner} ({rec.status})"
    generation = session.store.claim_run(
        rec.id, owner, rec.generation, f"recovered by {owner} from {previous}"
    )
    if generation is None:
        raise RecoveryError(f"run {rec.id} was claimed by another process while recovering")
    prior = {a.id: a for a in session.store.actions_of_run(rec.id)}
    attempts = session.store.attempts_of_run(rec.id)
    encoded = session.literals.from_literal(rec.inputs)
    ex = session.make_executor(rec.executor if rec.executor else None)
    driver = Driver(
        session.store,
        session.literals,
        ex,
        rec.id,
        owner,
        task.spec,
        encoded,
        prior,
        attempts,
        generation=generation,
    )
    return _start(Run(session, rec.id, task), driver, wait)


def abort(run_id: str, *, wait: float = 10.0) -> str:
    """Ask a run to stop; if its driver is gone, mark it aborted at once. Returns the final status."""
    session = get_session(create=False)
    rec = session.store.get_run(run_id)
    if rec.status in FINAL_STATES:
        return rec.status
    session.store.update_run(rec.id, abort_requested=1)
    if not owner_alive(rec.owner, rec.heartbeat_at):
        session.store.mark_aborted(
            rec.id,
            failures.failure_of(
                HeddleError("aborted while its driver was down"), failures.ABORTED
            ).to_json(),
        )
        return session.store.get_run(rec.id).status
    deadline = time.time() + wait
    while time.time() < deadline:
        status = session.store.get_run(rec.id).status
        if status in FINAL_STATES:
            return status
        time.sleep(0.1)
    return session.store.get_run(rec.id).status


def get_run(run_id: str) -> Run:
    """A handle on a stored run."""
    session = get_reader()
    rec = session.store.get_run(run_id)
    return Run(session, rec.id)


def list_runs(limit: int = 50, status: str | None = None) -> list[RunRecord]:
    return get_reader().store.list_runs(limit=limit, status=status)


def inputs_of(run: RunRecord, task: Task[Any, Any] | None = None) -> Mapping[str, Any] | Any:
    data = get_reader().literals.from_literal(run.inputs)
    return task.spec.decode_inputs(data) if task else msgspec.msgpack.decode(data)
