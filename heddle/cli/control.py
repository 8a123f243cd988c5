"""``heddle recover RUN`` and ``heddle abort RUN``: resume a run whose driver died, or stop one.

Recovery drives the run in this process, with the same live view as ``heddle run``.
"""

from __future__ import annotations

import click
from rich.text import Text

import heddle
from heddle.cli import _console, _live


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option("--quiet", "-q", is_flag=True, help="No live progress display")
@click.option("--json", "json_output", is_flag=True, help="Print only the output, as JSON")
@click.option(
    "--force", is_flag=True, help="Recover even if the run's driver still looks alive (dangerous)"
)
def recover(run_id: str, quiet: bool, json_output: bool, force: bool) -> None:
    """Resume a run whose process died (or that failed).

    Actions that succeeded are replayed from the store, not run again; the
    rest run in this process. RUN is a run id or a unique prefix of one.
    """
    try:
        run = heddle.recover(run_id, wait=False, force=force)
    except heddle.RecoveryError as exc:
        _console.error(str(exc))
        raise click.exceptions.Exit(_console.EXIT_FAILED) from None
    code = _live.follow(run, verb="recovering", quiet=quiet, json_output=json_output)
    click.get_current_context().exit(code)


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds to wait for a live driver to stop the run",
)
def abort(run_id: str, wait: float) -> None:
    """Stop a run: its driver cancels running actions and marks it aborted.

    A finished run is left as it is; its status is printed.
    """
    rec = heddle.get_run(run_id).record
    status = heddle.abort(rec.id, wait=wait)
    line = Text.assemble("run ", (rec.id, "bold"), " ", _console.status_text(status))
    if status == rec.status and status in ("succeeded", "failed", "aborted"):
        line.append(" (already finished)", style="grey50")
    elif status not in ("succeeded", "failed", "aborted"):
        line.append(f" (abort requested; still stopping after {wait:g}s)", style="yellow")
    _console.stdout().print(line, highlight=False)
