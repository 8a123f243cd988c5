"""The store and the journal through a lost database, and the journal's fence.

Outages are real: a private PostgreSQL cluster is stopped and started again (the
shared server serves other tests meanwhile). Fencing runs on both backends.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
from pg_cluster import PgCluster
from store_rows import make_action, make_run

import heddle
from heddle._runtime.journal import Journal
from heddle._store import Store, WriteBatch
from heddle._store.retry import RetryPolicy


@pytest.fixture
def pg_store(pg_cluster: PgCluster) -> Iterator[Store]:
    with pg_cluster.database() as url:
        store = Store(url)
        try:
            yield store
        finally:
            store.close()


def start_later(cluster: PgCluster, seconds: float) -> threading.Thread:
    def start() -> None:
        time.sleep(seconds)
        cluster.start()

    thread = threading.Thread(target=start)
    thread.start()
    return thread


def test_a_read_waits_for_a_restarted_server(pg_cluster: PgCluster, pg_store: Store) -> None:
    pg_store.create_run(make_run("rwait0001"))
    pg_cluster.stop()
    starter = start_later(pg_cluster, 2.0)
    began = time.monotonic()
    try:
        assert pg_store.get_run("rwait0001").id == "rwait0001"
    finally:
        starter.join()
    assert time.monotonic() - began >= 1.5


def test_a_store_gives_up_after_its_outage_limit_and_names_the_store(
    pg_cluster: PgCluster,
) -> None:
    with pg_cluster.database() as url:
        store = Store(url, retry=RetryPolicy(give_up_after=1.0))
        pg_cluster.stop()
        try:
            began = time.monotonic()
            with pytest.raises(heddle.StoreUnavailableError) as info:
                store.list_runs()
            assert time.monotonic() - began < 5
        finally:
            pg_cluster.start()
            store.close()
    message = str(info.value)
    assert f"127.0.0.1:{pg_cluster.port}" in message
    assert "cannot list runs: the database has been unreachable for 1s" in message
    assert "Connection refused" in message
    assert "check that the database is running" in message


def test_a_retried_batch_whose_first_try_landed_overwrites_instead_of_failing(
    store: Store,
) -> None:
    writer = store.writer()
    first = make_action("rretry01", "a1", status="running")
    writer.try_write(WriteBatch(action_inserts=[first]))
    # The acknowledgement was lost: the runtime does not know the rows landed.
    again = make_action("rretry01", "a1", status="succeeded", output=b"o")
    writer.try_write(WriteBatch(action_inserts=[again]), retrying=True)
    writer.close()
    (row,) = store.actions_of_run("rretry01")
    assert (row.status, row.output) == ("succeeded", b"o")
    # Without the retry flag a duplicate is a real error (two writers of one action).
    with pytest.raises(heddle.StoreError):
        store.write_batch(WriteBatch(action_inserts=[first]))


def test_the_journal_rides_out_a_restart_without_blocking_the_loop(
    pg_cluster: PgCluster, pg_store: Store
) -> None:
    async def main() -> tuple[int, int, int]:
        loop = asyncio.get_running_loop()
        journal = Journal(pg_store, loop)
        journal.put_action(make_action("rride01", "a0"))
        await journal.durable()
        pg_cluster.stop()
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticking = asyncio.ensure_future(ticker())
        for i in range(1, 4):
            journal.put_action(make_action("rride01", f"a{i}"))
        waiting = asyncio.ensure_future(journal.durable())
        await asyncio.sleep(1.5)
        assert not waiting.done() and journal.failed is None
        # The batch was put back: later puts, and updates of the same rows, join it.
        journal.put_action(make_action("rride01", "a1", status="running"))
        await asyncio.to_thread(pg_cluster.start)
        await asyncio.wait_for(waiting, 30)
        await journal.durable()
        ticking.cancel()
        journal.close()
        return ticks, journal.outages, journal.commits

    ticks, outages, commits = asyncio.run(main())
    assert ticks > 50, "the event loop kept running during the outage"
    assert outages == 1
    assert commits >= 2
    rows = {a.id: a.status for a in pg_store.actions_of_run("rride01")}
    assert rows == {"a0": "queued", "a1": "running", "a2": "queued", "a3": "queued"}


def test_the_journal_fails_every_waiter_once_the_outage_limit_passes(
    pg_cluster: PgCluster,
) -> None:
    with pg_cluster.database() as url:
        store = Store(url, retry=RetryPolicy(give_up_after=1.0))

        async def main() -> list[BaseException | None]:
            journal = Journal(store, asyncio.get_running_loop())
            journal.fence("rgive001", 0)
            journal.put_action(make_action("rgive001", "a1"))
            waiters = [asyncio.ensure_future(journal.durable()) for _ in range(3)]
            done = await asyncio.gather(*waiters, return_exceptions=True)
            journal.close()
            return [d if isinstance(d, BaseException) else None for d in done]

        store.create_run(make_run("rgive001"))
        pg_cluster.stop()
        try:
            errors = asyncio.run(main())
        finally:
            pg_cluster.start()
            store.close()
    assert all(isinstance(e, heddle.StoreUnavailableError) for e in errors)
    assert "`heddle recover rgive001` resumes it" in str(errors[0])


def test_a_fenced_journal_stops_when_the_run_is_taken_over(store: Store) -> None:
    store.create_run(make_run("rfence10"))
    failures: list[BaseException] = []

    async def main() -> BaseException | None:
        journal = Journal(store, asyncio.get_running_loop())
        journal.fence("rfence10", 0)
        journal.on_failure(failures.append)
        journal.put_action(make_action("rfence10", "before"))
        await journal.durable()
        assert store.claim_run("rfence10", "another", 0, "forced") == 1
        journal.put_action(make_action("rfence10", "after"))
        try:
            await journal.durable()
        except heddle.RunTakenOverError as exc:
            error: BaseException | None = exc
        else:
            error = None
        journal.put_action(make_action("rfence10", "later"))
        await asyncio.sleep(0.05)
        journal.close()
        return error

    error = asyncio.run(main())
    assert isinstance(error, heddle.RunTakenOverError)
    assert "taken over by another" in str(error)
    assert failures == [error]
    assert [a.id for a in store.actions_of_run("rfence10")] == ["before"]
