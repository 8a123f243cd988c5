"""What the runtime needs to know about a task: its spec and its policies.

Resources, retries, timeouts and caching are plain frozen dataclasses, validated
when they are made so that a bad value fails at decoration time, not mid-run.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any, Literal

from heddle._errors import ConfigError

_MEMORY_UNITS = {
    "": 1,
    "k": 10**3,
    "m": 10**6,
    "g": 10**9,
    "t": 10**12,
    "ki": 2**10,
    "mi": 2**20,
    "gi": 2**30,
    "ti": 2**40,
}


# Bounds on requests: past them a number is a mistake (or nan/inf in disguise), and
# schedulers doing arithmetic on it would lose capacity to float rounding.
MAX_CPU = 1_000_000  # cores
MAX_MEMORY = 2**60  # bytes (1 EiB)
MAX_GPU = 4096
# Longer than any run should wait, and below what thread waits accept (TIMEOUT_MAX).
MAX_SECONDS = 10 * 365 * 86400.0


def _finite(value: object) -> float | None:
    """``value`` as a finite float, or None when it is not a real number or not finite."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int past the float range
        return None
    return number if math.isfinite(number) else None


def parse_memory(value: int | float | str) -> int:
    """Bytes from an int or a Kubernetes-style quantity such as '512Mi' or '4G'."""
    if isinstance(value, bool):
        raise ConfigError(f"memory must be bytes or a quantity like '4Gi', got {value!r}")
    if isinstance(value, float):
        # A float is taken only when it is a whole number of bytes (4e9, not 2.5 or nan).
        if not value.is_integer() or math.copysign(1.0, value) < 0:
            raise ConfigError(
                f"memory must be a whole, non-negative number of bytes, got {value!r}"
            )
        value = int(value)
    if isinstance(value, int):
        size = value
        if size < 0:
            raise ConfigError(f"memory must not be negative, got {value}")
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]i?)?[bB]?\s*", str(value))
        if not m:
            raise ConfigError(f"memory {value!r} is not a quantity like '512Mi', '4Gi' or '2G'")
        unit = (m.group(2) or "").lower()
        # Decimal arithmetic: a long digit string must not turn into inf on the way.
        size = int(Decimal(m.group(1)) * _MEMORY_UNITS[unit])
    if size > MAX_MEMORY:
        raise ConfigError(f"memory must be at most 1Ei ({MAX_MEMORY} bytes), got {value!r:.60}")
    return size


def parse_cpu(value: float | int | str) -> float:
    """Cores from a number or a Kubernetes-style quantity such as '500m'."""
    text = str(value)
    try:
        cores = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except (ValueError, OverflowError):
        raise ConfigError(
            f"cpu {value!r:.60} is not a number of cores such as 2 or '500m'"
        ) from None
    if isinstance(value, bool) or not math.isfinite(cores) or cores <= 0:
        raise ConfigError(f"cpu must be a positive, finite number of cores, got {value!r:.60}")
    if cores > MAX_CPU:
        raise ConfigError(f"cpu must be at most {MAX_CPU} cores, got {value!r:.60}")
    return cores


def seconds_of(value: float | int | timedelta | None, what: str) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else _finite(value)
    if seconds is None or not 0 < seconds <= MAX_SECONDS:
        raise ConfigError(
            f"{what} must be a positive, finite number of seconds (at most 10 years) "
            f"or a timedelta, got {value!r:.60}"
        )
    return seconds


