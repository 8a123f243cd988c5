"""Stored-table handles the table codecs accept in place of a frame.

``heddle.DataFrame`` registers itself here, so the type engine (below the SDK) never
imports it: a task declared to take a pandas frame can be given a handle, as in Flyte 2.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

# A stored table: the blob keys of its Parquet parts, its row count and its columns.
TableParts = tuple[Sequence[str], int | None, Sequence[str] | None]

_handles: dict[type, Callable[[Any], TableParts]] = {}


def register_table_handle(cls: type, stored_parts: Callable[[Any], TableParts]) -> None:
    """Let table codecs accept instances of ``cls``: ``stored_parts(value)`` stores the
    value if it is not stored yet and says where its parts are."""
    _handles[cls] = stored_parts


def table_parts_of(value: Any) -> TableParts | None:
    """The stored parts of a registered handle, or None if ``value`` is not one."""
    for cls, stored_parts in _handles.items():
        if isinstance(value, cls):
            return stored_parts(value)
    return None
