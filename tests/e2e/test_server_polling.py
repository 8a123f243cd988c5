"""Polling is cheap: the run, tree, timeline and runs list answer conditional requests
(ETag / If-None-Match -> 304), change their ETag when the run changes, and many
clients asking at once about a changed run share one scan of it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server_runs import ROOT, WAITING, insert_timed_run

from heddle._sdk.config import get_session
from heddle._store import WriteBatch
from heddle.server import create_app, queries
from heddle.server.testing import LiveServer, insert_synthetic_run

POLLED = [
    "/runs/rtimed",
    f"/runs/rtimed/tree?parent={ROOT}",
    "/runs/rtimed/tree",
    "/runs/rtimed/timeline",
    "/runs",
]


@pytest.fixture
def server(home: Path) -> Iterator[LiveServer]:
    with LiveServer(create_app()) as s:
        yield s


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url + "/api/v1", timeout=30) as c:
        yield c


def _start_waiting_action() -> None:
    """What a driver writes when the body of the waiting action starts."""
    now = time.time()
    get_session().store.write_batch(
        WriteBatch(
            action_updates=[
                {
                    "_run_id": "rtimed",
                    "_id": WAITING,
                    "status": "running",
                    "attempts": 1,
                    "task_version": "v1",
                    "cached": 0,
                    "cache_key": None,
                    "output": None,
                    "error": None,
                    "started_at": now,
                    "finished_at": None,
                }
            ]
        )
    )


@pytest.mark.parametrize("path", POLLED)
def test_an_unchanged_answer_is_a_304_without_a_body(client: httpx.Client, path: str) -> None:
    insert_timed_run(get_session().store, live=True)
    first = client.get(path)
    assert first.status_code == 200
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "no-cache"
    again = client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert client.get(path, headers={"If-None-Match": f'W/{etag}, "other"'}).status_code == 304
    fresh = client.get(path, headers={"If-None-Match": '"stale"'})
    assert fresh.status_code == 200 and fresh.json() == first.json()


@pytest.mark.parametrize("path", POLLED)
def test_a_change_to_the_run_changes_the_answer_and_its_etag(
    client: httpx.Client, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "LIVE_SHAPE_SECONDS", 0.0)
    monkeypatch.setattr(queries, "STALE_SHAPE_SECONDS", 0.0)
    insert_timed_run(get_session().store, live=True)
    before = client.get(path)
    _start_waiting_action()
    after = client.get(path, headers={"If-None-Match": before.headers["etag"]})
    assert after.status_code == 200, path
    assert after.headers["etag"] != before.headers["etag"]
    assert after.json() != before.json()


def test_a_live_runs_answers_follow_within_a_second(client: httpx.Client) -> None:
    insert_timed_run(get_session().store, live=True)
    etag = client.get("/runs/rtimed").headers["etag"]
    _start_waiting_action()
    deadline = time.monotonic() + queries.LIVE_SHAPE_SECONDS + 1.0
    while True:
        res = client.get("/runs/rtimed", headers={"If-None-Match": etag})
        if res.status_code == 200:
            break
        assert time.monotonic() < deadline, "the change never showed"
        time.sleep(0.05)
    assert res.json()["actions"]["by_status"]["running"] == 2


def test_each_query_has_its_own_etag(client: httpx.Client) -> None:
    insert_timed_run(get_session().store, live=False)
    tags = {client.get("/runs/rtimed/tree", params={"limit": n}).headers["etag"] for n in (1, 2, 3)}
    assert len(tags) == 3


def test_clients_asking_at_once_about_a_changed_run_share_one_scan(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = insert_synthetic_run(get_session().store, 20_000)
    scans: list[str] = []
    real = queries.Queries._scan_shape

    def counted(self: queries.Queries, rid: str) -> queries.RunShape:
        scans.append(rid)
        time.sleep(0.2)  # a slow scan, so the clients overlap it
        return real(self, rid)

    monkeypatch.setattr(queries.Queries, "_scan_shape", counted)
    barrier = threading.Barrier(12)
    bodies: list[bytes] = []

    def poll() -> None:
        with httpx.Client(base_url=server.url + "/api/v1", timeout=30) as c:
            barrier.wait()
            res = c.get(f"/runs/{run_id}/tree")
            assert res.status_code == 200
            bodies.append(res.content)

    threads = [threading.Thread(target=poll) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(bodies) == 12 and len(set(bodies)) == 1
    assert scans == [run_id]


def test_a_watched_live_run_is_rescanned_in_the_background_not_while_a_poll_waits(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    insert_timed_run(get_session().store, live=True)
    monkeypatch.setattr(queries, "LIVE_SHAPE_SECONDS", 0.2)
    scans: list[float] = []
    real = queries.Queries._scan_shape

    def slow(self: queries.Queries, rid: str) -> queries.RunShape:
        scans.append(time.monotonic())
        time.sleep(2.0)
        return real(self, rid)

    monkeypatch.setattr(queries.Queries, "_scan_shape", slow)
    first = client.get("/runs/rtimed/tree")  # nothing kept yet: this one scans
    assert len(scans) == 1
    time.sleep(0.3)
    _start_waiting_action()
    started = time.monotonic()
    kept = client.get("/runs/rtimed/tree", headers={"If-None-Match": first.headers["etag"]})
    assert time.monotonic() - started < 1.5  # answered from the kept counts, not the scan
    assert kept.status_code == 304
    monkeypatch.setattr(queries, "LIVE_SHAPE_SECONDS", 30.0)  # what it scans stays fresh
    deadline = time.monotonic() + 10
    while (res := client.get("/runs/rtimed/tree")).headers["etag"] == first.headers["etag"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert len(scans) == 2  # one background scan, however many polls came meanwhile
    assert res.json()["actions"][2]["status"] == "running"
