"""Round trips, determinism and choice rules for containers, unions and literals."""

from __future__ import annotations

import collections.abc as abc
import enum
from collections.abc import Callable
from typing import Any, Literal, Optional, Union

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heddle._errors import TypeMismatchError
from heddle._types import decode, encode
from heddle._types.containers import UnionCodec

RoundTrip = Callable[[Any, Any], None]


class Suit(enum.Enum):
    HEARTS = "h"
    SPADES = "s"


@given(st.lists(st.integers()))
def test_lists_of_ints_round_trip(assert_roundtrips: RoundTrip, value: list[int]) -> None:
    assert_roundtrips(value, list[int])


@given(st.lists(st.lists(st.floats(allow_nan=True)), max_size=5))
def test_nested_lists_of_floats_round_trip(
    assert_roundtrips: RoundTrip, value: list[list[float]]
) -> None:
    assert_roundtrips(value, list[list[float]])


@given(st.dictionaries(st.text(), st.lists(st.binary(), max_size=3)))
def test_str_keyed_dicts_round_trip(
    assert_roundtrips: RoundTrip, value: dict[str, list[bytes]]
) -> None:
    assert_roundtrips(value, dict[str, list[bytes]])


@given(st.dictionaries(st.integers(), st.text()))
def test_int_keyed_dicts_round_trip_in_insertion_order(
    assert_roundtrips: RoundTrip, value: dict[int, str]
) -> None:
    assert_roundtrips(value, dict[int, str])


def test_enum_keyed_dicts_round_trip(assert_roundtrips: RoundTrip) -> None:
    assert_roundtrips({Suit.SPADES: 1, Suit.HEARTS: 2}, dict[Suit, int])


@given(st.tuples(st.integers(), st.text(), st.booleans()))
def test_fixed_tuples_round_trip(
    assert_roundtrips: RoundTrip, value: tuple[int, str, bool]
) -> None:
    assert_roundtrips(value, tuple[int, str, bool])


@given(st.lists(st.integers()).map(tuple))
def test_variadic_tuples_round_trip(assert_roundtrips: RoundTrip, value: tuple[int, ...]) -> None:
    assert_roundtrips(value, tuple[int, ...])


@given(st.sets(st.integers()), st.frozensets(st.text()))
def test_sets_and_frozensets_round_trip(
    assert_roundtrips: RoundTrip, ints: set[int], texts: frozenset[str]
) -> None:
    assert_roundtrips(ints, set[int])
    assert_roundtrips(texts, frozenset[str])


@given(st.lists(st.text() | st.integers(), unique=True), st.randoms())
def test_set_encoding_is_independent_of_insertion_order(items: list[Any], rnd: Any) -> None:
    shuffled = list(items)
    rnd.shuffle(shuffled)
    assert encode(set(items), set[int | str]) == encode(set(shuffled), set[int | str])
    assert encode(frozenset(items), Any) == encode(frozenset(shuffled), Any)


def test_bare_containers_mean_elements_of_any_type(assert_roundtrips: RoundTrip) -> None:
    assert_roundtrips([1, "a", (2, b"x")], list)
    assert_roundtrips({"a": {1, 2}, "b": None}, dict)
    assert_roundtrips((1, [2.5], {"k": 3}), tuple)


def test_abstract_sequence_and_mapping_decode_as_list_and_dict() -> None:
    assert decode(encode((1, 2), abc.Sequence[int]), abc.Sequence[int]) == [1, 2]
    assert decode(encode({"a": 1}, abc.Mapping[str, int]), abc.Mapping[str, int]) == {"a": 1}


@given(st.integers() | st.text() | st.none())
def test_union_values_come_back_as_the_member_they_were(
    assert_roundtrips: RoundTrip, value: int | str | None
) -> None:
    assert_roundtrips(value, Union[int, str, None])  # noqa: UP007 - the typing spelling too
    assert_roundtrips(value, int | str | None)


def test_union_prefers_the_member_of_the_values_exact_type() -> None:
    back = decode(encode(5, float | int), float | int)
    assert back == 5 and type(back) is int


def test_union_member_order_does_not_change_the_encoding() -> None:
    first, second = UnionCodec(int | str | bytes), UnionCodec(bytes | str | int)
    for value in (1, "a", b"b"):
        assert first.to_plain(value) == second.to_plain(value)


@given(st.none() | st.lists(st.integers()))
def test_optional_round_trips(assert_roundtrips: RoundTrip, value: list[int] | None) -> None:
    assert_roundtrips(value, Optional[list[int]])  # noqa: UP045 - the typing spelling too


def test_optional_stores_its_value_without_a_member_index() -> None:
    assert encode(7, int | None) == encode(7, int)
    assert encode(None, int | None) == encode(None, None)


@pytest.mark.parametrize("value", ["a", 1, True, Suit.HEARTS])
def test_literal_members_round_trip(assert_roundtrips: RoundTrip, value: Any) -> None:
    assert_roundtrips(value, Literal["a", 1, True, Suit.HEARTS])


@pytest.mark.parametrize("value", ["c", 2, 1.0, Suit.SPADES])
def test_literal_rejects_values_outside_it(value: Any) -> None:
    with pytest.raises(TypeMismatchError, match=r"expected Literal\['a', 1, True, Suit.HEARTS\]"):
        encode(value, Literal["a", 1, True, Suit.HEARTS])


def test_literal_true_is_not_literal_one() -> None:
    with pytest.raises(TypeMismatchError):
        encode(True, Literal[1])
