"""The REST API against a real server on a loopback port: runs, the action tree,
values, logs, traces, reports, auth, pagination and bad ids."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import heddle
from heddle._sdk.config import get_session
from heddle.server import create_app
from heddle.server.testing import LiveServer, csrf_token_in, free_port

env = heddle.TaskEnvironment(name="srv")
pytestmark = pytest.mark.filterwarnings("ignore::heddle._types.dynamic.PickleFallbackWarning")
attempts_seen: dict[str, int] = {}


class Opaque:
    """Stored with cloudpickle; unpickling it would record that it happened."""

    unpickled = 0

    def __init__(self, payload: str) -> None:
        self.payload = payload

    def __setstate__(self, state: dict[str, Any]) -> None:
        Opaque.unpickled += 1
        self.__dict__.update(state)


@heddle.trace
async def llm(prompt: str) -> dict[str, Any]:
    return {"text": prompt.upper(), "usage": {"prompt_tokens": 3, "completion_tokens": 5}}


@env.task(retries=2)
async def flaky(key: str) -> str:
    attempts_seen[key] = attempts_seen.get(key, 0) + 1
    if attempts_seen[key] == 1:
        raise ConnectionError("first attempt fails")
    return key


@env.task
async def square(x: int) -> int:
    return x * x


@env.task
async def broken(x: int) -> int:
    raise ValueError(f"bad value {x}")


@env.task
async def opaque() -> Opaque:
    return Opaque("secret")


@env.task
async def summarize(values: list[int], label: str) -> dict[str, int]:
    answer = await llm(label)
    heddle.report.log(f"<h2 id='title'>{answer['text']}</h2>")
    heddle.report.table([{"i": i, "v": v} for i, v in enumerate(values)])
    return {"total": sum(values)}


@env.task
async def main(n: int, label: str = "demo") -> dict[str, int]:
    with heddle.group("squares"):
        values = await heddle.map(square, range(n))
    with heddle.group("eval"), heddle.group("inner"):
        await flaky(label)
    with contextlib.suppress(ValueError):
        await broken(n)
    await opaque()
    return await summarize(values, label)


@env.task
async def sleeper(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@env.task
async def slow_main(n: int) -> list[float]:
    return await heddle.map(sleeper, [30.0] * n)


@pytest.fixture
def server(home: Path) -> Iterator[LiveServer]:
    with LiveServer(create_app()) as s:
        yield s


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    """A client that calls the API the way the UI's pages do (with their CSRF token)."""
    csrf = csrf_token_in(httpx.get(server.url + "/").text)
    headers = {"X-Heddle-CSRF": csrf, "Origin": server.url}
    with httpx.Client(base_url=server.url + "/api/v1", timeout=10, headers=headers) as c:
        yield c


@pytest.fixture
def demo_run(home: Path) -> heddle.Run:
    attempts_seen.clear()
    return heddle.run(main, 12, label="demo", name="demo run", executor="inline")


def child(client: httpx.Client, run_id: str, task: str, **params: Any) -> dict[str, Any]:
    page = client.get(f"/runs/{run_id}/tree", params=params).json()
    return next(a for a in page["actions"] if a["task_name"] == task)


def test_health_says_what_the_server_needs(client: httpx.Client) -> None:
    body = client.get("/health").json()
    assert body == {
        "status": "ok",
        "version": heddle.__version__,
        "store": "sqlite",
        "auth": False,
        "mutations": True,
    }


def test_openapi_spec_lists_the_versioned_endpoints(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/v1/runs",
        "/api/v1/runs/{run_id}",
        "/api/v1/runs/{run_id}/abort",
        "/api/v1/runs/{run_id}/recover",
        "/api/v1/runs/{run_id}/tree",
        "/api/v1/runs/{run_id}/timeline",
        "/api/v1/runs/{run_id}/actions/{action_id}/logs",
        "/api/v1/runs/{run_id}/actions/{action_id}/traces",
        "/api/v1/runs/{run_id}/actions/{action_id}/report",
    ):
        assert path in paths


def test_run_summary_counts_actions_failures_and_cache(
    client: httpx.Client, demo_run: heddle.Run
) -> None:
    body = client.get("/runs").json()
    assert body["total"] == 1
    (r,) = body["runs"]
    assert r["id"] == demo_run.id
    assert r["name"] == "demo run"
    assert r["root_task"] == "srv.main"
    assert r["status"] == "succeeded"
    assert r["failures"] == 1
    assert r["actions"]["retried"] == 1
    assert r["actions"]["traces"] == 1
    assert r["duration"] > 0


