"""heddle.map: run a task over many inputs at once, optionally with a concurrency limit."""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Iterable, Iterator
from typing import Any

from heddle._errors import ConfigError, HeddleError
from heddle._runtime.context import current_action
from heddle._sdk.task import Task


class MapCall:
    """The result of ``heddle.map(...)``: await it in async code, iterate it in sync code.

    Children are submitted in input order (so their ids are stable) and run
    concurrently; results come back in input order.
    """

    def __init__(
        self,
        task: Task[Any, Any],
        iterables: tuple[Iterable[Any], ...],
        concurrency: int | None,
        return_exceptions: bool,
    ) -> None:
        if not isinstance(task, Task):
            raise HeddleError(f"heddle.map needs a task, got {task!r}")
        if concurrency is not None and (
            isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
        ):
            raise ConfigError(f"concurrency must be a positive integer, got {concurrency!r}")
        if not iterables:
            raise HeddleError("heddle.map needs at least one iterable of inputs")
        self.task = task
        self.iterables = iterables
        self.concurrency = concurrency
        self.return_exceptions = return_exceptions

    async def _run(self) -> list[Any]:
        ctx = current_action.get()
        columns = [list(it) for it in self.iterables]
        if len({len(c) for c in columns}) > 1:
            raise HeddleError(
                f"heddle.map({self.task.name}): the iterables have different lengths "
                f"({', '.join(str(len(c)) for c in columns)}); each call takes one item of each"
            )
        args_list = list(zip(*columns, strict=True))
        if ctx is None:
            return await self._run_plain(args_list)
        controller = ctx.controller
        limiter = asyncio.Semaphore(self.concurrency) if self.concurrency else None
        calls = [
            controller.prepare(self.task.spec, self.task.bind(args, {}), ctx, limiter)
            for args in args_list
        ]
        return await asyncio.gather(
            *(controller.run(c) for c in calls), return_exceptions=self.return_exceptions
        )

    async def _run_plain(self, args_list: list[tuple[Any, ...]]) -> list[Any]:
        # Outside a run, map just calls the function (concurrently for async ones).
        sem = asyncio.Semaphore(self.concurrency or len(args_list) or 1)

        async def one(args: tuple[Any, ...]) -> Any:
            async with sem:
                return await self.task.aio(*args)

        return await asyncio.gather(
            *(one(a) for a in args_list), return_exceptions=self.return_exceptions
        )

    def __await__(self) -> Generator[Any, None, list[Any]]:
        return self._run().__await__()

    def __iter__(self) -> Iterator[Any]:
        ctx = current_action.get()
        if ctx is None:
            return iter(asyncio.run(self._run()))
        controller = ctx.controller
        if controller.on_loop_thread():
            raise HeddleError("in async code, write `await heddle.map(...)`")
        return iter(controller.call_on_loop(self._run))


def map(
    task: Task[Any, Any],
    *iterables: Iterable[Any],
    concurrency: int | None = None,
    return_exceptions: bool = False,
) -> MapCall:
    """Call ``task`` once per item (zipping several iterables like the builtin ``map``)."""
    return MapCall(task, iterables, concurrency, return_exceptions)
