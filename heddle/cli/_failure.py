"""How the CLI shows why a run failed: the user's traceback (Heddle's frames left out),
the path of actions from the root to the one that raised, and where to look next."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.text import Text

from heddle._runtime import failures
from heddle._store import ActionRecord
from heddle.cli import _console

_FAILED = ("failed", "aborted")


def failing_path(actions: Sequence[ActionRecord], root_id: str) -> list[ActionRecord]:
    """The root and, down from it, each failed child that failed with its parent's error
    (same type and message): it ends at the action that raised it."""
    by_id = {a.id: a for a in actions}
    children: dict[str, list[ActionRecord]] = {}
    for a in actions:
        if a.parent_id is not None and a.status in _FAILED:
            children.setdefault(a.parent_id, []).append(a)
    path: list[ActionRecord] = []
    current = by_id.get(root_id)
    while current is not None and current.status in _FAILED:
        path.append(current)
        error = _console.parse_failure(current.error)
        same = [
            c
            for c in children.get(current.id, [])
            if error is not None and _same_error(error, _console.parse_failure(c.error))
        ]
        current = min(same, key=lambda c: c.finished_at or 0.0) if same else None
    return path


def _same_error(parent: failures.Failure, child: failures.Failure | None) -> bool:
    return child is not None and (child.type_name, child.message) == (
        parent.type_name,
        parent.message,
    )


def path_text(path: Sequence[ActionRecord]) -> str:
    """``root → ... → failing task`` (with the failing action's id)."""
    if not path:
        return ""
    return " → ".join(a.task_name for a in path) + f"  (action {path[-1].id})"


def traceback_text(traceback: str) -> str:
    """The user's part of a stored traceback, without its last exception line(s): the
    CLI prints the error itself, below it."""
    lines = failures.user_traceback(traceback).rstrip().splitlines()
    last_frame = max(
        (i for i, line in enumerate(lines) if line.startswith(("  File ", "    "))), default=-1
    )
    if last_frame < 0:
        return ""
    return "\n".join(lines[: last_frame + 1])


def print_where(console: Console, run_id: str, url: str, path: Sequence[ActionRecord]) -> None:
    """Which actions failed, and how to see the run."""
    if path:
        console.print(Text.assemble(("  in ", "grey50"), path_text(path)), highlight=False)
    console.print(
        Text.assemble(("  see ", "grey50"), f"heddle runs show {run_id}", ("  ·  ", "grey50"), url),
        highlight=False,
        soft_wrap=True,
    )
