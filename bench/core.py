"""Core benchmarks: fan-out, chain, recovery and cache, each beside plain asyncio.

Every measurement runs in a fresh subprocess with a fresh Heddle home (so peak
RSS is the scenario's own and stores do not grow across repeats); the baseline
for each repeat is measured right after it, in the same invocation.

    .venv/bin/python bench/core.py [--repeat 5] [--scenarios fanout,chain,recovery,cache]
                                   [--scale 1.0] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORKLOADS = BENCH / "_programs" / "workloads.py"
BASELINE = BENCH / "_programs" / "baseline.py"
SCENARIOS = ("fanout", "chain", "recovery", "cache")
SUBPROCESS_TIMEOUT = 600.0
# Measure the checkout this file sits in, not whichever heddle the venv points at.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Full-scale sizes; --scale multiplies them.
FANOUT_N = 10_000
CHAIN_N = 1_000
RECOVERY_N = 10_000
CACHE_N = 1_000
# Recovery children sleep this long under this concurrency limit, so a full-scale
# run lasts a few seconds and can be killed midway.
RECOVERY_SLEEP = 0.005
RECOVERY_CONCURRENCY = 20

# Targets: inline executor, SQLite store, every action durably recorded.
TARGET_TASKS_PER_S = 20_000.0
TARGET_CHAIN_MS = 0.1
TARGET_RSS_MB = 120.0


class BenchError(RuntimeError):
    """A benchmark subprocess failed or the measurement could not be taken."""


# -- results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A bound a metric should meet: ``value >= bound`` or ``value <= bound``."""

    op: str  # ">=", "<=" or "=="
    bound: float
    correctness: bool = False  # a broken invariant, not a slow machine

    def met(self, value: float) -> bool:
        if self.op == ">=":
            return value >= self.bound
        if self.op == "<=":
            return value <= self.bound
        return value == self.bound

    def __str__(self) -> str:
        return f"{self.op} {_fmt(self.bound)}"


@dataclass
class Metric:
    """One row of the table: Heddle's samples, the baseline's, and the target."""

    scenario: str
    name: str
    unit: str
    heddle: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    target: Target | None = None
    # "time": ratio = heddle / baseline; "rate": ratio = baseline / heddle (both: cost of Heddle).
    ratio_kind: str | None = "time"
    baseline_note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.heddle)

    @property
    def baseline_median(self) -> float | None:
        return statistics.median(self.baseline) if self.baseline else None

    @property
    def ratio(self) -> float | None:
        b = self.baseline_median
        if b is None or self.ratio_kind is None or not self.heddle:
            return None
        top, bottom = (self.median, b) if self.ratio_kind == "time" else (b, self.median)
        return top / bottom if bottom else None

    @property
    def ok(self) -> bool | None:
        if self.target is None or not self.heddle:
            return None
        # Correctness must hold in every repeat; speed targets are judged on the median.
        if self.target.correctness:
            return all(self.target.met(v) for v in self.heddle)
        return self.target.met(self.median)

    def to_json(self) -> dict[str, Any]:
        def summary(xs: list[float]) -> dict[str, Any] | None:
            if not xs:
                return None
            return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "samples": xs}

        return {
            "scenario": self.scenario,
            "metric": self.name,
            "unit": self.unit,
            "heddle": summary(self.heddle),
            "baseline": summary(self.baseline),
            "baseline_note": self.baseline_note or None,
            "ratio": self.ratio,
            "target": None if self.target is None else str(self.target),
            "ok": self.ok,
        }


def _fmt(x: float) -> str:
    if x == int(x):
        return f"{int(x):,}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def _spread(xs: list[float]) -> str:
    if not xs:
        return "-"
    med = _fmt(statistics.median(xs))
    if len(xs) == 1:
        return med
    return f"{med} ({_fmt(min(xs))}-{_fmt(max(xs))})"


