"""Processes of a scenario: the programs that drive runs (started here, killed here), the
process trees they grow (forkserver, workers), and what is left of them afterwards."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

PROGRAMS = Path(__file__).resolve().parent.parent / "programs"
WORKLOAD = PROGRAMS / "workload.py"
RECOVER = PROGRAMS / "recover.py"


@dataclass
class Driving:
    """A process driving a run: the first driver, or a recoverer (CLI or Python)."""

    role: str  # "driver" or "recoverer"
    how: str  # "program", "cli" or "python"
    popen: subprocess.Popen[bytes]
    started: float
    stdout: Path
    stderr: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.stdout.read_text(errors="replace") if self.stdout.exists() else ""

    def errors(self) -> str:
        return self.stderr.read_text(errors="replace") if self.stderr.exists() else ""

    def line(self, prefix: str) -> str | None:
        """The rest of the first stdout line that starts with ``prefix``."""
        for line in self.output().splitlines():
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
        return None


def spawn(
    role: str, how: str, argv: list[str], env: dict[str, str], workdir: Path, tag: str
) -> Driving:
    """Start a program with its output in files (a pipe nobody reads could block it)."""
    out, err = workdir / f"{tag}.out", workdir / f"{tag}.err"
    with out.open("wb") as o, err.open("wb") as e:
        popen = subprocess.Popen(argv, stdout=o, stderr=e, env=env, cwd=workdir)
    return Driving(role, how, popen, time.monotonic(), out, err)


def python_argv(program: Path, *args: str) -> list[str]:
    return [sys.executable, str(program), *args]


def cli_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "heddle.cli", *args]


def sigkill(pid: int) -> bool:
    """SIGKILL a process; False if it was gone already."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def _alive(pid: int, created: float) -> bool:
    try:
        p = psutil.Process(pid)
        return bool(p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


class ProcessWatch:
    """Every process a scenario's runs started, to find those left behind at its end."""

    def __init__(self) -> None:
        self.seen: dict[int, tuple[float, str]] = {}  # pid -> (create time, what it was)

    def sample(self, pid: int) -> None:
        """Note ``pid`` and all its descendants now."""
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        for p in procs:
            with contextlib.suppress(psutil.Error):
                if p.pid not in self.seen:
                    self.seen[p.pid] = (p.create_time(), " ".join(p.cmdline())[:120])

    def note(self, pids: set[int]) -> None:
        """Note processes known otherwise (the pids task bodies wrote), if still alive."""
        for pid in pids - set(self.seen):
            with contextlib.suppress(psutil.Error):
                p = psutil.Process(pid)
                self.seen[pid] = (p.create_time(), " ".join(p.cmdline())[:120])

    def workers(self, pid: int) -> list[int]:
        """The worker processes of the driver ``pid`` (children of its fork server)."""
        try:
            root = psutil.Process(pid)
            servers = [c for c in root.children() if "forkserver" in " ".join(c.cmdline())]
            found = [w.pid for s in servers for w in s.children()]
        except psutil.Error:
            return []
        for w in found:
            self.note({w})
        return sorted(found)

    def leftovers(self, grace: float = 8.0) -> list[str]:
        """Processes seen that are still alive after ``grace`` seconds; they are killed."""
        deadline = time.monotonic() + grace
        while True:
            alive = [pid for pid, (created, _) in self.seen.items() if _alive(pid, created)]
            if not alive or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        left = [f"pid {pid}: {self.seen[pid][1]}" for pid in alive]
        for pid in alive:
            sigkill(pid)
        return left
