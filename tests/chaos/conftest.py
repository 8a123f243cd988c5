"""Fixtures of the chaos suite: targets (a store and blobs) on SQLite and PostgreSQL, and
crash-free reference runs to compare crashed runs with."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from chaoslib.campaign import References
from chaoslib.scenario import Scenario
from chaoslib.store_view import Target


@pytest.fixture(scope="session")
def references(tmp_path_factory: pytest.TempPathFactory) -> References:
    """Crash-free runs of the workload (made once per session and program), each checked
    against the program's closed-form output and every invariant, to compare with."""
    return References(tmp_path_factory.mktemp("references"))


@pytest.fixture(params=["sqlite", "postgres"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_target(
    request: pytest.FixtureRequest, tmp_path: Path, store_kind: str
) -> Callable[[str], Target]:
    """``make_target(executor)``: a target on this test's store kind (PostgreSQL: a fresh
    database on $HEDDLE_TEST_POSTGRES_URL, skipped when unset)."""
    db_url = None
    if store_kind == "postgres":
        db_url = str(request.getfixturevalue("pg_url"))

    def make(executor: str) -> Target:
        return Target(store_kind, tmp_path / "home", db_url=db_url, executor=executor)

    return make


@pytest.fixture
def scenarios(tmp_path: Path) -> Iterator[Callable[..., Scenario]]:
    """Makes scenarios in this test's temp dir; kills whatever they left running."""
    made: list[Scenario] = []

    def make(target: Target, shape: str, n: float, **kw: object) -> Scenario:
        s = Scenario(target, shape, n, tmp_path / f"scenario-{len(made)}", **kw)  # type: ignore[arg-type]
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop_all()
        s.close()