@dataclass(frozen=True)
class Resources:
    """What one action of a task needs: cpu cores, memory and GPUs.

    ``accelerator`` (e.g. "A100") and ``custom`` resources (name -> amount) place the
    action on a cluster node that has them (the ray executor); one machine's
    executors schedule by cpu, memory and GPU count only.
    """

    cpu: float | int | str | None = None
    memory: int | str | None = None
    gpu: int | None = None
    accelerator: str | None = None
    custom: tuple[tuple[str, float], ...] | dict[str, float] | None = None

    def __post_init__(self) -> None:
        if self.cpu is not None:
            parse_cpu(self.cpu)
        if self.memory is not None:
            parse_memory(self.memory)
        if self.gpu is not None and (
            isinstance(self.gpu, bool)
            or not isinstance(self.gpu, int)
            or not 0 <= self.gpu <= MAX_GPU
        ):
            raise ConfigError(
                f"gpu must be a whole number of GPUs from 0 to {MAX_GPU}, got {self.gpu!r:.60}"
            )
        if self.accelerator is not None and (
            not isinstance(self.accelerator, str) or not self.accelerator.strip()
        ):
            raise ConfigError(
                f"accelerator must be a name such as 'A100', got {self.accelerator!r}"
            )
        if self.custom is not None:
            items = dict(self.custom)
            for name, amount in items.items():
                if not isinstance(name, str) or not name:
                    raise ConfigError(f"custom resource names must be strings, got {name!r}")
                number = _finite(amount)
                if number is None or number <= 0:
                    raise ConfigError(
                        f"custom resource {name!r} needs a positive, finite amount, "
                        f"got {amount!r:.60}"
                    )
            # Stored sorted, as pairs: Resources stays hashable and compares by content.
            object.__setattr__(self, "custom", tuple(sorted(items.items())))

    @property
    def cpu_cores(self) -> float | None:
        return None if self.cpu is None else parse_cpu(self.cpu)

    @property
    def memory_bytes(self) -> int | None:
        return None if self.memory is None else parse_memory(self.memory)


@dataclass(frozen=True)
class RetryStrategy:
    """Retry a failed action up to ``count`` more times, waiting ``backoff`` seconds
    before the first retry and multiplying the wait by ``backoff_factor`` each time."""

    count: int
    backoff: float | timedelta = 0.0
    backoff_factor: float = 2.0
    max_backoff: float = 300.0

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0:
            raise ConfigError(f"retries must be a non-negative integer, got {self.count!r}")
        b = (
            self.backoff.total_seconds()
            if isinstance(self.backoff, timedelta)
            else _finite(self.backoff)
        )
        factor = _finite(self.backoff_factor)
        cap = _finite(self.max_backoff)
        if b is None or b < 0 or factor is None or factor < 1:
            raise ConfigError(
                "backoff must be a finite number of seconds >= 0 and backoff_factor a finite "
                f"number >= 1, got backoff={self.backoff!r:.40}, "
                f"backoff_factor={self.backoff_factor!r:.40}"
            )
        if cap is None or cap < 0:
            raise ConfigError(
                f"max_backoff must be a finite number of seconds >= 0, got {self.max_backoff!r:.40}"
            )

    def delay(self, retry_number: int) -> float:
        """Seconds to wait before retry ``retry_number`` (1-based)."""
        b = (
            self.backoff.total_seconds()
            if isinstance(self.backoff, timedelta)
            else float(self.backoff)
        )
        try:
            grown = b * self.backoff_factor ** (retry_number - 1)
        except OverflowError:  # many retries with a large factor: past the cap anyway
            return float(self.max_backoff)
        return min(float(self.max_backoff), grown)


@dataclass(frozen=True)
class Timeout:
    """Limits on how long an action may run, and wait in the queue before it starts."""

    max_runtime: float | timedelta | None = None
    max_queued_time: float | timedelta | None = None

    def __post_init__(self) -> None:
        seconds_of(self.max_runtime, "max_runtime")
        seconds_of(self.max_queued_time, "max_queued_time")

    @property
    def runtime_seconds(self) -> float | None:
        return seconds_of(self.max_runtime, "max_runtime")

    @property
    def queued_seconds(self) -> float | None:
        return seconds_of(self.max_queued_time, "max_queued_time")


CacheBehavior = Literal["auto", "override", "disable"]


@dataclass(frozen=True)
class Cache:
    """Caching of a task's outputs across runs.

    ``behavior``: "auto" reuses a stored output for the same inputs, "override"
    always recomputes and stores, "disable" turns caching off. ``version`` replaces
    the task's source hash in the key (bump it to invalidate); ``ignored_inputs``
    are left out of the key.
    """

    behavior: CacheBehavior = "auto"
    version: str | None = None
    ignored_inputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.behavior not in ("auto", "override", "disable"):
            raise ConfigError(
                f"cache behavior must be 'auto', 'override' or 'disable', got {self.behavior!r}"
            )
        if isinstance(self.ignored_inputs, str):
            object.__setattr__(self, "ignored_inputs", (self.ignored_inputs,))


