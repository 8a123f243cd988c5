"""Task: a typed Python function registered on a TaskEnvironment.

Inside a run, calling a task submits a child action; outside any run it just
calls the function, so tasks stay unit-testable.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import sys
import textwrap
import typing
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

import cloudpickle

from heddle._errors import ConfigError, HeddleError
from heddle._runtime import versions
from heddle._runtime.calls import run_where_awaited
from heddle._runtime.context import current_action
from heddle._runtime.ids import source_version
from heddle._runtime.spec import (
    Cache,
    OOMRetry,
    Resources,
    RetryStrategy,
    TaskSpec,
    Timeout,
    to_cache,
    to_retry,
    to_timeout,
)
from heddle._sdk.environment import check_env_vars
from heddle._sdk.origin import SCRIPT_MODULES, code_fingerprint, dumps_by_value
from heddle._sdk.signature import CallCodec
from heddle._types.storable import text_problem

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
    oom: OOMRetry | None = None


class _LazyRef:
    """Computes a task's ref only when an executor asks for it (pickling is not free)."""

    def __init__(self, task: Task[Any, Any]) -> None:
        self._task = task

    def get(self) -> TaskRef:
        return self._task.ref


def source_of(fn: Callable[..., Any]) -> str:
    try:
        return textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        # Code with no file (stdin, -c, exec): what it compiles to, told the same way in
        # every process, so a recovered run finds its tasks' versions unchanged.
        code = getattr(fn, "__code__", None)
        return code_fingerprint(code) if code is not None else repr(fn)


@dataclass(frozen=True)
class TaskRef:
    """How another process finds a task: by module and name, or by value.

    Functions that cannot be imported by reference (defined inside a function)
    travel pickled by value; ``options`` carries any ``override(...)``.
    """

    module: str
    file: str | None
    qualname: str
    name: str
    options: TaskOptions
    pickled: bytes | None = None
    # The version computed where the task was defined (from its source): a process
    # that gets the function by value may not find the source to hash it again.
    version: str | None = None
    # For an override: the version of the task it overrides (see Task.defined_version).
    defined_version: str | None = None


_resolved: dict[tuple[str, str, str, str], Task[Any, Any]] = {}


def resolve_task(ref: TaskRef) -> Task[Any, Any]:
    """The Task a ref names, importing its module (or unpickling it) the first time."""
    key = (ref.module, ref.qualname, ref.name, repr(ref.options))
    task = _resolved.get(key)
    if task is not None:
        return task
    if ref.file:
        folder = os.path.dirname(ref.file)
        if folder not in sys.path:
            sys.path.insert(0, folder)
    base: Task[Any, Any]
    if ref.pickled is not None:
        fn, env = cloudpickle.loads(ref.pickled)
        base = Task(fn, env, ref.options, version=ref.version, defined_version=ref.defined_version)
    else:
        from heddle._sdk import program

        base = program.find_by_ref(ref.module, ref.file, ref.qualname, ref.name)
    if base.options != ref.options:
        base = Task(
            base.fn,
            base.env,
            ref.options,
            version=ref.version or base.version,
            defined_version=base.defined_version,
        )
    task = base
    _resolved[key] = task
    return task


