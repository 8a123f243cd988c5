"""bench/data.py still runs end to end: tiny sizes, one repeat, no speed assertions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_data_runs_every_scenario_at_tiny_scale(tmp_path: Path) -> None:
    out = tmp_path / "data.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEDDLE_", "AWS_"))}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "data.py"),
            "--scale",
            "0.002",
            "--repeat",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert {(r["scenario"], r["store"]) for r in results} == {
        (s, store)
        for s in ("frame A->B", "File upload", "File download", "Dir upload", "Dir download")
        for store in ("local", "s3")
    }
