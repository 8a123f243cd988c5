"""heddle.trace: record a step inside a task so that recovery replays it instead of re-running it.

Use it for expensive or non-deterministic calls (an LLM, an external API): the
recorded output is returned on replay, so the task sees the same value again.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from heddle._runtime import versions
from heddle._runtime.context import current_action
from heddle._runtime.ids import source_version
from heddle._sdk.signature import CallCodec
from heddle._sdk.task import source_of

P = ParamSpec("P")
R = TypeVar("R")


def _module_of(fn: Callable[..., Any]) -> str:
    """A module name that is the same wherever the function runs.

    A script is "__main__" when started, "__mp_main__" in a worker, and named after
    its file when ``heddle recover`` loads it: name it after its file every time,
    so a trace's id does not depend on how its code was loaded.
    """
    module = fn.__module__
    if module in ("__main__", "__mp_main__") or module.startswith("heddle_program"):
        code = getattr(fn, "__code__", None)
        if code is not None:
            return Path(code.co_filename).stem
    return module


class Traced:
    """A function whose calls inside a run are recorded and replayed.

    An object of an importable class rather than a closure: a script's tasks travel
    to worker processes pickled by value, and this pickles as "trace(fn)".
    """

    # Code fingerprints skip traces: a caller depends on them through their versions.
    _heddle_dependency = True

    def __init__(
        self, fn: Callable[..., Any], version: str | None = None, name: str | None = None
    ) -> None:
        self.fn = fn
        # Kept when pickled: cloudpickle renames a by-value function's file "<dynamic-code>".
        self.name = name or f"{_module_of(fn)}.{fn.__qualname__}"
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
