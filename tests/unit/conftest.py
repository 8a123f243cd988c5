"""Store fixtures for the unit tests: one store per backend and module, emptied per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest
from sqlalchemy import create_engine

from heddle._store import Store
from heddle._store.schema import metadata


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def shared_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    """One store per backend for the whole module: a database per test is slow on PostgreSQL."""
    if request.param == "sqlite":
        s = Store(f"sqlite:///{tmp_path_factory.mktemp('store') / 'store.db'}")
        yield s
        s.close()
        return
    new_pg_database: Callable[[], AbstractContextManager[str]] = request.getfixturevalue(
        "new_pg_database"
    )
    with new_pg_database() as url:
        s = Store(url)
        try:
            yield s
        finally:
            s.close()


@pytest.fixture
def store(shared_store: Store) -> Store:
    """The module's store, emptied: every test starts from no runs, actions or cache."""
    engine = create_engine(shared_store.url)
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
    engine.dispose()
    return shared_store
