"""Rows for the store and journal unit tests: a run and an action with defaults, any
field changed by keyword."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from heddle._runtime.journal import ActionState
from heddle._store import RunRecord


def make_run(run_id: str, created_at: float = 1000.0, **changes: Any) -> RunRecord:
    record = RunRecord(
        id=run_id,
        name=None,
        root_task="env.main",
        root_action_id="a" + run_id,
        status="running",
        program='{"module": "m"}',
        inputs=b"i\x90",
        output=None,
        error=None,
        executor="inline",
        owner="host:1:abc",
        heartbeat_at=created_at,
        abort_requested=False,
        created_at=created_at,
        started_at=created_at,
        finished_at=None,
    )
    return dataclasses.replace(record, **changes)


def make_action(run_id: str, action_id: str, **changes: Any) -> ActionState:
    state = ActionState(
        id=action_id,
        run_id=run_id,
        parent_id=None,
        seq=0,
        kind="task",
        task_name="env.t",
        task_version="v1",
        group_name=None,
        status="queued",
        attempts=0,
        cached=0,
        cache_key=None,
        inputs=b"i\x91\x01",
        output=None,
        error=None,
        queued_at=time.time(),
        started_at=None,
        finished_at=None,
    )
    return dataclasses.replace(state, **changes)
