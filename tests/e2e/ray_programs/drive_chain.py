"""A driver process for the recovery test: starts rtasks.chain on the cluster and
prints the run id; the test kills this process mid-run."""

from __future__ import annotations

import sys

import rtasks

import heddle

if __name__ == "__main__":
    address, db_url, storage_url, home, folder = sys.argv[1:6]
    heddle.init(home, db_url=db_url, storage_url=storage_url, executor="ray", ray_address=address)
    run = heddle.run(rtasks.chain, 6, folder, wait=False)
    print(run.id, flush=True)
    run.wait()
