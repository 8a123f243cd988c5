"""Runs written straight into a store for the server's tests: exact times, attempts
in every state (also rows from before attempts recorded their queue time), and a
live run whose driver is this process or a dead one."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from heddle._runtime.driver import new_owner
from heddle._store import RunRecord, Store, WriteBatch

ROOT = "a" + "0" * 32


def dead_owner() -> str:
    """An owner token of this host whose process has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    host, _, rest = new_owner().partition(":")
    return f"{host}:{proc.pid}:{rest.partition(':')[2]}"


def _run(run_id: str, t0: float, status: str, owner: str | None) -> RunRecord:
    return RunRecord(
        id=run_id,
        name="timed",
        root_task="timed.main",
        root_action_id=ROOT,
        status=status,
        program="{}",
        inputs=b"i\x90",
        output=None,
        error=None,
        executor="process",
        owner=owner,
        heartbeat_at=t0 + 60 if owner else None,
        abort_requested=False,
        created_at=t0,
        started_at=t0,
        finished_at=None if status == "running" else t0 + 60,
    )


def _action(run_id: str, aid: str, seq: int, status: str, **times: Any) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "id": aid,
        "parent_id": None if aid == ROOT else ROOT,
        "seq": seq,
        "kind": "task",
        "task_name": f"timed.{NAMES[aid]}",
        "task_version": "v1",
        "group_name": None,
        "status": status,
        "attempts": times.pop("attempts", 1),
        "cached": 0,
        "cache_key": None,
        "inputs": b"i\x90",
        "output": None,
        "error": None,
        **times,
    }


def _attempt(run_id: str, aid: str, number: int, status: str, **times: Any) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "action_id": aid,
        "number": number,
        "status": status,
        "task_version": "v1",
        "worker": "w1",
        "error": None,
        "output": None,
        **times,
    }


# Child ids and names: queued for 2 s then ran 3 s; an old row (no queue time);
# waiting for resources; failed once, then succeeded.
WAITED, OLD, WAITING, RETRIED = ("b" * 33, "c" * 33, "d" * 33, "e" * 33)
NAMES = {ROOT: "main", WAITED: "waited", OLD: "old", WAITING: "waiting", RETRIED: "retried"}


def insert_timed_run(store: Store, *, live: bool, run_id: str = "rtimed") -> float:
    """A run (started 60 s ago) with the four children above; returns its start time.

    ``live``: the run and its waiting child are still going (driven by this
    process); otherwise the run succeeded and the waiting child never ran.
    """
    t0 = time.time() - 60
    store.create_run(_run(run_id, t0, "running" if live else "succeeded", new_owner()))
    actions = [
        _action(
            run_id,
            ROOT,
            0,
            "running" if live else "succeeded",
            queued_at=t0,
            started_at=t0,
            finished_at=None if live else t0 + 60,
        ),
        _action(
            run_id, WAITED, 1, "succeeded", queued_at=t0 + 1, started_at=t0 + 3, finished_at=t0 + 6
        ),
        _action(
            run_id, OLD, 2, "succeeded", queued_at=t0 + 1, started_at=t0 + 1.5, finished_at=t0 + 4
        ),
        _action(
            run_id,
            WAITING,
            3,
            "queued" if live else "aborted",
            queued_at=t0 + 10,
            started_at=None,
            finished_at=None if live else t0 + 60,
        ),
        _action(
            run_id,
            RETRIED,
            4,
            "succeeded",
            attempts=2,
            queued_at=t0 + 2,
            started_at=t0 + 4,
            finished_at=t0 + 20,
        ),
    ]
    attempts = [
        _attempt(
            run_id, WAITED, 1, "succeeded", queued_at=t0 + 1, started_at=t0 + 3, finished_at=t0 + 6
        ),
        _attempt(
            run_id, OLD, 1, "succeeded", queued_at=None, started_at=t0 + 1.5, finished_at=t0 + 4
        ),
        _attempt(
            run_id,
            WAITING,
            1,
            "queued" if live else "aborted",
            queued_at=t0 + 10,
            started_at=None,
            finished_at=None if live else t0 + 60,
        ),
        _attempt(
            run_id, RETRIED, 1, "failed", queued_at=t0 + 2, started_at=t0 + 4, finished_at=t0 + 8
        ),
        _attempt(
            run_id,
            RETRIED,
            2,
            "succeeded",
            queued_at=t0 + 9,
            started_at=t0 + 12,
            finished_at=t0 + 20,
        ),
    ]
    store.write_batch(WriteBatch(action_inserts=actions, attempt_inserts=attempts))
    return t0
