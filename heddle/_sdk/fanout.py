"""heddle.map: run a task over many inputs at once, optionally with a concurrency limit.

Fixed parameters come from a ``functools.partial`` of the task (as in Flyte 2) or as
keywords to ``heddle.map``; the iterables fill the parameters left, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Generator, Iterable, Iterator, Mapping
from typing import Any

from heddle._errors import ConfigError, HeddleError, InputError
from heddle._runtime.context import current_action
from heddle._sdk.group import check_group_name, group
from heddle._sdk.task import Task


def _unwrap(task: Any) -> tuple[Task[Any, Any], tuple[Any, ...], dict[str, Any]]:
    """The task, and the arguments a partial fixes (nested partials are flattened)."""
    if isinstance(task, functools.partial):
        target = task.func
        if isinstance(target, Task):
            return target, tuple(task.args), dict(task.keywords)
    elif isinstance(task, Task):
        return task, (), {}
    raise HeddleError(f"heddle.map needs a task or a functools.partial of one, got {task!r}")


class _Binder:
    """Turns one item of each iterable into a call's inputs: the fixed parameters,
    the defaults of those left out, and the items for the parameters left, in order.

    Everything that can be checked without the items is checked when heddle.map is
    called, so a bad partial or keyword fails before any child is recorded.
    """

    def __init__(
        self, task: Task[Any, Any], args: tuple[Any, ...], kwargs: Mapping[str, Any], width: int
    ) -> None:
        try:
            bound = task.signature.bind_partial(*args, **kwargs)
        except TypeError as exc:
            raise InputError(task.name, f"heddle.map: {exc}") from None
        fixed = dict(bound.arguments)
        left = [p for p in task.signature.parameters.values() if p.name not in fixed]
        if width > len(left):
            names = ", ".join(p.name for p in left) or "none"
            raise InputError(
                task.name,
                f"heddle.map got {width} iterables but there are only {len(left)} "
                f"parameters left to map over ({names})",
            )
        for p in left[width:]:
            if p.default is p.empty:
                raise InputError(
                    task.name,
                    "missing a value: heddle.map has no iterable left for it; fix it with "
                    "functools.partial or a keyword, or pass one more iterable",
                    p.name,
                )
            fixed[p.name] = p.default
        self.fixed = fixed
        self.mapped = tuple(p.name for p in left[:width])

    def inputs(self, items: tuple[Any, ...]) -> dict[str, Any]:
        out = dict(self.fixed)
        out.update(zip(self.mapped, items, strict=True))
        return out


class MapCall:
    """The result of ``heddle.map(...)``: await it in async code, iterate it in sync code.

    Children are submitted in input order (so their ids are stable) and run
    concurrently; results come back in input order.
    """

    def __init__(
        self,
        task: Task[Any, Any] | functools.partial[Any],
        iterables: tuple[Iterable[Any], ...],
        concurrency: int | None,
        return_exceptions: bool,
        group_name: str | None = None,
        fixed: Mapping[str, Any] | None = None,
    ) -> None:
        target, args, kwargs = _unwrap(task)
        if concurrency is not None and (
            isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
        ):
            raise ConfigError(f"concurrency must be a positive integer, got {concurrency!r}")
        if not iterables:
            raise HeddleError("heddle.map needs at least one iterable of inputs")
        if group_name is not None:
            check_group_name(group_name)
        twice = sorted(set(kwargs) & set(fixed or {}))
        if twice:
            raise InputError(
                target.name,
                f"{', '.join(repr(n) for n in twice)} is fixed twice (in the partial and as a "
                "keyword to heddle.map)",
            )
        self.task = target
        self.iterables = iterables
        self.concurrency = concurrency
        self.return_exceptions = return_exceptions
        self.group_name = group_name
        self._binder = _Binder(target, args, {**kwargs, **(fixed or {})}, len(iterables))

    async def _run(self) -> list[Any]:
        ctx = current_action.get()
        columns = [list(it) for it in self.iterables]
        if len({len(c) for c in columns}) > 1:
            raise HeddleError(
                f"heddle.map({self.task.name}): the iterables have different lengths "
                f"({', '.join(str(len(c)) for c in columns)}); each call takes one item of each"
            )
        inputs = [self._binder.inputs(items) for items in zip(*columns, strict=True)]
        if ctx is None:
            return await self._run_plain(inputs)
        controller = ctx.controller
        limiter = asyncio.Semaphore(self.concurrency) if self.concurrency else None
        with group(self.group_name) if self.group_name else contextlib.nullcontext():
            calls = [controller.prepare(self.task.spec, one, ctx, limiter) for one in inputs]
            return await asyncio.gather(
                *(controller.run(c) for c in calls), return_exceptions=self.return_exceptions
            )

    async def _run_plain(self, inputs: list[dict[str, Any]]) -> list[Any]:
        # Outside a run, map just calls the function (concurrently for async ones).
        sem = asyncio.Semaphore(self.concurrency or len(inputs) or 1)

        async def one(kwargs: dict[str, Any]) -> Any:
            async with sem:
                return await self.task.aio(**kwargs)

        return await asyncio.gather(
            *(one(i) for i in inputs), return_exceptions=self.return_exceptions
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
    task: Task[Any, Any] | functools.partial[Any],
    *iterables: Iterable[Any],
    concurrency: int | None = None,
    return_exceptions: bool = False,
    group_name: str | None = None,
    **fixed: Any,
) -> MapCall:
    """Call ``task`` once per item (zipping several iterables like the builtin ``map``).

    ``task`` may be a ``functools.partial`` of a task, and keywords fix more parameters:
    ``heddle.map(fit, lrs, data=df)`` calls ``fit(lr, data=df)`` for each ``lr``. The
    iterables fill the parameters not fixed, in order. ``group_name`` puts the children
    in that group (inside the current one), like Flyte 2's ``flyte.map``. Fixed
    parameters named like these options go through the partial.
    """
    return MapCall(task, iterables, concurrency, return_exceptions, group_name, fixed)