def test_runs_list_filters_and_pages(client: httpx.Client, home: Path) -> None:
    ids = [heddle.run(square, i, name=f"sq-{i}", executor="inline").id for i in range(5)]
    failed = heddle.run(broken, 1, name="bad", executor="inline")
    page = client.get("/runs", params={"limit": 2}).json()
    assert page["total"] == 6
    assert [r["id"] for r in page["runs"]] == [failed.id, ids[4]]
    second = client.get("/runs", params={"limit": 2, "offset": 2}).json()
    assert [r["id"] for r in second["runs"]] == [ids[3], ids[2]]
    assert client.get("/runs", params={"status": "failed"}).json()["total"] == 1
    assert client.get("/runs", params={"task": "srv.sq"}).json()["total"] == 5
    assert client.get("/runs", params={"name": "sq-3"}).json()["runs"][0]["id"] == ids[3]
    assert client.get("/runs", params={"limit": 0}).status_code == 422
    assert client.get("/runs", params={"limit": 10_000}).status_code == 422


def test_get_run_accepts_a_unique_prefix_and_shows_inputs_by_name(
    client: httpx.Client, demo_run: heddle.Run
) -> None:
    body = client.get(f"/runs/{demo_run.id[:8]}").json()
    assert body["id"] == demo_run.id
    assert body["inputs"] == [
        {"name": "n", "value": {"kind": "scalar", "value": 12}},
        {"name": "label", "value": {"kind": "scalar", "value": "demo"}},
    ]
    assert body["output"] == {"kind": "json", "value": {"total": 506}, "size": 1}


@pytest.mark.parametrize(
    "path",
    [
        "/runs/nope",
        "/runs/r000000000000000000000000000000000000000",
        "/runs/%ff%fe",
        "/runs/nope/tree",
        "/runs/nope/timeline",
        "/runs/nope/actions/abc",
    ],
)
def test_unknown_runs_are_404_with_a_message(client: httpx.Client, path: str) -> None:
    res = client.get(path)
    assert res.status_code == 404
    assert "nope" in res.json()["detail"] or "no run" in res.json()["detail"]


def test_unknown_actions_and_blobs_are_404(client: httpx.Client, demo_run: heddle.Run) -> None:
    for suffix in ("", "/inputs", "/outputs", "/attempts", "/logs", "/traces", "/report"):
        res = client.get(f"/runs/{demo_run.id}/actions/a-missing{suffix}")
        assert res.status_code == 404, suffix
        assert res.json()["detail"] == f"action 'a-missing' not found in run {demo_run.id}"
    assert client.get(f"/runs/{demo_run.id}/tree", params={"parent": "zz"}).status_code == 404
    assert client.get("/blobs/sha256:" + "0" * 64).status_code == 404
    assert client.get("/blobs/not-a-key").status_code == 404
    res = client.post("/runs/nope/abort")
    assert res.status_code == 404


def test_tree_folds_groups_and_pages_children(client: httpx.Client, demo_run: heddle.Run) -> None:
    top = client.get(f"/runs/{demo_run.id}/tree").json()
    assert top["parent"]["task_name"] == "srv.main"
    assert top["parent"]["children"]["total"] == 16
    assert [(g["name"], g["counts"]["total"]) for g in top["groups"]] == [
        ("eval", 1),
        ("squares", 12),
    ]
    assert [a["task_name"] for a in top["actions"]] == ["srv.broken", "srv.opaque", "srv.summarize"]
    eval_ = client.get(f"/runs/{demo_run.id}/tree", params={"group": "eval"}).json()
    assert [g["label"] for g in eval_["groups"]] == ["inner"]
    assert eval_["groups"][0]["counts"]["retried"] == 1
    squares = client.get(
        f"/runs/{demo_run.id}/tree", params={"group": "squares", "limit": 5, "offset": 10}
    ).json()
    assert squares["total"] == 12
    assert [a["seq"] for a in squares["actions"]] == [11, 12]


def test_action_values_attempts_and_errors(client: httpx.Client, demo_run: heddle.Run) -> None:
    run_id = demo_run.id
    inner = child(client, run_id, "srv.flaky", group="eval/inner")
    attempts = client.get(f"/runs/{run_id}/actions/{inner['id']}/attempts").json()["attempts"]
    assert [a["status"] for a in attempts] == ["failed", "succeeded"]
    assert attempts[0]["error"]["type"] == "ConnectionError"
    assert attempts[0]["error"]["kind"] == "user"
    assert "first attempt fails" in attempts[0]["error"]["traceback"]
    assert "pickled" not in attempts[0]["error"]

    bad = child(client, run_id, "srv.broken")
    detail = client.get(f"/runs/{run_id}/actions/{bad['id'][:10]}").json()
    assert detail["id"] == bad["id"]
    assert detail["error"]["message"] == "bad value 12"
    assert [p["task_name"] for p in detail["path"]] == ["srv.main"]
    inputs = client.get(f"/runs/{run_id}/actions/{bad['id']}/inputs").json()["values"]
    assert inputs == [{"name": "x", "value": {"kind": "scalar", "value": 12}}]


