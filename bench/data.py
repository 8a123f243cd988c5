"""Data benchmarks: a pandas frame from task A to task B against the pyarrow Parquet
floor, and File/Dir transfer throughput, on the local store and on moto S3.

    .venv/bin/python bench/data.py [--repeat 3] [--file-repeat 1] [--scale 1.0]
                                   [--stores local,s3] [--scenarios frame,files]
                                   [--executor inline|process] [--json out.json]

At scale 1: a 5,000,000 x 4 float64 frame (160 MB), a 1 GiB file, a directory of
10,000 files. The floor is measured in the same process, interleaved with each repeat.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

import heddle  # noqa: E402
from heddle._sdk.config import get_session  # noqa: E402
from heddle._storage import BlobStore  # noqa: E402

env = heddle.TaskEnvironment(name="bench_data")
FRAME: dict[str, pd.DataFrame] = {}


@env.task
async def produce(tag: int, rows: int) -> pd.DataFrame:
    if "df" in FRAME:  # inline executor: the frame built outside the timing
        return FRAME["df"]
    # A worker process (--executor process) builds it: included in Heddle's time.
    return pd.DataFrame(np.random.default_rng(tag).random((rows, 4)), columns=list("abcd"))


@env.task
async def consume(df: pd.DataFrame) -> float:
    return float(df.to_numpy().sum())


@env.task
async def a_to_b(tag: int, rows: int) -> float:
    return await consume(await produce(tag, rows))


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def floor(df: pd.DataFrame, folder: Path) -> float:
    """pyarrow, default settings: write the frame to a local Parquet file, read it back,
    sum it. What any hand-written glue would cost."""
    path = folder / f"floor-{uuid.uuid4().hex}.parquet"

    def work() -> None:
        pq.write_table(pa.Table.from_pandas(df), path)
        back = pq.read_table(path).to_pandas()
        float(back.to_numpy().sum())

    try:
        return timed(work)
    finally:
        path.unlink(missing_ok=True)


def frame_scenario(args: argparse.Namespace, storage: str, work: Path) -> dict[str, Any]:
    rows = max(1000, int(5_000_000 * args.scale))
    rng = np.random.default_rng(0)
    ours, floors = [], []
    for i in range(args.repeat):
        # A new frame per repeat: content addressing would otherwise make repeats free.
        FRAME["df"] = pd.DataFrame(rng.random((rows, 4)), columns=list("abcd"))
        heddle.init(
            work / f"home-{storage}-{i}",
            storage_url=storage_url(storage, work, i),
            executor=args.executor,
        )
        floors.append(floor(FRAME["df"], work))
        ours.append(timed(lambda: heddle.run(a_to_b, i, rows).outputs()))  # noqa: B023
    f, o = statistics.median(floors), statistics.median(ours)
    return {
        "scenario": "frame A->B",
        "store": storage,
        "rows": rows,
        "mb": round(rows * 4 * 8 / 1e6, 1),
        "heddle_s": round(o, 3),
        "floor_s": round(f, 3),
        "ratio": round(o / f, 2),
        "heddle_all": [round(x, 3) for x in ours],
        "floor_all": [round(x, 3) for x in floors],
    }


def write_big_file(path: Path, size: int) -> None:
    block = np.random.default_rng(1).bytes(8 * 2**20)
    with path.open("wb") as f:
        left = size
        while left > 0:
            f.write(block[: min(left, len(block))])
            left -= len(block)
        f.write(uuid.uuid4().bytes)  # unique content per run


def file_scenario(args: argparse.Namespace, storage: str, work: Path) -> list[dict[str, Any]]:
    size = max(2**20, int(2**30 * args.scale))
    nfiles = max(10, int(10_000 * args.scale))
    up, down, dup, ddown = [], [], [], []
    for i in range(args.file_repeat):
        url = storage_url(storage, work, 100 + i)
        heddle.init(work / f"fhome-{storage}-{i}", storage_url=url, executor=args.executor)
        src = work / f"big-{i}.bin"
        write_big_file(src, size)
        f = heddle.File.from_local(src)
        up.append(timed(f.upload))
        key = f.key
        fresh = BlobStore(url, cache_dir=work / f"fresh-cache-{storage}-{i}")
        down.append(timed(lambda: fresh.download(key, work / f"down-{i}.bin")))  # noqa: B023
        src.unlink()
        (work / f"down-{i}.bin").unlink()
        tree = work / f"tree-{i}"
        for j in range(nfiles):
            p = tree / f"d{j % 100}" / f"f{j}.txt"
            if j < 100:
                p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(f"{i}-{j}-".encode() * 256)  # ~2.5 KB each
        d = heddle.Dir.from_local(tree)
        dup.append(timed(d.upload))
        blobs = get_session().blobs
        blobs.cache_dir = work / f"fresh-dir-cache-{storage}-{i}"
        blobs._verified.clear()
        remote = heddle.Dir(key=d.key, name="tree")
        ddown.append(timed(lambda: remote.download(work / f"tree-down-{i}")))  # noqa: B023
        shutil.rmtree(tree)
        shutil.rmtree(work / f"tree-down-{i}")
    mib = size / 2**20
    return [
        {
            "scenario": "File upload",
            "store": storage,
            "size_mib": round(mib),
            "seconds": round(statistics.median(up), 3),
            "mib_per_s": round(mib / statistics.median(up)),
        },
        {
            "scenario": "File download",
            "store": storage,
            "size_mib": round(mib),
            "seconds": round(statistics.median(down), 3),
            "mib_per_s": round(mib / statistics.median(down)),
        },
        {
            "scenario": "Dir upload",
            "store": storage,
            "files": nfiles,
            "seconds": round(statistics.median(dup), 3),
            "files_per_s": round(nfiles / statistics.median(dup)),
        },
        {
            "scenario": "Dir download",
            "store": storage,
            "files": nfiles,
            "seconds": round(statistics.median(ddown), 3),
            "files_per_s": round(nfiles / statistics.median(ddown)),
        },
    ]


_moto: dict[str, Any] = {}


def storage_url(storage: str, work: Path, i: int) -> str:
    if storage == "local":
        return str(work / f"storage-{i}")
    if "endpoint" not in _moto:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        _moto.update(server=server, endpoint=f"http://{host}:{port}")
    import boto3

    bucket = f"bench-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=_moto["endpoint"], region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    return f"s3://{bucket}/heddle"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--file-repeat", type=int, default=1, help="repeats of File/Dir")
    parser.add_argument("--stores", default="local,s3")
    parser.add_argument("--scenarios", default="frame,files")
    parser.add_argument("--executor", default="inline", choices=["inline", "process"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    # moto needs credentials and an endpoint; set before any worker process starts.
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_REGION="us-east-1",
        AWS_ALLOW_HTTP="true",
    )
    work = Path(tempfile.mkdtemp(prefix="heddle-bench-data-"))
    results: list[dict[str, Any]] = []
    try:
        stores = args.stores.split(",")
        if "s3" in stores:
            storage_url("s3", work, 0)
            os.environ["AWS_ENDPOINT_URL"] = _moto["endpoint"]
        for storage in stores:
            if "frame" in args.scenarios:
                results.append(frame_scenario(args, storage, work))
                print(json.dumps(results[-1]), flush=True)
            if "files" in args.scenarios:
                for r in file_scenario(args, storage, work):
                    results.append(r)
                    print(json.dumps(r), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if "server" in _moto:
            _moto["server"].stop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
