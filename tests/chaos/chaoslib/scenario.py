"""One run of the chaos workload under faults: start it, kill what the test or the plan
says, recover until it has finished, and judge it against the invariants.

The invariants (Verdict.violations): the run ends succeeded with the crash-free output
and the same succeeded actions; no body whose action the store held as succeeded at a
fault ran again afterwards; no body ran to its end twice at the same time; no output
recorded as succeeded changed or vanished; no action or attempt is left queued or
running in the finished run; no process is left behind; no driving process hangs.
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaoslib import ledger
from chaoslib.procs import (
    RECOVER,
    WORKLOAD,
    Driving,
    ProcessWatch,
    cli_argv,
    python_argv,
    sigkill,
    spawn,
)
from chaoslib.store_view import ActionView, Snapshot, Target, take

# Roles of the processes a scenario kills.
DRIVER = "driver"
RECOVERER = "recoverer"
WORKER = "worker"
# Tasks that call other tasks: killing the worker that runs one of these is the case
# the lead is fixing (issue 11.1); the others are leaves.
PARENT_TASKS = frozenset(
    {"mixed", "branch", "deep", "deep_slow", "mid", "big", "impatient", "cancel"}
)
FINAL = ("succeeded", "failed", "aborted")
_SCRUBBED = (
    "HEDDLE_HOME",
    "HEDDLE_DB_URL",
    "HEDDLE_STORAGE_URL",
    "HEDDLE_EXECUTOR",
    "HEDDLE_CRASHPOINT",
    "HEDDLE_CRASHPOINT_ONCE",
)


class ScenarioError(RuntimeError):
    """The scenario could not be played (a program failed to start), not a finding."""


@dataclass
class Kill:
    role: str  # driver, recoverer or worker
    how: str  # "signal" or "crashpoint:<name>"
    pid: int
    at: float  # seconds since the scenario started
    running: str = ""  # what the killed worker was running (ledger keys)


@dataclass
class Observation:
    """What the store held as succeeded, and the ledger's counts, once a kill landed."""

    what: str  # the fault it followed: "kill #2", "exit #1"
    succeeded: dict[str, ActionView]
    starts: collections.Counter[str]


@dataclass
class Verdict:
    status: str
    output: Any
    expected_output: Any
    reruns: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    overlaps: list[str] = field(default_factory=list)  # bodies run twice at the same time
    hung: int = 0
    extra_runs: int = 0  # body starts beyond one per key (in flight at a kill: allowed)

    def violations(self) -> list[str]:
        out = []
        if self.status != "succeeded":
            out.append(f"run ended {self.status}, not succeeded")
        elif self.output != self.expected_output:
            out.append(f"output {self.output!r} != crash-free output {self.expected_output!r}")
        if self.reruns:
            out.append(f"succeeded actions ran again: {', '.join(self.reruns[:8])}")
        if self.lost:
            out.append(f"recorded outputs lost or changed: {', '.join(self.lost[:8])}")
        if self.stuck:
            out.append(f"left unfinished in the finished run: {', '.join(self.stuck[:8])}")
        if self.leftovers:
            out.append(f"processes left behind: {'; '.join(self.leftovers[:4])}")
        if self.missing or self.unexpected:
            out.append(
                f"succeeded actions differ from the crash-free run: missing {self.missing[:8]}, "
                f"unexpected {self.unexpected[:8]}"
            )
        if self.overlaps:
            out.append(f"bodies ran twice at the same time: {', '.join(self.overlaps[:8])}")
        if self.hung:
            out.append(f"{self.hung} driving process(es) hung and were killed")
        return out


