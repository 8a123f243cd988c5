"""``heddle logs RUN [ACTION]``: what a run's actions printed, per attempt, optionally followed live.

Logs are captured by the process executor into the object store at
``logs/{run}/{action}/{attempt}.log``.
"""

from __future__ import annotations

import sys
import time

import click

from heddle._sdk.config import get_reader
from heddle._store import FINAL_STATES, ActionRecord, AttemptRecord
from heddle.cli import _console

MAX_ATTEMPTS_SHOWN = 200
POLL_SECONDS = 0.5


def log_key(run_id: str, action_id: str, attempt: int) -> str:
    return f"logs/{run_id}/{action_id}/{attempt}.log"


def _pick(actions: list[ActionRecord], wanted: str) -> list[ActionRecord]:
    """Actions matching an action id (or unique prefix) or a task name."""
    exact = [a for a in actions if a.id == wanted]
    if exact:
        return exact
    by_prefix = [a for a in actions if a.id.startswith(wanted)]
    if by_prefix:
        return by_prefix
    by_task = [a for a in actions if a.task_name == wanted or a.task_name.endswith("." + wanted)]
    if by_task:
        return by_task
    raise click.UsageError(
        f"no action {wanted!r} in this run (give an action id, a prefix, or a task name)"
    )


def _targets(
    run_id: str, action: str | None, attempt: int | None
) -> list[tuple[ActionRecord, AttemptRecord]]:
    store = get_reader().store
    actions = [a for a in store.actions_of_run(run_id) if a.kind == "task"]
    if action is not None:
        actions = _pick(actions, action)
    by_id = {a.id: a for a in actions}
    pairs = [
        (by_id[t.action_id], t)
        for t in store.attempts_of_run(run_id)
        if t.action_id in by_id and (attempt is None or t.number == attempt)
    ]
    pairs.sort(key=lambda p: (p[1].started_at or p[1].queued_at or 0.0, p[1].number))
    return pairs


@click.command()
@click.argument("run_id", metavar="RUN")
@click.argument("action", required=False)
@click.option("--attempt", type=int, help="Only this attempt number")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output until the run ends")
def logs(run_id: str, action: str | None, attempt: int | None, follow: bool) -> None:
    """Print what the actions of RUN wrote to stdout and stderr.

    ACTION narrows it to one action: an action id, a unique prefix of one, or a
    task name. Each attempt's log is printed under a header line.
    """
    session = get_reader()
    run = session.store.get_run(run_id)
    printed: dict[str, int] = {}
    headers: set[str] = set()
    while True:
        pairs = _targets(run.id, action, attempt)
        if action is None and len(pairs) > MAX_ATTEMPTS_SHOWN:
            raise click.UsageError(
                f"run {run.id} has {len(pairs)} attempts: name an ACTION (id or task name) to see its logs"
            )
        for a, t in pairs:
            key = log_key(run.id, a.id, t.number)
            data = session.blobs.get_text(key)
            if data is None:
                continue
            if key not in headers:
                headers.add(key)
                _console.stderr().print(
                    f"── {a.task_name}  action {a.id[:12]}  attempt {t.number}  ({t.status}) ──",
                    style="bold cyan",
                    highlight=False,
                )
            done = printed.get(key, 0)
            if len(data) <= done:
                continue
            sys.stdout.write(data[done:].decode(errors="replace"))
            sys.stdout.flush()
            printed[key] = len(data)
        if not follow:
            break
        if session.store.get_run(run.id).status in FINAL_STATES:
            follow = False  # one more pass picks up the final upload
            continue
        time.sleep(POLL_SECONDS)
    if not headers:
        _console.stderr().print(
            "no logs captured (logs are captured by the process executor: "
            "heddle run --executor process)",
            style="grey62",
        )
