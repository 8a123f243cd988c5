"""A recovered run whose recorded outputs refer to lost blobs (deleted, or corrupt) makes
them again: the producing task runs again instead of being replayed, a run event says
so, and the run succeeds with the right output. A task that reads a corrupt input
fails with an error naming the blob and the action that produced it. On the local
folder and on S3 (moto); inline and process executors."""

from __future__ import annotations

import gc
import os
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import obstore
import pytest
from click.testing import CliRunner
from healing_tasks import LEDGER_ENV, expected, ledger, main

import heddle
from heddle._runtime.literals import literal_blob_key
from heddle._sdk.config import get_session
from heddle._storage import BlobStore
from heddle._storage.blobs import _key_to_path
from heddle._store import ActionRecord
from heddle.cli import cli

N = 30_000  # every output is a blob: the list too (over the 64 KiB inline limit)
PRODUCERS = ("make_table", "make_array", "make_file", "make_list")


@pytest.fixture(autouse=True)
def _empty_ledger() -> None:
    Path(os.environ[LEDGER_ENV]).write_text("")


def blobs() -> BlobStore:
    return get_session().blobs


def action(run: heddle.Run, task: str) -> ActionRecord:
    (found,) = [a for a in run.actions() if a.task_name == f"healing.{task}"]
    return found


def output_blob(run: heddle.Run, task: str) -> str:
    """The blob a producer's recorded output refers to."""
    literal = action(run, task).output
    assert literal is not None
    held = literal_blob_key(literal)
    if held is not None:  # the whole value is kept in a blob
        return held
    plain: dict[str, Any] = msgspec.msgpack.decode(get_session().literals.from_literal(literal))
    return str(plain["k"])


