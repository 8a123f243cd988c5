"""Bad input at the server's edges gets a clear 4xx, never a 500 or a traceback: every
query and path parameter of every route (read from the OpenAPI spec, so a new route
is audited too) on SQLite and PostgreSQL, and bad `heddle serve` options."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

import heddle
from heddle.server import create_app
from heddle.server.testing import LiveServer

env = heddle.TaskEnvironment(name="edges")

# What a careless or hostile client sends: huge, negative, non-numeric, NUL bytes,
# LIKE wildcards, very long.
INTS = ["-1", "0", str(2**31), str(2**63), str(10**30), "1e3", "abc", ""]
STRINGS = ["\x00", "a\x00b", "%", "_", "' or 1=1 --", "x" * 5000, "ü∂", "../../etc/passwd"]
# 2xx is fine (an empty page), and so is a clear refusal; 5xx never is.
CLEAR = {200, 400, 404, 409, 422}


@env.task
async def square(x: int) -> int:
    return x * x


@env.task
async def main(n: int) -> list[int]:
    return list(await heddle.map(square, range(n)))


@pytest.fixture
def served(any_home: str) -> Iterator[tuple[httpx.Client, heddle.Run]]:
    run = heddle.run(main, 3, executor="inline")
    with (
        LiveServer(create_app()) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        yield client, run


def _routes(client: httpx.Client) -> list[tuple[str, str, list[dict[str, Any]]]]:
    spec = client.get("/api/v1/openapi.json").json()
    return [
        (method.upper(), path, op.get("parameters", []))
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
    ]


def _fill(path: str, run: heddle.Run, overrides: dict[str, str]) -> str:
    values = {
        "run_id": run.id,
        "action_id": run.record.root_action_id,
        "key": "sha256:" + "0" * 64,
        **overrides,
    }
    for name, value in values.items():
        path = path.replace("{" + name + "}", quote(value, safe=""))
    return path


def test_every_parameter_of_every_route_refuses_bad_values_clearly(
    served: tuple[httpx.Client, heddle.Run],
) -> None:
    client, run = served
    routes = _routes(client)
    assert len(routes) >= 12
    seen: list[str] = []
    for method, path, params in routes:
        if method != "GET":
            continue  # the mutating routes are audited in test_server_security
        for p in params:
            kind = p.get("schema", {}).get("type") or next(
                (
                    s.get("type")
                    for s in p.get("schema", {}).get("anyOf", [])
                    if s.get("type") != "null"
                ),
                "string",
            )
            bad = INTS if kind == "integer" else STRINGS
            for value in bad:
                if p["in"] == "path":
                    url, query = _fill(path, run, {p["name"]: value}), {}
                else:
                    url, query = _fill(path, run, {}), {p["name"]: value}
                res = client.get(url, params=query)
                seen.append(f"{path} {p['name']}={value[:20]!r}")
                assert res.status_code in CLEAR, (path, p["name"], value[:40], res.text[:300])
                if res.status_code >= 400:
                    detail = res.json()["detail"]
                    assert detail, (path, p["name"], value[:40])
    assert any("offset" in s for s in seen) and any("status" in s for s in seen)


@pytest.mark.parametrize(
    "path", ["/api/v1/runs", "/api/v1/runs/{run}/tree", "/api/v1/runs/{run}/timeline"]
)
def test_a_huge_offset_is_an_empty_page_or_a_422_never_a_500(
    served: tuple[httpx.Client, heddle.Run], path: str
) -> None:
    client, run = served
    url = path.replace("{run}", run.id)
    for offset in (10**6, 2**62, 2**63, 10**30):
        res = client.get(url, params={"offset": offset})
        assert res.status_code in (200, 422), (offset, res.text)
        if res.status_code == 422:
            assert "offset" in res.text
        else:
            body = res.json()
            assert body.get("runs", body.get("actions", body.get("items"))) == []


def test_unknown_status_filter_names_the_statuses_there_are(
    served: tuple[httpx.Client, heddle.Run],
) -> None:
    client, _ = served
    res = client.get("/api/v1/runs", params={"status": "finished"})
    assert res.status_code == 422
    detail = str(res.json()["detail"])
    assert "finished" in detail and "succeeded" in detail
    assert client.get("/api/v1/runs", params={"status": "succeeded"}).json()["total"] == 1


def test_unknown_ids_are_404_naming_what_was_not_found(
    served: tuple[httpx.Client, heddle.Run],
) -> None:
    client, run = served
    res = client.get("/api/v1/runs/rnope-at-all")
    assert res.status_code == 404 and "rnope-at-all" in res.json()["detail"]
    res = client.get(f"/api/v1/runs/{run.id}/actions/anope-at-all/logs")
    assert res.status_code == 404 and "anope-at-all" in res.json()["detail"]
    res = client.get(f"/api/v1/runs/{run.id}/timeline", params={"parent": "anope-at-all"})
    assert res.status_code == 404 and "anope-at-all" in res.json()["detail"]
    res = client.get(
        f"/api/v1/runs/{run.id}/actions/{run.record.root_action_id}/logs", params={"attempt": 7}
    )
    assert res.status_code == 404 and "attempt 7" in res.json()["detail"]


def _serve(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env_ = {**os.environ, "HEDDLE_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "heddle.cli", "serve", *args],
        capture_output=True,
        text=True,
        env=env_,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--port", "99999"], ["--port", "99999"]),
        (["--port", "-1"], ["--port"]),
        (["--port", "http"], ["--port", "http"]),
        (["--host", "no such host.invalid"], ["--host", "no such host.invalid"]),
    ],
)
def test_bad_serve_options_are_usage_errors_without_a_traceback(
    tmp_path: Path, args: list[str], names: list[str]
) -> None:
    proc = _serve(*args, home=tmp_path / "h")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    for name in names:
        assert name in proc.stderr


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _serve("--port", str(port), home=tmp_path / "h")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    assert str(port) in proc.stderr and "in use" in proc.stderr