class Scenario:
    """A run of the workload (``shape``, ``n``) on ``target``, and everything done to it."""

    def __init__(
        self,
        target: Target,
        shape: str,
        n: float,
        workdir: Path,
        *,
        timeout: float = 120.0,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.target = target
        self.shape = shape
        self.n = n
        self.workdir = workdir
        self.timeout = timeout
        self.ledger = workdir / "ledger.txt"
        self.once = workdir / "crashpoint.txt"
        self.kills: list[Kill] = []
        self.observations: list[Observation] = []
        self.recoveries: list[str] = []
        # Driving processes that ended with an error of their own (not a kill).
        self.died: list[str] = []
        self.history: list[Driving] = []
        self.driving: Driving | None = None
        self.run_id: str | None = None
        self.watch = ProcessWatch()
        self.hung = 0
        self.t0 = time.monotonic()
        self._crash_noted = False
        self._judged: set[int] = set()  # driving processes whose end was already looked at
        self.session = target.session()

    # -- processes -------------------------------------------------------------------

    def env(self, crashpoint: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
        env[ledger.LEDGER_ENV] = str(self.ledger)
        if crashpoint:
            env["HEDDLE_CRASHPOINT"] = crashpoint
            env["HEDDLE_CRASHPOINT_ONCE"] = str(self.once)
        return env

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def _spawn(self, role: str, how: str, argv: list[str], crashpoint: str | None) -> Driving:
        tag = f"{len(self.history):02d}-{role}-{how}"
        d = spawn(role, how, argv, self.env(crashpoint), self.workdir, tag)
        self.history.append(d)
        self.driving = d
        return d

    def start(self, crashpoint: str | None = None, store_faults: str | None = None) -> Driving:
        """Start the driver; returns once it has recorded the run."""
        args = [self.shape, str(self.n), *self.target.store_args()]
        args += ["--executor", self.target.executor]
        if store_faults:
            args += ["--store-faults", store_faults]
        d = self._spawn(DRIVER, "program", python_argv(WORKLOAD, *args), crashpoint)
        if not self.poll(lambda: d.line("RUN ") is not None or not d.alive(), 60.0):
            raise ScenarioError(f"the driver did not record a run in 60 s:\n{d.errors()}")
        run_id = d.line("RUN ")
        if run_id is None:
            raise ScenarioError(f"the driver exited ({d.popen.returncode}):\n{d.errors()}")
        self.run_id = run_id
        return d

    def recover(
        self,
        how: str = "cli",
        crashpoint: str | None = None,
        store_faults: str | None = None,
        force: bool = False,
    ) -> Driving:
        """Start a recoverer: ``heddle recover`` (cli) or heddle.recover (python)."""
        assert self.run_id is not None
        if how == "cli":
            argv = cli_argv(*self.target.store_args(), "recover", self.run_id, "--quiet", "--json")
            if force:
                argv.append("--force")
        else:
            args = [self.run_id, *self.target.store_args()]
            if store_faults:
                args += ["--store-faults", store_faults]
            if force:
                args.append("--force")
            argv = python_argv(RECOVER, *args)
        self.recoveries.append(how)
        return self._spawn(RECOVERER, how, argv, crashpoint)

    def poll(self, until: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``until()`` holds, watching the process tree; False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            d = self.driving
            if d is not None and d.alive():
                self.watch.sample(d.pid)
            self._notice_crashpoint()
            if until():
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def _notice_crashpoint(self) -> None:
        """A crash point fired (its process wrote the once-file): count it as a kill."""
        if self._crash_noted or not self.once.exists():
            return
        parts = self.once.read_text().split()
        if len(parts) != 3:
            return  # still being written
        self._crash_noted = True
        name, role, pid = parts[0], parts[1], int(parts[2])
        if role != WORKER:
            role = next((d.role for d in self.history if d.pid == pid), DRIVER)
        self.kills.append(Kill(role, f"crashpoint:{name}", pid, self.elapsed()))
        if role == WORKER:
            self.observe()

    def wait_exit(self, timeout: float | None = None) -> int | None:
        """Wait for the driving process to end; a hung one is killed (None)."""
        d = self.driving
        assert d is not None
        if d.pid in self._judged:
            return d.popen.returncode
        if not self.poll(lambda: not d.alive(), self.timeout if timeout is None else timeout):
            self.hung += 1
            self.watch.sample(d.pid)
            sigkill(d.pid)
            d.popen.wait()
            self._judged.add(d.pid)
            return None
        self._judged.add(d.pid)
        self._ended(d)
        return d.popen.returncode

    def _ended(self, d: Driving) -> None:
        """Account for a driving process that ended without our signal: killed at a crash
        point, or dead of an error of its own."""
        self._notice_crashpoint()
        rc = d.popen.returncode
        if rc == -9 and self.kills and self.kills[-1].pid == d.pid:
            self.observe()
        elif rc != 0:
            said = d.line("RECOVERY-ERROR ") or _last_error(d.errors())
            self.died.append(f"{d.role}/{d.how} exited {rc}: {said}")
            self.observe()

    def kill_driving(self) -> Kill | None:
        """SIGKILL the process driving the run now (driver or recoverer)."""
        d = self.driving
        if d is None or not d.alive():
            return None
        self.watch.sample(d.pid)
        if not sigkill(d.pid):
            return None
        d.popen.wait()
        self._judged.add(d.pid)
        self._notice_crashpoint()
        if d.popen.returncode != -9 or (self.kills and self.kills[-1].pid == d.pid):
            self._ended(d)  # it had ended on its own, or a crash point was quicker
            return None
        kill = Kill(d.role, "signal", d.pid, self.elapsed())
        self.kills.append(kill)
        self.observe()
        return kill

    def workers(self) -> list[tuple[int, list[str]]]:
        """The current driver's workers, each with the ledger keys it is running."""
        d = self.driving
        if d is None or not d.alive():
            return []
        running = ledger.running_in(ledger.read(self.ledger))
        return [(pid, running.get(pid, [])) for pid in self.watch.workers(d.pid)]

    def kill_worker(self, pid: int, running: list[str]) -> Kill | None:
        if not sigkill(pid):
            return None
        kill = Kill(WORKER, "signal", pid, self.elapsed(), ",".join(running))
        self.kills.append(kill)
        self.observe()
        return kill

    def note_what_killed_workers_ran(self) -> None:
        """Name what each killed worker was running from the whole ledger: at the kill, a
        body that had just started may not have written its line yet."""
        running = ledger.running_in(ledger.read(self.ledger))
        for k in self.kills:
            if k.role == WORKER and running.get(k.pid):
                k.running = ",".join(running[k.pid])

    def stop_all(self) -> None:
        """Kill whatever is still running (a test that failed half-way)."""
        for d in self.history:
            if d.alive():
                self.watch.sample(d.pid)
                sigkill(d.pid)
                d.popen.wait()
        self.watch.leftovers(grace=0)

    def close(self) -> None:
        self.session.close()

    # -- the store -------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        assert self.run_id is not None
        return take(self.session, self.run_id)

    def observe(self) -> None:
        """Note what was succeeded at this kill (store first, then the ledger: a body's
        start line is always written before its success is recorded)."""
        snap = self.snapshot()
        starts = ledger.starts(ledger.read(self.ledger))
        what = f"kill #{len(self.kills)}, exit #{len(self.died)}"
        self.observations.append(Observation(what, snap.succeeded(), starts))

    def count(self, task: str, status: str = "succeeded") -> int:
        """Actions of a task (short name) in this status, now."""
        snap = self.snapshot()
        return sum(1 for a in snap.actions if a.key.split(":")[0] == task and a.status == status)

    def finish(self, max_recoveries: int = 3) -> None:
        """Let the driving process end, then recover (without faults) until the run has
        succeeded or ``max_recoveries`` were spent."""
        self.wait_exit()
        for _ in range(max_recoveries):
            if self.snapshot().status == "succeeded":
                return
            self.recover("cli")
            self.wait_exit()

    # -- the verdict -----------------------------------------------------------------

    def verdict(self, expected_output: Any, expected_keys: set[str] | None) -> Verdict:
        final = self.snapshot()
        entries = ledger.read(self.ledger)
        starts = ledger.starts(entries)
        v = Verdict(final.status, final.output, expected_output, hung=self.hung)
        v.extra_runs = sum(c - 1 for c in starts.values() if c > 1)
        v.overlaps = ledger.overlaps(entries)
        for obs in self.observations:
            for key in obs.succeeded:
                if starts[key] > obs.starts[key]:
                    v.reruns.append(f"{key} (+{starts[key] - obs.starts[key]} after {obs.what})")
        if not self.kills and not self.died and v.extra_runs:
            v.reruns += [f"{k} (x{c}, no fault)" for k, c in starts.items() if c > 1]
        succeeded = final.succeeded()
        for obs in self.observations:
            for key, action in obs.succeeded.items():
                now = succeeded.get(key)
                if now is None or now.output != action.output:
                    v.lost.append(key)
        v.lost = sorted(set(v.lost))
        if final.status in FINAL:
            v.stuck = final.unfinished()
        if expected_keys is not None:
            v.missing = sorted(expected_keys - set(succeeded))
            v.unexpected = sorted(set(succeeded) - expected_keys)
        v.leftovers = self.watch.leftovers()
        return v

    def describe(self) -> str:
        """What happened, for an assertion message."""
        lines = [f"run {self.run_id} ({self.shape} {self.n}, {self.target.kind})"]
        lines += [
            f"  kill {k.role} {k.how} pid {k.pid} at {k.at:.2f}s {k.running}" for k in self.kills
        ]
        for d in self.history:
            err = d.errors().strip().splitlines()[-3:]
            lines.append(f"  {d.role}/{d.how} pid {d.pid} rc {d.popen.returncode}: {err}")
        return "\n".join(lines)


def _last_error(stderr: str) -> str:
    """The line of a program's stderr that names its error (the last one that looks like
    an exception or a CLI error), else its last line."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if head.endswith(("Error", "Exception", "error")) or line.startswith("Error"):
            return line[:300]
    return lines[-1][:300] if lines else ""
