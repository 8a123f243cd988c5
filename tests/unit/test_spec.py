"""Task policies as plain values: resources, retries, timeouts and caching."""

from __future__ import annotations

import datetime as dt

import pytest

import heddle
from heddle._runtime.spec import parse_memory, to_cache, to_retry, to_timeout


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        ("4Gi", 4 * 2**30),
        ("512Mi", 512 * 2**20),
        ("2G", 2 * 10**9),
        ("100k", 100_000),
        ("1.5Gi", int(1.5 * 2**30)),
        ("1Ti", 2**40),
        (" 64 Mi ", 64 * 2**20),
        ("10", 10),
        ("3GB", 3 * 10**9),
        (1024, 1024),
        (0, 0),
    ],
)
def test_parse_memory_reads_quantities(quantity: int | str, expected: int) -> None:
    assert parse_memory(quantity) == expected


@pytest.mark.parametrize("bad", ["lots", "4 gigs", "-1Gi", "Gi", "", True, -5, "1e9"])
def test_parse_memory_refuses_what_is_not_a_quantity(bad: int | str) -> None:
    with pytest.raises(heddle.ConfigError):
        parse_memory(bad)


def test_resources_expose_cores_and_bytes() -> None:
    r = heddle.Resources(cpu="500m", memory="4Gi", gpu=1)
    assert r.cpu_cores == 0.5
    assert r.memory_bytes == 4 * 2**30
    assert heddle.Resources(cpu=2).cpu_cores == 2.0
    assert heddle.Resources(cpu="1.5").cpu_cores == 1.5
    empty = heddle.Resources()
    assert (empty.cpu_cores, empty.memory_bytes, empty.gpu) == (None, None, None)


def test_resources_are_frozen_and_comparable() -> None:
    assert heddle.Resources(cpu=1, memory="1Gi") == heddle.Resources(cpu=1, memory="1Gi")
    with pytest.raises(AttributeError):
        heddle.Resources().cpu = 3  # type: ignore[misc]


def test_resources_refuse_a_bool_gpu_count() -> None:
    with pytest.raises(heddle.ConfigError):
        heddle.Resources(gpu=True)


def test_retry_strategy_delay_grows_by_its_factor_up_to_the_cap() -> None:
    r = heddle.RetryStrategy(count=5, backoff=0.5, backoff_factor=3.0, max_backoff=10.0)
    assert [r.delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.5, 4.5, 10.0]
    assert heddle.RetryStrategy(3).delay(1) == 0.0
    assert heddle.RetryStrategy(2, backoff=dt.timedelta(milliseconds=250)).delay(2) == 0.5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"count": -1},
        {"count": True},
        {"count": 1.5},
        {"count": 1, "backoff": -0.1},
        {"count": 1, "backoff_factor": 0.5},
    ],
)
def test_retry_strategy_refuses_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(heddle.ConfigError):
        heddle.RetryStrategy(**kwargs)  # type: ignore[arg-type]


def test_to_retry_accepts_int_strategy_or_none() -> None:
    assert to_retry(None) == heddle.RetryStrategy(0)
    assert to_retry(3) == heddle.RetryStrategy(3)
    strategy = heddle.RetryStrategy(2, backoff=1)
    assert to_retry(strategy) is strategy


def test_timeout_accepts_seconds_and_timedeltas() -> None:
    t = heddle.Timeout(max_runtime=dt.timedelta(minutes=2), max_queued_time=5)
    assert (t.runtime_seconds, t.queued_seconds) == (120.0, 5.0)
    assert heddle.Timeout().runtime_seconds is None
    assert to_timeout(1.5) == heddle.Timeout(max_runtime=1.5)
    assert to_timeout(None) is None


@pytest.mark.parametrize("bad", [0, -1, True, "10s", dt.timedelta(0)])
def test_timeout_refuses_non_positive_or_non_numeric_values(bad: object) -> None:
    with pytest.raises(heddle.ConfigError):
        heddle.Timeout(max_runtime=bad)  # type: ignore[arg-type]
    with pytest.raises(heddle.ConfigError):
        heddle.Timeout(max_queued_time=bad)  # type: ignore[arg-type]


def test_cache_settings_normalise_to_a_cache_or_none() -> None:
    assert to_cache(None) is None
    assert to_cache(False) is None
    assert to_cache("disable") is None
    assert to_cache(heddle.Cache(behavior="disable")) is None
    assert to_cache(True) == heddle.Cache()
    assert to_cache("auto") == heddle.Cache(behavior="auto")
    assert to_cache("override") == heddle.Cache(behavior="override")
    custom = heddle.Cache(version="v2", ignored_inputs=("seed",))
    assert to_cache(custom) is custom


def test_cache_accepts_a_single_ignored_input_as_a_string() -> None:
    assert heddle.Cache(ignored_inputs="seed").ignored_inputs == ("seed",)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["sometimes", 1, 0.5])
def test_cache_refuses_unknown_settings(bad: object) -> None:
    with pytest.raises(heddle.ConfigError):
        to_cache(bad)  # type: ignore[arg-type]
    with pytest.raises(heddle.ConfigError):
        heddle.Cache(behavior=bad)  # type: ignore[arg-type]


