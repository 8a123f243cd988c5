"""The store on SQLite and PostgreSQL: runs, actions, attempts, the cache, leases
and schema migrations."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from store_rows import make_action, make_run

import heddle
from heddle._runtime.journal import AttemptState
from heddle._store import Store, WriteBatch


def make_attempt(run_id: str, action_id: str, number: int, **changes: Any) -> AttemptState:
    state = AttemptState(
        action_id=action_id,
        number=number,
        run_id=run_id,
        status="running",
        task_version="v1",
        worker="host:1",
        error=None,
        output=None,
        started_at=time.time(),
        finished_at=None,
    )
    return dataclasses.replace(state, **changes)


def cache_row(key: str, output: bytes, run_id: str = "r1") -> dict[str, Any]:
    return {
        "key": key,
        "task_name": "env.t",
        "output": output,
        "run_id": run_id,
        "action_id": "a1",
        "created_at": time.time(),
    }


def journal_writer(store: Store) -> Callable[[WriteBatch], None]:
    writer = store.writer()
    return writer.write


WRITE_PATHS = {
    "journal_writer": journal_writer,
    "write_batch": lambda store: store.write_batch,
}


# -- runs ------------------------------------------------------------------------------


def test_created_run_reads_back_field_for_field(store: Store) -> None:
    run = make_run("rcreate0001", name="nightly", output=b"i\x01", abort_requested=True)
    store.create_run(run)
    assert store.get_run("rcreate0001") == run


def test_update_run_changes_only_the_given_fields(store: Store) -> None:
    store.create_run(make_run("rupdate0001"))
    store.update_run("rupdate0001", status="succeeded", output=b"i\x02", finished_at=5.0)
    got = store.get_run("rupdate0001")
    assert (got.status, got.output, got.finished_at) == ("succeeded", b"i\x02", 5.0)
    assert got.root_task == "env.main" and got.owner == "host:1:abc"


def test_get_run_by_unique_prefix(store: Store) -> None:
    store.create_run(make_run("rabcd1111"))
    store.create_run(make_run("rxyz22222"))
    assert store.get_run("rabc").id == "rabcd1111"
    assert store.get_run("rxyz2").id == "rxyz22222"


def test_get_run_refuses_short_unknown_and_wildcard_prefixes(store: Store) -> None:
    store.create_run(make_run("rabcd1111"))
    for query in ("rab", "rzzz", "nope", "r%%%", "r___"):
        with pytest.raises(heddle.RunNotFoundError):
            store.get_run(query)


def test_ambiguous_prefix_says_it_matches_several_runs(store: Store) -> None:
    store.create_run(make_run("rsame0001"))
    store.create_run(make_run("rsame0002"))
    with pytest.raises(heddle.HeddleError, match="several runs"):
        store.get_run("rsame")
    assert store.get_run("rsame0002").id == "rsame0002"


def test_list_runs_newest_first_with_filters_and_pages(store: Store) -> None:
    for i in range(7):
        store.create_run(
            make_run(
                f"rlist{i:04d}",
                created_at=1000.0 + i,
                status="succeeded" if i % 2 == 0 else "failed",
                root_task="env.train" if i < 3 else "env.eval",
                name=f"batch-{i}",
            )
        )
    ids = [r.id[-1] for r in store.list_runs()]
    assert ids == ["6", "5", "4", "3", "2", "1", "0"]
    assert [r.id[-1] for r in store.list_runs(limit=3)] == ["6", "5", "4"]
    assert [r.id[-1] for r in store.list_runs(limit=3, offset=3)] == ["3", "2", "1"]
    assert [r.id[-1] for r in store.list_runs(limit=3, offset=6)] == ["0"]
    assert [r.id[-1] for r in store.list_runs(status="failed")] == ["5", "3", "1"]
    assert [r.id[-1] for r in store.list_runs(task="train")] == ["2", "1", "0"]
    assert [r.id[-1] for r in store.list_runs(task="eval", status="succeeded")] == ["6", "4"]
    assert [r.id[-1] for r in store.list_runs(name="batch-5")] == ["5"]
    assert store.list_runs(name="%") == []


# -- actions and attempts --------------------------------------------------------------


@pytest.mark.parametrize("path", ["journal_writer", "write_batch"])
def test_batch_inserts_then_updates_actions_and_attempts(store: Store, path: str) -> None:
    write = WRITE_PATHS[path](store)
    store.create_run(make_run("rbatch0001"))
    root = make_action("rbatch0001", "aroot")
    child = make_action("rbatch0001", "achild", parent_id="aroot", seq=1, group_name="g")
    attempt = make_attempt("rbatch0001", "achild", 1)
    write(WriteBatch(action_inserts=[root, child], attempt_inserts=[attempt]))

    child.status, child.attempts, child.output, child.finished_at = "succeeded", 1, b"i\x05", 9.0
    attempt.status, attempt.output, attempt.finished_at = "succeeded", b"i\x05", 9.0
    write(WriteBatch(action_updates=[child], attempt_updates=[attempt]))

    actions = {a.id: a for a in store.actions_of_run("rbatch0001")}
    assert set(actions) == {"aroot", "achild"}
    got = actions["achild"]
    assert (got.status, got.attempts, got.output, got.finished_at) == (
        "succeeded",
        1,
        b"i\x05",
        9.0,
    )
    assert (got.parent_id, got.seq, got.group_name, got.cached) == ("aroot", 1, "g", False)
    assert actions["aroot"].status == "queued"
    assert store.get_action("achild") == got
    assert store.get_action("achild", "rbatch0001") == got
    assert store.get_action("achild", "rother") is None
    (t,) = store.attempts_of_run("rbatch0001")
    assert (t.action_id, t.number, t.status, t.output) == ("achild", 1, "succeeded", b"i\x05")


def test_updates_touch_only_their_own_run(store: Store) -> None:
    write = journal_writer(store)
    one = make_action("rone", "asame")
    two = make_action("rtwo", "asame")
    write(WriteBatch(action_inserts=[one, two]))
    one.status = "failed"
    write(WriteBatch(action_updates=[one]))
    assert [a.status for a in store.actions_of_run("rone")] == ["failed"]
    assert [a.status for a in store.actions_of_run("rtwo")] == ["queued"]


def test_failed_batch_writes_nothing(store: Store) -> None:
    write = journal_writer(store)
    write(WriteBatch(action_inserts=[make_action("rtx", "a1")]))
    with pytest.raises(Exception):  # noqa: B017  (the driver's own exception type)
        write(WriteBatch(action_inserts=[make_action("rtx", "a2"), make_action("rtx", "a1")]))
    assert [a.id for a in store.actions_of_run("rtx")] == ["a1"]
    # The writer is usable again after the rollback.
    write(WriteBatch(action_inserts=[make_action("rtx", "a3")]))
    assert sorted(a.id for a in store.actions_of_run("rtx")) == ["a1", "a3"]


def test_count_actions_per_run_and_status(store: Store) -> None:
    write = journal_writer(store)
    write(
        WriteBatch(
            action_inserts=[
                make_action("rc1", "a1", status="succeeded"),
                make_action("rc1", "a2", status="succeeded"),
                make_action("rc1", "a3", status="failed"),
                make_action("rc2", "a4", status="queued"),
            ]
        )
    )
    assert store.count_actions(["rc1", "rc2", "rc3"]) == {
        "rc1": {"succeeded": 2, "failed": 1},
        "rc2": {"queued": 1},
    }
    assert store.count_actions([]) == {}


# -- cache -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["journal_writer", "write_batch"])
def test_cache_put_on_an_existing_key_keeps_one_entry_with_the_newest_output(
    store: Store, path: str
) -> None:
    write = WRITE_PATHS[path](store)
    write(WriteBatch(cache_puts=[cache_row("ck1", b"first")]))
    # "override" recomputes a key that is already cached: no error, the newest wins.
    write(WriteBatch(cache_puts=[cache_row("ck1", b"second"), cache_row("ck2", b"other")]))
    assert store.cache_get("ck1") == b"second"
    assert store.cache_get("ck2") == b"other"
    assert store.cache_get("missing") is None
    found = store.cache_get_many(["ck1", "ck2", "missing"])
    assert {k: e.output for k, e in found.items()} == {"ck1": b"second", "ck2": b"other"}
    assert store.cache_clear() == 2


def test_cache_get_many_reads_more_keys_than_one_query_holds(store: Store) -> None:
    rows = [cache_row(f"k{i:05d}", str(i).encode()) for i in range(1200)]
    journal_writer(store)(WriteBatch(cache_puts=rows))
    wanted = [f"k{i:05d}" for i in range(0, 1300, 3)]
    found = store.cache_get_many(wanted)
    assert {k: e.output for k, e in found.items()} == {
        k: str(int(k[1:])).encode() for k in wanted if int(k[1:]) < 1200
    }


def test_cache_clear_by_task_or_all(store: Store) -> None:
    rows = [cache_row("k1", b"1"), {**cache_row("k2", b"2"), "task_name": "env.u"}]
    journal_writer(store)(WriteBatch(cache_puts=rows))
    assert store.cache_clear("env.u") == 1
    assert store.cache_get("k2") is None and store.cache_get("k1") == b"1"
    assert store.cache_clear() == 1
    assert store.cache_get("k1") is None


# -- leases and aborts -----------------------------------------------------------------


def test_mark_aborted_finishes_the_run_and_its_unfinished_actions(store: Store) -> None:
    store.create_run(make_run("rabort001"))
    journal_writer(store)(
        WriteBatch(
            action_inserts=[
                make_action("rabort001", "adone", status="succeeded"),
                make_action("rabort001", "arun", status="running"),
                make_action("rabort001", "aqueue", status="queued"),
                make_action("rabort001", "afail", status="failed"),
            ],
            attempt_inserts=[
                make_attempt("rabort001", "arun", 1),
                make_attempt("rabort001", "adone", 1, status="succeeded"),
            ],
        )
    )
    store.mark_aborted("rabort001", '{"kind": "aborted"}')
    run = store.get_run("rabort001")
    assert (run.status, run.error, run.heartbeat_at) == ("aborted", '{"kind": "aborted"}', None)
    assert run.finished_at is not None
    statuses = {a.id: a.status for a in store.actions_of_run("rabort001")}
    assert statuses == {
        "adone": "succeeded",
        "arun": "aborted",
        "aqueue": "aborted",
        "afail": "failed",
    }
    attempts = {t.action_id: t.status for t in store.attempts_of_run("rabort001")}
    assert attempts == {"arun": "aborted", "adone": "succeeded"}


def test_claim_run_succeeds_only_for_the_generation_last_seen(store: Store) -> None:
    store.create_run(make_run("rclaim001", status="failed", owner="old", error="boom"))
    assert store.claim_run("rclaim001", "new-1", 0, "recovered") == 1
    # A second recoverer that also saw generation 0 must lose.
    assert store.claim_run("rclaim001", "new-2", 0, "recovered") is None
    run = store.get_run("rclaim001")
    assert (run.owner, run.status, run.finished_at, run.generation) == ("new-1", "running", None, 1)
    assert (run.error, run.abort_requested) == (None, False)
    assert store.claim_run("rclaim001", "new-3", 1, "recovered") == 2


def test_a_claim_records_a_recovered_event(store: Store) -> None:
    store.create_run(make_run("rclaim002", owner=None))
    store.claim_run("rclaim002", "me", 0, "recovered by me from nobody")
    engine = create_engine(store.url)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT kind, message FROM run_events WHERE run_id = 'rclaim002'")
        ).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [("recovered", "recovered by me from nobody")]


def test_concurrent_claims_have_exactly_one_winner(store: Store) -> None:
    store.create_run(make_run("rclaim003", owner="dead"))
    barrier = threading.Barrier(8)
    wins: list[int | None] = []

    def claim(i: int) -> None:
        barrier.wait()
        wins.append(store.claim_run("rclaim003", f"owner-{i}", 0, "recovered"))

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins, key=str) == [1] + [None] * 7


def test_update_run_with_a_stale_generation_is_refused_as_taken_over(store: Store) -> None:
    store.create_run(make_run("rfence01", owner="first"))
    store.update_run("rfence01", generation=0, heartbeat_at=5.0)
    store.claim_run("rfence01", "second", 0, "recovered")
    with pytest.raises(heddle.RunTakenOverError, match="taken over by second") as info:
        store.update_run("rfence01", generation=0, status="failed")
    assert info.value.generation == 1
    assert store.get_run("rfence01").status == "running"
    with pytest.raises(heddle.RunNotFoundError):
        store.update_run("rnothere", generation=0, status="failed")


def test_mark_aborted_fences_the_driver_that_looked_gone(store: Store) -> None:
    store.create_run(make_run("rfence02"))
    store.mark_aborted("rfence02", "{}")
    assert store.get_run("rfence02").generation == 1
    with pytest.raises(heddle.RunTakenOverError):
        store.update_run("rfence02", generation=0, heartbeat_at=1.0)


# -- schema ----------------------------------------------------------------------------


def test_reopening_a_store_keeps_its_data_and_migrates_nothing(db_url: str) -> None:
    first = Store(db_url)
    first.create_run(make_run("rkeep0001"))
    first.close()
    for _ in range(2):
        again = Store(db_url)
        assert again.get_run("rkeep0001").id == "rkeep0001"
        again.close()
    engine = create_engine(db_url)
    with engine.connect() as conn:
        versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    engine.dispose()
    assert len(versions) == 1


def test_foreign_database_with_a_runs_table_is_refused(db_url: str) -> None:
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE runs (id INTEGER PRIMARY KEY, payload TEXT)"))
        conn.execute(text("INSERT INTO runs (id, payload) VALUES (1, 'theirs')"))
    with pytest.raises(heddle.StoreError, match="not made by Heddle"):
        Store(db_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT payload FROM runs")).scalar() == "theirs"
        tables = conn.execute(
            text(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'actions'"
                if engine.dialect.name == "postgresql"
                else "SELECT count(*) FROM sqlite_master WHERE name = 'actions'"
            )
        ).scalar()
    engine.dispose()
    assert tables == 0


def test_unsupported_backend_is_a_config_error() -> None:
    with pytest.raises(heddle.ConfigError, match="unsupported store backend"):
        Store("mysql://localhost/x")


def test_upgrading_drops_old_cache_entries_of_actions_that_called_others(db_url: str) -> None:
    # Before 0004 an entry never recorded what its action called: a parent's entry
    # could be served after a callee changed. Entries of leaf actions stay.
    from alembic import command
    from alembic.config import Config

    from heddle._store.store import _MIGRATIONS

    engine = create_engine(db_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
    with engine.begin() as conn:
        for aid, parent in (("aparent", None), ("aleaf", "aparent")):
            conn.execute(
                text(
                    "INSERT INTO actions (run_id, id, parent_id, seq, kind, task_name, "
                    "task_version, status, attempts, cached, queued_at) VALUES "
                    "('rold', :id, :parent, 0, 'task', 'env.t', 'v', 'succeeded', 1, 0, 1.0)"
                ),
                {"id": aid, "parent": parent},
            )
            conn.execute(
                text(
                    "INSERT INTO cache_entries (key, task_name, output, run_id, action_id, "
                    "created_at) VALUES (:key, 'env.t', :out, 'rold', :id, 1.0)"
                ),
                {"key": "k" + aid, "out": b"o", "id": aid},
            )
    engine.dispose()
    store = Store(db_url)
    try:
        assert store.cache_get("kaparent") is None
        assert store.cache_get("kaleaf") == b"o"
    finally:
        store.close()
