"""Query parameters shared by the routes, with the bounds that keep bad values out of
the store: a page offset a database can bind, statuses that exist."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from fastapi import Query

from heddle._store import ABORTED, FAILED, QUEUED, RUNNING, SUCCEEDED

MAX_PAGE = 500
# Far beyond any store's size, and far below what SQLite and PostgreSQL can bind
# (a 64-bit integer): a bigger offset is a client's mistake, answered with a 422.
MAX_OFFSET = 1_000_000_000

Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="rows to skip")]


class RunStatus(StrEnum):
    """A stored run status (the values the store writes)."""

    QUEUED = QUEUED
    RUNNING = RUNNING
    SUCCEEDED = SUCCEEDED
    FAILED = FAILED
    ABORTED = ABORTED
