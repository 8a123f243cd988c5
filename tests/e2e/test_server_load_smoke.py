"""bench/server_load.py still runs end to end: 10 clients for 5 s, no timing asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "server_load.py"


def test_server_load_bench_runs_both_phases_without_errors(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDDLE_")}
    proc = subprocess.run(
        [
            *(sys.executable, str(BENCH), "--clients", "10", "--seconds", "5", "--repeat", "1"),
            *("--actions", "2000", "--rate", "0", "--json", str(out)),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "baseline: GET /health" in proc.stdout
    assert "run page: GET run + tree" in proc.stdout
    (phases,) = json.loads(out.read_text())["repeats"]
    base, run = phases
    assert base["requests"] > 0 and run["requests"] > 0
    assert base["errors"] == run["errors"] == 0
    # A run that does not change between polls: the clients send back the ETags they
    # were given, and the server answers 304s.
    assert run["statuses"].get("304", 0) > 0
