"""Data crossing task boundaries in real runs, on the local store and on S3 (moto):
frames, arrays, handles, files and directories, caching by content."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
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


# -- frames and heddle.DataFrame accepted for each other (as Flyte 2 converts them) ------


@env.task
async def describe_pandas(df: pd.DataFrame) -> list[str]:
    assert isinstance(df, pd.DataFrame), type(df)
    return [f"{c}={df[c].tolist()}" for c in df.columns]


@env.task
def describe_polars(df: pl.DataFrame) -> list[str]:
    assert isinstance(df, pl.DataFrame), type(df)
    return [f"{c}={df[c].to_list()}" for c in df.columns]


@env.task
async def describe_arrow(table: pa.Table) -> list[str]:
    assert isinstance(table, pa.Table), type(table)
    return [f"{c}={table[c].to_pylist()}" for c in table.column_names]


@env.task
async def describe_handle(df: heddle.DataFrame) -> list[str]:
    assert isinstance(df, heddle.DataFrame), type(df)
    frame = df.open(pd.DataFrame).all()
    return [f"{c}={frame[c].tolist()}" for c in frame.columns]


@env.task
async def handle_declared_as_pandas() -> pd.DataFrame:
    return heddle.DataFrame.from_parts([pd.DataFrame({"a": [1]}), pd.DataFrame({"a": [2]})])  # type: ignore[return-value]


@env.task
async def polars_declared_as_handle() -> heddle.DataFrame:
    return pl.DataFrame({"a": [3, 4]})  # type: ignore[return-value]


@env.task
async def frames_cross_declared_types() -> dict[str, list[str]]:
    pandas_frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    polars_frame = pl.DataFrame({"a": [5], "b": ["p"]})
    arrow_table = pa.table({"a": [7, 8], "b": ["s", "t"]})
    one_part = heddle.DataFrame.from_df(pandas_frame)
    two_parts = heddle.DataFrame.from_parts([pandas_frame, polars_frame])
    from_pandas_task = await handle_declared_as_pandas()
    from_handle_task = await polars_declared_as_handle()
    assert isinstance(from_pandas_task, pd.DataFrame), type(from_pandas_task)
    assert isinstance(from_handle_task, heddle.DataFrame), type(from_handle_task)
    return {
        "pandas<-handle": await describe_pandas(one_part),
        "pandas<-parts": await describe_pandas(two_parts),
        "pandas<-polars": await describe_pandas(polars_frame),
        "pandas<-arrow": await describe_pandas(arrow_table),
        "polars<-pandas": await describe_polars.aio(pandas_frame),
        "polars<-handle": await describe_polars.aio(one_part),
        "arrow<-parts": await describe_arrow(two_parts),
        "handle<-pandas": await describe_handle(pandas_frame),
        "handle<-polars": await describe_handle(polars_frame),
        "handle<-arrow": await describe_handle(arrow_table),
        "returned pandas": [str(from_pandas_task["a"].tolist())],
        "returned handle": await describe_handle(from_handle_task),
    }


@pytest.mark.parametrize("executor", ["inline", "process"])
def test_frames_and_dataframe_handles_are_accepted_for_each_other(
    executor: str, tmp_path: Path
) -> None:
    heddle.init(tmp_path / "home", executor=executor)
    out = heddle.run(frames_cross_declared_types).outputs()
    ab = ["a=[1, 2]", "b=['x', 'y']"]
    assert out == {
        "pandas<-handle": ab,
        "pandas<-parts": ["a=[1, 2, 5]", "b=['x', 'y', 'p']"],
        "pandas<-polars": ["a=[5]", "b=['p']"],
        "pandas<-arrow": ["a=[7, 8]", "b=['s', 't']"],
        "polars<-pandas": ab,
        "polars<-handle": ab,
        "arrow<-parts": ["a=[1, 2, 5]", "b=['x', 'y', 'p']"],
        "handle<-pandas": ab,
        "handle<-polars": ["a=[5]", "b=['p']"],
        "handle<-arrow": ["a=[7, 8]", "b=['s', 't']"],
        "returned pandas": ["[1, 2]"],
        "returned handle": ["a=[3, 4]"],
    }