class Task(Generic[P, R]):
    """A registered task. Call it like the function it wraps.

    ``defined_version`` is given for an override: the version of the task it overrides.
    """

    # Code fingerprints skip tasks: a caller depends on them through their versions.
    _heddle_dependency = True

    def __init__(
        self,
        fn: Callable[P, R],
        env: TaskEnvironment,
        options: TaskOptions,
        version: str | None = None,
        defined_version: str | None = None,
    ) -> None:
        if not callable(fn):
            raise ConfigError(f"@env.task needs a function, got {fn!r}")
        self.fn = fn
        self.env = env
        self.options = options
        functools.update_wrapper(self, fn)
        self.name = options.name or f"{env.name}.{fn.__name__}"
        if len(self.name) > 300:
            raise ConfigError(f"task name {self.name[:40]!r}... is longer than 300 characters")
        problem = text_problem(self.name)
        if problem is not None:
            raise ConfigError(f"task name {self.name!r:.60} {problem}")
        check_env_vars(options.env_vars)
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
        # What the task computes: its source and what its environment changes about it.
        # Resources are left out: more memory does not change an output, and recovering
        # an OOM'd run with more memory must not re-run what already succeeded.
        self.version = version or source_version(
            source_of(fn),
            self.name,
            repr(sorted(options.env_vars.items())),
            repr(env.image),
            repr(sorted(x.name for x in env.secrets)),  # names only: values never leave the driver
        )
        # The task as @env.task defined it: what a cached caller depends on. An override's
        # settings are the caller's own code, so they are left out; its definition (a new
        # one replaces the old, as a notebook cell run again does) is what is checked.
        self._overrides = defined_version
        self.defined_version = defined_version or self.version
        if defined_version is None:
            versions.define(versions.TASK, self.name, self.dependency_version)
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
            oom=options.oom,
            ref=_LazyRef(self),
            secrets=env.secrets,
            output_codec=self.codec.output_codec,
            defined_version=self.defined_version,
        )

    def __repr__(self) -> str:
        return f"<heddle task {self.name} v{self.version}>"

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle what defines the task, not its derived codecs and spec.
        return (Task, (self.fn, self.env, self.options, self.version, self._overrides))

    def dependency_version(self) -> str:
        """The version a cached caller records for this task: its source and environment,
        and the user code it uses (helpers, classes, constants, its input defaults)."""
        return versions.dependency_version(self.defined_version, self.fn)

    @functools.cached_property
    def ref(self) -> TaskRef:
        fn = self.fn
        try:
            file: str | None = os.path.abspath(inspect.getfile(fn))
        except (TypeError, OSError):
            file = None
        pickled = None
        # Functions of a script (__main__) or of a local scope travel by value, so a
        # worker never re-imports — and so never re-runs — the user's script.
        if "<locals>" in fn.__qualname__ or file is None or fn.__module__ in SCRIPT_MODULES:
            pickled = dumps_by_value((fn, self.env))
        return TaskRef(
            fn.__module__,
            file,
            fn.__qualname__,
            self.name,
            self.options,
            pickled,
            self.version,
            self._overrides,
        )

    def bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Match call arguments to parameters, with defaults; InputError if they don't fit."""
        return self.codec.bind(args, kwargs)

    # -- calling ---------------------------------------------------------------------

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        ctx = current_action.get()
        if ctx is None:
            return self.fn(*args, **kwargs)
        controller = ctx.controller
        # Validated and numbered now, in call order; an async call's group is the one
        # current where it is awaited (run_where_awaited).
        call = controller.prepare(self.spec, self.bind(args, kwargs), ctx)
        if self.is_async:
            return run_where_awaited(controller, call)  # type: ignore[return-value]
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
        return run_where_awaited(controller, call)

    def override(
        self,
        *,
        resources: Resources | None = None,
        retries: int | RetryStrategy | None = None,
        timeout: float | timedelta | Timeout | None = None,
        cache: Cache | str | bool | None = None,
        env_vars: Mapping[str, str] | None = None,
        oom: OOMRetry | None = None,
    ) -> Task[P, R]:
        """A copy of this task with some settings changed (same name, same action ids)."""
        opts = TaskOptions(
            name=self.name,
            retries=retries if retries is not None else self.options.retries,
            timeout=timeout if timeout is not None else self.options.timeout,
            cache=cache if cache is not None else self.options.cache,
            resources=resources if resources is not None else self.options.resources,
            env_vars={**self.options.env_vars, **(env_vars or {})},
            oom=oom if oom is not None else self.options.oom,
        )
        # Same code, same version — unless the override changes its environment.
        same_env = dict(opts.env_vars) == dict(self.options.env_vars)
        return Task(
            self.fn,
            self.env,
            opts,
            version=self.version if same_env else None,
            defined_version=self.defined_version,
        )

    def __await__(self) -> Generator[Any, None, None]:
        raise HeddleError(
            f"task {self.name!r} was awaited without being called: write `await {self.fn.__name__}(...)`"
        )
