"""A driver's hold on its run: its writes fenced by the run's generation, its work
stopped at once when another process took the run over, and the failures after
which it must record nothing more about the run.
"""

from __future__ import annotations

import asyncio
from typing import Any

from heddle._errors import RunTakenOverError, StoreUnavailableError
from heddle._runtime.controller import Controller


def hold(controller: Controller, run_id: str, generation: int, root: asyncio.Future[Any]) -> None:
    """Fence the run's journal at ``generation``, and cancel ``root`` (the run's work,
    with every worker it holds) as soon as the journal finds the run taken over."""
    controller.journal.fence(run_id, generation)

    def stop(exc: BaseException) -> None:
        if isinstance(exc, RunTakenOverError) and not root.done():
            controller.aborting = True  # our own cancel, not one from outside (Ctrl-C)
            root.cancel()

    controller.journal.on_failure(stop)


def taken_over(controller: Controller, exc: RunTakenOverError) -> None:
    """The driver learnt (from its heartbeat) that another process took the run over."""
    controller.journal.fail(exc)


def must_not_record(controller: Controller) -> BaseException | None:
    """Why the driver must write nothing more about its run, or None.

    Taken over: the run is another process's now. Store unreachable past the outage
    limit: the run stays "running" with a lapsed lease, which is what `heddle recover`
    resumes (waiting longer to record its end would only delay saying so).
    """
    failed = controller.journal.failed
    if isinstance(failed, (RunTakenOverError, StoreUnavailableError)):
        return failed
    return None
