"""Recovers a run with heddle.recover (the Python way; the CLI way is ``heddle recover``).

Usage: python recover.py RUN --home H [--db-url URL] [--storage-url URL] [--store-faults SPEC]
Prints ``RUN <id>`` and ``OUTPUT <json>``; exits 3 with ``RECOVERY-ERROR <message>`` when
heddle refuses to recover the run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import heddle


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_id")
    parser.add_argument("--home", required=True)
    parser.add_argument("--db-url")
    parser.add_argument("--storage-url")
    parser.add_argument("--store-faults")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    heddle.init(args.home, db_url=args.db_url, storage_url=args.storage_url)
    if args.store_faults:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from chaoslib.faulty_store import install

        install(args.store_faults)
    try:
        run = heddle.recover(args.run_id, force=args.force)
    except heddle.RecoveryError as exc:
        print(f"RECOVERY-ERROR {exc}", flush=True)
        sys.exit(3)
    print(f"RUN {run.id}", flush=True)
    print(f"OUTPUT {json.dumps(run.outputs())}", flush=True)


if __name__ == "__main__":
    main()
