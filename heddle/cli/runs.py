"""``heddle runs list`` and ``heddle runs show RUN``: what is in the store.

Read-only: these commands never start, change or recover a run.
"""

from __future__ import annotations

import json
import time
from typing import Any

import click
import msgspec
from rich.table import Table
from rich.text import Text

from heddle._runtime.driver import owner_alive
from heddle._sdk.config import Session, get_reader
from heddle._store import ActionRecord, AttemptRecord, RunEventRecord, RunRecord
from heddle.cli import _console, _failure
from heddle.cli._tree import ActionTree, status_summary

STATUSES = ("queued", "running", "succeeded", "failed", "aborted")


@click.group()
def runs() -> None:
    """List runs and show one run's actions."""


def _driver_gone(rec: RunRecord) -> bool:
    return rec.status in ("running", "queued") and not owner_alive(rec.owner, rec.heartbeat_at)


def _status_cell(rec: RunRecord) -> Text:
    text = _console.status_text(rec.status)
    if _driver_gone(rec):
        # The process driving it died: say so, since `heddle recover` is the fix.
        text.append(" (driver gone)", style="red")
    return text


@runs.command("list")
@click.option("--status", type=click.Choice(STATUSES), help="Only runs in this status")
@click.option("--task", help="Only runs whose root task name contains this")
@click.option("--name", help="Only runs whose name contains this")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "json_output", is_flag=True, help="Print the runs as JSON")
def list_runs(
    status: str | None, task: str | None, name: str | None, limit: int, json_output: bool
) -> None:
    """The latest runs, newest first."""
    store = get_reader().store
    records = store.list_runs(limit=limit, status=status, task=task, name=name)
    counts = store.count_actions([r.id for r in records])
    now = time.time()
    if json_output:
        rows = [_run_dict(r, counts.get(r.id, {})) for r in records]
        _console.print_json(rows)
        return
    out = _console.stdout()
    if not records:
        out.print("no runs", style="grey50")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("RUN", "NAME", "TASK", "STATUS", "CREATED", "DURATION"):
        table.add_column(column, no_wrap=True)
    table.add_column("ACTIONS", justify="right", no_wrap=True)
    table.add_column("FAILED", justify="right", no_wrap=True)
    for r in records:
        by_status = counts.get(r.id, {})
        failed = by_status.get("failed", 0)
        table.add_row(
            r.id,
            r.name or "",
            r.root_task,
            _status_cell(r),
            _console.local_time(r.created_at),
            _console.duration(_console.span(r.started_at, r.finished_at, now)),
            f"{sum(by_status.values()):,}",
            Text(f"{failed:,}", style="bold red" if failed else "grey50"),
        )
    out.print(table)


@runs.command("show")
@click.argument("run_id", metavar="RUN")
@click.option(
    "--children",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Most children to list under one action; the rest are summarised",
)
@click.option("--json", "json_output", is_flag=True, help="Print the run and its actions as JSON")
def show_run(run_id: str, children: int, json_output: bool) -> None:
    """One run: its status, times and error, and its tree of actions.

    RUN is a run id or a unique prefix of one.
    """
    session = get_reader()
    rec = session.store.get_run(run_id)
    actions = session.store.actions_of_run(rec.id)
    attempts = session.store.attempts_of_run(rec.id)
    events = session.store.run_events(rec.id)
    if json_output:
        doc = _run_dict(rec, _count(actions))
        doc["inputs"] = _plain(session, rec.inputs)
        doc["output"] = _plain(session, rec.output)
        by_action: dict[str, list[AttemptRecord]] = {}
        for t in attempts:
            by_action.setdefault(t.action_id, []).append(t)
        doc["actions"] = [_action_dict(a, by_action.get(a.id, [])) for a in actions]
        doc["events"] = [_event_dict(e) for e in events]
        _console.print_json(doc)
        return
    out = _console.stdout()
    for line in _header(session, rec, actions):
        out.print(line, highlight=False, soft_wrap=True)  # a traceback's paths stay whole
    out.print()
    if events:
        out.print(Text("events", style="bold"))
        for e in events:
            out.print(_event_line(e), highlight=False)
        out.print()
    title = Text("actions", style="bold")
    out.print(ActionTree(actions, attempts, limit=children).render(rec.root_action_id, title))


