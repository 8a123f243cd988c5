"""bench/core.py still runs end to end: tiny sizes, one repeat, no speed assertions."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "core.py"


def test_bench_core_runs_every_scenario_at_tiny_scale(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDDLE_")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--scale", "0.01", "--repeat", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )
    elapsed = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # The budget is 20 s of work. It is checked as CPU time of the whole process tree
    # (about 6 s, and 6 s of wall time on an idle machine), because wall time on a
    # shared 2-core machine also counts every other process that is running.
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert cpu < 20, f"the smoke run used {cpu:.1f}s of CPU ({elapsed:.1f}s wall)"
    for scenario in ("fan-out 100", "chain 10", "recovery 100", "cache 10"):
        assert scenario in proc.stdout
    assert "duplicates 0" in proc.stdout
    assert "second run: hits 10" in proc.stdout

    report = json.loads(out.read_text())
    assert report["correct"] is True
    by_name = {(m["scenario"], m["metric"]): m for m in report["metrics"]}
    assert by_name[("recovery 100", "duplicates")]["heddle"]["median"] == 0
    assert by_name[("recovery 100", "complete after recovery")]["ok"] is True
    assert by_name[("cache 10", "second run: hits")]["ok"] is True
    assert all(m["heddle"]["samples"] for m in report["metrics"])
