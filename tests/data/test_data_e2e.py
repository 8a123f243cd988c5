"""Data crossing task boundaries in real runs, on the local store and on S3 (moto):
frames, arrays, handles, files and directories, caching by content."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

import heddle
from heddle._sdk.config import get_session

env = heddle.TaskEnvironment(name="data")


@env.task
async def make_frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"x": np.arange(n, dtype=np.float64), "s": [f"r{i}" for i in range(n)]})


@env.task
async def total(df: pd.DataFrame) -> float:
    return float(df["x"].sum())


@env.task
async def frame_pipeline(n: int) -> float:
    df = await make_frame(n)
    return await total(df)


def test_frame_returned_by_one_task_is_consumed_by_another(any_storage: str) -> None:
    run = heddle.run(frame_pipeline, 10_000)
    assert run.outputs() == pytest.approx(sum(range(10_000)))


def test_frame_crosses_worker_processes(any_storage: str, tmp_path: Path) -> None:
    """The process executor: each task in its own worker, the frame only in storage."""
    storage = get_session().settings.storage_url
    heddle.init(tmp_path / "process-home", storage_url=storage, executor="process")
    run = heddle.run(frame_pipeline, 5_000)
    assert run.outputs() == pytest.approx(sum(range(5_000)))


@env.task
def polars_stats(df: pl.LazyFrame) -> pl.DataFrame:
    return df.group_by("k").agg(pl.col("v").sum()).sort("k").collect()


@env.task
async def polars_pipeline() -> list[int]:
    lf = pl.DataFrame({"k": [1, 2, 1, 2], "v": [1, 2, 3, 4]}).lazy()
    out = await polars_stats.aio(lf)
    return [int(v) for v in out["v"].to_list()]


def test_polars_lazyframe_across_tasks(any_storage: str) -> None:
    assert heddle.run(polars_pipeline).outputs() == [4, 6]


@env.task
async def make_handle(n: int) -> heddle.DataFrame:
    parts = [pd.DataFrame({"a": range(i, i + 5), "b": [0.5] * 5}) for i in range(0, n, 5)]
    return heddle.DataFrame.from_parts(parts)


@env.task
async def pass_on(df: heddle.DataFrame) -> heddle.DataFrame:
    return df  # never reads it


@env.task
async def sum_column(df: heddle.DataFrame) -> int:
    frame = df.open(pl.DataFrame, columns=["a"]).all()
    assert frame.columns == ["a"]
    return int(frame["a"].sum())


@env.task
async def handle_pipeline(n: int) -> int:
    df = await make_handle(n)
    assert len(df.parts) == n // 5
    return await sum_column(await pass_on(df))


def test_dataframe_handle_passes_through_tasks_and_reads_selected_columns(
    any_storage: str,
) -> None:
    assert heddle.run(handle_pipeline, 20).outputs() == sum(range(20))


@env.task
async def write_report(text: str) -> heddle.File:
    f = heddle.File.new_remote("report.txt")
    with f.open("w") as out:
        out.write(text)
    return f


@env.task
async def read_report(f: heddle.File) -> str:
    with f.open("r") as handle:
        return str(handle.read())


@env.task
async def make_tree(root: str) -> heddle.Dir:
    return heddle.Dir.from_local(root)


@env.task
async def count_tree(d: heddle.Dir) -> list[str]:
    local = d.download()
    return sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())


@env.task
async def files_pipeline(root: str) -> tuple[str, list[str]]:
    f = await write_report("hello " * 3)
    d = await make_tree(root)
    return await read_report(f), await count_tree(d)


def test_files_and_dirs_cross_tasks(any_storage: str, tmp_path: Path) -> None:
    root = tmp_path / "tree"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_text("a")
    (root / "sub" / "b.bin").write_bytes(b"\x00" * 100)
    (root / "sub" / "deeper" / "c.txt").write_text("c")
    text, names = heddle.run(files_pipeline, str(root)).outputs()
    assert text == "hello " * 3
    assert names == ["a.txt", "sub/b.bin", "sub/deeper/c.txt"]


calls: list[int] = []


@env.task(cache="auto")
async def cached_rows(df: pd.DataFrame) -> int:
    calls.append(len(df))
    return len(df)


@env.task
async def cache_pipeline(seed: int) -> int:
    df = pd.DataFrame({"v": np.random.default_rng(seed).random(500)})
    return await cached_rows(df)


def test_cache_key_depends_on_frame_content_only(any_storage: str) -> None:
    calls.clear()
    first = heddle.run(cache_pipeline, 1)
    second = heddle.run(cache_pipeline, 1)  # a new but equal frame: a cache hit
    third = heddle.run(cache_pipeline, 2)
    keys = [
        next(a.cache_key for a in r.actions() if a.task_name == "data.cached_rows")
        for r in (first, second, third)
    ]
    assert keys[0] == keys[1] != keys[2]
    assert calls == [500, 500]


@env.task
def dir_of_a_temporary_folder(text: str) -> heddle.Dir:
    with tempfile.TemporaryDirectory(prefix="heddle-scratch-") as scratch:
        (Path(scratch) / "out.txt").write_text(text)
        # Removed when the block ends, before the Dir is uploaded on return.
        return heddle.Dir.from_local(scratch)


@env.task
def count_files(d: heddle.Dir) -> int:
    return len(d)


@env.task
async def pass_a_removed_dir(root: str) -> int:
    d = heddle.Dir.from_local(root)
    shutil.rmtree(root)
    return await count_files.aio(d)


@pytest.mark.parametrize("executor", ["inline", "process"])
def test_a_dir_whose_folder_is_removed_before_upload_fails_the_task_naming_it(
    executor: str, tmp_path: Path
) -> None:
    heddle.init(tmp_path / "home", executor=executor)
    run = heddle.run(dir_of_a_temporary_folder, "x")
    assert run.status == "failed"
    with pytest.raises(heddle.HeddleError, match=r"heddle-scratch-\w+ no longer exists.*upload"):
        run.outputs()

    root = tmp_path / "tree"
    root.mkdir()
    (root / "a.txt").write_text("a")
    passing = heddle.run(pass_a_removed_dir, str(root))
    with pytest.raises(heddle.InputError, match=r"parameter 'd'.*tree no longer exists"):
        passing.outputs()
    # Refused before anything was recorded: the child never became an action.
    assert [a.task_name for a in passing.actions()] == ["data.pass_a_removed_dir"]