def test_pickled_values_are_shown_by_size_and_never_unpickled(
    client: httpx.Client, demo_run: heddle.Run
) -> None:
    Opaque.unpickled = 0
    action = child(client, demo_run.id, "srv.opaque")
    (out,) = client.get(f"/runs/{demo_run.id}/actions/{action['id']}/outputs").json()["values"]
    assert out["value"]["kind"] == "pickled"
    assert out["value"]["size"] > 0
    assert Opaque.unpickled == 0


def test_traces_show_recorded_llm_calls(client: httpx.Client, demo_run: heddle.Run) -> None:
    action = child(client, demo_run.id, "srv.summarize")
    body = client.get(f"/runs/{demo_run.id}/actions/{action['id']}/traces").json()
    assert body["total"] == 1
    (trace,) = body["traces"]
    assert trace["kind"] == "trace"
    assert trace["task_name"].endswith("llm")
    assert trace["inputs"] == [{"name": "prompt", "value": {"kind": "scalar", "value": "demo"}}]
    # A dict[str, Any] keeps the type tags of its values (the UI reads tokens anywhere in it).
    assert trace["output"]["value"]["text"] == "DEMO"
    assert '"prompt_tokens": 3' in json.dumps(trace["output"]["value"]["usage"])


def test_report_is_served_sandboxed_through_a_signed_link(home: Path) -> None:
    run = heddle.run(main, 3, executor="inline")
    with LiveServer(create_app(token="s3cret")) as server:
        auth = {"Authorization": "Bearer s3cret"}
        with httpx.Client(base_url=server.url, headers=auth) as c:
            tree = c.get(f"/api/v1/runs/{run.id}/tree").json()
            action = next(a for a in tree["actions"] if a["task_name"] == "srv.summarize")
            meta = c.get(f"/api/v1/runs/{run.id}/actions/{action['id']}/report").json()
        assert meta["available"] is True
        # The iframe fetches the signed URL without the token.
        res = httpx.get(server.url + meta["url"])
        assert res.status_code == 200
        assert "<h2 id='title'>DEMO</h2>" in res.text
        assert "<td>4</td>" in res.text
        assert "sandbox allow-scripts" in res.headers["content-security-policy"]
        assert "allow-same-origin" not in res.headers["content-security-policy"]
        tampered = meta["url"].replace("sig=", "sig=0")
        assert httpx.get(server.url + tampered).status_code == 401
        other = meta["url"].replace(action["id"], run.record.root_action_id)
        assert httpx.get(server.url + other).status_code == 401


def test_logs_are_read_per_attempt_and_tailed_by_offset(
    client: httpx.Client, demo_run: heddle.Run
) -> None:
    action = child(client, demo_run.id, "srv.broken")
    url = f"/runs/{demo_run.id}/actions/{action['id']}/logs"
    assert client.get(url).json()["available"] is False
    get_session().blobs.put_text(f"logs/{demo_run.id}/{action['id']}/1.log", b"hello\nworld\n")
    body = client.get(url).json()
    assert body["available"] and body["attempt"] == 1 and body["text"] == "hello\nworld\n"
    assert client.get(url, params={"offset": 6}).json()["text"] == "world\n"


def test_timeline_lists_actions_in_start_order_with_attempts(
    client: httpx.Client, demo_run: heddle.Run
) -> None:
    body = client.get(f"/runs/{demo_run.id}/timeline", params={"limit": 500}).json()
    assert body["total"] == 18
    starts = [i["queued_at"] for i in body["items"]]
    assert starts == sorted(starts)
    flaky_item = next(i for i in body["items"] if i["task_name"] == "srv.flaky")
    assert [a["status"] for a in flaky_item["attempt_spans"]] == ["failed", "succeeded"]
    assert body["start"] <= starts[0] and body["end"] >= body["start"]


def test_token_guards_every_call_but_health(home: Path) -> None:
    run = heddle.run(square, 3, executor="inline")
    with LiveServer(create_app(token="s3cret")) as server:
        api = server.url + "/api/v1"
        assert httpx.get(api + "/health").json()["auth"] is True
        for path in ("/runs", f"/runs/{run.id}", f"/runs/{run.id}/tree"):
            res = httpx.get(api + path)
            assert res.status_code == 401
            assert "Bearer" in res.json()["detail"]
            assert (
                httpx.get(api + path, headers={"Authorization": "Bearer wrong"}).status_code == 401
            )
            ok = httpx.get(api + path, headers={"Authorization": "Bearer s3cret"})
            assert ok.status_code == 200
        assert httpx.post(api + f"/runs/{run.id}/abort").status_code == 401
        # The UI's pages carry no data: they load, then ask for the token.
        assert httpx.get(server.url + f"/runs/{run.id}").status_code == 200


