"""The context of the running action, carried in a contextvar.

Task calls read it to learn their parent, derive their ids and find the
controller; asyncio tasks and worker threads inherit it.
"""

from __future__ import annotations

import io
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Awaitable, Callable, Mapping

    from heddle._runtime.calls import PreparedCall
    from heddle._runtime.journal import ActionState
    from heddle._runtime.spec import TaskSpec


class ControllerAPI(Protocol):
    """What task code may ask of the controller: the in-process Controller, or the
    RemoteController that forwards to it from a worker process."""

    run_id: str
    aborting: bool

    def prepare(
        self,
        spec: TaskSpec,
        inputs: Mapping[str, Any],
        parent: ActionContext,
        limiter: asyncio.Semaphore | None = None,
    ) -> PreparedCall: ...

    async def run(self, call: PreparedCall) -> Any: ...

    async def run_encoded(self, call: PreparedCall) -> bytes: ...

    def run_blocking(self, call: PreparedCall) -> Any: ...

    def begin_step(
        self,
        parent: ActionContext,
        kind: str,
        name: str,
        encoded_inputs: bytes,
        version: str = "",
    ) -> tuple[ActionState, bytes | None]: ...

    def step_prior_output(self, state: ActionState) -> bytes | None: ...

    def note_step(self, state: ActionState) -> None: ...

    async def record_step(
        self,
        state: ActionState,
        out: bytes | None = None,
        exc: BaseException | None = None,
        *,
        final: bool = True,
    ) -> None: ...

    def record_step_sync(
        self,
        state: ActionState,
        out: bytes | None = None,
        exc: BaseException | None = None,
        *,
        final: bool = True,
    ) -> None: ...

    def call_on_loop(self, make: Callable[[], Awaitable[Any]]) -> Any: ...

    def on_loop_thread(self) -> bool: ...


@dataclass(slots=True)
class ActionContext:
    """One running action as its body sees it."""

    controller: ControllerAPI
    run_id: str
    action_id: str
    task_name: str
    # How many calls with the same (kind:name, input hash) this action has made so far.
    _counts: dict[tuple[str, str], int] = field(default_factory=dict)
    _seq: int = 0
    # What the body printed, when the inline executor captures it (made on first write).
    log: io.StringIO | None = None

    def next_call(self, key: str, in_hash: str) -> tuple[int, int]:
        """The call number n for this (name, inputs) and the overall call sequence number."""
        k = (key, in_hash)
        n = self._counts.get(k, 0)
        self._counts[k] = n + 1
        self._seq += 1
        return n, self._seq


current_action: ContextVar[ActionContext | None] = ContextVar("heddle_action", default=None)
current_group: ContextVar[str | None] = ContextVar("heddle_group", default=None)