def lose(key: str, how: str) -> None:
    """Delete a blob, or flip one of its bytes; and drop this machine's cached copy, as
    if the run were recovered elsewhere."""
    store = blobs()
    path = _key_to_path(key)
    if store.root is None:
        (store.cache_dir / path).unlink(missing_ok=True)
    if how == "missing":
        obstore.delete(store._store, path)
        return
    data = bytearray(obstore.get(store._store, path).bytes())
    data[len(data) // 2] ^= 0x20
    obstore.put(store._store, path, bytes(data))


def failed_first_run(tmp_path: Path, executor: str = "inline") -> tuple[heddle.Run, Path]:
    flag = tmp_path / "flag"
    flag.write_text("up")
    run = heddle.run(main, N, str(flag), executor=executor)
    assert run.status == "failed"
    assert Counter(ledger()) == {p: 1 for p in (*PRODUCERS, "total")}
    return run, flag


def forget_decoded_frames() -> None:
    # Frames decoded in this process are reused by key; a recovery elsewhere reads them.
    from heddle._types import tables

    tables._originals.clear()
    gc.collect()


def healing_events(run_id: str) -> list[Any]:
    """The run's events about lost blobs (a recovery also records a "recovered" event)."""
    return [e for e in get_session().store.run_events(run_id) if e.kind != "recovered"]


@pytest.mark.parametrize("how", ["missing", "corrupt"])
@pytest.mark.parametrize("task", PRODUCERS)
def test_recovery_runs_the_producer_of_a_lost_blob_again(
    any_storage: str, tmp_path: Path, task: str, how: str
) -> None:
    run, flag = failed_first_run(tmp_path)
    lost = output_blob(run, task)
    lose(lost, how)
    flag.unlink()
    forget_decoded_frames()

    recovered = heddle.recover(run.id)

    assert recovered.status == "succeeded", recovered.record.error
    assert recovered.outputs() == expected(N)
    ran = Counter(ledger())
    assert ran == {p: 2 if p == task else 1 for p in PRODUCERS} | {"total": 2}
    events = healing_events(run.id)
    assert [(e.kind, e.action_id) for e in events] == [("output_lost", action(recovered, task).id)]
    state = "missing" if how == "missing" else "corrupt"
    assert f"blob {lost}, which is {state}" in events[0].message
    assert f"healing.{task}" in events[0].message
    assert blobs().exists(lost), "the blob was made again"


@pytest.mark.parametrize("executor", ["inline", "process"])
def test_a_task_reading_a_corrupt_input_names_its_producer_and_the_next_recovery_heals(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, executor: str
) -> None:
    # A corrupt blob too large to hash before replay (here: any size) is found only
    # when a task reads it.
    monkeypatch.setattr("heddle._storage.blobs.CHECK_HASH_BYTES", 0)
    monkeypatch.setenv("HEDDLE_EXECUTOR", executor)
    run, flag = failed_first_run(tmp_path, executor)
    lost = output_blob(run, "make_array")
    lose(lost, "corrupt")
    flag.unlink()

    first = heddle.recover(run.id)

    assert first.status == "failed"
    with pytest.raises(heddle.BlobCorruptError) as info:
        first.outputs()
    producer = action(first, "make_array")
    assert info.value.key == lost
    assert f"produced by action {producer.id} (task healing.make_array)" in str(info.value)
    (event,) = healing_events(run.id)
    assert event.kind == "input_lost" and event.action_id == producer.id
    # The reader is main: it decodes make_array's (replayed) output when its call returns.
    assert f"action {action(first, 'main').id} (task healing.main)" in event.message
    assert not blobs().exists(lost), "the corrupt blob was set aside"

    second = heddle.recover(run.id)

    assert second.status == "succeeded", second.record.error
    assert second.outputs() == expected(N)
    assert Counter(ledger())["make_array"] == 2
    kinds = [e.kind for e in healing_events(run.id)]
    assert kinds == ["input_lost", "output_lost"]


def test_recovery_heals_a_lost_blob_under_the_process_executor(home: Path, tmp_path: Path) -> None:
    run, flag = failed_first_run(tmp_path, executor="process")
    lose(output_blob(run, "make_table"), "corrupt")
    flag.unlink()

    recovered = heddle.recover(run.id)

    assert recovered.status == "succeeded", recovered.record.error
    assert recovered.outputs() == expected(N)
    assert Counter(ledger())["make_table"] == 2


def test_runs_show_lists_the_run_events(home: Path, tmp_path: Path) -> None:
    run, flag = failed_first_run(tmp_path)
    lose(output_blob(run, "make_file"), "missing")
    flag.unlink()
    heddle.recover(run.id)

    result = CliRunner().invoke(cli, ["--home", str(home), "runs", "show", run.id])
    assert result.exit_code == 0, result.output
    assert "events" in result.stdout and "output_lost" in result.stdout
    assert "healing.make_file" in result.stdout
    as_json = CliRunner().invoke(cli, ["--home", str(home), "runs", "show", run.id, "--json"])
    (event,) = [
        e for e in msgspec.json.decode(as_json.stdout)["events"] if e["kind"] != "recovered"
    ]
    assert event["kind"] == "output_lost"
    assert event["action_id"] == action(run, "make_file").id


def test_a_cached_output_whose_blob_is_lost_is_computed_again_not_served(
    home: Path, tmp_path: Path
) -> None:
    from healing_tasks import make_cached, use_cached

    flag = tmp_path / "flag"
    flag.write_text("up")
    run = heddle.run(use_cached, N, str(flag))
    assert run.status == "failed"
    producer = next(a for a in run.actions() if a.task_name == make_cached.name)
    literal = producer.output
    assert literal is not None and producer.cache_key is not None
    plain = msgspec.msgpack.decode(get_session().literals.from_literal(literal))
    lose(plain["k"], "missing")
    flag.unlink()

    recovered = heddle.recover(run.id)

    assert recovered.status == "succeeded", recovered.record.error
    assert recovered.outputs() == float(N * (N - 1) // 2)
    assert Counter(ledger())["make_cached"] == 2
    # The next run is a cache hit on the output made again, whose blob is in place.
    again = heddle.run(use_cached, N, str(flag))
    assert again.outputs() == float(N * (N - 1) // 2)
    assert Counter(ledger())["make_cached"] == 2
