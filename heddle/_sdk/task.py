"""Task: a typed Python function registered on a TaskEnvironment.

Inside a run, calling a task submits a child action; outside any run it just
calls the function, so tasks stay unit-testable.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import textwrap
import typing
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from heddle._errors import ConfigError, HeddleError
from heddle._runtime.context import current_action
from heddle._runtime.ids import source_version
from heddle._runtime.spec import (
    Cache,
    Resources,
    RetryStrategy,
    TaskSpec,
    Timeout,
    to_cache,
    to_retry,
    to_timeout,
)
from heddle._sdk.signature import CallCodec

if TYPE_CHECKING:
    from heddle._sdk.environment import TaskEnvironment

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class TaskOptions:
    name: str | None = None
    retries: int | RetryStrategy | None = None
    timeout: float | timedelta | Timeout | None = None
    cache: Cache | str | bool | None = None
    resources: Resources = field(default_factory=Resources)
    env_vars: Mapping[str, str] = field(default_factory=dict)


def _source_of(fn: Callable[..., Any]) -> str:
    try:
        return textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        return repr(code.co_code) + repr(code.co_consts) if code is not None else repr(fn)


class Task(Generic[P, R]):
    """A registered task. Call it like the function it wraps."""

    def __init__(self, fn: Callable[P, R], env: TaskEnvironment, options: TaskOptions) -> None:
        if not callable(fn):
            raise ConfigError(f"@env.task needs a function, got {fn!r}")
        self.fn = fn
        self.env = env
        self.options = options
        functools.update_wrapper(self, fn)
        self.name = options.name or f"{env.name}.{fn.__name__}"
        self.is_async = inspect.iscoroutinefunction(fn)
        self.codec = CallCodec(fn, self.name)
        self.signature = self.codec.signature
        self._param_names = self.codec.param_names
        self.cache = to_cache(options.cache)
        if self.cache is not None:
            unknown = [n for n in self.cache.ignored_inputs if n not in self._param_names]
            if unknown:
                raise ConfigError(
                    f"task {self.name!r}: ignored_inputs {unknown} are not parameters "
                    f"(parameters: {list(self._param_names)})"
                )
        self.retry = to_retry(options.retries)
        self.timeout = to_timeout(options.timeout)
        self.resources = options.resources
        self.version = source_version(
            _source_of(fn),
            self.name,
            repr(self.resources),
            repr(sorted(options.env_vars.items())),
            repr(env.image),
        )
        self.spec = TaskSpec(
            name=self.name,
            version=self.version,
            fn=fn,
            is_async=self.is_async,
            param_names=self._param_names,
            encode_inputs=self.codec.encode_inputs,
            decode_inputs=self.codec.decode_inputs,
            encode_output=self.codec.encode_output,
            decode_output=self.codec.decode_output,
            retry=self.retry,
            timeout=self.timeout,
            cache=self.cache,
            resources=self.resources,
            env_vars=dict(options.env_vars),
            environment=env.name,
        )

    def __repr__(self) -> str:
        return f"<heddle task {self.name} v{self.version}>"

    def bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Match call arguments to parameters, with defaults; InputError if they don't fit."""
        return self.codec.bind(args, kwargs)

    # -- calling ---------------------------------------------------------------------

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        ctx = current_action.get()
        if ctx is None:
            return self.fn(*args, **kwargs)
        controller = ctx.controller
        call = controller.prepare(self.spec, self.bind(args, kwargs), ctx)
        if self.is_async:
            return controller.run(call)  # type: ignore[return-value]
        return typing.cast(R, controller.run_blocking(call))

    def aio(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[Any]:
        """Call the task from async code, whether its function is sync or async."""
        ctx = current_action.get()
        if ctx is None:
            if self.is_async:
                return typing.cast(Awaitable[Any], self.fn(*args, **kwargs))
            return asyncio.to_thread(self.fn, *args, **kwargs)
        controller = ctx.controller
        if not controller.on_loop_thread():
            raise HeddleError(
                f"{self.name}.aio() must be awaited on the run's event loop, in an async task"
            )
        call = controller.prepare(self.spec, self.bind(args, kwargs), ctx)
        return controller.run(call)

    def override(
        self,
        *,
        resources: Resources | None = None,
        retries: int | RetryStrategy | None = None,
        timeout: float | timedelta | Timeout | None = None,
        cache: Cache | str | bool | None = None,
        env_vars: Mapping[str, str] | None = None,
    ) -> Task[P, R]:
        """A copy of this task with some settings changed (same name, same action ids)."""
        opts = TaskOptions(
            name=self.name,
            retries=retries if retries is not None else self.options.retries,
            timeout=timeout if timeout is not None else self.options.timeout,
            cache=cache if cache is not None else self.options.cache,
            resources=resources if resources is not None else self.options.resources,
            env_vars={**self.options.env_vars, **(env_vars or {})},
        )
        return Task(self.fn, self.env, opts)

    def __await__(self) -> Generator[Any, None, None]:
        raise HeddleError(
            f"task {self.name!r} was awaited without being called: write `await {self.fn.__name__}(...)`"
        )
