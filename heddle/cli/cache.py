"""``heddle cache list [TASK]`` and ``heddle cache clear [TASK]``: the stored outputs tasks reuse.

Task names are the ones runs show (``env.task``); a name with no entries is an error that
lists the names that have some, so a typo never looks like a successful clear.
"""

from __future__ import annotations

import difflib
import json

import click
from rich.table import Table

from heddle._sdk.config import get_session
from heddle._store import Store
from heddle.cli import _console


@click.group()
def cache() -> None:
    """List and clear cached task outputs."""


def _known_task(store: Store, task: str) -> None:
    """Raise a usage error naming the cached tasks when ``task`` has no entries."""
    names = [name for name, _n, _newest in store.cache_tasks()]
    if task in names:
        return
    if not names:
        raise click.UsageError(f"no cache entries for task {task!r}: the cache is empty")
    # `leaf` for `env.leaf`, or a typo.
    close = [n for n in names if n.rsplit(".", 1)[-1] == task]
    close += [n for n in difflib.get_close_matches(task, names, n=3) if n not in close]
    hint = f"; did you mean {' or '.join(repr(n) for n in close)}?" if close else ""
    shown = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
    raise click.UsageError(
        f"no cache entries for task {task!r}{hint} (tasks with cache entries: {shown})"
    )


@cache.command("list")
@click.argument("task", required=False)
@click.option(
    "--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Most entries"
)
@click.option("--json", "json_output", is_flag=True, help="Print as JSON")
def list_cache(task: str | None, limit: int, json_output: bool) -> None:
    """The tasks with cached outputs, or one TASK's entries (newest first)."""
    store = get_session().store
    if task is None:
        tasks = store.cache_tasks()
        if json_output:
            _console.print_json(
                [{"task": name, "entries": n, "newest": newest} for name, n, newest in tasks]
            )
            return
        out = _console.stdout()
        if not tasks:
            out.print("the cache is empty", style="grey50")
            return
        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in ("TASK", "ENTRIES", "NEWEST"):
            table.add_column(
                column, no_wrap=True, justify="right" if column == "ENTRIES" else "left"
            )
        for name, n, newest in tasks:
            table.add_row(name, f"{n:,}", _console.local_time(newest))
        out.print(table)
        return
    _known_task(store, task)
    entries = store.cache_entries_of(task, limit=limit)
    if json_output:
        _console.print_json(
            [
                {
                    "key": e.key,
                    "task": e.task_name,
                    "created_at": e.created_at,
                    "run_id": e.run_id,
                    "action_id": e.action_id,
                    "depends_on": json.loads(e.deps) if e.deps else [],
                }
                for e in entries
            ]
        )
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("KEY", "CREATED", "COMPUTED BY RUN", "ACTION", "DEPENDS ON"):
        table.add_column(column, no_wrap=column != "DEPENDS ON")
    for e in entries:
        deps = json.loads(e.deps) if e.deps else []
        table.add_row(
            e.key[:13],
            _console.local_time(e.created_at),
            e.run_id,
            e.action_id,
            ", ".join(f"{kind} {name}" for kind, name, _v in deps) or "-",
        )
    _console.stdout().print(table)


@cache.command("clear")
@click.argument("task", required=False)
def clear_cache(task: str | None) -> None:
    """Remove the cached outputs of TASK, or of every task.

    Runs afterwards compute those outputs again (and cache them anew).
    """
    store = get_session().store
    if task is not None:
        _known_task(store, task)
    removed = store.cache_clear(task)
    what = f" of task {task}" if task else ""
    noun = "entry" if removed == 1 else "entries"
    _console.stdout().print(f"removed {removed:,} cache {noun}{what}", highlight=False)
