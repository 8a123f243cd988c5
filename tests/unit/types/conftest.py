"""Shared helpers for the type engine tests: an exact, nan-aware equality."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from heddle._types import decode, encode


def same(a: Any, b: Any) -> bool:
    """Equal values of the same types all the way down; nan equals nan, -0.0 is not 0.0,
    and aware datetimes must keep their tzinfo, not just the instant."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, Decimal) and a.is_nan():
        return b.is_nan() and str(a) == str(b)
    if isinstance(a, dt.datetime | dt.time):
        return a == b and a.tzinfo == b.tzinfo and a.fold == b.fold and str(a) == str(b)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def roundtrip(value: Any, hint: Any) -> Any:
    return decode(encode(value, hint), hint)


@pytest.fixture(scope="session")
def assert_roundtrips() -> Callable[[Any, Any], None]:
    # Session-scoped so hypothesis tests may use it (function-scoped fixtures are reset
    # only once per test, not once per example, and hypothesis refuses them).
    def check(value: Any, hint: Any) -> None:
        back = roundtrip(value, hint)
        assert same(back, value), f"{value!r} came back as {back!r}"

    return check
