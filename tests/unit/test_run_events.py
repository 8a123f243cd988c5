"""Run events: what happened to a run besides its actions' states, kept in order, on
SQLite and PostgreSQL."""

from __future__ import annotations

import time

from store_rows import make_run

from heddle._store import RunEventKind, Store


def test_events_come_back_in_the_order_they_were_added(store: Store) -> None:
    store.create_run(make_run("r1"))
    store.create_run(make_run("r2"))
    before = time.time()
    store.add_run_event("r1", RunEventKind.OUTPUT_LOST, "first", action_id="a1")
    store.add_run_event("r2", RunEventKind.OUTPUT_LOST, "other run")
    store.add_run_event("r1", RunEventKind.INPUT_LOST, "second")
    events = store.run_events("r1")
    assert [(e.kind, e.action_id, e.message) for e in events] == [
        ("output_lost", "a1", "first"),
        ("input_lost", None, "second"),
    ]
    assert events[0].id < events[1].id
    assert all(e.run_id == "r1" and before <= e.at <= time.time() for e in events)
    assert [e.message for e in store.run_events("r2")] == ["other run"]
    assert store.run_events("nope") == []


def test_a_long_message_is_kept_whole(store: Store) -> None:
    store.create_run(make_run("r1"))
    message = "x" * 10_000
    store.add_run_event("r1", RunEventKind.OUTPUT_LOST, message)
    assert store.run_events("r1")[0].message == message
