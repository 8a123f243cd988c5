"""Cache hits in the server: the action detail names the action that computed the value
and what it depended on, and the UI links to it (in real headless Chromium)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import heddle
from heddle.server import create_app
from heddle.server.testing import LiveServer

env = heddle.TaskEnvironment(name="srvcache", cache="auto")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@heddle.trace
def lookup(x: int) -> int:
    return x * 3


@env.task
async def leaf(x: int) -> int:
    return lookup(x) + 1


@env.task
async def top(x: int) -> int:
    return await leaf(x) + 1


@pytest.fixture
def server(home: Path) -> Iterator[LiveServer]:
    with LiveServer(create_app()) as s:
        yield s


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url + "/api/v1", timeout=10) as c:
        yield c


def test_a_cache_hit_names_the_action_that_computed_it(client: httpx.Client) -> None:
    first = heddle.run(top, 2, executor="inline")
    second = heddle.run(top, 2, executor="inline")
    assert second.outputs() == first.outputs() == 8
    root = first.record.root_action_id
    hit = client.get(f"/runs/{second.id}/actions/{second.record.root_action_id}").json()
    assert hit["cached"] is True
    assert (hit["source_run_id"], hit["source_action_id"]) == (first.id, root)
    assert [(d["kind"], d["name"]) for d in hit["depends_on"]] == [
        ("task", "srvcache.leaf"),
        ("trace", f"{__name__}.lookup"),
    ]
    computed = client.get(f"/runs/{first.id}/actions/{root}").json()
    assert computed["cached"] is False
    assert computed["source_run_id"] is None
    assert computed["depends_on"] == hit["depends_on"]


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium")
def test_the_action_page_of_a_cache_hit_links_to_the_action_that_computed_it(
    server: LiveServer,
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    first = heddle.run(top, 5, executor="inline")
    second = heddle.run(top, 5, executor="inline")
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        page: Any = browser.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{server.url}/runs/{second.id}/actions/{second.record.root_action_id}")
        source = page.locator("#cache-source")
        sync_api.expect(source).to_contain_text(f"hit from run {first.id[:12]}")
        sync_api.expect(page.locator("#action-facts")).to_contain_text("task srvcache.leaf")
        source.locator("a").click()
        sync_api.expect(page).to_have_url(
            f"{server.url}/runs/{first.id}/actions/{first.record.root_action_id}"
        )
        sync_api.expect(page.locator("#action-title")).to_have_text("srvcache.top")
        browser.close()
    assert not errors, errors
