"""The journal under a store fault, reproduced minimally: a commit that landed but whose
answer was lost (the chaos campaign's ``lost_ack`` fault)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from chaoslib.faulty_store import Faults, FaultyStore

import heddle
from heddle._runtime.journal import ActionState, Journal
from heddle._store import Store, sqlite_url


def _action(action_id: str) -> ActionState:
    return ActionState(
        id=action_id,
        run_id="r1",
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
        inputs=None,
        output=None,
        error=None,
        queued_at=time.time(),
        started_at=None,
        finished_at=None,
    )


def test_a_journal_whose_commit_failed_writes_nothing_more_and_keeps_the_first_error(
    tmp_path: Path,
) -> None:
    store = Store(sqlite_url(tmp_path / "store.db"))
    # Every commit lands, then its answer is lost.
    faulty = FaultyStore(store, Faults("seed=0,lost_ack=1.0"))

    async def main() -> list[BaseException]:
        journal = Journal(faulty, asyncio.get_running_loop())  # type: ignore[arg-type]
        state = _action("a1")
        journal.put_action(state)
        errors = []
        for status in ("running", "succeeded"):
            try:
                await journal.durable()
            except heddle.StoreError as exc:
                errors.append(exc)
            # The runtime goes on putting what happens to its actions.
            state.status = status
            journal.put_action(state)
            journal.put_action(_action(f"b-{status}"))
            await asyncio.sleep(0)
        try:
            await journal.durable()
        except heddle.StoreError as exc:
            errors.append(exc)
        return errors

    errors = asyncio.run(main())

    # The log can no longer be trusted: nothing more is written, and every caller hears
    # the fault that happened (not a duplicate key from writing the landed rows again).
    assert [str(e) for e in errors] == [str(errors[0])] * 3
    assert "answer was lost" in str(errors[0])
    assert {a.id: a.status for a in store.actions_of_run("r1")} == {"a1": "queued"}
    store.close()