def test_task_options_merge_environment_and_task_settings() -> None:
    env = heddle.TaskEnvironment(
        name="spec",
        resources=heddle.Resources(cpu=2),
        retries=2,
        timeout=30,
        cache="auto",
        env_vars={"A": "1", "B": "2"},
    )

    @env.task
    def inherits(x: int) -> int:
        return x

    @env.task(
        retries=0, timeout=heddle.Timeout(max_queued_time=3), cache=False, env_vars={"B": "3"}
    )
    def overrides(x: int) -> int:
        return x

    assert inherits.retry.count == 2
    assert inherits.timeout == heddle.Timeout(max_runtime=30)
    assert inherits.cache == heddle.Cache()
    assert inherits.spec.env_vars == {"A": "1", "B": "2"}
    assert inherits.resources == heddle.Resources(cpu=2)
    assert overrides.retry.count == 0
    assert overrides.timeout == heddle.Timeout(max_queued_time=3)
    assert overrides.cache is None
    assert overrides.spec.env_vars == {"A": "1", "B": "3"}


def test_task_version_follows_source_and_environment_not_policies() -> None:
    env = heddle.TaskEnvironment(name="spec")

    @env.task
    def f(x: int) -> int:
        return x

    assert f.override(retries=3, timeout=5).version == f.version
    # Resources do not change what a task computes: more memory must not make a
    # recovered run re-run what already succeeded.
    assert f.override(resources=heddle.Resources(memory="1Gi")).version == f.version
    assert f.override(env_vars={"K": "v"}).version != f.version
    assert heddle.TaskEnvironment(name="other").task(f.fn).version != f.version


def test_an_oom_retry_grows_memory_and_keeps_the_rest_of_the_request() -> None:
    from heddle._runtime.controller import Controller

    env = heddle.TaskEnvironment(name="spec")

    @env.task(oom=heddle.OOMRetry(count=1, factor=2.0))
    def f(x: int) -> int:
        return x

    asked = heddle.Resources(cpu=2, memory="1Gi", gpu=1, accelerator="T4", custom={"disk": 1})
    grown = Controller._more_memory(f.spec, asked, heddle.OOMError("spec.f", 2**30, 2**30))
    assert grown.memory_bytes == 2 * 2**30
    assert (grown.cpu, grown.gpu, grown.accelerator, grown.custom) == (2, 1, "T4", (("disk", 1),))


# -- numbers that are not numbers: refused when the setting is made -------------------

NAN = float("nan")
INF = float("inf")


@pytest.mark.parametrize(
    "bad", [NAN, INF, -INF, -0.0, "-0", "nan", "inf", "nanm", "infm", "1e400", 1e300, 10**400]
)
def test_resources_refuse_a_cpu_that_is_not_a_finite_positive_core_count(bad: object) -> None:
    with pytest.raises(heddle.ConfigError, match="cpu"):
        heddle.Resources(cpu=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad", [NAN, INF, 2.5, -0.0, 10**30, "1" + "0" * 400, "99999999Ti", "nan", "inf"]
)
def test_resources_refuse_memory_that_is_not_a_sane_whole_number_of_bytes(bad: object) -> None:
    with pytest.raises(heddle.ConfigError, match="memory"):
        heddle.Resources(memory=bad)  # type: ignore[arg-type]


def test_resources_accept_a_whole_float_of_bytes() -> None:
    assert heddle.Resources(memory=4e9).memory_bytes == 4 * 10**9  # type: ignore[arg-type]
    assert heddle.Resources(memory=0).memory_bytes == 0


@pytest.mark.parametrize("bad", [10**30, 2**31, -1, 1.0])
def test_resources_refuse_a_gpu_count_out_of_range(bad: object) -> None:
    with pytest.raises(heddle.ConfigError, match="gpu"):
        heddle.Resources(gpu=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [NAN, INF, 0, -1.0])
def test_resources_refuse_custom_amounts_that_are_not_finite_and_positive(bad: float) -> None:
    with pytest.raises(heddle.ConfigError, match="fast_disk"):
        heddle.Resources(custom={"fast_disk": bad})


@pytest.mark.parametrize("bad", [NAN, INF, -INF, 10**400, 1e300, dt.timedelta.max])
def test_timeout_refuses_a_time_that_is_not_finite_or_absurdly_long(bad: object) -> None:
    with pytest.raises(heddle.ConfigError, match="max_runtime"):
        heddle.Timeout(max_runtime=bad)  # type: ignore[arg-type]
    with pytest.raises(heddle.ConfigError, match="max_queued_time"):
        heddle.Timeout(max_queued_time=bad)  # type: ignore[arg-type]
    with pytest.raises(heddle.ConfigError):
        to_timeout(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"count": 1, "backoff": NAN},
        {"count": 1, "backoff": INF},
        {"count": 1, "backoff_factor": NAN},
        {"count": 1, "backoff_factor": INF},
        {"count": 1, "max_backoff": NAN},
        {"count": 1, "max_backoff": -1.0},
        {"count": 1, "backoff": "1"},
    ],
)
def test_retry_strategy_refuses_numbers_that_are_not_finite(kwargs: dict[str, object]) -> None:
    with pytest.raises(heddle.ConfigError):
        heddle.RetryStrategy(**kwargs)  # type: ignore[arg-type]


def test_retry_delay_stays_at_the_cap_however_many_retries() -> None:
    r = heddle.RetryStrategy(count=5000, backoff=1.0, backoff_factor=10.0, max_backoff=60.0)
    assert r.delay(4000) == 60.0


@pytest.mark.parametrize(
    "kwargs", [{"factor": NAN}, {"factor": INF}, {"factor": "2"}, {"max_memory": 10**30}]
)
def test_oom_retry_refuses_numbers_that_are_not_finite(kwargs: dict[str, object]) -> None:
    with pytest.raises(heddle.ConfigError):
        heddle.OOMRetry(**kwargs)  # type: ignore[arg-type]


def test_oom_retry_never_grows_memory_past_the_largest_request() -> None:
    from heddle._runtime.spec import MAX_MEMORY

    assert heddle.OOMRetry(factor=1e300).next_memory(2**30) == MAX_MEMORY
