"""The side-effect ledger: the lines task bodies append (``start KEY PID`` / ``end KEY PID``).

It tells what really ran, however the store recorded it: a body that ran twice has two
``start`` lines for its key.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from pathlib import Path

LEDGER_ENV = "HEDDLE_CHAOS_LEDGER"


@dataclass(frozen=True, slots=True)
class Entry:
    event: str  # "start" or "end"
    key: str  # the task's short name and inputs: "leaf:3"
    pid: int


def read(path: Path) -> list[Entry]:
    """Every whole line so far (a line still being written by a killed body is skipped)."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        parts = line.split(" ")
        if len(parts) == 3 and parts[0] in ("start", "end") and parts[2].isdigit():
            entries.append(Entry(parts[0], parts[1], int(parts[2])))
    return entries


def starts(entries: list[Entry]) -> collections.Counter[str]:
    """How many times each body started."""
    return collections.Counter(e.key for e in entries if e.event == "start")


def pids(entries: list[Entry]) -> set[int]:
    return {e.pid for e in entries}


def running_in(entries: list[Entry]) -> dict[int, list[str]]:
    """Per pid, the keys whose body started there and has not ended (what it runs now)."""
    open_: dict[int, list[str]] = collections.defaultdict(list)
    for e in entries:
        if e.event == "start":
            open_[e.pid].append(e.key)
        elif e.key in open_[e.pid]:
            open_[e.pid].remove(e.key)
    return {pid: keys for pid, keys in open_.items() if keys}


def pid_of(entries: list[Entry], key: str) -> int | None:
    """The pid where the body of ``key`` last started."""
    for e in reversed(entries):
        if e.event == "start" and e.key == key:
            return e.pid
    return None


def overlaps(entries: list[Entry]) -> list[str]:
    """Keys whose body ran to its end in two processes at once: a second start came while
    another process's body of the same key had started and later ended."""
    found = []
    open_: dict[str, set[int]] = collections.defaultdict(set)
    ended = {(e.key, e.pid) for e in entries if e.event == "end"}
    for e in entries:
        if e.event == "start":
            others = {p for p in open_[e.key] if p != e.pid and (e.key, p) in ended}
            if others and (e.key, e.pid) in ended:
                found.append(f"{e.key} (pids {sorted(others)} and {e.pid})")
            open_[e.key].add(e.pid)
        else:
            open_[e.key].discard(e.pid)
    return found
