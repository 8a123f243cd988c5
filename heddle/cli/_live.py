"""Following a run from the terminal: a live progress view, then its result or error.

Shared by ``heddle run`` and ``heddle recover``; the run is driven in this process.
"""

from __future__ import annotations

import time
import traceback
from typing import Any

import click
from rich.console import Group, RenderableType
from rich.live import Live
from rich.pretty import Pretty, pretty_repr
from rich.spinner import Spinner
from rich.text import Text

import heddle
from heddle._runtime.controller import Stats
from heddle._store import ActionRecord
from heddle.cli import _console, _failure

_REFRESH_SECONDS = 0.125


def _counts(stats: Stats) -> Text:
    text = Text()
    parts: list[tuple[str, int, str]] = [
        ("queued", stats.queued, "grey70"),
        ("running", stats.running, "yellow"),
        ("succeeded", stats.succeeded, "green"),
        ("failed", stats.failed, "bold red"),
        ("retried", stats.retried, "dark_orange"),
        ("cached", stats.cached, "cyan"),
        ("replayed", stats.replayed, "blue"),
    ]
    for i, (label, n, style) in enumerate(parts):
        if i:
            text.append(" · ", style="grey50")
        text.append(f"{n:,}", style=style if n else "grey50")
        text.append(f" {label}")
    return text


class ProgressView:
    """What the live display shows: a spinner with the elapsed time, counters, latest failures."""

    def __init__(self, run: heddle.Run, verb: str) -> None:
        self.run = run
        self.verb = verb
        self.started = time.monotonic()
        self.spinner = Spinner("dots", style="cyan")

    def render(self) -> RenderableType:
        elapsed = _console.duration(time.monotonic() - self.started)
        self.spinner.update(
            text=Text.assemble(f"{self.verb} run ", (self.run.id, "bold"), f"  {elapsed}")
        )
        stats = self.run.progress
        if stats is None:
            return Group(self.spinner, Text("  starting…", style="grey50"))
        lines: list[RenderableType] = [self.spinner, Text("  ").append_text(_counts(stats))]
        for failure in list(stats.failures)[-3:]:
            lines.append(Text(f"  ✗ {_console.one_line(failure, 150)}", style="red"))
        return Group(*lines)


def follow(run: heddle.Run, *, verb: str, quiet: bool, json_output: bool) -> int:
    """Wait for a run this process drives, showing progress unless quiet; return the exit code."""
    err = _console.stderr()
    try:
        if quiet:
            while not run.done:
                time.sleep(_REFRESH_SECONDS)
        else:
            view = ProgressView(run, verb)
            with Live(view.render(), console=err, refresh_per_second=8, transient=True) as live:
                while not run.done:
                    time.sleep(_REFRESH_SECONDS)
                    live.update(view.render())
    except KeyboardInterrupt:
        err.print(f"interrupted: aborting run {run.id} …", style="yellow", highlight=False)
        status = heddle.abort(run.id)
        err.print(f"run {run.id} {status}; `heddle recover {run.id}` resumes it", highlight=False)
        return _console.EXIT_INTERRUPTED
    return report(run, json_output=json_output)


def report(run: heddle.Run, *, json_output: bool) -> int:
    """Print a finished run's outcome: its output (exit 0) or its error (exit 1)."""
    out = _console.stdout()
    err = _console.stderr()
    try:
        value = run.outputs()
    except Exception as exc:
        _print_failure(run, exc)
        return _console.EXIT_FAILED
    rec = run.record
    took = _console.duration(_console.span(rec.started_at, rec.finished_at, time.time()))
    header = Text.assemble(
        "run ", (rec.id, "bold"), " ", _console.status_text(rec.status), f" in {took}"
    )
    if json_output:
        err.print(header, highlight=False)
        click.echo(_console.to_json(value))
        return 0
    out.print(header, highlight=False)
    if value is not None:
        short = pretty_repr(value, max_width=out.width - 8)
        if "\n" in short:
            out.print(Text("output:", style="bold"))
            out.print(Pretty(value))
        else:
            out.print(Text.assemble(("output: ", "bold"), short))
    return 0


def _print_failure(run: heddle.Run, exc: BaseException) -> None:
    err = _console.stderr()
    path: list[ActionRecord] = []
    try:
        rec = run.record
        status, tb = rec.status, ""
        failure = _console.parse_failure(rec.error)
        if failure is not None:
            tb = failure.traceback
        path = _failure.failing_path(run.actions(), rec.root_action_id)
    except heddle.HeddleError:
        status, tb = "failed", ""
    if isinstance(exc, heddle.TaskError):
        type_name, message, tb = exc.type_name, exc.message, exc.traceback or tb
    elif isinstance(exc, heddle.HeddleError):
        type_name, message = type(exc).__name__, str(exc)
    else:
        type_name, message = _qualified(type(exc)), str(exc)
    if not tb and exc.__traceback__ is not None:
        tb = "".join(traceback.format_exception(exc))
    user_tb = _failure.traceback_text(tb)
    if user_tb:
        err.print(Text(user_tb, style="grey62"), highlight=False, soft_wrap=True)
    err.print(
        Text.assemble("run ", (run.id, "bold"), " ", _console.status_text(status)),
        highlight=False,
    )
    err.print(Text(f"{type_name}: {message}", style="bold red"), highlight=False)
    _failure.print_where(err, run.id, run.url, path)


def _qualified(t: type[Any]) -> str:
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
