"""Benchmark of the Ray executor on a local two-node Ray cluster (loopback only), with
the store on PostgreSQL and the blobs on moto's S3 server.

Run: ``.venv/bin/python bench/ray.py [--repeat 3] [--tasks 1000] [--chain 200] [--fanout 10000]``
(PostgreSQL from $HEDDLE_BENCH_POSTGRES_URL or $HEDDLE_TEST_POSTGRES_URL; a fresh
database is created and dropped).

1. Per-task overhead, in the same run: a root action on the cluster fans out
   --tasks trivial children as Heddle actions (every one durably recorded in
   PostgreSQL), then submits the same number of raw ``ray.remote`` tasks from the same
   worker; and the same two for --chain sequential calls. Target: <= 1.5x raw Ray.
2. Fan-out of --fanout children (``heddle.map``) across both nodes, with raw Ray in
   the same root for scale.
Each figure is the median of --repeat runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only

# This file is named ray.py: its folder must not shadow the ray package.
_here = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
sys.path.insert(0, str(_here.parent))

import ray  # noqa: E402

import heddle  # noqa: E402

env = heddle.TaskEnvironment(name="rbench")


@ray.remote(max_retries=0)
def raw_trivial(x: int) -> int:
    return x + 1


@env.task
def trivial(x: int) -> int:
    return x + 1


@env.task
async def compare_fan(n: int) -> tuple[float, float]:
    """Seconds for n Heddle children, then for n raw Ray tasks, from this one worker."""
    t = time.perf_counter()
    out = await asyncio.gather(*(trivial.aio(i) for i in range(n)))
    heddle_s = time.perf_counter() - t
    assert sum(out) == n * (n + 1) // 2
    t = time.perf_counter()
    # ray.get on the worker's main thread, as Heddle's wait does: the cpu is lent back.
    raw = ray.get([raw_trivial.remote(i) for i in range(n)])
    raw_s = time.perf_counter() - t
    assert sum(raw) == n * (n + 1) // 2
    return heddle_s, raw_s


@env.task
async def compare_chain(n: int) -> tuple[float, float]:
    t = time.perf_counter()
    for i in range(n):
        await trivial.aio(i)
    heddle_s = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(n):
        ray.get(raw_trivial.remote(i))
    raw_s = time.perf_counter() - t
    return heddle_s, raw_s


@env.task
async def compare_map(n: int) -> tuple[float, float]:
    t = time.perf_counter()
    out = await heddle.map(trivial, range(n))
    heddle_s = time.perf_counter() - t
    assert len(out) == n
    t = time.perf_counter()
    ray.get([raw_trivial.remote(i) for i in range(n)])
    return heddle_s, time.perf_counter() - t


def _postgres() -> tuple[str, Any, str]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = (
        os.environ.get("HEDDLE_BENCH_POSTGRES_URL")
        or os.environ.get("HEDDLE_TEST_POSTGRES_URL")
        or "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    name = "heddle_bench_" + uuid.uuid4().hex[:10]
    admin_url = make_url(base).set(database="postgres")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return make_url(base).set(database=name).render_as_string(hide_password=False), admin, name


def _s3() -> tuple[Any, str]:
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
            "AWS_ENDPOINT_URL": endpoint,
        }
    )
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
    return server, "s3://bench/runs"


def _cluster(cpus: int) -> Any:
    import ray._private.ray_constants as ray_constants
    from ray.cluster_utils import Cluster

    ray_constants.ENABLE_RAY_CLUSTER = False
    args = {"node_ip_address": "127.0.0.1", "num_cpus": cpus}
    cluster = Cluster(
        initialize_head=True,
        connect=False,
        head_node_args={**args, "include_dashboard": False},
    )
    cluster.add_node(**args)
    return cluster


def _row(label: str, heddle_s: list[float], raw_s: list[float], n: int) -> str:
    h, r = statistics.median(heddle_s), statistics.median(raw_s)
    return (
        f"| {label} | {n:,} | {h * 1000 / n:.2f} ms ({n / h:,.0f}/s) "
        f"| {r * 1000 / n:.2f} ms ({n / r:,.0f}/s) | {h / r:.2f}x |"
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--tasks", type=int, default=1000)
    p.add_argument("--chain", type=int, default=200)
    p.add_argument("--fanout", type=int, default=10_000)
    p.add_argument("--cpus", type=int, default=2, help="logical cpus per node")
    a = p.parse_args()

    db_url, admin, db_name = _postgres()
    server, storage_url = _s3()
    cluster = _cluster(a.cpus)
    home = tempfile.mkdtemp(prefix="heddle-ray-bench-")
    try:
        heddle.init(
            home,
            db_url=db_url,
            storage_url=storage_url,
            executor="ray",
            ray_address=cluster.address,
        )
        heddle.run(compare_fan, 50).outputs()  # warm the workers up
        heddle.run(compare_chain, 20).outputs()
        results: dict[str, tuple[list[float], list[float]]] = {}
        for label, task, n in (
            ("fan-out (gather)", compare_fan, a.tasks),
            ("chain (sequential)", compare_chain, a.chain),
            ("fan-out (heddle.map)", compare_map, a.fanout),
        ):
            hs, rs = [], []
            for _ in range(a.repeat):
                h, r = heddle.run(task, n).outputs()
                hs.append(h)
                rs.append(r)
            results[label] = (hs, rs)
            print(
                f"{label}: heddle {[round(x, 2) for x in hs]} s, raw {[round(x, 2) for x in rs]} s"
            )
        print()
        print(
            f"two nodes x {a.cpus} logical cpus on {os.cpu_count()} cores; PostgreSQL store; "
            f"moto S3; median of {a.repeat}"
        )
        print("| scenario | tasks | heddle per task | raw ray per task | heddle / raw |")
        print("| --- | --- | --- | --- | --- |")
        for label, (hs, rs) in results.items():
            n = {"fan-out (gather)": a.tasks, "chain (sequential)": a.chain}.get(label, a.fanout)
            print(_row(label, hs, rs, n))
    finally:
        from heddle._sdk import config

        if config._session is not None:
            config._session.close()
        ray.shutdown()
        cluster.shutdown()
        server.stop()
        from sqlalchemy import text

        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