# -- subprocesses ------------------------------------------------------------------------


def _child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HEDDLE_HOME", "HEDDLE_DB_URL", "HEDDLE_STORAGE_URL", "HEDDLE_EXECUTOR")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env.update(extra or {})
    return env


def _parse_result(stdout: str, what: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith("BENCH_RESULT "):
            result: dict[str, Any] = json.loads(line.removeprefix("BENCH_RESULT "))
            return result
    raise BenchError(f"{what} printed no BENCH_RESULT line:\n{stdout[-2000:]}")


def run_program(
    script: Path, args: Sequence[str], env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and return its BENCH_RESULT."""
    cmd = [sys.executable, str(script), *args]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env=_child_env(env),
        cwd=ROOT,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    what = f"{script.name} {' '.join(args)}"
    if proc.returncode != 0:
        raise BenchError(f"{what} exited with {proc.returncode}:\n{proc.stderr[-4000:]}")
    return _parse_result(proc.stdout, what)


@contextmanager
def fresh_home() -> Iterator[Path]:
    """A new, empty Heddle home, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="heddle-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def heddle_program(
    mode: str, home: Path, n: int, *extra: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    return run_program(WORKLOADS, [mode, "--home", str(home), "--n", str(n), *extra], env)


def baseline_program(mode: str, n: int, *extra: str) -> dict[str, Any]:
    return run_program(BASELINE, [mode, "--n", str(n), *extra])


# -- scenarios ----------------------------------------------------------------------------


def _scaled(n: int, scale: float) -> int:
    return max(1, round(n * scale))


def bench_fanout(repeat: int, scale: float, log: Callable[[str], None]) -> list[Metric]:
    n = _scaled(FANOUT_N, scale)
    label = f"fan-out {n:,}"
    rate = Target(">=", TARGET_TASKS_PER_S)
    rss = Target("<=", TARGET_RSS_MB)
    g_rate = Metric(label, "gather: child tasks/s", "tasks/s", target=rate, ratio_kind="rate")
    m_rate = Metric(label, "heddle.map: child tasks/s", "tasks/s", target=rate, ratio_kind="rate")
    g_rss = Metric(label, "gather: peak RSS", "MB", target=rss)
    m_rss = Metric(label, "heddle.map: peak RSS", "MB", target=rss)
    for i in range(repeat):
        with fresh_home() as home:
            g = heddle_program("fanout-gather", home, n)
        with fresh_home() as home:
            m = heddle_program("fanout-map", home, n)
        b = baseline_program("fanout", n)
        g_rate.heddle.append(n / g["seconds"])
        m_rate.heddle.append(n / m["seconds"])
        g_rss.heddle.append(g["peak_rss_mb"])
        m_rss.heddle.append(m["peak_rss_mb"])
        for metric in (g_rate, m_rate):
            metric.baseline.append(n / b["seconds"])
        for metric in (g_rss, m_rss):
            metric.baseline.append(b["peak_rss_mb"])
        log(
            f"fanout {i + 1}/{repeat}: gather {n / g['seconds']:,.0f}/s, "
            f"map {n / m['seconds']:,.0f}/s, asyncio {n / b['seconds']:,.0f}/s"
        )
    return [g_rate, m_rate, g_rss, m_rss]


def bench_chain(repeat: int, scale: float, log: Callable[[str], None]) -> list[Metric]:
    n = _scaled(CHAIN_N, scale)
    per_task = Metric(f"chain {n:,}", "ms per task", "ms", target=Target("<=", TARGET_CHAIN_MS))
    rss = Metric(f"chain {n:,}", "peak RSS", "MB")
    for i in range(repeat):
        with fresh_home() as home:
            h = heddle_program("chain", home, n)
        b = baseline_program("chain", n)
        per_task.heddle.append(h["seconds"] / n * 1000)
        per_task.baseline.append(b["seconds"] / n * 1000)
        rss.heddle.append(h["peak_rss_mb"])
        rss.baseline.append(b["peak_rss_mb"])
        log(f"chain {i + 1}/{repeat}: {per_task.heddle[-1]:.4f} ms/task")
    return [per_task, rss]


@dataclass(frozen=True)
class RecoveryOutcome:
    seconds: float
    succeeded_at_kill: int
    duplicates: int
    rerun_inflight: int
    remaining: int
    complete: bool


def _children_succeeded(store: Any, literals: Any, run_id: str, root_id: str) -> set[int]:
    """The inputs (indexes) of the run's children that the store holds as succeeded."""
    import msgspec

    out: set[int] = set()
    for a in store.actions_of_run(run_id):
        if a.parent_id == root_id and a.status == "succeeded" and a.inputs is not None:
            out.add(msgspec.msgpack.decode(literals.from_literal(a.inputs))[0])
    return out


def _read_counter(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [int(line) for line in path.read_text().split()]


def recovery_once(n: int, concurrency: int, sleep: float) -> RecoveryOutcome:
    """Start a fan-out, SIGKILL it with about half its children done, recover it."""
    from heddle._runtime.literals import LiteralStore
    from heddle._storage import BlobStore
    from heddle._store import Store, sqlite_url

    with fresh_home() as home:
        counter = home / "bodies.txt"
        env = {"HEDDLE_BENCH_COUNTER": str(counter)}
        cmd = [
            sys.executable,
            str(WORKLOADS),
            "recovery-start",
            "--home",
            str(home),
            "--n",
            str(n),
            "--concurrency",
            str(concurrency),
            "--sleep",
            str(sleep),
        ]
        errors = (home / "start.err").open("w")
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            env=_child_env(env),
            cwd=ROOT,
        )
        store: Store | None = None
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            if not first.startswith("RUN_ID "):
                proc.kill()
                proc.wait()
                err = (home / "start.err").read_text()
                raise BenchError(f"recovery-start did not announce its run:\n{first}{err[-4000:]}")
            run_id = first.split()[1]
            store = Store(sqlite_url(home / "heddle.db"))
            half = n // 2
            deadline = time.monotonic() + SUBPROCESS_TIMEOUT
            while True:
                counts = store.count_actions([run_id]).get(run_id, {})
                # The root is running until the end, so succeeded counts children only.
                if counts.get("succeeded", 0) >= half:
                    break
                if proc.poll() is not None:
                    err = (home / "start.err").read_text()
                    raise BenchError(
                        f"the recovery run ended (exit {proc.returncode}) before it could be "
                        f"killed, at {counts}:\n{err[-4000:]}"
                    )
                if time.monotonic() > deadline:
                    raise BenchError("the recovery run did not reach half its children in time")
                time.sleep(0.002)
            proc.send_signal(signal.SIGKILL)
            # Reap it: a zombie still answers kill(pid, 0), and recover would see it alive.
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
            errors.close()

        assert store is not None
        run = store.get_run(run_id)
        literals = LiteralStore(BlobStore(str(home / "storage")))
        done_at_kill = _children_succeeded(store, literals, run_id, run.root_action_id)
        bodies_before = _read_counter(counter)

        resumed = heddle_program("recovery-resume", home, 0, "--run-id", run_id, env=env)
        bodies_after = _read_counter(counter)[len(bodies_before) :]
        done_after = _children_succeeded(store, literals, run_id, run.root_action_id)
        final = store.get_run(run_id)
        store.close()

    started_before = set(bodies_before)
    rerun = set(bodies_after)
    return RecoveryOutcome(
        seconds=resumed["seconds"],
        succeeded_at_kill=len(done_at_kill),
        duplicates=len(done_at_kill & rerun),
        rerun_inflight=len((started_before - done_at_kill) & rerun),
        remaining=n - len(done_at_kill),
        complete=final.status == "succeeded" and len(done_after) == n and resumed["output"] == n,
    )


def bench_recovery(repeat: int, scale: float, log: Callable[[str], None]) -> list[Metric]:
    n = _scaled(RECOVERY_N, scale)
    concurrency = max(1, round(RECOVERY_CONCURRENCY * scale))
    label = f"recovery {n:,}"
    seconds = Metric(label, "seconds to finish after kill", "s")
    dupes = Metric(
        label,
        "duplicates",
        "children",
        target=Target("==", 0, correctness=True),
        ratio_kind=None,
        baseline_note="a restarted asyncio program re-runs every finished child",
    )
    inflight = Metric(label, "re-run in-flight", "children", ratio_kind=None)
    at_kill = Metric(label, "succeeded at kill", "children", ratio_kind=None)
    complete = Metric(
        label,
        "complete after recovery",
        "1 = yes",
        target=Target("==", 1, correctness=True),
        ratio_kind=None,
    )
    for i in range(repeat):
        r = recovery_once(n, concurrency, RECOVERY_SLEEP)
        b = baseline_program(
            "recovery-remaining",
            r.remaining,
            "--concurrency",
            str(concurrency),
            "--sleep",
            str(RECOVERY_SLEEP),
        )
        seconds.heddle.append(r.seconds)
        seconds.baseline.append(b["seconds"])
        dupes.heddle.append(r.duplicates)
        # Without a durable record, a restarted asyncio program runs every finished child again.
        dupes.baseline.append(r.succeeded_at_kill)
        inflight.heddle.append(r.rerun_inflight)
        at_kill.heddle.append(r.succeeded_at_kill)
        complete.heddle.append(1 if r.complete else 0)
        log(
            f"recovery {i + 1}/{repeat}: killed at {r.succeeded_at_kill:,} done, "
            f"recovered in {r.seconds:.2f}s, duplicates {r.duplicates}, "
            f"re-run in-flight {r.rerun_inflight}"
        )
    seconds.baseline_note = "the children left at the kill, same concurrency and sleep"
    return [seconds, dupes, inflight, at_kill, complete]


def bench_cache(repeat: int, scale: float, log: Callable[[str], None]) -> list[Metric]:
    n = _scaled(CACHE_N, scale)
    label = f"cache {n:,}"
    first = Metric(
        label,
        "first run: ms per call",
        "ms",
        baseline_note="the same gather over a dict-memoised async def",
    )
    second = Metric(
        label,
        "second run: ms per call",
        "ms",
        baseline_note="the same gather over a dict-memoised async def",
    )
    hits = Metric(
        label,
        "second run: hits",
        "calls",
        target=Target("==", n, correctness=True),
        ratio_kind=None,
    )
    for i in range(repeat):
        with fresh_home() as home:
            f = heddle_program("cache-first", home, n)
            s = heddle_program("cache-second", home, n)
        b = baseline_program("cache", n)
        first.heddle.append(f["seconds"] / n * 1000)
        second.heddle.append(s["seconds"] / n * 1000)
        first.baseline.append(b["first_seconds"] / n * 1000)
        second.baseline.append(b["second_seconds"] / n * 1000)
        hits.heddle.append(s["hits"])
        log(
            f"cache {i + 1}/{repeat}: first {first.heddle[-1]:.4f} ms/call, "
            f"second {second.heddle[-1]:.4f} ms/call, hits {s['hits']} "
            f"(first run hits {f['hits']})"
        )
    return [first, second, hits]


BENCHES: dict[str, Callable[[int, float, Callable[[str], None]], list[Metric]]] = {
    "fanout": bench_fanout,
    "chain": bench_chain,
    "recovery": bench_recovery,
    "cache": bench_cache,
}


# -- report -------------------------------------------------------------------------------


def render(metrics: list[Metric], console: Console, title: str) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("scenario")
    table.add_column("metric")
    table.add_column("unit")
    table.add_column("heddle median (min-max)", justify="right")
    table.add_column("asyncio median (min-max)", justify="right")
    table.add_column("heddle cost vs asyncio", justify="right")
    table.add_column("target", justify="right")
    table.add_column("ok", justify="center")
    notes: dict[str, int] = {}
    for m in metrics:
        ratio = m.ratio
        base = _spread(m.baseline)
        if m.baseline_note:
            notes.setdefault(m.baseline_note, len(notes) + 1)
            base = f"{base} [{notes[m.baseline_note]}]"
        ok = m.ok
        table.add_row(
            m.scenario,
            m.name,
            m.unit,
            _spread(m.heddle),
            base,
            "-" if ratio is None else f"{ratio:,.1f}x",
            "-" if m.target is None else str(m.target),
            "-" if ok is None else ("[green]yes[/green]" if ok else "[red]NO[/red]"),
        )
    console.print(table, highlight=False)
    for note, number in notes.items():
        console.print(f"[{number}] asyncio baseline: {note}", highlight=False, markup=False)
    console.print(
        "[dim]cost ratio = heddle time / asyncio time (for tasks/s: asyncio rate / heddle rate; "
        "for RSS: heddle MB / asyncio MB). Medians of --repeat samples; each heddle sample is a fresh process and a fresh "
        "store; the asyncio baseline is a fresh process that imports no Heddle.[/dim]"
    )


def summary_lines(metrics: list[Metric]) -> list[str]:
    """One plain line per scenario with its headline figures (easy to grep)."""
    by: dict[str, dict[str, Metric]] = {}
    for m in metrics:
        by.setdefault(m.scenario, {})[m.name] = m
    lines = []
    for scenario, ms in by.items():
        parts = []
        for name, m in ms.items():
            value = m.median
            parts.append(f"{name} {_fmt(value)}")
        lines.append(f"{scenario}: " + ", ".join(parts))
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeat", type=int, default=5, help="samples per scenario (default 5)")
    p.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated subset of {','.join(SCENARIOS)}",
    )
    p.add_argument(
        "--scale", type=float, default=1.0, help="multiply every size (e.g. 0.01 for a smoke run)"
    )
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no per-repeat progress lines")
    a = p.parse_args(argv)
    chosen = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in BENCHES]
    if unknown or not chosen:
        p.error(f"unknown scenarios {unknown}: choose from {','.join(SCENARIOS)}")
    if a.repeat < 1:
        p.error("--repeat must be at least 1")
    if a.scale <= 0:
        p.error("--scale must be positive")

    console = Console(width=None if sys.stdout.isatty() else 180)

    def log(msg: str) -> None:
        if not a.quiet:
            console.print(f"[dim]{msg}[/dim]", highlight=False)

    started = time.perf_counter()
    metrics: list[Metric] = []
    for name in chosen:
        metrics.extend(BENCHES[name](a.repeat, a.scale, log))
    elapsed = time.perf_counter() - started

    when = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    title = (
        f"Heddle core bench - {when} - repeat {a.repeat}, scale {a.scale:g} - "
        f"python {platform.python_version()}, {os.cpu_count()} cpus - {elapsed:.0f}s"
    )
    render(metrics, console, title)
    for line in summary_lines(metrics):
        console.print(line, highlight=False)

    failed = [m for m in metrics if m.target and m.target.correctness and m.ok is False]
    if a.json:
        a.json.write_text(
            json.dumps(
                {
                    "date": when,
                    "command": " ".join([Path(sys.executable).name, *sys.argv]),
                    "repeat": a.repeat,
                    "scale": a.scale,
                    "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                    "metrics": [m.to_json() for m in metrics],
                    "correct": not failed,
                },
                indent=2,
            )
        )
    if failed:
        console.print(
            "[red]correctness check failed: "
            + ", ".join(f"{m.scenario} {m.name}" for m in failed)
            + "[/red]"
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
