"""The figures of a chaos campaign, from its results (one JSON line per run): runs, kills
by role, recoveries, and every invariant's count. ``main`` exits 1 when one broke."""

from __future__ import annotations

import collections
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from chaoslib.scenario import PARENT_TASKS


def load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _parent_kill(kill: dict[str, Any]) -> bool:
    running = str(kill.get("running") or "")
    return any(k.split(":")[0] in PARENT_TASKS for k in running.split(",") if k)


def _error_kind(died: str) -> str:
    """'driver/program exited 1: heddle._errors.StoreError: store URL: cannot ...: detail'
    -> the error and what failed, without the store's URL, ports or ids that differ."""
    _, _, error = died.partition(": ")
    error = re.sub(r"store \S+: ", "store: ", error)
    error = re.sub(r"port \d+", "port N", error)
    error = re.sub(r"(sha256:)?[0-9a-f]{16,}", "…", error)
    return error[:140]


def figures(results: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Every figure the report prints, as numbers."""
    results = list(results)
    kills: collections.Counter[str] = collections.Counter()
    for r in results:
        for k in r["kills"]:
            role = k["role"]
            if k["how"] != "signal":
                kills[f"{role} (crash point)"] += 1
            elif role == "worker":
                kills[
                    "worker running a parent" if _parent_kill(k) else "worker running a leaf"
                ] += 1
            else:
                kills[role] += 1
    recoveries = collections.Counter(how for r in results for how in r["recoveries"])
    return {
        "runs": len(results),
        "runs_by_store": dict(collections.Counter(r["store"] for r in results)),
        "runs_by_executor": dict(collections.Counter(r["executor"] for r in results)),
        "sigkills": sum(kills.values()),
        "kills_by_role": dict(sorted(kills.items())),
        "pg_restarts": sum(r["pg_restarts"] for r in results),
        "recoveries": sum(recoveries.values()),
        "recoveries_by_way": dict(recoveries),
        "runs_failed_before_recovery": sum(1 for r in results if r["failed_before_recovery"]),
        "driving_processes_died": sum(len(r.get("died", [])) for r in results),
        "deaths_by_error": dict(
            collections.Counter(_error_kind(d) for r in results for d in r.get("died", []))
        ),
        "not_succeeded_or_wrong_output": sum(
            1
            for r in results
            if any(v.startswith(("run ended", "output ")) for v in r["violations"])
        ),
        "reruns_of_succeeded_actions": sum(len(r["reruns"]) for r in results),
        "runs_with_reruns": sum(1 for r in results if r["reruns"]),
        "lost_outputs": sum(len(r["lost"]) for r in results),
        "stuck_runs": sum(1 for r in results if r["hung"]),
        "unfinished_actions_in_finished_runs": sum(len(r["stuck"]) for r in results),
        "leftover_processes": sum(len(r["leftovers"]) for r in results),
        "scenario_errors": sum(1 for r in results if r["error"]),
        "in_flight_bodies_run_again": sum(r["extra_runs"] for r in results),
        "runs_with_violations": sum(1 for r in results if r["violations"]),
        "seconds": round(sum(r["seconds"] for r in results), 1),
    }


def render(results: list[dict[str, Any]]) -> str:
    f = figures(results)
    lines = [
        f"runs: {f['runs']}  by store {f['runs_by_store']}  by executor {f['runs_by_executor']}"
        f"  ({f['seconds']:.0f} s of runs)",
        f"SIGKILLs: {f['sigkills']}",
        *(f"  {role}: {n}" for role, n in f["kills_by_role"].items()),
        f"PostgreSQL restarts mid-run: {f['pg_restarts']}",
        f"recoveries: {f['recoveries']} {f['recoveries_by_way']}; runs that ended failed before "
        f"recovery: {f['runs_failed_before_recovery']}",
        f"driving processes that died of an error of their own (not killed): "
        f"{f['driving_processes_died']}",
        *(f"  {n} x {kind}" for kind, n in f["deaths_by_error"].items()),
        "invariants (each must be 0):",
        f"  runs not succeeded, or output != crash-free run: {f['not_succeeded_or_wrong_output']}",
        f"  re-runs of succeeded actions: {f['reruns_of_succeeded_actions']} "
        f"(in {f['runs_with_reruns']} runs)",
        f"  lost outputs: {f['lost_outputs']}",
        f"  stuck runs (driving process hung): {f['stuck_runs']}",
        f"  actions left queued/running in finished runs: "
        f"{f['unfinished_actions_in_finished_runs']}",
        f"  leftover processes: {f['leftover_processes']}",
        f"  scenario errors: {f['scenario_errors']}",
        f"in-flight bodies run again after a kill (allowed: at least once): "
        f"{f['in_flight_bodies_run_again']}",
    ]
    bad = [r for r in results if r["violations"]]
    if bad:
        lines.append(f"runs with violations: {len(bad)} (replay one: bench/chaos.py replay SEED)")
        for r in bad[:40]:
            tag = ""
            if any(_parent_kill(k) for k in r["kills"]):
                tag = "  [a parent's worker was killed: issue 11.1]"
            elif r["reruns"] and all(x.startswith("probe:") for x in r["reruns"]):
                tag = "  [traces renamed on recovery: issue 10.2]"
            lines.append(
                f"  seed {r['seed']} {r['store']} {r['executor']} {r['shape']} {r['n']} "
                f"crashpoint={r['crashpoint']} pg_restarts={r['pg_restarts']} "
                f"kills={[(k['role'], k['how']) for k in r['kills']]}{tag}"
            )
            lines += [f"    - {v}" for v in r["violations"]]
    return "\n".join(lines)
