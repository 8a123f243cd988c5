"""The dynamic codec (Any, object, no annotation), the pickle fallback and `register`."""

from __future__ import annotations

import datetime as dt
import inspect
import threading
import warnings
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heddle._errors import TypeMismatchError
from heddle._types import (
    Codec,
    PickleFallbackWarning,
    decode,
    encode,
    register,
    reset_pickle_warnings,
)

RoundTrip = Callable[[Any, Any], None]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**64, max_value=2**100)
    | st.floats(allow_nan=True)
    | st.text(max_size=5)
    | st.binary(max_size=5)
    | st.datetimes(timezones=st.none() | st.just(dt.UTC))
    | st.dates()
    | st.timedeltas()
    | st.decimals(allow_nan=False)
    | st.uuids()
)
hashables = st.integers() | st.text(max_size=5) | st.booleans() | st.none()
dynamic_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=5), inner, max_size=4)
        | st.dictionaries(st.integers() | st.tuples(st.integers()), inner, max_size=4)
        | st.frozensets(hashables, max_size=4)
        | st.sets(hashables, max_size=4)
    ),
    max_leaves=12,
)


class Opaque:
    def __init__(self, payload: Any) -> None:
        self.payload = payload

    def __eq__(self, other: object) -> bool:
        return type(other) is Opaque and other.payload == self.payload

    __hash__ = None  # type: ignore[assignment]


class AlsoOpaque(Opaque):
    pass


@pytest.mark.parametrize("hint", [Any, object, inspect.Parameter.empty])
def test_dynamic_hints_all_mean_any_value(assert_roundtrips: RoundTrip, hint: Any) -> None:
    assert_roundtrips({"a": (1, {2}), 3: [b"x", None, 2.5]}, hint)


@given(dynamic_values)
def test_any_values_come_back_with_their_exact_types(
    assert_roundtrips: RoundTrip, value: Any
) -> None:
    assert_roundtrips(value, Any)


@given(dynamic_values)
def test_any_encoding_is_deterministic(value: Any) -> None:
    assert encode(value, Any) == encode(value, Any)


def test_tuples_and_lists_stay_distinct_under_any() -> None:
    back = decode(encode([(1, 2), [1, 2]], Any), Any)
    assert type(back[0]) is tuple and type(back[1]) is list


def test_a_dict_that_looks_like_a_tag_is_still_a_dict(assert_roundtrips: RoundTrip) -> None:
    assert_roundtrips({"pickle": b"not really"}, Any)
    assert_roundtrips({"tuple": [1, 2]}, Any)


def test_decimal_and_complex_under_any(assert_roundtrips: RoundTrip) -> None:
    assert_roundtrips([Decimal("1.10"), 2 + 3j, bytearray(b"ab")], Any)


def test_pickle_fallback_round_trips_a_custom_class() -> None:
    reset_pickle_warnings()
    with pytest.warns(PickleFallbackWarning):
        back = decode(encode(Opaque([1, 2]), Opaque), Opaque)
    assert back == Opaque([1, 2])


def test_pickle_fallback_warns_once_per_type() -> None:
    reset_pickle_warnings()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encode(Opaque(1), Opaque)
        encode(Opaque(2), Opaque)
        encode([Opaque(3)], Any)
        encode(AlsoOpaque(4), AlsoOpaque)
    messages = [str(w.message) for w in caught if w.category is PickleFallbackWarning]
    assert len(messages) == 2
    assert "Opaque" in messages[0] and "dataclass" in messages[0]
    assert "AlsoOpaque" in messages[1]


def test_reset_pickle_warnings_makes_the_next_value_warn_again() -> None:
    reset_pickle_warnings()
    with pytest.warns(PickleFallbackWarning):
        encode(Opaque(1), Opaque)
    reset_pickle_warnings()
    with pytest.warns(PickleFallbackWarning):
        encode(Opaque(1), Opaque)


def test_pickle_fallback_still_checks_the_declared_class() -> None:
    with pytest.raises(TypeMismatchError, match="expected Opaque, got int 5"):
        encode(5, Opaque)


def test_an_unpicklable_value_is_a_type_mismatch() -> None:
    reset_pickle_warnings()
    with pytest.warns(PickleFallbackWarning), pytest.raises(TypeMismatchError, match="unpicklable"):
        encode(threading.Lock(), Any)


def test_registered_codecs_take_precedence_over_the_fallback() -> None:
    class Celsius:
        def __init__(self, degrees: float) -> None:
            self.degrees = degrees

    class CelsiusCodec(Codec):
        def to_plain(self, value: Any, path: str = "") -> Any:
            if not isinstance(value, Celsius):
                raise self.mismatch(value, path)
            return value.degrees

        def from_plain(self, plain: Any) -> Any:
            return Celsius(plain)

    register(lambda hint: hint is Celsius, CelsiusCodec)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PickleFallbackWarning)
        data = encode(Celsius(21.5), Celsius)
        assert decode(data, Celsius).degrees == 21.5
        assert decode(encode([Celsius(1.0)], list[Celsius]), list[Celsius])[0].degrees == 1.0
