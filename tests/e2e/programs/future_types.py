"""A script written with `from __future__ import annotations`: its dataclasses, pydantic
models and enums are defined here (in __main__) and used as task parameter and return
types, so under the process executor they travel to workers pickled by value.

Usage: python future_types.py HOME N
"""

from __future__ import annotations

import enum
import os
import sys
import time
from dataclasses import dataclass, field

import pydantic

import heddle

env = heddle.TaskEnvironment(name="future")


def mark(tag: str) -> None:
    with open(os.environ["HEDDLE_TEST_COUNTER"], "a") as f:
        f.write(tag + "\n")


class Color(str, enum.Enum):  # noqa: UP042 - the str mixin, as many programs write it
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass
class Inner:
    value: int
    color: Color


@dataclass
class Point:
    x: int
    inner: Inner
    history: list[Inner] = field(default_factory=list)


class Detail(pydantic.BaseModel):
    level: Level
    inner: Inner


class Summary(pydantic.BaseModel):
    total: int
    colors: list[Color]
    points: list[Point]
    detail: Detail | None = None


@env.task
def make(i: int) -> Point:
    mark(f"make:{i}")
    time.sleep(0.1)
    color = Color.BLUE if i % 2 else Color.RED
    return Point(i, Inner(i * 10, color), [Inner(i, Color.RED)])


@env.task
async def summarize(points: list[Point], level: Level) -> Summary:
    mark("summarize")
    return Summary(
        total=sum(p.x + p.inner.value for p in points),
        colors=[p.inner.color for p in points],
        points=points,
        detail=Detail(level=level, inner=points[-1].inner),
    )


@env.task
async def main(n: int) -> Summary:
    points = [await make.aio(i) for i in range(n)]
    return await summarize(points, Level.HIGH)


if __name__ == "__main__":
    heddle.init(sys.argv[1])
    print(heddle.run(main, int(sys.argv[2])).outputs().model_dump_json())