def _header(session: Session, rec: RunRecord, actions: list[ActionRecord]) -> list[Text]:
    now = time.time()
    title = Text.assemble(("run ", "bold"), (rec.id, "bold"))
    if rec.name:
        title.append(f"  ({rec.name})")
    title.append("  ")
    title.append_text(_status_cell(rec))
    took = _console.duration(_console.span(rec.started_at, rec.finished_at, now))
    lines = [
        title,
        Text.assemble(("task      ", "grey50"), rec.root_task),
        Text.assemble(
            ("created   ", "grey50"),
            _console.local_time(rec.created_at),
            ("   finished ", "grey50"),
            _console.local_time(rec.finished_at),
            ("   took ", "grey50"),
            took,
        ),
        Text.assemble(("actions   ", "grey50"), f"{len(actions):,}: {status_summary(actions)}"),
    ]
    if rec.output is not None:
        lines.append(
            Text.assemble(("output    ", "grey50"), _short(_plain(session, rec.output), 120))
        )
    failure = _console.parse_failure(rec.error)
    if failure is not None:
        lines.append(
            Text.assemble(
                ("error     ", "grey50"),
                (f"{failure.type_name}: {_console.one_line(failure.message, 200)}", "bold red"),
            )
        )
        path = _failure.failing_path(actions, rec.root_action_id)
        if path:
            lines.append(Text.assemble(("failed in ", "grey50"), _failure.path_text(path)))
        user_tb = _failure.traceback_text(failure.traceback)
        if user_tb:
            lines.append(Text(user_tb, style="grey62"))
    if _driver_gone(rec):
        lines.append(Text(f"its driver is gone: `heddle recover {rec.id}` resumes it", "yellow"))
    return lines


def _event_line(e: RunEventRecord) -> Text:
    """``  12:03:04  output_lost  action a1b2 (task env.load): ...``: what happened to
    the run besides its actions' states (outputs made again after their blobs were lost)."""
    return Text.assemble(
        "  ",
        (_console.local_time(e.at), "grey50"),
        "  ",
        (e.kind, "yellow"),
        "  ",
        _console.one_line(e.message, 300),
    )


def _event_dict(e: RunEventRecord) -> dict[str, Any]:
    return {"at": e.at, "kind": e.kind, "action_id": e.action_id, "message": e.message}


def _short(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plain(session: Session, literal: bytes | None) -> Any:
    """A stored value as plain data (lists, dicts, numbers), without loading the task's code."""
    if literal is None:
        return None
    try:
        return msgspec.msgpack.decode(session.literals.from_literal(literal))
    except Exception as exc:  # a missing blob must not hide the rest of the run
        return f"<unreadable: {type(exc).__name__}: {exc}>"


def _count(actions: list[ActionRecord]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for a in actions:
        counts[a.status] = counts.get(a.status, 0) + 1
    return counts


def _run_dict(rec: RunRecord, counts: dict[str, int]) -> dict[str, Any]:
    return {
        "id": rec.id,
        "name": rec.name,
        "root_task": rec.root_task,
        "root_action_id": rec.root_action_id,
        "status": rec.status,
        "executor": rec.executor,
        "owner": rec.owner,
        "driver_alive": not _driver_gone(rec) if rec.status in ("running", "queued") else None,
        "created_at": rec.created_at,
        "started_at": rec.started_at,
        "finished_at": rec.finished_at,
        "error": _console.failure_dict(rec.error),
        "action_counts": counts,
    }


def _action_dict(a: ActionRecord, attempts: list[AttemptRecord]) -> dict[str, Any]:
    return {
        "id": a.id,
        "parent_id": a.parent_id,
        "seq": a.seq,
        "kind": a.kind,
        "task_name": a.task_name,
        "task_version": a.task_version,
        "group_name": a.group_name,
        "status": a.status,
        "attempts": a.attempts,
        "cached": a.cached,
        "cache_key": a.cache_key,
        # A cache hit: the run and action that computed the value.
        "source_run_id": a.source_run_id,
        "source_action_id": a.source_action_id,
        "queued_at": a.queued_at,
        "started_at": a.started_at,
        "finished_at": a.finished_at,
        "error": _console.failure_dict(a.error),
        "attempt_history": [
            {
                "number": t.number,
                "status": t.status,
                "worker": t.worker,
                "started_at": t.started_at,
                "finished_at": t.finished_at,
                "error": _console.failure_dict(t.error),
            }
            for t in attempts
        ],
    }
