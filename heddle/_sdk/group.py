"""heddle.group: name a set of child actions so that views can fold them together."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from heddle._errors import ConfigError
from heddle._runtime.context import current_group
from heddle._types.storable import text_problem

MAX_GROUP_NAME = 200  # the store's column width, the same on every backend


def check_group_name(name: object) -> None:
    """ConfigError unless ``name`` can name a group."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"group name must be a non-empty string, got {name!r}")
    problem = text_problem(name)
    if problem is not None:
        raise ConfigError(f"group name {name!r:.60} {problem}")


@contextmanager
def group(name: str) -> Iterator[None]:
    """Actions called inside ``with heddle.group(name):`` are recorded in that group.

    An async call belongs to the group current where it is awaited (or handed to
    ``asyncio.gather``/``create_task``), as in Flyte: a coroutine made before the block
    and awaited inside it is in the group, one made inside and awaited after it is not.
    Groups nest: the inner name is joined to the outer one with '/'.
    """
    check_group_name(name)
    outer = current_group.get()
    full = f"{outer}/{name}" if outer else name
    if len(full) > MAX_GROUP_NAME:
        raise ConfigError(
            f"group name {full[:40]!r}... is {len(full)} characters; the limit is {MAX_GROUP_NAME}"
        )
    token = current_group.set(full)
    try:
        yield
    finally:
        current_group.reset(token)
