"""Action ids, input hashes, cache keys and run ids: pure functions, no database."""

from __future__ import annotations

import re

import pytest

from heddle._runtime.ids import action_id, cache_key, input_hash, new_run_id, source_version

BASE = {"run_id": "r0", "parent_id": "a1", "task_name": "env.t", "in_hash": "h", "n": 0}


def test_action_id_is_deterministic() -> None:
    assert action_id(**BASE) == action_id(**BASE)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [
        {"run_id": "r1"},
        {"parent_id": "a2"},
        {"parent_id": None},
        {"task_name": "env.u"},
        {"in_hash": "h2"},
        {"n": 1},
    ],
)
def test_action_id_differs_by_each_input(change: dict[str, object]) -> None:
    assert action_id(**{**BASE, **change}) != action_id(**BASE)  # type: ignore[arg-type]


def test_action_id_parts_do_not_run_into_each_other() -> None:
    # "ab"+"c" and "a"+"bc" are different calls.
    assert action_id("r", "ab", "c", "h", 0) != action_id("r", "a", "bc", "h", 0)
    assert action_id("r", None, "t", "h", 1) != action_id("r", None, "t", "h1", 0)


def test_action_id_shape() -> None:
    assert re.fullmatch(r"a[0-9a-f]{32}", action_id(**BASE))  # type: ignore[arg-type]


def test_ids_are_stable_across_releases() -> None:
    # Recovery finds stored actions by recomputing their ids: changing the scheme
    # would orphan every run recorded before the change.
    h = input_hash(b"\x91\x01")
    assert action_id("rabc", None, "env.t", h, 0) == "a58a280336bc6ad32f4fd0d47e4d7a306"
    assert action_id("rabc", "a1", "env.t", h, 2) == "a1bf280d1558bb36653e5c9ad1e334d6d"
    assert cache_key("env.t", "v1", input_hash(b"x")) == "ce9af33c6466014fa7e4de205ef46cedfdc87f610"
    assert input_hash(b"") == "cae66941d9efbd404e4d88758ea67670"


def test_input_hash_depends_on_every_byte() -> None:
    assert input_hash(b"abc") == input_hash(b"abc")
    assert input_hash(b"abc") != input_hash(b"abd")
    assert input_hash(b"abc") != input_hash(b"abc\x00")
    assert re.fullmatch(r"[0-9a-f]{32}", input_hash(b"abc"))


@pytest.mark.parametrize("index", [0, 1, 2])
def test_cache_key_differs_by_each_part(index: int) -> None:
    parts = ["env.t", "v1", "h"]
    changed = list(parts)
    changed[index] += "x"
    assert cache_key(*parts) == cache_key(*parts)
    assert cache_key(*changed) != cache_key(*parts)
    assert cache_key("env.t", "v1h", "") != cache_key("env.t", "v1", "h")


def test_cache_key_does_not_depend_on_the_run() -> None:
    # Same call in two runs: different actions, one cache entry.
    h = input_hash(b"in")
    assert action_id("r1", None, "t", h, 0) != action_id("r2", None, "t", h, 0)
    assert cache_key("t", "v", h) == cache_key("t", "v", h)


def test_source_version_accepts_str_and_bytes_and_separates_parts() -> None:
    assert source_version("def f(): pass", "env") == source_version(b"def f(): pass", b"env")
    assert source_version("ab", "c") != source_version("a", "bc")
    assert source_version("x") != source_version("y")
    assert len(source_version("x")) == 20


def test_run_ids_are_random_and_well_formed() -> None:
    ids = {new_run_id() for _ in range(1000)}
    assert len(ids) == 1000
    for run_id in ids:
        assert re.fullmatch(r"r[0-9a-hjkmnp-tv-z]{16}", run_id), run_id
