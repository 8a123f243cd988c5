"""The chaos campaign on demand (the long profile of tests/chaos): seeded kill loops of
drivers, workers and recoverers on SQLite and PostgreSQL, with PostgreSQL restarted
mid-run, every run judged by the suite's invariants; then the report.

    .venv/bin/python bench/chaos.py run --runs 500 --pg-restarts 20 --out chaos.jsonl
    .venv/bin/python bench/chaos.py report chaos.jsonl      # the figures again
    .venv/bin/python bench/chaos.py replay 1234 --store postgres   # one seed, verbose

PostgreSQL runs use a private server made with initdb in a temp dir (so it can be
restarted without disturbing anyone), or $HEDDLE_TEST_POSTGRES_URL with --pg-url
(then no restarts). Exit status 1 when an invariant broke in any run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHAOS = ROOT / "tests" / "chaos"
# Run the checkout this file sits in, and the suite's own machinery.
for path in (ROOT, CHAOS):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from chaoslib.campaign import Plan, References, RunResult, make_plan, play  # noqa: E402
from chaoslib.pgcluster import PrivateCluster  # noqa: E402
from chaoslib.report import load, render  # noqa: E402
from chaoslib.store_view import Target  # noqa: E402


class Stores:
    """Where runs of each store kind go: a fresh SQLite home per run; one PostgreSQL
    database per campaign, on a private cluster when one can be made."""

    def __init__(self, workdir: Path, kinds: list[str], pg_url: str | None) -> None:
        self.workdir = workdir
        self.cluster: PrivateCluster | None = None
        self.pg_url: str | None = None
        if "postgres" in kinds:
            if pg_url:
                self.pg_url = pg_url
            else:
                why = PrivateCluster.unavailable()
                if why is not None:
                    raise SystemExit(f"no private PostgreSQL ({why}); pass --pg-url")
                self.cluster = PrivateCluster()
                self.pg_url = self.cluster.create_database("chaos")

    def target(self, plan: Plan, rundir: Path) -> Target:
        home = rundir / "home"
        if plan.store == "postgres":
            return Target("postgres", home, db_url=self.pg_url, executor=plan.executor)
        return Target("sqlite", home, executor=plan.executor)

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.destroy()


def plans(args: argparse.Namespace) -> list[Plan]:
    kinds = args.stores.split(",")
    pg_runs = [i for i in range(args.runs) if kinds[i % len(kinds)] == "postgres"]
    restarts: set[int] = set()
    if args.pg_restarts and pg_runs:
        every = max(1, len(pg_runs) // args.pg_restarts)
        restarts = set(pg_runs[::every][: args.pg_restarts])
    return [
        make_plan(
            args.seed + i,
            kinds[i % len(kinds)],
            parent_workers=not args.leaf_workers_only,
            pg_restart=i in restarts,
        )
        for i in range(args.runs)
    ]


def run(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="heddle-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    out = Path(args.out or workdir / "results.jsonl")
    todo = plans(args)
    if args.pg_restarts and "postgres" in args.stores and args.pg_url:
        raise SystemExit("--pg-restarts needs the private cluster: leave out --pg-url")
    print(
        f"chaos: {len(todo)} runs from seed {args.seed} on {args.stores}; workdir {workdir}; "
        f"results {out}",
        flush=True,
    )
    stores = Stores(workdir, args.stores.split(","), args.pg_url)
    references = References(workdir / "references")
    results: list[RunResult] = []
    began = time.monotonic()
    try:
        with out.open("a") as sink:
            for i, plan in enumerate(todo):
                rundir = workdir / f"run-{plan.seed}-{uuid.uuid4().hex[:6]}"
                result = play(
                    plan,
                    stores.target(plan, rundir),
                    rundir,
                    references,
                    stores.cluster,
                    log=lambda text: print(text, flush=True),
                )
                results.append(result)
                sink.write(result.to_json() + "\n")
                sink.flush()
                kills = sum(len(r.kills) for r in results)
                mark = "ok" if not result.violations else "VIOLATION"
                print(
                    f"[{i + 1}/{len(todo)} {time.monotonic() - began:.0f}s kills {kills}] seed "
                    f"{plan.seed} {plan.store} {plan.executor} {plan.shape} {plan.n}: {mark} "
                    f"({len(result.kills)} kills, {len(result.recoveries)} recoveries, "
                    f"{result.pg_restarts} pg restarts)",
                    flush=True,
                )
                for v in result.violations:
                    print(f"    - {v}", flush=True)
                if not result.violations and not args.keep:
                    shutil.rmtree(rundir, ignore_errors=True)
    finally:
        stores.close()
    print(render(load(out)))
    return 1 if any(r.violations for r in results) else 0


def replay(args: argparse.Namespace) -> int:
    plan = make_plan(
        args.seed,
        args.store,
        parent_workers=not args.leaf_workers_only,
        pg_restart=args.pg_restart,
    )
    print(plan, flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="heddle-chaos-replay-"))
    stores = Stores(workdir, [args.store], args.pg_url)
    try:
        result = play(
            plan,
            stores.target(plan, workdir / "run"),
            workdir / "run",
            References(workdir / "references"),
            stores.cluster,
            log=lambda text: print(text, flush=True),
        )
    finally:
        stores.close()
    print(result.to_json())
    print(f"files kept in {workdir}")
    return 1 if result.violations else 0


def main() -> int:
    # SIGTERM ends the campaign like Ctrl-C: the private PostgreSQL server is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="play a campaign and report it")
    p.add_argument("--runs", type=int, default=500)
    p.add_argument("--seed", type=int, default=int(os.environ.get("HEDDLE_CHAOS_SEED", "1000")))
    p.add_argument("--stores", default="sqlite,postgres")
    p.add_argument("--pg-restarts", type=int, default=20)
    p.add_argument("--pg-url", help="use this PostgreSQL server instead of a private one")
    p.add_argument(
        "--leaf-workers-only",
        action="store_true",
        help="never kill a worker running a parent task (issue 11.1, being fixed)",
    )
    p.add_argument("--workdir")
    p.add_argument("--out", help="results file (JSON lines; appended to)")
    p.add_argument("--keep", action="store_true", help="keep the files of passing runs too")
    r = sub.add_parser("report", help="print the figures of a results file")
    r.add_argument("results")
    q = sub.add_parser("replay", help="play one seed again, verbosely")
    q.add_argument("seed", type=int)
    q.add_argument("--store", default="sqlite", choices=("sqlite", "postgres"))
    q.add_argument("--pg-restart", action="store_true")
    q.add_argument("--pg-url")
    q.add_argument("--leaf-workers-only", action="store_true")
    args = parser.parse_args()
    if args.command == "run":
        return run(args)
    if args.command == "replay":
        return replay(args)
    results = load(Path(args.results))
    print(render(results))
    return 1 if any(r["violations"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
