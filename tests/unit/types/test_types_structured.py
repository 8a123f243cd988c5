"""Round trips for dataclasses, NamedTuple, TypedDict and pydantic models.

This module uses `from __future__ import annotations`, so every field hint below is a
string the codecs must resolve.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import warnings
from collections.abc import Callable
from typing import Any, Generic, NamedTuple, NotRequired, TypedDict, TypeVar

import msgspec
import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from heddle._errors import TypeMismatchError
from heddle._types import PickleFallbackWarning, codec_for, decode, encode

RoundTrip = Callable[[Any, Any], None]
T = TypeVar("T")


@dataclasses.dataclass
class Point:
    x: int
    y: float = 0.0


@dataclasses.dataclass(frozen=True)
class Shape:
    name: str
    points: list[Point]
    tags: frozenset[str] = frozenset()
    origin: Point | None = None


@dataclasses.dataclass
class Counted:
    items: list[str]
    count: int = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.count = len(self.items)


@dataclasses.dataclass
class Tree:
    value: int
    children: list[Tree] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Box(Generic[T]):
    item: T
    items: list[T]


class Pair(NamedTuple):
    left: int
    right: str = "r"


class Movie(TypedDict):
    title: str
    year: int
    rating: NotRequired[float]


class Address(pydantic.BaseModel):
    city: str
    zip: bytes


class Person(pydantic.BaseModel):
    name: str
    born: dt.datetime
    address: Address
    nicknames: set[str] = set()
    scores: tuple[int, ...] = ()
    manager: Person | None = None


points = st.builds(Point, x=st.integers(), y=st.floats(allow_nan=False))
shapes = st.builds(
    Shape,
    name=st.text(),
    points=st.lists(points, max_size=4),
    tags=st.frozensets(st.text(max_size=3), max_size=3),
    origin=st.none() | points,
)
people = st.builds(
    Person,
    name=st.text(),
    born=st.datetimes(timezones=st.none() | st.just(dt.UTC)),
    address=st.builds(Address, city=st.text(), zip=st.binary()),
    nicknames=st.sets(st.text(max_size=4), max_size=3),
    scores=st.lists(st.integers(), max_size=3).map(tuple),
    manager=st.none(),
)


@given(shapes)
def test_nested_frozen_dataclasses_round_trip(assert_roundtrips: RoundTrip, value: Shape) -> None:
    assert_roundtrips(value, Shape)


def test_dataclass_defaults_fill_fields_missing_from_older_data() -> None:
    data = encode({"x": 3}, dict[str, int])  # what an older Point without y looked like
    assert decode(data, Point) == Point(3, 0.0)


def test_dataclass_init_false_fields_keep_their_stored_value() -> None:
    value = Counted(["a", "b"])
    value.count = 10  # changed after construction: decoding must not recompute it
    back = decode(encode(value, Counted), Counted)
    assert back.count == 10 and back.items == ["a", "b"]


def test_self_referencing_dataclasses_round_trip(assert_roundtrips: RoundTrip) -> None:
    assert_roundtrips(Tree(1, [Tree(2), Tree(3, [Tree(4)])]), Tree)


def test_generic_dataclass_fields_use_the_type_argument() -> None:
    assert decode(encode(Box(1, [2]), Box[int]), Box[int]) == Box(1, [2])
    with pytest.raises(TypeMismatchError, match=r"expected int, got str 'x' at .items\[0\]"):
        encode(Box(1, ["x"]), Box[int])


@given(st.builds(Pair, left=st.integers(), right=st.text()))
def test_named_tuples_round_trip(assert_roundtrips: RoundTrip, value: Pair) -> None:
    assert_roundtrips(value, Pair)


def test_typed_dicts_round_trip_with_and_without_optional_keys(
    assert_roundtrips: RoundTrip,
) -> None:
    assert_roundtrips(Movie(title="Heat", year=1995), Movie)
    assert_roundtrips(Movie(title="Heat", year=1995, rating=8.3), Movie)


def test_typed_dict_missing_required_key_is_named() -> None:
    with pytest.raises(TypeMismatchError, match="without key 'year'"):
        encode({"title": "Heat"}, Movie)


def test_typed_dict_unknown_key_is_refused() -> None:
    with pytest.raises(TypeMismatchError, match="unexpected key"):
        encode({"title": "Heat", "year": 1995, "budget": 1}, Movie)


@given(people)
def test_pydantic_models_round_trip_exactly(assert_roundtrips: RoundTrip, value: Person) -> None:
    assert_roundtrips(value, Person)


def test_nested_pydantic_models_keep_bytes_tuples_and_sets() -> None:
    boss = Person(name="b", born=dt.datetime(2000, 1, 1), address=Address(city="x", zip=b"\xff"))
    value = boss.model_copy(update={"manager": boss, "scores": (1, 2), "nicknames": {"z", "a"}})
    back = decode(encode(value, Person), Person)
    assert back == value
    assert type(back.scores) is tuple and back.manager is not None
    assert back.manager.address.zip == b"\xff"


def test_a_dict_is_not_accepted_for_a_pydantic_model() -> None:
    with pytest.raises(TypeMismatchError, match="expected Address, got dict"):
        encode({"city": "x", "zip": b""}, Address)


# -- enums inside models -------------------------------------------------------------


class Color(str, enum.Enum):  # noqa: UP042 - the str mixin, as older programs write it
    RED = "red"
    BLUE = "blue"


class Tone(enum.StrEnum):
    DARK = "dark"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Corner(enum.Enum):
    SQUARE = (4, "sq")
    TRIANGLE = (3, "tri")


class Perm(enum.Flag):
    R = 4
    W = 2


@dataclasses.dataclass
class Paint:
    color: Color
    level: Level
    corner: Corner
    perm: Perm
    history: list[Color]
    by_level: dict[Level, Corner]


class PaintModel(pydantic.BaseModel):
    color: Color
    level: Level
    corner: Corner
    perm: Perm
    history: list[Color] = []
    maybe: Color | None = None
    tone: Tone = Tone.DARK
    paint: Paint | None = None


def _no_pickle(plain: Any) -> bool:
    if isinstance(plain, dict):
        return "pickle" not in plain and all(_no_pickle(v) for v in plain.values())
    if isinstance(plain, list):
        return all(_no_pickle(v) for v in plain)
    return True


def test_enums_inside_dataclasses_and_pydantic_models_are_stored_natively() -> None:
    paint = Paint(
        Color.BLUE,
        Level.HIGH,
        Corner.TRIANGLE,
        Perm.R | Perm.W,
        [Color.RED],
        {Level.LOW: Corner.SQUARE},
    )
    model = PaintModel(
        color=Color.RED,
        level=Level.LOW,
        corner=Corner.SQUARE,
        perm=Perm.W,
        history=[Color.BLUE, Color.RED],
        maybe=Color.BLUE,
        paint=paint,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", PickleFallbackWarning)
        for value, hint in ((paint, Paint), (model, PaintModel)):
            data = encode(value, hint)
            assert _no_pickle(msgspec.msgpack.decode(data)), msgspec.msgpack.decode(data)
            back = decode(data, hint)
            assert back == value
    back = decode(encode(model, PaintModel), PaintModel)
    assert back.color is Color.RED and back.level is Level.LOW and back.corner is Corner.SQUARE
    assert back.history[0] is Color.BLUE and back.maybe is Color.BLUE and back.tone is Tone.DARK
    assert back.paint is not None and back.paint.by_level == {Level.LOW: Corner.SQUARE}
    assert msgspec.msgpack.decode(encode(model, PaintModel))["color"] == "red"


class Aliased(pydantic.BaseModel):
    full_name: str = pydantic.Field(alias="fullName")
    color: Color = Color.RED


def test_pydantic_models_with_aliases_round_trip() -> None:
    value = Aliased(fullName="Ada", color=Color.BLUE)
    assert decode(encode(value, Aliased), Aliased) == value


def test_pydantic_values_stored_by_the_earlier_encoding_still_decode() -> None:
    # Before fields were encoded by their types, a model was its python-mode dump
    # through the dynamic codec (enum members pickled).
    dynamic = codec_for(Any)
    value = PaintModel(color=Color.BLUE, level=Level.HIGH, corner=Corner.TRIANGLE, perm=Perm.R)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PickleFallbackWarning)
        dump = value.model_dump(mode="python", round_trip=True)
        old = msgspec.msgpack.encode({k: dynamic.to_plain(v) for k, v in dump.items()})
    assert decode(old, PaintModel) == value
    aliased = msgspec.msgpack.encode({"full_name": "Ada", "color": "blue"})
    assert decode(aliased, Aliased) == Aliased(fullName="Ada", color=Color.BLUE)


class Palette(pydantic.RootModel[list[Color]]):
    pass


def test_pydantic_root_models_round_trip() -> None:
    value = Palette([Color.BLUE, Color.RED])
    back = decode(encode(value, Palette), Palette)
    assert back == value and back.root[0] is Color.BLUE
    anything = pydantic.RootModel[Any]({"a": (1, b"x")})
    assert decode(encode(anything, type(anything)), type(anything)) == anything
