"""TaskEnvironment: a named bundle of defaults that tasks are registered on."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from heddle._errors import ConfigError
from heddle._runtime.spec import Cache, OOMRetry, Resources, RetryStrategy, Secret, Timeout
from heddle._types.storable import text_problem

if TYPE_CHECKING:
    from heddle._sdk.task import Task

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class TaskEnvironment:
    """Defaults shared by the tasks registered on it with ``@env.task``.

    ``resources``, ``env_vars``, ``cache``, ``retries`` and ``timeout`` apply to every
    task of the environment unless the task (or an ``override``) says otherwise.
    """

    name: str
    resources: Resources = field(default_factory=Resources)
    env_vars: Mapping[str, str] = field(default_factory=dict)
    cache: Cache | str | bool | None = None
    retries: int | RetryStrategy | None = None
    timeout: float | timedelta | Timeout | None = None
    image: Any = None
    secrets: tuple[Secret, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"TaskEnvironment name must be a non-empty string, got {self.name!r}")
        problem = text_problem(self.name)
        if problem is not None:
            raise ConfigError(f"TaskEnvironment name {self.name!r:.60} {problem}")
        if not isinstance(self.resources, Resources):
            raise ConfigError(f"resources must be heddle.Resources(...), got {self.resources!r}")
        check_env_vars(self.env_vars)

    def clone_with(self, **changes: Any) -> TaskEnvironment:
        return replace(self, **changes)

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        retries: int | RetryStrategy | None = None,
        timeout: float | timedelta | Timeout | None = None,
        cache: Cache | str | bool | None = None,
        resources: Resources | None = None,
        env_vars: Mapping[str, str] | None = None,
        oom: OOMRetry | None = None,
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(
        self,
        fn: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        retries: int | RetryStrategy | None = None,
        timeout: float | timedelta | Timeout | None = None,
        cache: Cache | str | bool | None = None,
        resources: Resources | None = None,
        env_vars: Mapping[str, str] | None = None,
        oom: OOMRetry | None = None,
    ) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
        """Register a function as a task: ``@env.task`` or ``@env.task(retries=3, ...)``."""
        from heddle._sdk.task import Task, TaskOptions

        def make(f: Callable[P, R]) -> Task[P, R]:
            options = TaskOptions(
                name=name,
                retries=retries if retries is not None else self.retries,
                timeout=timeout if timeout is not None else self.timeout,
                cache=cache if cache is not None else self.cache,
                resources=resources if resources is not None else self.resources,
                env_vars={**self.env_vars, **(env_vars or {})},
                oom=oom,
            )
            return Task(f, self, options)

        if fn is not None:
            return make(fn)
        return make


def check_env_vars(env_vars: Mapping[str, str]) -> None:
    """Refuse variables no process environment can hold (a NUL, '=' in a name), which
    would otherwise fail only when a worker starts the task."""
    bad = [k for k, v in dict(env_vars).items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise ConfigError(f"env_vars must map str to str; bad entries: {bad!r}")
    for k, v in env_vars.items():
        if not k or "=" in k or "\x00" in k:
            raise ConfigError(f"env_vars: {k!r:.60} is not an environment variable name")
        if "\x00" in v:
            raise ConfigError(f"env_vars: the value of {k!r:.60} contains a NUL character")
