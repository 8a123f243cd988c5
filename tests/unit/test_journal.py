"""The journal's group commit: one transaction per loop turn, durable() after the
commit, and a failed commit failing every waiter."""

from __future__ import annotations

import asyncio
import time

from store_rows import make_action

import heddle
from heddle._runtime.journal import ActionState, AttemptState, Journal
from heddle._store import Store, WriteBatch


def action(action_id: str, run_id: str = "rj", **changes: object) -> ActionState:
    return make_action(run_id, action_id, inputs=None, **changes)


def attempt(action_id: str, number: int, status: str = "running") -> AttemptState:
    return AttemptState(action_id, number, "rj", status, "v1", "w", None, None, time.time(), None)


def statuses(store: Store, run_id: str = "rj") -> dict[str, str]:
    return {a.id: a.status for a in store.actions_of_run(run_id)}


def test_puts_in_one_loop_turn_land_in_one_commit(store: Store) -> None:
    async def main() -> int:
        journal = Journal(store, asyncio.get_running_loop())
        for i in range(200):
            journal.put_action(action(f"a{i:03d}"))
            journal.put_attempt(attempt(f"a{i:03d}", 1))
        await journal.durable()
        journal.close()
        return journal.commits

    assert asyncio.run(main()) == 1
    assert len(store.actions_of_run("rj")) == 200
    assert len(store.attempts_of_run("rj")) == 200


def test_puts_in_separate_turns_make_separate_commits(store: Store) -> None:
    async def main() -> int:
        journal = Journal(store, asyncio.get_running_loop())
        for i in range(3):
            journal.put_action(action(f"a{i}"))
            await journal.durable()
        journal.close()
        return journal.commits

    assert asyncio.run(main()) == 3


def test_many_tasks_waiting_in_one_turn_share_one_commit(store: Store) -> None:
    async def child(journal: Journal, i: int) -> None:
        journal.put_action(action(f"a{i}"))
        await journal.durable()

    async def main() -> int:
        journal = Journal(store, asyncio.get_running_loop())
        await asyncio.gather(*(child(journal, i) for i in range(50)))
        journal.close()
        return journal.commits

    assert asyncio.run(main()) == 1
    assert len(statuses(store)) == 50


def test_durable_resolves_only_after_the_commit(store: Store) -> None:
    events: list[str] = []

    async def main() -> None:
        journal = Journal(store, asyncio.get_running_loop())
        real_write = journal._writer.try_write

        def write(batch: WriteBatch, *, retrying: bool = False) -> None:
            events.append("commit starts")
            real_write(batch, retrying=retrying)
            events.append("commit done")

        journal._writer.try_write = write  # type: ignore[method-assign]

        async def waiter(name: str) -> None:
            await journal.durable()
            events.append(f"{name} resumes")
            assert statuses(store) == {"a1": "queued"}

        journal.put_action(action("a1"))
        await asyncio.gather(waiter("w1"), waiter("w2"))
        journal.close()

    asyncio.run(main())
    # Waiters resume only once the commit that covers them has finished (the last one
    # to wait, with nothing else ready, writes the commit itself and resumes first).
    assert events[-3] == "commit done"
    assert sorted(events[-2:]) == ["w1 resumes", "w2 resumes"]
    assert events[0] == "commit starts"


def test_nothing_is_written_before_the_loop_turns(store: Store) -> None:
    async def main() -> None:
        journal = Journal(store, asyncio.get_running_loop())
        journal.put_action(action("a1"))
        assert statuses(store) == {}
        assert journal.commits == 0
        await journal.durable()
        assert statuses(store) == {"a1": "queued"}
        journal.close()

    asyncio.run(main())


def test_later_puts_of_the_same_action_update_its_row(store: Store) -> None:
    async def main() -> None:
        journal = Journal(store, asyncio.get_running_loop())
        state = action("a1")
        journal.put_action(state)
        await journal.durable()
        state.status, state.attempts = "running", 1
        journal.put_action(state)
        state.status, state.output = "succeeded", b"i\x01"  # same turn: last state wins
        journal.put_action(state)
        await journal.durable()
        journal.close()

    asyncio.run(main())
    (row,) = store.actions_of_run("rj")
    assert (row.status, row.attempts, row.output) == ("succeeded", 1, b"i\x01")


