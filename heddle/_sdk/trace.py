"""heddle.trace: record a step inside a task so that recovery replays it instead of re-running it.

Use it for expensive or non-deterministic calls (an LLM, an external API): the
recorded output is returned on replay, so the task sees the same value again.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from heddle._runtime import versions
from heddle._runtime.context import current_action
from heddle._runtime.ids import source_version
from heddle._sdk.origin import module_identity
from heddle._sdk.signature import CallCodec
from heddle._sdk.task import source_of

P = ParamSpec("P")
R = TypeVar("R")


class Traced:
    """A function whose calls inside a run are recorded and replayed.

    An object of an importable class rather than a closure: a script's tasks travel
    to worker processes pickled by value, and this pickles as "trace(fn, name)".
    Its name is fixed where it is defined and travels with it: a worker gets a script's
    function by value, away from the script's __main__ and maybe from its file.
    """

    # Code fingerprints skip traces: a caller depends on them through their versions.
    _heddle_dependency = True

    def __init__(
        self, fn: Callable[..., Any], version: str | None = None, name: str | None = None
    ) -> None:
        self.fn = fn
        # Fixed where it is defined and kept when pickled (see module_identity).
        self.name = name or f"{module_identity(fn)}.{fn.__qualname__}"
        self.codec = CallCodec(fn, f"trace {fn.__qualname__}")
        # Computed where the trace is defined; a worker that gets it by value keeps it.
        self.version = version or source_version(source_of(fn), self.name)
        functools.update_wrapper(self, fn)
        versions.define(versions.TRACE, self.name, self.dependency_version)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Traced, (self.fn, self.version, self.name))

    def dependency_version(self) -> str:
        """The version a cached caller records for this trace (see Task.dependency_version);
        also the version its recorded steps carry."""
        return versions.dependency_version(self.version, self.fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if inspect.iscoroutinefunction(self.fn):
            return self._call_async(args, kwargs)
        return self._call_sync(args, kwargs)

    async def _call_async(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        ctx = current_action.get()
        if ctx is None:
            return await self.fn(*args, **kwargs)
        c, codec = ctx.controller, self.codec
        state, out = c.begin_step(
            ctx,
            versions.TRACE,
            self.name,
            codec.encode_inputs(codec.bind(args, kwargs)),
            self.dependency_version(),
        )
        if out is not None:
            return codec.decode_output(out)
        c.note_step(state)
        try:
            result = await self.fn(*args, **kwargs)
            out = codec.encode_output(result)
        except Exception as exc:
            await c.record_step(state, exc=exc)
            raise
        await c.record_step(state, out)
        return codec.decode_output(out)

    def _call_sync(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        ctx = current_action.get()
        if ctx is None:
            return self.fn(*args, **kwargs)
        c, codec = ctx.controller, self.codec
        state, out = c.begin_step(
            ctx,
            versions.TRACE,
            self.name,
            codec.encode_inputs(codec.bind(args, kwargs)),
            self.dependency_version(),
        )
        if out is not None:
            return codec.decode_output(out)
        try:
            result = self.fn(*args, **kwargs)
            out = codec.encode_output(result)
        except Exception as exc:
            c.record_step_sync(state, exc=exc)
            raise
        c.record_step_sync(state, out)
        return codec.decode_output(out)


def trace(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorate a sync or async function whose result should be recorded and replayed."""
    return Traced(fn)
