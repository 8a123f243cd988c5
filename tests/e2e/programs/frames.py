"""Where failing.py fails: the traceback lines the traceback tests expect to see."""

from __future__ import annotations

from pathlib import Path

FAILING = Path(__file__).parent / "failing.py"


def line_of(text: str) -> int:
    """The number of the line of failing.py that is ``text`` (indentation aside)."""
    lines = FAILING.read_text().splitlines()
    (number,) = [i for i, line in enumerate(lines, 1) if line.strip() == text]
    return number


RAISE = 'raise ValueError(f"cannot parse {text!r}") from exc  # the failing line'
PARSE = f'failing.py", line {line_of(RAISE)}, in parse'
LEAF = f'failing.py", line {line_of("return parse(text)")}, in leaf'
MAIN = f'failing.py", line {line_of("return await leaf(text) + 1")}, in main'
CAUGHT = f'failing.py", line {line_of("await leaf(text)")}, in catcher'


def assert_user_traceback(text: str, *frames: str) -> None:
    """``text`` shows where failing.py raised (and ``frames``), with the chained cause."""
    for frame in (PARSE, LEAF, *frames):
        assert frame in text, f"{frame!r} is not in:\n{text}"
    assert "KeyError: 'two'" in text, text
    assert "ValueError: cannot parse 'two'" in text, text
