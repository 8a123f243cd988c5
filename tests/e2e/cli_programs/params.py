"""Tasks whose parameters exercise the command line's type conversion."""

from __future__ import annotations

from dataclasses import dataclass

import heddle

env = heddle.TaskEnvironment(name="params")


@dataclass
class Point:
    x: int
    y: int = 0


@env.task
async def describe(
    n: int,
    ratio: float = 0.5,
    label: str = "plain",
    verbose: bool = False,
    xs: list[int] = [1, 2],  # noqa: B006 - a default shown in --help
    point: Point | None = None,
    learning_rate: float = 0.1,
) -> dict[str, str]:
    """Describe the inputs it was given, with their Python types.

    Used by the CLI tests.
    """
    return {
        "n": repr(n),
        "ratio": repr(ratio),
        "label": repr(label),
        "verbose": repr(verbose),
        "xs": repr(xs),
        "point": repr(point),
        "learning_rate": repr(learning_rate),
    }


@env.task
async def named(name: str, quiet: bool = False) -> str:
    """A task whose parameters share names with heddle run's own options."""
    return f"{name}:{quiet}"
