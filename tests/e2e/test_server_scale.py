"""A run with 100,000 actions opens fast: every query the run page makes is a page
or a GROUP BY, never the whole run."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from heddle._sdk.config import get_session
from heddle.server import create_app
from heddle.server.testing import LiveServer, insert_synthetic_run

N = 100_000


def test_run_with_100k_actions_opens_in_under_two_seconds(home: Path) -> None:
    run_id = insert_synthetic_run(get_session().store, N)
    with LiveServer(create_app()) as server, httpx.Client(base_url=server.url) as c:
        c.get("/api/v1/health")  # a warm server, as a user's would be
        times = []
        started = time.perf_counter()
        page = c.get(f"/runs/{run_id}")
        times.append(time.perf_counter() - started)
        run = c.get(f"/api/v1/runs/{run_id}").json()
        times.append(time.perf_counter() - started)
        tree = c.get(f"/api/v1/runs/{run_id}/tree").json()
        elapsed = time.perf_counter() - started
        print("cumulative:", [round(t, 3) for t in times])
        timeline_started = time.perf_counter()
        timeline = c.get(f"/api/v1/runs/{run_id}/timeline").json()
        more = c.get(f"/api/v1/runs/{run_id}/tree", params={"offset": 99_900}).json()
        later = time.perf_counter() - timeline_started
    print(
        f"\n100k-action run: page + run + first tree level in {elapsed:.3f}s; "
        f"timeline + last tree page in {later:.3f}s"
    )
    assert page.status_code == 200
    assert run["actions"]["total"] == N
    assert run["failures"] == 100
    assert tree["parent"]["children"]["total"] == N - 1
    assert tree["total"] == N - 1 and len(tree["actions"]) == 100
    assert timeline["total"] == N and len(timeline["items"]) == 200
    assert [a["seq"] for a in more["actions"]][-1] == N - 1
    assert elapsed < 5.0  # the target is 2 s; leave room for a busy CI machine
    assert later < 5.0
