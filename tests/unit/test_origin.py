"""Names and versions of user code do not depend on how the code was loaded."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
import traceback
from pathlib import Path
from typing import Any

import pytest

import heddle
from heddle._sdk.origin import code_fingerprint, dumps_by_value, module_identity
from heddle._sdk.trace import Traced


def _define(source: str, filename: str, module: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": module, "heddle": heddle}
    exec(compile(textwrap.dedent(source), filename, "exec"), namespace)
    return namespace


SOURCE = """
    @heddle.trace
    async def call_llm(prompt: str) -> str:
        return prompt

    def divide(x: int) -> float:
        return x / 0
"""


def test_a_trace_in_an_importable_module_is_named_after_the_module() -> None:
    ns = _define(SOURCE, "/somewhere/pkg/llm.py", "pkg.llm")
    assert ns["call_llm"].name == "pkg.llm.call_llm"


@pytest.mark.parametrize("module", ["__main__", "__mp_main__", "heddle_program_1a2b3c"])
def test_a_trace_in_a_script_is_named_after_its_file_however_it_was_loaded(
    tmp_path: Path, module: str
) -> None:
    script = tmp_path / "my_flow.py"
    script.write_text(textwrap.dedent(SOURCE))
    ns = _define(SOURCE, str(script), module)
    assert ns["call_llm"].name == "my_flow.call_llm"


@pytest.mark.parametrize(
    "filename",
    ["<stdin>", "<string>", "<ipython-input-3-1f2e>", "/tmp/ipykernel_4242/2813.py"],
    ids=["stdin", "exec-or-c", "ipython", "notebook-cell"],
)
def test_a_trace_in_code_with_no_file_is_named_under_main(filename: str) -> None:
    ns = _define(SOURCE, filename, "__main__")
    assert ns["call_llm"].name == "__main__.call_llm"


def test_a_traces_name_travels_with_it_when_pickled_by_value(tmp_path: Path) -> None:
    script = tmp_path / "flow.py"
    script.write_text(textwrap.dedent(SOURCE))
    traced = _define(SOURCE, str(script), "__main__")["call_llm"]
    script.unlink()  # a worker on another machine: the file is not there

    copy = pickle.loads(dumps_by_value(traced))

    assert isinstance(copy, Traced)
    assert copy.name == "flow.call_llm"


def test_a_function_pickled_by_value_keeps_its_file_and_lines_in_tracebacks(
    tmp_path: Path,
) -> None:
    script = tmp_path / "flow.py"
    script.write_text(textwrap.dedent(SOURCE))
    divide = pickle.loads(dumps_by_value(_define(SOURCE, str(script), "__main__")["divide"]))

    with pytest.raises(ZeroDivisionError) as info:
        divide(1)

    (frame,) = [f for f in traceback.extract_tb(info.value.__traceback__) if f.name == "divide"]
    assert (frame.filename, frame.lineno, frame.line) == (str(script), 7, "return x / 0")
    assert module_identity(divide) == "flow"


def test_the_version_stand_in_for_code_without_source_is_the_same_in_every_process() -> None:
    # A comprehension (a nested code object) and a frozenset constant: both have a repr
    # that changes from one process to the next.
    source = "def f(xs):\n    return [x for x in xs if x in {'a', 'b', 'c'}]\n"
    program = (
        "from heddle._sdk.origin import code_fingerprint\n"
        f"ns = {{}}\nexec({source!r}, ns)\nprint(code_fingerprint(ns['f'].__code__))\n"
    )
    prints = {
        subprocess.run(
            [sys.executable, "-c", program],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": str(seed)},
        ).stdout
        for seed in (1, 2)
    }
    assert len(prints) == 1
    ns: dict[str, Any] = {}
    exec(source.replace("'c'", "'d'"), ns)
    assert code_fingerprint(ns["f"].__code__) + "\n" not in prints  # a change is seen
