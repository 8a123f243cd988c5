"""Server load: N browsers polling the page of a live 10,000-action run.

A real ``heddle serve`` (its own process) over a real store holds a running run of
10,000 actions whose driver is this script: a thread finishes and starts actions
and heartbeats the run, as a live driver would. N concurrent clients (httpx, async)
then poll the way the run page does: every ``--interval`` seconds the run, then the
first level of its action tree, sending back the ETag of what they hold. The
baseline is the same clients polling ``/api/v1/health`` (no store access) in the
same run: what the server costs per request before any work.

    .venv/bin/python bench/server_load.py                     # 50 clients x 60 s, 3 repeats
    .venv/bin/python bench/server_load.py --clients 10 --seconds 5 --repeat 1   # smoke
    .venv/bin/python bench/server_load.py --db-url postgresql+psycopg://...    # on PostgreSQL
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# Measure the checkout this file sits in, not whichever heddle the venv points at.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from heddle._runtime.driver import new_owner  # noqa: E402
from heddle._store import RunRecord, Store, WriteBatch  # noqa: E402
from heddle.server.testing import free_port  # noqa: E402

RUN_ID = "rload"
ROOT_ACTION = "a" + "0" * 32
TARGET_P99_MS = 250.0


# -- the live run ----------------------------------------------------------------------


def _child_id(i: int) -> str:
    return f"a{i:032x}"


def create_live_run(store: Store, n_actions: int, owner: str) -> None:
    """A running run: the root, most children succeeded, a few running, the rest queued."""
    now = time.time()
    store.create_run(
        RunRecord(
            id=RUN_ID,
            name=f"{n_actions} actions, live",
            root_task="load.main",
            root_action_id=ROOT_ACTION,
            status="running",
            program="{}",
            inputs=b"i\x91\xcd\x03\xe8",
            output=None,
            error=None,
            executor="inline",
            owner=owner,
            heartbeat_at=now,
            abort_requested=False,
            created_at=now - 600,
            started_at=now - 600,
            finished_at=None,
        )
    )
    done = int(n_actions * 0.9)

    def row(i: int) -> dict[str, Any]:
        queued = now - 600 + i * 0.05
        status = "succeeded" if i < done else "running" if i < done + 8 else "queued"
        return {
            "run_id": RUN_ID,
            "id": ROOT_ACTION if i == 0 else _child_id(i),
            "parent_id": None if i == 0 else ROOT_ACTION,
            "seq": i,
            "kind": "task",
            "task_name": "load.main" if i == 0 else "load.item",
            "task_version": "v1",
            "group_name": None,
            "status": "running" if i == 0 else status,
            "attempts": 0 if status == "queued" else 1,
            "cached": 0,
            "cache_key": None,
            "inputs": b"i\x91" + bytes([i % 128]),
            "output": b"i" + bytes([i % 128]) if status == "succeeded" and i else None,
            "error": None,
            "queued_at": queued,
            "started_at": None if status == "queued" else queued + 0.5,
            "finished_at": queued + 1.0 if status == "succeeded" and i else None,
        }

    writer = store.writer()
    try:
        for lo in range(0, n_actions, 5_000):
            rows = [row(i) for i in range(lo, min(n_actions, lo + 5_000))]
            writer.write(WriteBatch(action_inserts=rows))
    finally:
        writer.close()
    store.checkpoint()


class Progress:
    """Plays the run's driver: every 1/rate s an action finishes and a queued one starts;
    the run's heartbeat is renewed every 2 s."""

    def __init__(self, store: Store, n_actions: int, rate: float) -> None:
        self.store = store
        self.rate = rate
        self.next_done = int(n_actions * 0.9)
        self.next_start = self.next_done + 8
        self.n = n_actions
        self.changes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)

    def _update(self, i: int, status: str, now: float) -> dict[str, Any]:
        return {
            "_run_id": RUN_ID,
            "_id": _child_id(i),
            "status": status,
            "attempts": 1,
            "task_version": "v1",
            "cached": 0,
            "cache_key": None,
            "output": b"i\x01" if status == "succeeded" else None,
            "error": None,
            "started_at": now - 1.0 if status == "succeeded" else now,
            "finished_at": now if status == "succeeded" else None,
        }

    def _loop(self) -> None:
        beat = 0.0
        while not self._stop.wait(1.0 / self.rate if self.rate > 0 else 1.0):
            now = time.time()
            updates = []
            if self.rate > 0 and self.next_start < self.n:
                updates.append(self._update(self.next_done, "succeeded", now))
                updates.append(self._update(self.next_start, "running", now))
                self.next_done += 1
                self.next_start += 1
                self.changes += 1
            if updates:
                self.store.write_batch(WriteBatch(action_updates=updates))
            if now - beat >= 2.0:
                self.store.update_run(RUN_ID, heartbeat_at=now)
                beat = now

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


# -- the server ------------------------------------------------------------------------