def test_mark_persisted_turns_puts_into_updates(store: Store) -> None:
    store.writer().write(WriteBatch(action_inserts=[action("a1")]))

    async def main() -> None:
        journal = Journal(store, asyncio.get_running_loop())
        journal.mark_persisted({"a1"}, set())
        journal.put_action(action("a1", status="failed"))
        await journal.durable()
        journal.close()

    asyncio.run(main())
    assert statuses(store) == {"a1": "failed"}


def test_flush_now_writes_synchronously(store: Store) -> None:
    async def main() -> None:
        journal = Journal(store, asyncio.get_running_loop())
        journal.put_action(action("a1"))
        journal.flush_now()
        assert statuses(store) == {"a1": "queued"}
        assert journal.commits == 1
        journal.close()

    asyncio.run(main())


def _fail_with_duplicate(store: Store) -> tuple[list[object], object, int]:
    # The row already exists, so the journal's insert violates the primary key.
    store.writer().write(WriteBatch(action_inserts=[action("adup")]))

    async def main() -> tuple[list[object], object, int]:
        journal = Journal(store, asyncio.get_running_loop())
        journal.put_action(action("afresh"))
        journal.put_action(action("adup"))
        results = await asyncio.gather(
            *(journal.durable() for _ in range(5)), return_exceptions=True
        )
        try:
            await journal.durable()
            later: object = None
        except Exception as exc:
            later = exc
        journal.close()
        return list(results), later, journal.commits

    return asyncio.run(main())


def test_a_failing_write_fails_every_waiter_and_every_later_one(store: Store) -> None:
    results, later, commits = _fail_with_duplicate(store)
    assert all(isinstance(r, Exception) for r in results)
    assert len({id(r) for r in results}) == 1, "every waiter sees the same failure"
    assert later is results[0]
    assert commits == 0
    # The failed transaction is rolled back: the fresh row is not half-written.
    assert statuses(store) == {"adup": "queued"}


def test_a_failing_write_surfaces_as_store_error(store: Store) -> None:
    results, _later, _commits = _fail_with_duplicate(store)
    assert isinstance(results[0], heddle.StoreError)


class _CountYields:
    """Awaits a coroutine and counts the times it suspended (gave the loop a turn)."""

    def __init__(self, coro: object, counts: list[int]) -> None:
        self._coro = coro
        self._counts = counts

    def __await__(self):  # type: ignore[no-untyped-def]
        it = self._coro.__await__()  # type: ignore[attr-defined]
        value = None
        while True:
            try:
                fut = it.send(value)
            except StopIteration as stop:
                return stop.value
            self._counts[0] += 1
            value = yield fut


def test_a_lone_durable_commits_at_once_and_yields_every_max_streak(store: Store) -> None:
    from heddle._runtime.journal import MAX_STREAK

    async def main() -> tuple[int, int]:
        journal = Journal(store, asyncio.get_running_loop())
        yields = [0]
        n = 3 * (MAX_STREAK + 1)
        for i in range(n):
            journal.put_action(action(f"s{i:03d}"))
            await _CountYields(journal.durable(), yields)
            # Committed when durable() returns, whether or not the loop had a turn.
            assert f"s{i:03d}" in statuses(store)
        journal.close()
        return yields[0], journal.commits

    yields, commits = asyncio.run(main())
    # Nothing else was ready: every commit was written at once, and the chain let the
    # loop have a turn once every MAX_STREAK commits (so it never starves the loop).
    assert yields == 3
    assert commits == 3 * (MAX_STREAK + 1)


def test_durable_waits_for_the_turn_when_other_code_is_ready(store: Store) -> None:
    async def main() -> tuple[int, list[str], int]:
        loop = asyncio.get_running_loop()
        journal = Journal(store, loop)
        yields = [0]
        joined: list[str] = []

        def other() -> None:  # ready in the same turn: its change joins the commit
            journal.put_action(action("other"))
            joined.append("other")

        loop.call_soon(other)
        journal.put_action(action("mine"))
        await _CountYields(journal.durable(), yields)
        journal.close()
        return journal.commits, joined, yields[0]

    commits, joined, yields = asyncio.run(main())
    assert yields == 1  # it waited for the loop's turn
    assert commits == 1 and joined == ["other"]
    assert set(statuses(store)) == {"mine", "other"}