@dataclass(frozen=True)
class Secret:
    """A secret a task needs, read in the driver and handed to the task's process as an
    environment variable named ``name``. Never written to the store or to logs.

    The value comes from the driver's environment variable ``env`` (default: ``name``)
    or, if ``file`` is given, from that file.
    """

    name: str
    env: str | None = None
    file: str | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum():
            raise ConfigError(
                f"secret name must be an environment variable name, got {self.name!r}"
            )

    def value(self) -> str:
        if self.file is not None:
            try:
                with open(self.file, encoding="utf-8") as f:
                    return f.read().strip()
            except OSError as exc:
                raise ConfigError(
                    f"secret {self.name!r}: cannot read {self.file}: {exc.strerror}"
                ) from None
        source = self.env or self.name
        try:
            return os.environ[source]
        except KeyError:
            raise ConfigError(
                f"secret {self.name!r}: environment variable {source!r} is not set"
            ) from None


@dataclass(frozen=True)
class OOMRetry:
    """Retry an action that ran out of memory with more memory.

    Each retry multiplies the memory request by ``factor`` (capped at ``max_memory``).
    This budget is separate from the task's ordinary retries.
    """

    count: int = 2
    factor: float = 2.0
    max_memory: int | str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0:
            raise ConfigError(f"OOMRetry count must be a non-negative integer, got {self.count!r}")
        factor = _finite(self.factor)
        if factor is None or factor <= 1:
            raise ConfigError(
                f"OOMRetry factor must be a finite number > 1, got {self.factor!r:.60}"
            )
        if self.max_memory is not None:
            parse_memory(self.max_memory)

    def next_memory(self, current: int) -> int:
        grown = min(current * self.factor, MAX_MEMORY)
        cap = MAX_MEMORY if self.max_memory is None else parse_memory(self.max_memory)
        return min(int(grown), cap)


def to_cache(value: Cache | str | bool | None) -> Cache | None:
    if value is None or value is False or value == "disable":
        return None
    if value is True or value == "auto":
        return Cache()
    if value == "override":
        return Cache(behavior="override")
    if isinstance(value, Cache):
        return None if value.behavior == "disable" else value
    raise ConfigError(
        f"cache must be 'auto', 'override', 'disable' or heddle.Cache(...), got {value!r}"
    )


def to_retry(value: int | RetryStrategy | None) -> RetryStrategy:
    if value is None:
        return RetryStrategy(0)
    if isinstance(value, RetryStrategy):
        return value
    return RetryStrategy(value)


def to_timeout(value: float | int | timedelta | Timeout | None) -> Timeout | None:
    if value is None:
        return None
    if isinstance(value, Timeout):
        return value
    return Timeout(max_runtime=value)


@dataclass(frozen=True)
class TaskSpec:
    """Everything the controller needs to run one task.

    ``encode_inputs`` validates and encodes bound arguments (raising InputError);
    ``encode_output``/``decode_output``/``decode_inputs`` convert by type hints.
    """

    name: str
    version: str
    fn: Callable[..., Any]
    is_async: bool
    param_names: tuple[str, ...]
    encode_inputs: Callable[[Mapping[str, Any]], bytes]
    decode_inputs: Callable[[bytes], dict[str, Any]]
    encode_output: Callable[[Any], bytes]
    decode_output: Callable[[bytes], Any]
    retry: RetryStrategy = field(default_factory=lambda: RetryStrategy(0))
    timeout: Timeout | None = None
    cache: Cache | None = None
    resources: Resources = field(default_factory=Resources)
    env_vars: Mapping[str, str] = field(default_factory=dict)
    environment: str = "default"
    oom: OOMRetry | None = None
    # Retries for system failures (a worker process died, a node was lost): a budget
    # of its own, so infrastructure trouble does not eat the task's retries.
    system_retries: int = 3
    # How a worker process finds this task again (heddle._sdk.task.TaskRef).
    ref: Any = None
    secrets: tuple[Secret, ...] = ()
    # The codec of the output, to find the blobs a recorded output refers to.
    output_codec: Any = None
    # The version of the task as @env.task defined it (an override that changes env vars
    # has a version of its own): what its callers' cache entries depend on. "" = version.
    defined_version: str = ""
