"""Recovering runs from the server: each in its own `heddle recover RUN` process.

Recovery imports and runs the run's program; the server never does that in its own
process (a crash or a hostile program would take the server with it). The child is
started in its own session, so it keeps driving the run when the server stops, and
the server remembers what became of the children it started, for the UI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from heddle._errors import RecoveryError
from heddle._sdk.config import Settings
from heddle._store import RunRecord

MAX_REMEMBERED = 256
_SERVER_ONLY_ENV = frozenset({"HEDDLE_API_TOKEN", "HEDDLE_ALLOWED_HOSTS", "HEDDLE_SERVE_HOST"})
_TAIL_BYTES = 4096


@dataclass(frozen=True, slots=True)
class Recovery:
    """A recovery process this server started, and what became of it."""

    run_id: str
    pid: int
    started_at: float
    exit_code: int | None = None
    finished_at: float | None = None
    message: str = ""

    @property
    def running(self) -> bool:
        return self.exit_code is None


class Recoveries:
    """The recovery processes of this server, the latest per run."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._latest: OrderedDict[str, Recovery] = OrderedDict()

    def get(self, run_id: str) -> Recovery | None:
        with self._lock:
            return self._latest.get(run_id)

    def start(self, run: RunRecord) -> Recovery:
        """Start `heddle recover` for ``run`` in a new process; returns at once.

        Refused while an earlier recovery of the run by this server still runs.
        """
        with self._lock:
            return self._start(run)

    def _start(self, run: RunRecord) -> Recovery:
        earlier = self._latest.get(run.id)
        if earlier is not None and earlier.running:
            raise RecoveryError(f"run {run.id} is already being recovered by process {earlier.pid}")
        # The child's stderr, read when it exits; the reaper thread closes it.
        log = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "heddle.cli", "recover", run.id, "--quiet"],
                cwd=_program_cwd(run.program),
                env=self._child_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        except OSError as exc:
            log.close()
            raise RecoveryError(f"cannot start `heddle recover {run.id}`: {exc}") from exc
        except BaseException:
            log.close()
            raise
        started = Recovery(run_id=run.id, pid=proc.pid, started_at=time.time())
        self._latest[run.id] = started
        self._latest.move_to_end(run.id)
        while len(self._latest) > MAX_REMEMBERED:
            self._latest.popitem(last=False)
        threading.Thread(
            target=self._reap, args=(started, proc, log), name="heddle-recovery", daemon=True
        ).start()
        return started

    def _reap(self, started: Recovery, proc: subprocess.Popen[bytes], log: IO[bytes]) -> None:
        code = proc.wait()
        with log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - _TAIL_BYTES))
            tail = log.read().decode("utf-8", errors="replace")
        done = replace(started, exit_code=code, finished_at=time.time(), message=_last_line(tail))
        with self._lock:
            if self._latest.get(started.run_id) is started:
                self._latest[started.run_id] = done

    def _child_env(self) -> dict[str, str]:
        s = self._settings
        # The run's program never sees the server's own settings (its API token).
        env = {k: v for k, v in os.environ.items() if k not in _SERVER_ONLY_ENV}
        # The child reads the same store and storage as this server, whatever its cwd.
        env.update(
            HEDDLE_HOME=str(s.home),
            HEDDLE_DB_URL=s.db_url,
            HEDDLE_STORAGE_URL=s.storage_url,
            HEDDLE_EXECUTOR=s.executor,
        )
        if s.ray_address:
            env["HEDDLE_RAY_ADDRESS"] = s.ray_address
        return env


def _program_cwd(program: str) -> str | None:
    """Where the run was started from, so the program's relative paths mean the same."""
    try:
        cwd = json.loads(program).get("cwd")
    except (ValueError, AttributeError):
        return None
    return cwd if isinstance(cwd, str) and Path(cwd).is_dir() else None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""
