"""Shared terminal output for the CLI: the Rich consoles, colours and value formatting.

Results go to stdout; progress, notices and errors go to stderr so output stays scriptable.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.text import Text

from heddle._runtime import failures

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

STATUS_STYLES = {
    "queued": "grey62",
    "running": "yellow",
    "succeeded": "green",
    "failed": "bold red",
    "aborted": "magenta",
    "lost": "red",
    "superseded": "grey62",
}


def _width() -> int | None:
    # Piped output has no terminal width; wide enough that ids and tables stay whole.
    if sys.stdout.isatty() or os.environ.get("COLUMNS"):
        return None
    return 160


def stdout() -> Console:
    """A console on the current sys.stdout (looked up per call, so test runners can swap it)."""
    return Console(file=sys.stdout, width=_width(), soft_wrap=False)


def stderr() -> Console:
    return Console(file=sys.stderr, width=_width(), soft_wrap=False)


def error(message: str) -> None:
    """One red line on stderr; the caller decides the exit code."""
    stderr().print(Text(f"error: {message}", style="bold red"), highlight=False, soft_wrap=True)


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def local_time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    """A short human duration: 850ms, 12.3s, 4m05s, 2h03m."""
    if seconds is None:
        return "-"
    seconds = max(seconds, 0.0)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        m, s = divmod(int(seconds), 60)
        return f"{m}m{s:02d}s"
    h, rem = divmod(int(seconds), 3600)
    return f"{h}h{rem // 60:02d}m"


def span(start: float | None, end: float | None, now: float) -> float | None:
    """Seconds from start to end, or to now while still going."""
    if start is None:
        return None
    return (end if end is not None else now) - start


def parse_failure(error_json: str | None) -> failures.Failure | None:
    """The stored failure of a run or action, or None if absent or unreadable."""
    if not error_json:
        return None
    try:
        return failures.Failure.from_json(error_json)
    except (ValueError, KeyError, TypeError):
        return None


def failure_dict(error_json: str | None) -> dict[str, Any] | None:
    """A stored failure as plain JSON data (without the pickled exception)."""
    f = parse_failure(error_json)
    if f is None:
        return None if not error_json else {"raw": error_json}
    return {"kind": f.kind, "type": f.type_name, "message": f.message, "traceback": f.traceback}


def short_type(type_name: str) -> str:
    """``pkg.mod.Error`` -> ``Error``: full paths are noise in one-line summaries."""
    return type_name.rsplit(".", 1)[-1]


def one_line(text: str, limit: int = 160) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


def print_json(data: Any) -> None:
    """JSON on stdout, unwrapped and uncoloured, for scripts."""
    import click

    click.echo(json.dumps(data, indent=2, default=repr))


def to_json(value: Any) -> str:
    """JSON for any task output: dataclasses, pydantic models, dates, sets and the like."""
    import pydantic_core

    return json.dumps(pydantic_core.to_jsonable_python(value, fallback=repr), indent=2)
