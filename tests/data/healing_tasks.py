"""Tasks for the self-healing tests: producers of blobs (a table, an array, a file, a
list large enough to be kept in a blob) and a consumer that fails while a flag file
exists. Every body appends a line to the ledger, so a test can count what ran."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

import heddle

LEDGER_ENV = "HEDDLE_TEST_HEALING_LEDGER"
# Workers of the process executor fork from a server started with the environment of
# the first run, so the ledger's path is fixed when this module is imported.
LEDGER = Path(tempfile.gettempdir()) / f"heddle-healing-ledger-{os.getpid()}.txt"
os.environ.setdefault(LEDGER_ENV, str(LEDGER))

env = heddle.TaskEnvironment(name="healing")


def note(line: str) -> None:
    with open(os.environ[LEDGER_ENV], "a") as f:
        f.write(line + "\n")


def ledger() -> list[str]:
    path = Path(os.environ[LEDGER_ENV])
    return path.read_text().splitlines() if path.exists() else []


@env.task
async def make_table(n: int) -> pd.DataFrame:
    note("make_table")
    return pd.DataFrame({"x": np.arange(n, dtype="int64")})


@env.task
async def make_array(n: int) -> np.ndarray:
    note("make_array")
    return np.arange(n, dtype="float64")


@env.task
async def make_file(n: int) -> heddle.File:
    note("make_file")
    out = heddle.File.new_remote("numbers.txt")
    with out.open("wb") as f:
        f.write(b"7" * n)
    return out


@env.task
async def make_list(n: int) -> list[int]:
    note("make_list")
    return list(range(n))


@env.task
async def total(
    table: pd.DataFrame, array: np.ndarray, file: heddle.File, numbers: list[int], flag: str
) -> int:
    note("total")
    if Path(flag).exists():
        raise RuntimeError("the flag is up: failing on purpose")
    with file.open() as f:
        sevens = len(f.read())
    return int(table["x"].sum()) + int(array.sum()) + sevens + sum(numbers)


@env.task
async def main(n: int, flag: str) -> int:
    table = await make_table(n)
    array = await make_array(n)
    file = await make_file(n)
    numbers = await make_list(n)
    return await total(table, array, file, numbers, flag)


def expected(n: int) -> int:
    return 3 * (n * (n - 1) // 2) + n


cached_env = heddle.TaskEnvironment(name="healing-cached", cache="auto")


@cached_env.task
async def make_cached(n: int) -> np.ndarray:
    note("make_cached")
    return np.arange(n, dtype="float64")


@env.task
async def use_cached(n: int, flag: str) -> float:
    array = await make_cached(n)
    if Path(flag).exists():
        raise RuntimeError("the flag is up: failing on purpose")
    return float(array.sum())