@contextmanager
def serve(home: Path, db_url: str | None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDDLE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["HEDDLE_HOME"] = str(home)
    if db_url:
        env["HEDDLE_DB_URL"] = db_url
    proc = subprocess.Popen(
        [sys.executable, "-m", "heddle.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/api/v1/health", timeout=2).raise_for_status()
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise SystemExit(f"the server did not start: {err[-2000:]}") from None
                time.sleep(0.1)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


# -- the clients -----------------------------------------------------------------------


@dataclass
class Sample:
    """What one phase measured."""

    phase: str
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    server_cpu: float = 0.0

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000

    def to_json(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "requests": self.requests,
            "rps": self.rps,
            "p50_ms": self.pct(0.50),
            "p99_ms": self.pct(0.99),
            "max_ms": self.pct(1.0),
            "statuses": self.statuses,
            "errors": self.errors,
            "server_cpu_ms_per_request": 1000 * self.server_cpu / max(1, self.requests),
        }


async def poll(
    url: str, paths: list[str], clients: int, seconds: float, interval: float, sample: Sample
) -> None:
    """``clients`` pollers, each fetching ``paths`` in turn every ``interval`` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds

    async def one(rng: random.Random) -> None:
        held: dict[str, str] = {}
        async with httpx.AsyncClient(base_url=url, timeout=30) as c:
            # Browsers open the page at different moments, not in lockstep.
            await asyncio.sleep(rng.uniform(0, interval or 0.01))
            while loop.time() < end:
                tick = loop.time()
                for path in paths:
                    headers = {"If-None-Match": held[path]} if path in held else {}
                    started = time.perf_counter()
                    try:
                        res = await c.get(path, headers=headers)
                    except httpx.HTTPError:
                        sample.errors += 1
                        continue
                    sample.latencies.append(time.perf_counter() - started)
                    sample.statuses[res.status_code] = sample.statuses.get(res.status_code, 0) + 1
                    if res.status_code == 200 and "etag" in res.headers:
                        held[path] = res.headers["etag"]
                    elif res.status_code >= 400:
                        sample.errors += 1
                await asyncio.sleep(max(0.0, tick + interval - loop.time()))

    await asyncio.gather(*(one(random.Random(i)) for i in range(clients)))


def measure(
    url: str,
    pid: int,
    phase: str,
    paths: list[str],
    args: argparse.Namespace,
) -> Sample:
    sample = Sample(phase, args.seconds)
    before = cpu_seconds(pid)
    started = time.perf_counter()
    asyncio.run(poll(url, paths, args.clients, args.seconds, args.interval, sample))
    sample.seconds = time.perf_counter() - started
    sample.server_cpu = cpu_seconds(pid) - before
    return sample


def run_once(args: argparse.Namespace) -> list[Sample]:
    with tempfile.TemporaryDirectory(prefix="heddle-load-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        db_url = args.db_url or f"sqlite:///{home / 'heddle.db'}"
        store = Store(db_url)
        try:
            create_live_run(store, args.actions, new_owner())
            run_paths = [
                f"/api/v1/runs/{RUN_ID}",
                f"/api/v1/runs/{RUN_ID}/tree?parent={ROOT_ACTION}&offset=0&limit=100",
            ]
            with serve(home, args.db_url) as (url, proc), Progress(store, args.actions, args.rate):
                httpx.get(url + run_paths[0]).raise_for_status()  # a warm server
                base = measure(url, proc.pid, "baseline: GET /health", ["/api/v1/health"] * 2, args)
                run = measure(url, proc.pid, "run page: GET run + tree", run_paths, args)
            return [base, run]
        finally:
            store.close()


def _fmt_ms(xs: list[float]) -> str:
    return f"{statistics.median(xs):.1f} ({min(xs):.1f}-{max(xs):.1f})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--interval", type=float, default=1.5, help="seconds between polls (the UI's)")
    p.add_argument("--actions", type=int, default=10_000)
    p.add_argument("--rate", type=float, default=2.0, help="actions finishing per second")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--db-url", default=None, help="a store URL (default: SQLite in a temp dir)")
    p.add_argument("--json", type=Path, default=None, help="also write every sample here")
    args = p.parse_args(argv)

    print(
        f"{args.clients} clients polling every {args.interval:g}s for {args.seconds:g}s; "
        f"a live run of {args.actions:,} actions ({args.rate:g} finish/s); "
        f"{args.repeat} repeat(s); store: {'PostgreSQL' if args.db_url else 'SQLite'}",
        flush=True,
    )
    samples: list[list[Sample]] = []
    for i in range(args.repeat):
        got = run_once(args)
        samples.append(got)
        for s in got:
            print(
                f"  repeat {i + 1}: {s.phase:<28} {s.requests:6d} requests  {s.rps:6.1f}/s  "
                f"p50 {s.pct(0.5):7.1f} ms  p99 {s.pct(0.99):7.1f} ms  max {s.pct(1.0):7.1f} ms  "
                f"statuses {dict(sorted(s.statuses.items()))}  errors {s.errors}  "
                f"server cpu {1000 * s.server_cpu / max(1, s.requests):.2f} ms/request",
                flush=True,
            )
    print(f"\nmedian (min-max) of {args.repeat} repeat(s):")
    print(f"  {'phase':<28} {'requests/s':>22} {'p50 ms':>22} {'p99 ms':>22}")
    for k in range(len(samples[0])):
        phase = [r[k] for r in samples]
        print(
            f"  {phase[0].phase:<28} {_fmt_ms([s.rps for s in phase]):>22} "
            f"{_fmt_ms([s.pct(0.5) for s in phase]):>22} "
            f"{_fmt_ms([s.pct(0.99) for s in phase]):>22}"
        )
    p99 = statistics.median(r[-1].pct(0.99) for r in samples)
    errors = sum(s.errors for r in samples for s in r)
    print(
        f"\nrun page p99 {p99:.1f} ms (target < {TARGET_P99_MS:g} ms at 50 clients x 60 s): "
        f"{'met' if p99 < TARGET_P99_MS else 'NOT met'}; errors: {errors}"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": vars(args) | {"json": str(args.json)},
                    "repeats": [[s.to_json() for s in r] for r in samples],
                },
                indent=2,
            )
        )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