def test_abort_and_recover_need_a_token_beyond_loopback(home: Path) -> None:
    run = heddle.run(square, 3, executor="inline")
    with LiveServer(create_app(host="0.0.0.0")) as server:
        api = server.url + "/api/v1"
        assert httpx.get(api + "/health").json()["mutations"] is False
        assert httpx.get(api + f"/runs/{run.id}").status_code == 200
        res = httpx.post(api + f"/runs/{run.id}/abort")
        assert res.status_code == 403
        assert "HEDDLE_API_TOKEN" in res.json()["detail"]
        assert httpx.post(api + f"/runs/{run.id}/recover").status_code == 403


def test_abort_stops_a_running_run(client: httpx.Client, home: Path) -> None:
    run = heddle.run(slow_main, 3, wait=False, executor="inline")
    deadline = time.time() + 10
    while time.time() < deadline:
        if client.get(f"/runs/{run.id}").json()["actions"]["by_status"].get("running", 0) >= 4:
            break
        time.sleep(0.05)
    res = client.post(f"/runs/{run.id}/abort")
    assert res.status_code == 200
    assert res.json()["status"] in ("aborted", "running")
    run.wait(10)
    assert client.get(f"/runs/{run.id}").json()["status"] == "aborted"
    # Aborting again is harmless; recovering a succeeded run is refused.
    assert client.post(f"/runs/{run.id}/abort").json()["message"] == "run already aborted"


def test_recover_refuses_a_succeeded_run(client: httpx.Client, demo_run: heddle.Run) -> None:
    res = client.post(f"/runs/{demo_run.id}/recover")
    assert res.status_code == 409
    assert "already succeeded" in res.json()["detail"]


def test_python_m_heddle_server_serves_with_a_token_from_the_environment(
    tmp_path: Path,
) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "heddle.server", "--port", str(port)],
        env={**os.environ, "HEDDLE_HOME": str(tmp_path / "h"), "HEDDLE_API_TOKEN": "tok"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/v1"
        deadline = time.time() + 20
        while True:
            try:
                health = httpx.get(url + "/health").json()
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.time() < deadline
                time.sleep(0.1)
        assert health["auth"] is True
        assert httpx.get(url + "/runs").status_code == 401
        ok = httpx.get(url + "/runs", headers={"Authorization": "Bearer tok"})
        # Nothing ran in this home yet: the server names the store it looked for.
        assert ok.status_code == 503
        assert ok.json()["detail"].startswith("no Heddle store at ")
    finally:
        proc.terminate()
        proc.wait(10)


def test_data_types_show_as_tables_files_and_dirs_with_download_links(
    client: httpx.Client, server: LiveServer
) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    import io

    import msgspec

    from heddle.server.values import view_of_literal

    session = get_session()
    buf = io.BytesIO()
    pq.write_table(pa.table({"x": list(range(50)), "name": [f"n{i}" for i in range(50)]}), buf)
    table_key = session.blobs.put(buf.getvalue())
    file_key = session.blobs.put(b"hello file")
    manifest = session.blobs.put(msgspec.msgpack.encode([[["a/b.txt", file_key, 10]]]))
    value = [
        {"t": "parquet", "k": table_key, "rows": 50, "cols": ["x", "name"], "kind": "pandas"},
        {"t": "file", "k": file_key, "name": "notes.txt", "size": 10},
        {"t": "dir", "k": manifest, "name": "data"},
        {"t": "npy", "b": b"\x93NUMPY..."},
        {"pickle": b"\x80\x05opaque"},
    ]
    literal = session.literals.to_literal(msgspec.msgpack.encode(value))
    st = server._server.config.app.state.heddle
    view = view_of_literal(session.literals, literal, st.blob_link)
    table, file, folder, array, pickled = view["items"]
    assert table["kind"] == "table"
    assert table["preview"]["columns"] == ["x", "name"]
    assert table["preview"]["num_rows"] == 50
    assert table["preview"]["rows"][:2] == [[0, "n0"], [1, "n1"]]
    assert len(table["preview"]["rows"]) == 20
    assert file["kind"] == "file" and file["name"] == "notes.txt"
    download = httpx.get(server.url + file["download"])
    assert download.content == b"hello file"
    assert 'filename="notes.txt"' in download.headers["content-disposition"]
    assert folder["kind"] == "dir"
    assert folder["files"]["files"][0]["path"] == "a/b.txt"
    assert httpx.get(server.url + folder["files"]["files"][0]["download"]).content == b"hello file"
    assert array == {
        "kind": "blob",
        "format": "npy",
        "key": None,
        "name": None,
        "meta": {},
        "size": 9,
    }
    assert pickled == {"kind": "pickled", "size": 8}
