"""A task call once validated: its derived action id, its group, and its admission to a
map slot.

Shared by the controller and the worker-side controller proxy, so that ids are
derived the same way in every process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from heddle._errors import TimeoutError as HeddleTimeout
from heddle._runtime.context import ActionContext, ControllerAPI, current_group
from heddle._runtime.ids import action_id, input_hash
from heddle._runtime.spec import TaskSpec


@dataclass(slots=True)
class PreparedCall:
    """A validated call with its derived id, ready to run."""

    spec: TaskSpec
    action_id: str
    encoded_inputs: bytes
    in_hash: str
    seq: int
    parent_id: str | None
    group: str | None
    limiter: asyncio.Semaphore | None = None


def prepare_call(
    run_id: str,
    spec: TaskSpec,
    inputs: Mapping[str, Any],
    parent: ActionContext,
    limiter: asyncio.Semaphore | None = None,
) -> PreparedCall:
    """Validate and encode a call and derive its action id, the same way in every
    process: the id depends on the run, the parent, the task, the inputs and n."""
    encoded = spec.encode_inputs(inputs)
    ih = input_hash(encoded)
    n, seq = parent.next_call(spec.name, ih)
    aid = action_id(run_id, parent.action_id, spec.name, ih, n)
    return PreparedCall(spec, aid, encoded, ih, seq, parent.action_id, current_group.get(), limiter)


async def run_where_awaited(controller: ControllerAPI, call: PreparedCall) -> Any:
    """Run an async call in the group that is current where it starts running.

    The call was validated, encoded and numbered when it was made (so ids follow call
    order and bad inputs raise at the call), but like Flyte we take its group from where
    the coroutine is awaited, or handed to ``asyncio.gather``/``create_task``: a call
    made before ``with heddle.group(...)`` and awaited inside it belongs to the group.
    """
    call.group = current_group.get()
    return await controller.run(call)


async def admit(call: PreparedCall) -> None:
    """Wait for the call's concurrency slot (heddle.map), within its max queued time."""
    assert call.limiter is not None
    timeout = call.spec.timeout.queued_seconds if call.spec.timeout else None
    if timeout is None:
        await call.limiter.acquire()
        return
    try:
        async with asyncio.timeout(timeout):
            await call.limiter.acquire()
    except TimeoutError:
        raise HeddleTimeout(call.spec.name, timeout, phase="queued") from None
