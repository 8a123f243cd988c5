"""Cache keys and dependencies without a database: code fingerprints of the user code a
task uses, the dependency record a cached call leaves, and the check a hit must pass."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import heddle
from heddle._runtime import versions
from heddle._runtime.cache import (
    Dependencies,
    decode_deps,
    encode_deps,
    key_version,
    stale_dependency,
)
from heddle._runtime.fingerprint import code_fingerprint
from heddle._runtime.ids import input_hash

env = heddle.TaskEnvironment(name="keys")

BASE = """
SCALE = 2
NAMES = {"a", "b", "c"}

def inner(x):
    return x + 1

def helper(x):
    return inner(x) * SCALE

class Shift:
    def apply(self, x):
        return x + 7

shifter = Shift()

def task_body(x, step=3):
    return helper(x) + Shift().apply(x) + len(NAMES) + step
"""


def load(source: str, name: str = "fp_user") -> dict[str, Any]:
    """Run ``source`` as the user's own code (not installed, not the standard library)."""
    namespace: dict[str, Any] = {"__name__": name}
    exec(compile(textwrap.dedent(source), f"<{name}>", "exec"), namespace)
    return namespace


def fingerprint(source: str, fn: str = "task_body") -> str:
    return code_fingerprint(load(source)[fn])


# -- code fingerprints -------------------------------------------------------------------


def test_the_same_code_loaded_twice_has_the_same_fingerprint() -> None:
    assert fingerprint(BASE) == fingerprint(BASE)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("return inner(x) * SCALE", "return inner(x) * SCALE * 2"),  # a helper's body
        ("return x + 1", "return x + 2"),  # a helper's helper
        ("SCALE = 2", "SCALE = 3"),  # a constant a helper reads
        ('NAMES = {"a", "b", "c"}', 'NAMES = {"a", "b"}'),  # a constant the task reads
        ("return x + 7", "return x + 70"),  # a method of a class it uses
        ("def task_body(x, step=3)", "def task_body(x, step=4)"),  # its own default
    ],
)
def test_a_change_to_user_code_the_task_reaches_changes_the_fingerprint(old: str, new: str) -> None:
    assert old in BASE
    assert fingerprint(BASE.replace(old, new)) != fingerprint(BASE)


def test_the_task_body_itself_is_left_to_its_version() -> None:
    changed = BASE.replace("+ len(NAMES) + step", "+ len(NAMES) + step  # a comment")
    assert fingerprint(changed) == fingerprint(BASE)


def test_moving_a_helper_down_its_file_keeps_the_fingerprint() -> None:
    moved = BASE.replace("def inner(x):", "\n\n\n# moved\ndef inner(x):")
    assert fingerprint(moved) == fingerprint(BASE)


def test_an_unused_helper_does_not_count() -> None:
    extra = BASE + "\ndef unused(x):\n    return x * 99\n"
    assert fingerprint(extra) == fingerprint(BASE)


def test_a_method_of_an_object_the_task_uses_counts() -> None:
    source = BASE.replace("Shift().apply(x)", "shifter.apply(x)")
    changed = source.replace("return x + 7", "return x + 8")
    assert fingerprint(changed) != fingerprint(source)


def test_library_code_is_not_hashed() -> None:
    # json.dumps is the standard library's: it is used, not hashed, so the result is
    # the same whichever library function is named.
    with_dumps = fingerprint("import json\ndef task_body(x):\n    return json.dumps(x)\n")
    with_loads = fingerprint("import json\ndef task_body(x):\n    return json.loads(x)\n")
    assert with_dumps == with_loads


def test_tasks_and_traces_the_code_calls_are_left_to_their_own_versions() -> None:
    class FakeTask:
        _heddle_dependency = True

        def __init__(self, version: str) -> None:
            self.version = version

    def body_with(dep: Any) -> str:
        namespace = load("def task_body(x):\n    return child(x)\n")
        namespace["child"] = dep
        return code_fingerprint(namespace["task_body"])

    assert body_with(FakeTask("v1")) == body_with(FakeTask("v2"))


def test_an_object_that_fails_to_be_inspected_does_not_fail_the_fingerprint() -> None:
    class Proxy:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError(f"no {name} here")

    namespace = load("def task_body(x):\n    return client.get(x)\n")
    namespace["client"] = Proxy()
    assert code_fingerprint(namespace["task_body"]) == code_fingerprint(namespace["task_body"])


def test_a_helper_redefined_in_the_same_process_is_seen() -> None:
    # A notebook cell run again: the task object stays, the helper it names changes.
    namespace = load(BASE)
    before = code_fingerprint(namespace["task_body"])
    assert code_fingerprint(namespace["task_body"]) == before
    exec(compile("def inner(x):\n    return x + 5\n", "<cell>", "exec"), namespace)
    assert code_fingerprint(namespace["task_body"]) != before


def test_a_helper_in_a_closure_counts() -> None:
    def make(offset: int) -> Any:
        def local_helper(x: int) -> int:
            return x + offset

        def body(x: int) -> int:
            return local_helper(x)

        return body

    assert code_fingerprint(make(1)) != code_fingerprint(make(2))


def test_fingerprints_are_the_same_in_every_process(tmp_path: Path) -> None:
    # Set order and object addresses differ between processes; fingerprints must not.
    (tmp_path / "flows_fp.py").write_text(BASE)
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import flows_fp; "
        "from heddle._runtime.fingerprint import code_fingerprint; "
        "print(code_fingerprint(flows_fp.task_body))"
    )
    seen = set()
    for seed in ("1", "2", "3"):
        proc = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
            check=True,
        )
        seen.add(proc.stdout.strip())
    assert len(seen) == 1


# -- keys --------------------------------------------------------------------------------


