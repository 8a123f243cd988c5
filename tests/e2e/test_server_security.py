"""A web page elsewhere cannot drive `heddle serve`: mutations need a same-origin
request with the page's CSRF token (or a bearer token), the Host header must name
this server, and recovery runs the program in its own process, not the server's."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import heddle
from heddle._sdk.config import get_session
from heddle.server import create_app
from heddle.server.auth import SAFE_METHODS
from heddle.server.testing import LiveServer, csrf_token_in

env = heddle.TaskEnvironment(name="sec")
EVIL = "http://evil.example"
CRASH = Path(__file__).parent / "cli_programs" / "crash.py"


@env.task
async def square(x: int) -> int:
    return x * x


@env.task
async def needs_marker(path: str) -> str:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is not there yet")
    return open(path).read()


@env.task
async def marked(path: str) -> str:
    return (await needs_marker(path)).upper()


@env.task
async def nap(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


def _routes(routes: Iterable[Any]) -> Iterator[tuple[str, set[str]]]:
    """(path, methods) of every route, through included routers (FastAPI includes
    them lazily in newer versions, older ones copy the routes in)."""
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:
            yield from ((c.path, set(c.methods or ())) for c in contexts())
        elif getattr(route, "methods", None):
            yield route.path, set(route.methods)


def _mutating_paths(server: LiveServer, run_id: str) -> list[str]:
    """Every route of the app that is not a safe method, with ids filled in."""
    app = server._server.config.app
    found = {path for path, methods in _routes(app.routes) if methods - SAFE_METHODS}
    spec = httpx.get(server.url + "/api/v1/openapi.json").json()["paths"]
    documented = {p for p, ops in spec.items() if set(ops) - {"get", "head", "options"}}
    assert documented <= found, documented - found
    assert len(found) >= 2, found  # abort and recover at least
    return sorted(p.replace("{run_id}", run_id) for p in found)


@pytest.fixture
def server(home: Path) -> Iterator[LiveServer]:
    with LiveServer(create_app()) as s:
        yield s


def _csrf(server: LiveServer) -> str:
    return csrf_token_in(httpx.get(server.url + "/").text)


def test_cross_origin_mutations_are_refused_on_every_mutating_route(server: LiveServer) -> None:
    run = heddle.run(square, 3, executor="inline")
    token = _csrf(server)
    for path in _mutating_paths(server, run.id):
        url = server.url + path
        # What a form or fetch on another site can send without a preflight.
        simple = {"Content-Type": "text/plain"}
        for headers in (
            {"Origin": EVIL},
            {"Origin": EVIL, "X-Heddle-CSRF": token},  # even with a leaked token
            {"Origin": "null"},  # a sandboxed frame or a no-referrer form
            {"Referer": EVIL + "/attack.html"},
            {"Sec-Fetch-Site": "cross-site"},
        ):
            res = httpx.post(url, content="x", headers={**simple, **headers})
            assert res.status_code == 403, (path, headers, res.text)
            assert "cross-origin" in res.json()["detail"]
        for headers in ({}, {"X-Heddle-CSRF": "0" * 64}, {"X-Heddle-CSRF": ""}):
            res = httpx.post(url, headers=headers)
            assert res.status_code == 403, (path, headers, res.text)
            assert "X-Heddle-CSRF" in res.json()["detail"]
        # The UI's own request: same origin, with the token its page carries.
        same = {"Origin": server.url, "X-Heddle-CSRF": token, "Sec-Fetch-Site": "same-origin"}
        res = httpx.post(url, headers=same)
        assert res.status_code not in (400, 401, 403), (path, res.text)
    assert get_session().store.get_run(run.id).status == "succeeded"


def test_a_cross_origin_abort_leaves_a_live_run_running(server: LiveServer) -> None:
    run = heddle.run(nap, 30.0, wait=False, executor="inline")
    try:
        res = httpx.post(
            f"{server.url}/api/v1/runs/{run.id}/abort",
            content="x",
            headers={"Origin": EVIL, "Content-Type": "text/plain"},
        )
        assert res.status_code == 403
        record = get_session().store.get_run(run.id)
        assert record.status == "running" and not record.abort_requested
    finally:
        heddle.abort(run.id)
        run.wait(10)


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8080", "127.0.0.1.evil.example", ""]
)
def test_a_foreign_host_header_is_refused_on_every_page(server: LiveServer, host: str) -> None:
    for path in ("/", "/api/v1/runs", "/api/v1/health", "/static/heddle.css"):
        res = httpx.get(server.url + path, headers={"Host": host})
        assert res.status_code == 400, (path, res.status_code)
        assert "--allowed-host" in res.json()["detail"]


def test_loopback_names_and_allowed_hosts_are_served(home: Path) -> None:
    app = create_app(allowed_hosts=["heddle.internal", "*.corp.example"])
    with LiveServer(app) as server:
        port = server.port
        for host in (
            f"127.0.0.1:{port}",
            f"localhost:{port}",
            "LOCALHOST.",
            f"[::1]:{port}",
            "heddle.internal",
            f"ci.corp.example:{port}",
        ):
            res = httpx.get(server.url + "/api/v1/health", headers={"Host": host})
            assert res.status_code == 200, host
        assert httpx.get(server.url, headers={"Host": "corp.example.evil"}).status_code == 400


def test_a_server_on_every_interface_answers_to_addresses_and_its_own_names(home: Path) -> None:
    import socket

    with LiveServer(create_app(host="0.0.0.0")) as server:
        for host in ("10.1.2.3:8080", socket.gethostname(), "[fe80::1]"):
            res = httpx.get(server.url + "/api/v1/health", headers={"Host": host})
            assert res.status_code == 200, host
        res = httpx.get(server.url + "/api/v1/health", headers={"Host": "rebind.evil.example"})
        assert res.status_code == 400


def test_bearer_token_clients_need_no_origin_or_csrf_token(home: Path) -> None:
    run = heddle.run(square, 2, executor="inline")
    with LiveServer(create_app(token="s3cret", host="0.0.0.0")) as server:
        url = f"{server.url}/api/v1/runs/{run.id}/abort"
        ok = httpx.post(url, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert ok.json()["message"] == "run already succeeded"
        assert httpx.post(url, headers={"Authorization": "Bearer nope"}).status_code == 401
        # Without the token, the page's CSRF token is not enough.
        token = _csrf(server)
        res = httpx.post(url, headers={"Origin": server.url, "X-Heddle-CSRF": token})
        assert res.status_code == 401


def _owner_pid(owner: str | None) -> int:
    assert owner is not None
    return int(owner.split(":")[1])


def test_recover_runs_the_program_in_a_child_process_and_answers_at_once(
    server: LiveServer, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    run = heddle.run(marked, str(marker), executor="inline")
    assert run.status == "failed"
    marker.write_text("ok")
    started = time.perf_counter()
    res = httpx.post(
        f"{server.url}/api/v1/runs/{run.id}/recover",
        headers={"Origin": server.url, "X-Heddle-CSRF": _csrf(server)},
    )
    answered = time.perf_counter() - started
    assert res.status_code == 200, res.text
    assert res.json()["message"].startswith("recovering in process ")
    assert answered < 2.0
    child_pid = int(res.json()["message"].rsplit(" ", 1)[1])
    assert child_pid != os.getpid()
    again = httpx.post(
        f"{server.url}/api/v1/runs/{run.id}/recover",
        headers={"Origin": server.url, "X-Heddle-CSRF": _csrf(server)},
    )
    assert again.status_code == 409, again.text
    detail = again.json()["detail"]
    assert f"already being recovered by process {child_pid}" in detail or (
        "still being driven" in detail or "already succeeded" in detail
    )
    # While the child starts, the API says this server is recovering the run.
    body = httpx.get(f"{server.url}/api/v1/runs/{run.id}").json()
    assert body["recovery"]["pid"] == child_pid
    deadline = time.time() + 60
    while body["status"] != "succeeded":
        assert time.time() < deadline, body
        assert body["display_status"] in ("recovering", "running"), body
        time.sleep(0.1)
        body = httpx.get(f"{server.url}/api/v1/runs/{run.id}").json()
    record = get_session().store.get_run(run.id)
    assert _owner_pid(record.owner) == child_pid != os.getpid()
    assert body["output"] == {"kind": "scalar", "value": "OK"}
    while body["recovery"]["running"]:
        assert time.time() < deadline
        time.sleep(0.05)
        body = httpx.get(f"{server.url}/api/v1/runs/{run.id}").json()
    assert body["recovery"]["exit_code"] == 0


def test_a_recovery_that_cannot_load_the_program_says_why(
    server: LiveServer, tmp_path: Path
) -> None:
    run = heddle.run(marked, str(tmp_path / "missing"), executor="inline")
    store = get_session().store
    store.update_run(run.id, program=run.record.program.replace("marked", "gone_away"))
    res = httpx.post(
        f"{server.url}/api/v1/runs/{run.id}/recover",
        headers={"Origin": server.url, "X-Heddle-CSRF": _csrf(server)},
    )
    assert res.status_code == 200, res.text
    deadline = time.time() + 60
    body = httpx.get(f"{server.url}/api/v1/runs/{run.id}").json()
    while body["recovery"]["running"]:
        assert time.time() < deadline
        time.sleep(0.1)
        body = httpx.get(f"{server.url}/api/v1/runs/{run.id}").json()
    assert body["recovery"]["exit_code"] == 1
    assert "gone_away" in body["recovery"]["message"]
    assert body["status"] == "failed"


def test_a_run_whose_driver_was_killed_is_shown_orphaned_and_recovers_from_the_server(
    server: LiveServer, home: Path, tmp_path: Path
) -> None:
    log = tmp_path / "executions.log"
    environ = {**os.environ, "HEDDLE_EXECUTOR": "inline"}
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "heddle.cli", "--home", str(home)),
            *("run", str(CRASH), "main", "--log", str(log), "--n", "40", "--quiet"),
        ],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = f"{server.url}/api/v1"
    try:
        deadline = time.time() + 30
        while not (log.exists() and len(log.read_text().split()) >= 5):
            assert time.time() < deadline and proc.poll() is None
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    (summary,) = httpx.get(api + "/runs").json()["runs"]
    assert summary["status"] == "running"
    assert summary["driver_alive"] is False
    assert summary["display_status"] == "orphaned"
    run_id = summary["id"]
    body = httpx.get(f"{api}/runs/{run_id}").json()
    assert (body["driver_alive"], body["display_status"]) == (False, "orphaned")
    done_before = len(log.read_text().split())

    res = httpx.post(
        f"{api}/runs/{run_id}/recover",
        headers={"Origin": server.url, "X-Heddle-CSRF": _csrf(server)},
    )
    assert res.status_code == 200, res.text
    deadline = time.time() + 60
    while body["status"] != "succeeded":
        assert time.time() < deadline, body
        time.sleep(0.1)
        body = httpx.get(f"{api}/runs/{run_id}").json()
    assert body["driver_alive"] is None and body["display_status"] == "succeeded"
    owner = _owner_pid(get_session().store.get_run(run_id).owner)
    assert owner not in (os.getpid(), proc.pid)
    ran = log.read_text().split()
    assert sorted(set(ran)) == sorted(str(i) for i in range(40))
    # Children that succeeded before the kill did not run again (in-flight ones may).
    assert len(ran) - 40 <= 3 and len(ran) >= done_before


def test_recover_refuses_a_run_whose_driver_is_alive(server: LiveServer) -> None:
    run = heddle.run(nap, 30.0, wait=False, executor="inline")
    try:
        res = httpx.post(
            f"{server.url}/api/v1/runs/{run.id}/recover",
            headers={"Origin": server.url, "X-Heddle-CSRF": _csrf(server)},
        )
        assert res.status_code == 409
        assert "still being driven" in res.json()["detail"]
        body = httpx.get(f"{server.url}/api/v1/runs/{run.id}").json()
        assert (body["driver_alive"], body["display_status"]) == (True, "running")
        assert body["recovery"] is None
    finally:
        heddle.abort(run.id)
        run.wait(10)
