"""The action tree of a run as a Rich tree: children in call order, folded into their groups.

Wide fan-outs are cut to a few children per parent, with the rest summarised by status.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from rich.text import Text
from rich.tree import Tree

from heddle._store import ActionRecord, AttemptRecord
from heddle.cli import _console

# Failed, running and lost actions are the ones worth seeing when a parent has too many.
_NOTEWORTHY = ("failed", "running", "aborted", "queued")


@dataclass
class Folder:
    """The children of one action, or of one group inside it, in call order."""

    items: list[ActionRecord | Folder] = field(default_factory=list)
    groups: dict[str, Folder] = field(default_factory=dict)
    name: str = ""

    def actions(self) -> Iterable[ActionRecord]:
        for item in self.items:
            if isinstance(item, Folder):
                yield from item.actions()
            else:
                yield item


def status_summary(actions: Iterable[ActionRecord]) -> str:
    """``98 succeeded, 2 failed`` (most common first), plus how many were cache hits."""
    statuses: Counter[str] = Counter()
    cached = 0
    for a in actions:
        statuses[a.status] += 1
        cached += a.cached
    parts = [f"{n:,} {s}" for s, n in statuses.most_common()]
    if cached:
        parts.append(f"{cached:,} cache hit" + ("s" if cached > 1 else ""))
    return ", ".join(parts)


class ActionTree:
    """Builds the Rich tree of one run's actions."""

    def __init__(
        self,
        actions: Sequence[ActionRecord],
        attempts: Sequence[AttemptRecord],
        limit: int = 20,
        now: float | None = None,
    ) -> None:
        self.limit = limit
        self.now = time.time() if now is None else now
        self.attempts: dict[str, list[AttemptRecord]] = defaultdict(list)
        for t in attempts:
            self.attempts[t.action_id].append(t)
        self.children: dict[str | None, list[ActionRecord]] = defaultdict(list)
        for a in actions:
            self.children[a.parent_id].append(a)
        for kids in self.children.values():
            kids.sort(key=lambda a: a.seq)

    def render(self, root_action_id: str, title: Text) -> Tree:
        tree = Tree(title, guide_style="grey42")
        roots = [
            a for a in self.children.get(None, []) if a.id == root_action_id
        ] or self.children.get(None, [])
        if not roots:
            tree.add(Text("no actions recorded", style="grey50"))
        for root in roots:
            self._fill(tree.add(self.label(root)), self.folder_of(root.id))
        return tree

    def folder_of(self, action_id: str) -> Folder:
        """An action's children, each group becoming a nested folder (``a/b`` nests twice)."""
        top = Folder()
        for child in self.children.get(action_id, []):
            folder = top
            for part in (child.group_name or "").split("/"):
                if not part:
                    continue
                sub = folder.groups.get(part)
                if sub is None:
                    sub = folder.groups[part] = Folder(name=part)
                    folder.items.append(sub)
                folder = sub
            folder.items.append(child)
        return top

    def _fill(self, node: Tree, folder: Folder) -> None:
        direct = [i for i in folder.items if isinstance(i, ActionRecord)]
        shown = self._pick(direct)
        for item in folder.items:
            if isinstance(item, Folder):
                label = Text.assemble(
                    ("group ", "grey50"),
                    (item.name, "bold cyan"),
                    (f"  {status_summary(item.actions())}", "grey50"),
                )
                self._fill(node.add(label), item)
            elif item.id in shown:
                self._fill(node.add(self.label(item)), self.folder_of(item.id))
        hidden = [a for a in direct if a.id not in shown]
        if hidden:
            node.add(
                Text(f"… {len(hidden):,} more: {status_summary(hidden)}", style="italic grey62")
            )

    def _pick(self, actions: list[ActionRecord]) -> set[str]:
        """The ids to show: the noteworthy ones first, then the earliest calls."""
        if len(actions) <= self.limit:
            return {a.id for a in actions}
        chosen = [a.id for a in actions if a.status in _NOTEWORTHY][: self.limit]
        for a in actions:
            if len(chosen) >= self.limit:
                break
            if a.id not in chosen:
                chosen.append(a.id)
        return set(chosen)

    def label(self, a: ActionRecord) -> Text:
        text = Text()
        if a.kind != "task":
            text.append(f"{a.kind} ", style="blue")
        text.append(a.task_name, style="bold")
        text.append("  ")
        text.append_text(_console.status_text(a.status))
        if a.cached:
            text.append("  cache hit", style="cyan")
            if a.source_run_id:
                text.append(
                    f" from run {a.source_run_id} action {a.source_action_id}", style="cyan"
                )
        took = _console.span(a.started_at, a.finished_at, self.now)
        if took is not None and not a.cached:
            text.append(f"  {_console.duration(took)}", style="grey62")
        text.append_text(self._attempts_note(a))
        text.append_text(self._usage_note(a))
        failure = _console.parse_failure(a.error)
        if failure is not None and a.status != "succeeded":
            message = _console.one_line(failure.message, 120)
            text.append(f"  {_console.short_type(failure.type_name)}: {message}", style="red")
        return text

    def _usage_note(self, a: ActionRecord) -> Text:
        """Queue time, CPU seconds and peak memory of the action's latest attempt."""
        tries = self.attempts.get(a.id, [])
        if not tries or a.cached:
            return Text()
        last = max(tries, key=lambda t: t.number)
        parts = []
        # Time waiting for resources before the body first ran (still waiting: so far).
        if a.started_at is not None:
            queued = a.started_at - a.queued_at
        elif a.status == "queued":
            queued = self.now - a.queued_at
        else:
            queued = 0.0
        if queued >= 0.05:
            parts.append(f"queued {_console.duration(queued)}")
        if last.cpu_seconds is not None:
            parts.append(f"cpu {last.cpu_seconds:.2f}s")
        if last.peak_rss:
            parts.append(f"peak {last.peak_rss / 2**20:.0f} MiB")
        return Text(f"  [{', '.join(parts)}]", style="grey50") if parts else Text()

    def _attempts_note(self, a: ActionRecord) -> Text:
        if a.attempts <= 1:
            return Text()
        tries = self.attempts.get(a.id, [])
        lost = sum(t.status == "lost" for t in tries)
        failed = [t for t in tries if t.status == "failed" and t.number < a.attempts]
        note = f"  {a.attempts} attempts"
        details = []
        if failed:
            last = _console.parse_failure(failed[-1].error)
            what = f" after {_console.short_type(last.type_name)}" if last else ""
            details.append(f"retried{what}")
        if lost:
            details.append(f"{lost} lost")
        if details:
            note += f" ({', '.join(details)})"
        return Text(note, style="dark_orange")
