"""The context of the running action, carried in a contextvar.

Task calls read it to learn their parent, derive their ids and find the
controller; asyncio tasks and worker threads inherit it.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from heddle._runtime.controller import Controller


@dataclass(slots=True)
class ActionContext:
    """One running action as its body sees it."""

    controller: Controller
    run_id: str
    action_id: str
    task_name: str
    # How many calls with the same (kind:name, input hash) this action has made so far.
    _counts: dict[tuple[str, str], int] = field(default_factory=dict)
    _seq: int = 0

    def next_call(self, key: str, in_hash: str) -> tuple[int, int]:
        """The call number n for this (name, inputs) and the overall call sequence number."""
        k = (key, in_hash)
        n = self._counts.get(k, 0)
        self._counts[k] = n + 1
        self._seq += 1
        return n, self._seq


current_action: ContextVar[ActionContext | None] = ContextVar("heddle_action", default=None)
current_group: ContextVar[str | None] = ContextVar("heddle_group", default=None)