def test_a_changed_input_default_changes_the_bound_inputs_and_so_the_key() -> None:
    @env.task(name="keys.stepped")
    async def five(x: int, step: int = 5) -> int:
        return x + step

    @env.task(name="keys.stepped")
    async def nine(x: int, step: int = 9) -> int:
        return x + step

    hashes = {
        input_hash(t.spec.encode_inputs(t.bind((1,), {}))) for t in (five, nine)
    }  # bound inputs include the defaults
    assert len(hashes) == 2


def test_a_declared_cache_version_replaces_the_code_in_the_key() -> None:
    @env.task(name="keys.versioned", cache=heddle.Cache(version="v7"))
    async def versioned(x: int) -> int:
        return x

    @env.task(name="keys.auto", cache="auto")
    async def auto(x: int) -> int:
        return x

    assert key_version(versioned.spec) == "v7"
    assert key_version(auto.spec) not in ("", auto.spec.version)


# -- dependencies ------------------------------------------------------------------------


def test_a_call_records_its_task_and_everything_below_it() -> None:
    @env.task(name="keys.leaf")
    async def leaf(x: int) -> int:
        return x

    @env.task(name="keys.middle")
    async def middle(x: int) -> int:
        return x

    deps = Dependencies()
    # leaf (called by middle) ends, then middle (called by top) ends.
    deps.called_trace("a-middle", "flows.note", "t1")
    deps.finished("a-middle", "a-leaf", leaf.spec, None)
    middle_deps = deps.close("a-middle")
    deps.finished("a-top", "a-middle", middle.spec, middle_deps)
    top_deps = decode_deps(deps.close("a-top"))
    assert top_deps == {
        ("task", "keys.leaf", leaf.dependency_version()),
        ("task", "keys.middle", middle.dependency_version()),
        ("trace", "flows.note", "t1"),
    }


def test_a_failed_call_still_counts_for_its_caller() -> None:
    @env.task(name="keys.fragile")
    async def fragile(x: int) -> int:
        return x

    deps = Dependencies()
    deps.called_trace("a-fragile", "flows.note", "t1")  # before it failed
    deps.finished("a-top", "a-fragile", fragile.spec, None)
    assert ("trace", "flows.note", "t1") in decode_deps(deps.close("a-top"))


def test_an_action_that_called_nothing_records_no_dependencies() -> None:
    assert Dependencies().close("a-leaf") is None
    assert encode_deps([]) is None


def test_dependencies_are_stored_sorted_so_equal_sets_read_the_same() -> None:
    a = encode_deps([("task", "b", "1"), ("task", "a", "2")])
    b = encode_deps([("task", "a", "2"), ("task", "b", "1")])
    assert a == b == json.dumps([["task", "a", "2"], ["task", "b", "1"]], separators=(",", ":"))


def test_a_hit_is_valid_only_while_every_dependency_is_unchanged() -> None:
    defined = {("task", "env.leaf"): "v1", ("trace", "m.note"): "t1"}

    def current(kind: str, name: str) -> str | None:
        return defined.get((kind, name))

    deps = encode_deps([("task", "env.leaf", "v1"), ("trace", "m.note", "t1")])
    assert stale_dependency(deps, current) is None
    assert stale_dependency(None, current) is None
    defined[("task", "env.leaf")] = "v2"
    assert stale_dependency(deps, current) == ("task", "env.leaf", "v1")
    del defined[("task", "env.leaf")]  # not defined in this process: a miss
    assert stale_dependency(deps, current) == ("task", "env.leaf", "v1")
    assert stale_dependency("not json [", current) is not None


# -- the program's definitions -----------------------------------------------------------


def test_the_latest_definition_of_a_task_is_the_one_checked() -> None:
    @env.task(name="keys.redefined")
    async def first(x: int) -> int:
        return x

    assert versions.current("task", "keys.redefined") == first.dependency_version()

    @env.task(name="keys.redefined")
    async def second(x: int) -> int:
        return x + 1

    assert versions.current("task", "keys.redefined") == second.dependency_version()
    assert first.dependency_version() != second.dependency_version()


def test_an_override_keeps_the_dependency_of_the_task_it_overrides() -> None:
    @env.task(name="keys.base")
    async def base(x: int) -> int:
        return x

    other = base.override(env_vars={"MODE": "fast"}, retries=2)
    assert other.version != base.version  # its env vars change what it computes...
    # ...but the override is its caller's code: the dependency is the definition's.
    assert other.dependency_version() == base.dependency_version()
    assert versions.current("task", "keys.base") == base.dependency_version()


def test_a_trace_is_defined_with_the_version_of_its_code() -> None:
    @heddle.trace
    def noted(x: int) -> int:
        return x

    name = f"{__name__}.{noted.__qualname__}"
    assert versions.current("trace", name) == noted.dependency_version()  # type: ignore[attr-defined]
    assert versions.current("trace", "nobody.defines.this") is None


def test_a_script_trace_keeps_its_name_and_version_when_sent_to_a_worker(tmp_path: Path) -> None:
    # A script's functions travel by value; cloudpickle renames their file "<dynamic-code>".
    import cloudpickle

    namespace: dict[str, Any] = {"__name__": "__main__"}
    source = "import heddle\n\n@heddle.trace\ndef note(x: int) -> int:\n    return x + 1\n"
    script = tmp_path / "flows.py"
    script.write_text(source)  # a script with a file: named after it
    exec(compile(source, str(script), "exec"), namespace)
    note = namespace["note"]
    sent = cloudpickle.loads(cloudpickle.dumps(note))
    assert note.name == "flows.note"
    assert (sent.name, sent.version) == (note.name, note.version)
    assert sent.dependency_version() == note.dependency_version()
