"""Mismatch errors: what was expected, what was given, and where inside the value."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Optional

import pytest

from heddle._errors import HeddleError, TypeMismatchError
from heddle._types import codec_for, encode, type_name


@dataclasses.dataclass
class Item:
    name: str
    qty: int


@dataclasses.dataclass
class Order:
    items: list[Item]
    notes: dict[str, list[int]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class SpecialItem(Item):
    pass


def mismatch(value: Any, hint: Any) -> TypeMismatchError:
    with pytest.raises(TypeMismatchError) as info:
        encode(value, hint)
    return info.value


def test_wrong_scalar_names_expected_and_given_types() -> None:
    error = mismatch("abc", int)
    assert (error.expected, error.given, error.path) == ("int", "str 'abc'", "")
    assert str(error) == "expected int, got str 'abc'"


@pytest.mark.parametrize("hint", [int, float, list[int]])
def test_bool_is_refused_where_a_number_is_expected(hint: Any) -> None:
    value = [True] if hint == list[int] else True
    assert "bool True" in str(mismatch(value, hint))


def test_wrong_element_deep_inside_a_list_of_dataclasses_shows_its_path() -> None:
    order = Order(items=[Item("a", 1), Item("b", 2), Item("c", "3")])  # type: ignore[arg-type]
    error = mismatch(order, Order)
    assert error.path == ".items[2].qty"
    assert str(error) == "expected int, got str '3' at .items[2].qty"


def test_wrong_value_inside_a_dict_shows_the_key() -> None:
    error = mismatch(Order(items=[], notes={"k": [1, None]}), Order)  # type: ignore[list-item]
    assert error.path == ".notes['k'][1]"
    assert error.given == "None"


def test_wrong_dict_key_type_is_reported_as_a_key() -> None:
    error = mismatch({1: 2}, dict[str, int])
    assert "as a key" in error.expected and error.given == "int 1"


def test_a_plain_dict_is_not_a_dataclass() -> None:
    error = mismatch({"name": "a", "qty": 1}, Item)
    assert error.expected == "Item" and error.given.startswith("dict")


def test_dataclass_subclass_is_refused_with_advice() -> None:
    assert "subclass" in mismatch(SpecialItem("a", 1), Item).given


def test_wrong_tuple_length_is_reported() -> None:
    assert mismatch((1, 2, 3), tuple[int, int]).given == "tuple of length 3"


def test_optional_mismatch_names_the_optional() -> None:
    assert mismatch("x", Optional[int]).expected == "Optional[int]"  # noqa: UP045


def test_union_mismatch_names_every_member() -> None:
    assert mismatch(1.5, int | str).expected == "int | str"


def test_union_reports_the_deep_error_of_the_member_that_matched_the_type() -> None:
    error = mismatch([Item("a", 1), Item("b", "x")], list[Item] | int)  # type: ignore[arg-type]
    assert error.path == "[1].qty"


def test_a_str_is_not_accepted_for_a_path() -> None:
    assert mismatch("/tmp", pathlib.Path).expected == "Path"


def test_given_text_is_truncated_for_long_values() -> None:
    given = mismatch("x" * 500, int).given
    assert given.startswith("str 'xxx") and len(given) <= 40


def test_a_set_element_mismatch_names_the_element() -> None:
    assert mismatch({1, "a"}, set[int]).path == "{str 'a'}"


@pytest.mark.parametrize(
    ("hint", "name"),
    [
        (int, "int"),
        (list[int], "list[int]"),
        (Optional[str], "Optional[str]"),  # noqa: UP045
        (str | None, "Optional[str]"),
        (dict[str, list[Item]], "dict[str, list[Item]]"),
        (tuple[int, ...], "tuple[int, ...]"),
        (Any, "Any"),
        (None, "None"),
        (Order, "Order"),
    ],
)
def test_type_names_are_readable(hint: Any, name: str) -> None:
    assert type_name(hint) == name


def test_an_unresolved_string_hint_is_refused_with_advice() -> None:
    with pytest.raises(HeddleError, match="get_type_hints"):
        codec_for("Item")


def test_a_dataclass_with_an_unresolvable_field_type_names_the_class() -> None:
    @dataclasses.dataclass
    class Broken:
        part: DoesNotExist  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(HeddleError, match="field types of Broken"):
        encode(Broken(1), Broken)


def test_codecs_are_cached_per_hint() -> None:
    assert codec_for(list[int]) is codec_for(list[int])
