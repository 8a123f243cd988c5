"""What the API says about time: queue time apart from run time for actions and each
attempt (none for rows written before attempts recorded it), nothing that depends on
the server's clock for live items, and whether a live run's driver still runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_runs import OLD, RETRIED, ROOT, WAITED, WAITING, dead_owner, insert_timed_run

from heddle._sdk.config import get_session
from heddle.server import create_app
from heddle.server.testing import LiveServer


@pytest.fixture
def client(home: Path) -> Iterator[httpx.Client]:
    with (
        LiveServer(create_app()) as server,
        httpx.Client(base_url=server.url + "/api/v1", timeout=10) as c,
    ):
        yield c


def _items(client: httpx.Client, run_id: str) -> dict[str, dict[str, Any]]:
    body = client.get(f"/runs/{run_id}/timeline").json()
    return {i["id"]: i for i in body["items"]}


def test_actions_and_attempts_report_queue_time_apart_from_run_time(
    client: httpx.Client,
) -> None:
    t0 = insert_timed_run(get_session().store, live=False)
    items = _items(client, "rtimed")
    waited = items[WAITED]
    assert waited["queue_duration"] == pytest.approx(2.0)
    assert waited["duration"] == pytest.approx(3.0)
    (attempt,) = waited["attempt_spans"]
    assert attempt["queued_at"] == pytest.approx(t0 + 1)
    assert attempt["started_at"] == pytest.approx(t0 + 3)
    assert attempt["queue_duration"] == pytest.approx(2.0)
    assert attempt["duration"] == pytest.approx(3.0)
    assert "queued_at" not in attempt["resources"]

    retried = items[RETRIED]["attempt_spans"]
    assert [(a["queue_duration"], a["duration"]) for a in retried] == [
        pytest.approx((2.0, 4.0)),
        pytest.approx((3.0, 8.0)),
    ]
    # A row from before attempts recorded when they began to wait: no queue time.
    (old,) = items[OLD]["attempt_spans"]
    assert old["queued_at"] is None and old["queue_duration"] is None
    assert old["duration"] == pytest.approx(2.5)
    # Never started: no queue "duration" (it never ended), no run time.
    never = items[WAITING]
    assert never["started_at"] is None and never["queue_duration"] is None
    assert never["duration"] is None

    detail = client.get(f"/runs/rtimed/actions/{WAITED}/attempts").json()["attempts"]
    assert detail[0]["queue_duration"] == pytest.approx(2.0)


def test_live_items_carry_no_clock_dependent_values(client: httpx.Client) -> None:
    insert_timed_run(get_session().store, live=True)
    timeline = client.get("/runs/rtimed/timeline").json()
    assert timeline["end"] is None
    items = {i["id"]: i for i in timeline["items"]}
    assert items[ROOT]["duration"] is None
    waiting = items[WAITING]
    assert waiting["status"] == "queued" and waiting["queue_duration"] is None
    (attempt,) = waiting["attempt_spans"]
    assert attempt["started_at"] is None and attempt["duration"] is None
    run = client.get("/runs/rtimed").json()
    assert run["duration"] is None
    # The same store gives the same answer however much later it is asked.
    assert client.get("/runs/rtimed/timeline").json() == timeline
    assert client.get("/runs/rtimed").json() == run


def test_a_live_run_whose_driver_died_is_orphaned_in_list_and_detail(
    client: httpx.Client,
) -> None:
    store = get_session().store
    insert_timed_run(store, live=True)
    body = client.get("/runs/rtimed").json()
    assert (body["status"], body["driver_alive"], body["display_status"]) == (
        "running",
        True,
        "running",
    )
    store.update_run("rtimed", owner=dead_owner())
    body = client.get("/runs/rtimed").json()
    assert (body["status"], body["driver_alive"], body["display_status"]) == (
        "running",
        False,
        "orphaned",
    )
    (listed,) = client.get("/runs").json()["runs"]
    assert (listed["driver_alive"], listed["display_status"]) == (False, "orphaned")
    # The stored status filter still finds it as running.
    assert client.get("/runs", params={"status": "running"}).json()["total"] == 1
