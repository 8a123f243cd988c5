"""Fuzzing task inputs by type: every generated value is either refused with an InputError
before anything is recorded, or the run succeeds and the value comes back exactly (a task
that returns its input, so it crosses the store twice: as input and as output).

CI runs a few examples per type; ``HEDDLE_FUZZ=long`` runs many more (and
``HEDDLE_FUZZ_EXAMPLES=N`` sets the number).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
import os
import uuid
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Any, Literal, NamedTuple, Optional, TypedDict

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import heddle
from heddle._sdk.config import get_session

EXAMPLES = int(
    os.environ.get(
        "HEDDLE_FUZZ_EXAMPLES", "400" if os.environ.get("HEDDLE_FUZZ") == "long" else "12"
    )
)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

env = heddle.TaskEnvironment(name="fuzz")


class Colour(enum.Enum):
    RED = "red"
    ODD = (1, "tuple")


@dataclasses.dataclass
class Point:
    x: float
    label: str
    tags: list[str]


class Pair(NamedTuple):
    key: str
    value: int


class Record(TypedDict):
    name: str
    size: int


class Model(pydantic.BaseModel):
    name: str
    scores: list[float]
    when: Optional[dt.datetime] = None  # noqa: UP045 - pydantic reads it at run time


# Text includes lone surrogates, which Python strings hold but no store accepts.
chars = st.characters() | st.characters(categories=["Cs"])
text = st.text(chars, max_size=12)
huge = st.integers(min_value=10**4290, max_value=10**4310)
ints = (
    st.integers()
    | st.integers(min_value=2**63 - 3, max_value=2**64 + 3)
    | huge
    | huge.map(lambda n: -n)
)
floats = st.floats()
zones = st.none() | st.timezones()
scalars = (
    st.none()
    | st.booleans()
    | ints
    | floats
    | text
    | st.binary(max_size=12)
    | st.decimals()
    | st.datetimes(timezones=zones)
    | st.uuids()
    | st.complex_numbers()
)
hashable = st.none() | st.booleans() | ints | text | st.binary(max_size=8)
anything = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(text, inner, max_size=4)
        | st.dictionaries(hashable, inner, max_size=3)
        | st.frozensets(hashable, max_size=3)
    ),
    max_leaves=12,
)

CASES: list[tuple[str, Any, st.SearchStrategy[Any]]] = [
    ("int", int, ints),
    ("float", float, floats),
    ("bool", bool, st.booleans()),
    ("str", str, text),
    ("bytes", bytes, st.binary()),
    ("none", None, st.none()),
    ("datetime", dt.datetime, st.datetimes(timezones=zones, allow_imaginary=False)),
    ("date", dt.date, st.dates()),
    ("time", dt.time, st.times(timezones=zones)),
    ("timedelta", dt.timedelta, st.timedeltas()),
    ("decimal", Decimal, st.decimals()),
    ("uuid", uuid.UUID, st.uuids()),
    ("path", PurePosixPath, st.builds(PurePosixPath, text)),
    ("enum", Colour, st.sampled_from(Colour)),
    ("literal", Literal["a", 1, True], st.sampled_from(["a", 1, True])),
    ("optional", Optional[int], st.none() | ints),  # noqa: UP045
    ("union", int | str | float, ints | text | floats),
    ("list", list[int], st.lists(ints, max_size=6)),
    ("dict", dict[str, float], st.dictionaries(text, floats, max_size=5)),
    ("dict_int_keys", dict[int, str], st.dictionaries(ints, text, max_size=5)),
    ("tuple", tuple[int, str], st.tuples(ints, text)),
    ("variadic_tuple", tuple[float, ...], st.lists(floats, max_size=5).map(tuple)),
    ("set", set[str], st.sets(text, max_size=5)),
    ("frozenset", frozenset[int], st.frozensets(ints, max_size=5)),
    ("dataclass", Point, st.builds(Point, floats, text, st.lists(text, max_size=3))),
    ("namedtuple", Pair, st.builds(Pair, text, ints)),
    ("typeddict", Record, st.fixed_dictionaries({"name": text, "size": ints})),
    (
        "pydantic",
        Model,
        st.builds(
            Model,
            name=text,
            scores=st.lists(floats, max_size=3),
            when=st.none() | st.datetimes(timezones=zones),
        ),
    ),
    ("any", Any, anything),
]


def echo_task(name: str, hint: Any) -> heddle.Task[Any, Any]:
    async def echo(x: Any) -> Any:
        return x

    echo.__annotations__ = {"x": hint, "return": hint}
    echo.__qualname__ = echo.__name__ = f"echo_{name}"
    return env.task(name=f"fuzz.echo_{name}")(echo)


TASKS = {name: echo_task(name, hint) for name, hint, _ in CASES}


def same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down; nan equals nan, -0.0 is not 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    if isinstance(a, complex):
        return same(a.real, b.real) and same(a.imag, b.imag)
    if isinstance(a, Decimal | dt.datetime | dt.time):
        # repr shows sign, exponent and NaN payload (Decimal), fold and zone (times).
        return repr(a) == repr(b)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb)
            for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if isinstance(a, set | frozenset):
        return sorted(map(repr, a)) == sorted(map(repr, b))
    if dataclasses.is_dataclass(a):
        return same(dataclasses.astuple(a), dataclasses.astuple(b))  # type: ignore[arg-type]
    if isinstance(a, pydantic.BaseModel):
        return same(dict(a), dict(b))
    return bool(a == b)


def runs_recorded() -> int:
    return len(get_session().store.list_runs(limit=10**6))


@pytest.mark.parametrize(("name", "hint", "values"), CASES, ids=[c[0] for c in CASES])
def test_an_input_is_refused_or_round_trips_exactly(
    home: Path, name: str, hint: Any, values: st.SearchStrategy[Any]
) -> None:
    task = TASKS[name]

    @FUZZ
    @given(values)
    def check(value: Any) -> None:
        before = runs_recorded()
        try:
            run = heddle.run(task, value)
        except heddle.InputError as exc:
            assert exc.parameter == "x", exc
            assert runs_recorded() == before, "a refused input must not record a run"
            return
        assert run.status == "succeeded", run.record.error
        out = run.outputs()
        if name == "typeddict":
            # Stored in declaration order on purpose (equal dicts, equal bytes).
            out, value = dict(sorted(out.items())), dict(sorted(value.items()))
        assert same(out, value), f"{value!r} came back as {out!r}"

    check()


@FUZZ
@given(st.lists(st.integers(0, 40), min_size=1, max_size=3), st.data())
def test_nesting_and_self_reference_are_refused_or_round_trip(
    home: Path, depths: list[int], data: st.DataObject
) -> None:
    # A value nested up to a few thousand levels, possibly with a reference to itself.
    depth = depths[0] * data.draw(st.sampled_from([1, 10, 100]))
    value: list[Any] = []
    inner = value
    for _ in range(depth):
        inner.append([])
        inner = inner[0]
    if data.draw(st.booleans()):
        inner.append(value)
    before = runs_recorded()
    try:
        run = heddle.run(TASKS["any"], value)
    except heddle.InputError as exc:
        assert "contains itself" in str(exc) or "deep" in str(exc)
        assert runs_recorded() == before
        return
    assert depth_of(run.outputs()) == depth_of(value) == depth + 1


def depth_of(value: list[Any]) -> int:
    """How deep a chain of single-item lists goes (without recursion)."""
    depth = 1
    while value:
        (value,) = value
        depth += 1
    return depth
