"""Round trips and validation for scalar hints: numbers, text, bytes, time, ids, enums."""

from __future__ import annotations

import datetime as dt
import enum
import math
import pathlib
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from heddle._errors import TypeMismatchError
from heddle._types import decode, encode

RoundTrip = Callable[[Any, Any], None]

fixed_offsets = st.builds(
    dt.timezone,
    st.timedeltas(
        min_value=dt.timedelta(hours=-23, minutes=-59), max_value=dt.timedelta(hours=23, minutes=59)
    ),
)
named_offsets = st.builds(
    dt.timezone,
    st.timedeltas(min_value=dt.timedelta(hours=-12), max_value=dt.timedelta(hours=12)),
    st.text(min_size=1, max_size=5),
)
timezones = st.none() | st.just(dt.UTC) | fixed_offsets | named_offsets | st.timezones()


class Color(enum.Enum):
    RED = 1
    GREEN = "green"
    PAIR = (1, 2)


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mode(enum.StrEnum):
    FAST = "fast"
    SLOW = "slow"


@given(st.integers() | st.integers(min_value=-(2**300), max_value=2**300))
def test_ints_of_any_size_round_trip(assert_roundtrips: RoundTrip, value: int) -> None:
    assert_roundtrips(value, int)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_floats_round_trip_including_nan_inf_and_negative_zero(
    assert_roundtrips: RoundTrip, value: float
) -> None:
    assert_roundtrips(value, float)


def test_negative_zero_keeps_its_sign() -> None:
    assert math.copysign(1, decode(encode(-0.0, float), float)) == -1


def test_int_is_widened_to_float_for_a_float_hint() -> None:
    back = decode(encode(3, float), float)
    assert back == 3.0 and type(back) is float


@given(st.text())
def test_text_round_trips(assert_roundtrips: RoundTrip, value: str) -> None:
    assert_roundtrips(value, str)


@given(st.binary())
def test_bytes_round_trip(assert_roundtrips: RoundTrip, value: bytes) -> None:
    assert_roundtrips(value, bytes)


@pytest.mark.parametrize("value", [True, False])
def test_bools_round_trip(assert_roundtrips: RoundTrip, value: bool) -> None:
    assert_roundtrips(value, bool)


@pytest.mark.parametrize("hint", [None, type(None)])
def test_none_round_trips_for_both_spellings(assert_roundtrips: RoundTrip, hint: Any) -> None:
    assert_roundtrips(None, hint)


@given(st.datetimes(timezones=timezones, allow_imaginary=False))
def test_datetimes_keep_microseconds_and_tzinfo(
    assert_roundtrips: RoundTrip, value: dt.datetime
) -> None:
    assert_roundtrips(value, dt.datetime)


def test_datetime_fold_survives_for_ambiguous_local_times() -> None:
    from zoneinfo import ZoneInfo

    value = dt.datetime(2021, 11, 7, 1, 30, fold=1, tzinfo=ZoneInfo("America/New_York"))
    back = decode(encode(value, dt.datetime), dt.datetime)
    assert back.fold == 1 and back.utcoffset() == value.utcoffset()


@given(st.times(timezones=st.none() | st.just(dt.UTC) | fixed_offsets))
@example(dt.time(0, 0, tzinfo=dt.timezone(dt.timedelta(microseconds=1))))
def test_times_round_trip(assert_roundtrips: RoundTrip, value: dt.time) -> None:
    assert_roundtrips(value, dt.time)


@given(st.dates())
def test_dates_round_trip(assert_roundtrips: RoundTrip, value: dt.date) -> None:
    assert_roundtrips(value, dt.date)


@given(st.timedeltas())
def test_timedeltas_round_trip(assert_roundtrips: RoundTrip, value: dt.timedelta) -> None:
    assert_roundtrips(value, dt.timedelta)


@given(st.decimals(allow_nan=True, allow_infinity=True))
def test_decimals_keep_their_exact_digits(assert_roundtrips: RoundTrip, value: Decimal) -> None:
    assert_roundtrips(value, Decimal)


@given(st.uuids())
def test_uuids_round_trip(assert_roundtrips: RoundTrip, value: uuid.UUID) -> None:
    assert_roundtrips(value, uuid.UUID)


@pytest.mark.parametrize("value", [pathlib.Path("/tmp/a b/c.txt"), pathlib.Path("rel/x")])
def test_paths_round_trip(assert_roundtrips: RoundTrip, value: pathlib.Path) -> None:
    assert_roundtrips(value, pathlib.Path)


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        (Color.RED, Color),
        (Color.GREEN, Color),
        (Color.PAIR, Color),
        (Level.HIGH, Level),
        (Mode.SLOW, Mode),
    ],
)
def test_enum_members_round_trip_by_value(
    assert_roundtrips: RoundTrip, value: Any, hint: Any
) -> None:
    assert_roundtrips(value, hint)


def test_enum_is_stored_by_value_not_name() -> None:
    assert encode(Level.HIGH, Level) == encode(2, int)


def test_str_enum_passed_for_str_comes_back_as_plain_str() -> None:
    back = decode(encode(Mode.FAST, str), str)
    assert back == "fast" and type(back) is str


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ("fast", Mode),
        (1, Level),
        ("/tmp", pathlib.Path),
        (dt.datetime(2020, 1, 1), dt.date),
        ("1", Decimal),
    ],
)
def test_near_miss_values_are_not_coerced(value: Any, hint: Any) -> None:
    with pytest.raises(TypeMismatchError):
        encode(value, hint)
