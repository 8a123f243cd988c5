"""The Ray executor on a real local Ray cluster of three nodes (loopback only), with
the store on PostgreSQL and the blobs on moto's S3: placement, nesting, failures, a
node killed mid-run and a driver killed mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from programs import frames

import heddle
from heddle._sdk.config import get_session

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

PROGRAMS = Path(__file__).parent / "ray_programs"
sys.path.insert(0, str(PROGRAMS))
import rtasks  # noqa: E402

GiB = 2**30
# Ray binds and advertises loopback only: no traffic to any other address.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ALLOW_HTTP": "true",
}


@dataclass
class RayCluster:
    cluster: Any
    address: str
    head_id: str
    gpu_id: str
    spare: Any  # the node the node-kill test removes
    spare_id: str
    s3_endpoint: str


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[RayCluster]:
    """Head (1 cpu, the only node with 3+ GiB of memory), a node with a GPU, and a
    spare node; moto's S3 server on loopback; all started once for the module."""
    try:
        import boto3
        import ray
        import ray._private.ray_constants as ray_constants
        from moto.server import ThreadedMotoServer
        from ray.cluster_utils import Cluster
    except ImportError as exc:
        pytest.skip(f"ray or moto is not installed: {exc}")
    saved = {k: os.environ.get(k) for k in [*LOOPBACK_ENV, *S3_ENV, "AWS_ENDPOINT_URL"]}
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # Set before the nodes start: their workers inherit it.
    os.environ.update({**LOOPBACK_ENV, **S3_ENV, "AWS_ENDPOINT_URL": endpoint})
    ray_constants.ENABLE_RAY_CLUSTER = False
    cluster = None
    try:
        try:
            cluster = Cluster(
                initialize_head=True,
                connect=False,
                head_node_args={
                    "node_ip_address": "127.0.0.1",
                    "num_cpus": 1,
                    "memory": 6 * GiB,
                    "include_dashboard": False,
                    "_system_config": {
                        # Notice a dead node within a second or two.
                        "health_check_period_ms": 500,
                        "health_check_failure_threshold": 3,
                        "health_check_initial_delay_ms": 0,
                    },
                },
            )
            gpu = cluster.add_node(
                node_ip_address="127.0.0.1",
                num_cpus=2,
                num_gpus=1,
                memory=2 * GiB,
                # What Ray reports for a node with a T4, plus a resource of our own.
                resources={"accelerator_type:T4": 1, "fast_disk": 1},
            )
            spare = cluster.add_node(node_ip_address="127.0.0.1", num_cpus=2, memory=2 * GiB)
        except Exception as exc:
            pytest.skip(f"a local Ray cluster could not start: {exc}")
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        yield RayCluster(
            cluster,
            cluster.address,
            cluster.head_node.node_id,
            gpu.node_id,
            spare,
            spare.node_id,
            endpoint,
        )
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        server.stop()
        ray_constants.ENABLE_RAY_CLUSTER = True
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def s3_url(ray_cluster: RayCluster) -> str:
    import boto3

    bucket = "heddle-" + uuid.uuid4().hex[:12]
    boto3.client("s3", endpoint_url=ray_cluster.s3_endpoint, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    return f"s3://{bucket}/runs"


@pytest.fixture
def ray_home(ray_cluster: RayCluster, pg_url: str, s3_url: str, tmp_path: Path) -> RayCluster:
    heddle.init(
        tmp_path / "home",
        db_url=pg_url,
        storage_url=s3_url,
        executor="ray",
        ray_address=ray_cluster.address,
    )
    return ray_cluster


def _attempts(run: heddle.Run) -> dict[str, list[tuple[int, str, str]]]:
    """Per action id: (number, status, error kind) of each attempt."""
    out: dict[str, list[tuple[int, str, str]]] = {}
    for t in get_session().store.attempts_of_run(run.id):
        kind = json.loads(t.error)["kind"] if t.error else ""
        out.setdefault(t.action_id, []).append((t.number, t.status, kind))
    return {k: sorted(v) for k, v in out.items()}


def test_a_fan_out_runs_its_children_on_both_nodes_as_durable_actions(ray_home: RayCluster) -> None:
    run = heddle.run(rtasks.spread, 6, 0.5)
    nodes = run.outputs()
    assert len(nodes) == 6
    assert len(set(nodes)) >= 2, "every child ran on one node"
    actions = run.actions()
    root = next(a for a in actions if a.parent_id is None)
    children = [a for a in actions if a.task_name == "rtasks.where"]
    assert len(children) == 6
    assert all(a.parent_id == root.id and a.status == "succeeded" for a in children)
    workers = {t.worker for t in get_session().store.attempts_of_run(run.id)}
    assert all(w and w.startswith("ray:") for w in workers)
    log = get_session().blobs.get_text(f"logs/{run.id}/{children[0].id}/1.log")
    assert log is not None and b"where" in log


def test_a_task_needing_a_gpu_runs_on_the_only_node_that_has_one(ray_home: RayCluster) -> None:
    where, cuda = heddle.run(rtasks.on_gpu).outputs()
    assert where == ray_home.gpu_id
    assert cuda == "0"


def test_accelerator_type_and_custom_resources_place_an_action_on_the_node_that_has_them(
    ray_home: RayCluster,
) -> None:
    assert heddle.run(rtasks.on_t4).outputs() == ray_home.gpu_id
    assert heddle.run(rtasks.on_fast_disk).outputs() == ray_home.gpu_id
    with pytest.raises(heddle.ResourceError, match="accelerator_type=A100"):
        heddle.run(rtasks.on_t4.override(resources=heddle.Resources(accelerator="A100"))).outputs()


def test_a_request_no_node_can_hold_is_refused_before_it_is_submitted(
    ray_home: RayCluster,
) -> None:
    too_big = rtasks.on_gpu.override(resources=heddle.Resources(gpu=2))
    with pytest.raises(heddle.ResourceError, match="num_gpus=2"):
        heddle.run(too_big).outputs()


def test_nested_calls_inside_workers_are_durable_children_and_cannot_deadlock(
    ray_home: RayCluster,
) -> None:
    # Root + 5 blocked sync parents are more than the cluster's 5 cpus: only lending
    # a waiting parent's cpu back to Ray lets the leaves run.
    run = heddle.run(rtasks.nested, 5)
    assert run.outputs() == [0, 1, 5, 14, 30]
    by_id = {a.id: a for a in run.actions()}
    squares = [a for a in by_id.values() if a.task_name == "rtasks.square"]
    assert len(squares) == 1 + 2 + 3 + 4 + 5
    assert {by_id[a.parent_id].task_name for a in squares if a.parent_id} == {"rtasks.sum_squares"}
    assert all(a.status == "succeeded" for a in by_id.values())


def test_user_errors_keep_their_type_and_use_the_tasks_retries(
    ray_home: RayCluster, tmp_path: Path
) -> None:
    with pytest.raises(KeyError, match="boom"):
        heddle.run(rtasks.fail_with, "boom").outputs()
    run = heddle.run(rtasks.flaky, str(tmp_path / "marker"))
    assert run.outputs() == "second attempt"
    (attempts,) = _attempts(run).values()
    assert attempts == [(1, "failed", "user"), (2, "succeeded", "")]


def test_a_failing_tasks_traceback_names_the_users_file_and_line(ray_home: RayCluster) -> None:
    failing = _import_failing()
    run = heddle.run(failing.main)
    with pytest.raises(ValueError) as info:
        run.outputs()
    frames.assert_user_traceback("".join(traceback.format_exception(info.value)), frames.MAIN)
    (leaf,) = [a for a in run.actions() if a.task_name == "failing.leaf"]
    assert leaf.error is not None
    frames.assert_user_traceback(json.loads(leaf.error)["traceback"])
    caught = heddle.run(failing.catcher).outputs()
    frames.assert_user_traceback(caught, frames.CAUGHT)


def _import_failing() -> Any:
    sys.path.insert(0, str(frames.FAILING.parent))
    try:
        import failing
    finally:
        sys.path.remove(str(frames.FAILING.parent))
    return failing


def test_a_task_past_its_memory_limit_is_an_oom_error_the_caller_can_catch(
    ray_home: RayCluster,
) -> None:
    out = heddle.run(rtasks.hog_then_more, 400).outputs()
    assert out.startswith("caught OOMError"), out
    assert out.endswith("then 40")


def test_a_timeout_cancels_the_ray_task_and_its_worker_process(
    ray_home: RayCluster, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    started = time.monotonic()
    with pytest.raises(heddle.TimeoutError):
        heddle.run(rtasks.sleeps, str(pidfile)).outputs()
    assert time.monotonic() - started < 30
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "the timed-out worker is still running"


def test_cached_outputs_are_shared_across_runs_through_the_postgres_store(
    ray_home: RayCluster, tmp_path: Path
) -> None:
    marker = tmp_path / "counted"
    assert heddle.run(rtasks.counted, str(marker), 1).outputs() == 2
    second = heddle.run(rtasks.counted, str(marker), 1)
    assert second.outputs() == 2
    assert marker.read_text().count("ran") == 1
    assert [a.cached for a in second.actions()] == [True]


def test_a_cached_parent_in_a_ray_worker_depends_on_what_its_children_called_there(
    ray_home: RayCluster,
) -> None:
    from heddle._runtime import versions

    assert heddle.run(rtasks.cached_parent, 2).outputs() == 8
    store = get_session().store
    (entry,) = store.cache_entries_of("rcached.cached_parent")
    assert [(kind, name) for kind, name, _v in json.loads(entry.deps or "[]")] == [
        ("task", "rcached.cached_leaf"),
        ("trace", "rtasks.lookup"),
    ]
    # Versions computed in the worker are the ones the driver checks: a hit.
    second = heddle.run(rtasks.cached_parent, 2)
    assert [a.cached for a in second.actions()] == [True]
    try:
        # An edit of the leaf, as the driver's program now defines it: the parent misses.
        @rtasks.cached_env.task(name="rcached.cached_leaf")
        def cached_leaf(x: int) -> int:
            return x

        third = heddle.run(rtasks.cached_parent, 2)
        (root,) = (a for a in third.actions() if a.parent_id is None)
        assert root.cached is False
    finally:
        versions.define("task", "rcached.cached_leaf", rtasks.cached_leaf.dependency_version)


def test_an_images_env_and_the_tasks_env_vars_reach_the_worker(ray_home: RayCluster) -> None:
    assert heddle.run(rtasks.greet).outputs() == "hello from the image, from the task"


def test_a_local_store_or_storage_is_refused_on_a_multi_node_cluster(
    ray_cluster: RayCluster, pg_url: str, s3_url: str, tmp_path: Path
) -> None:
    heddle.init(tmp_path / "a", storage_url=s3_url, executor="ray", ray_address=ray_cluster.address)
    with pytest.raises(heddle.ConfigError, match="HEDDLE_DB_URL"):
        heddle.run(rtasks.square, 2)
    heddle.init(tmp_path / "b", db_url=pg_url, executor="ray", ray_address=ray_cluster.address)
    with pytest.raises(heddle.ConfigError, match="HEDDLE_STORAGE_URL"):
        heddle.run(rtasks.square, 2)
    # Refused before anything was recorded.
    assert get_session().store.list_runs() == []


def test_heddle_run_with_executor_ray_joins_the_cluster_named_by_heddle_ray_address(
    ray_cluster: RayCluster, pg_url: str, s3_url: str, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from heddle.cli import cli

    runner = CliRunner(
        env={
            "HEDDLE_HOME": str(tmp_path / "cli-home"),
            "HEDDLE_DB_URL": pg_url,
            "HEDDLE_STORAGE_URL": s3_url,
            "HEDDLE_RAY_ADDRESS": ray_cluster.address,
        }
    )
    program = str(PROGRAMS / "rtasks.py")
    result = runner.invoke(
        cli, ["run", program, "square", "--x", "7", "--executor", "ray", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1]) == 49
    (record,) = get_session().store.list_runs()
    assert record.executor == "ray"


def test_recover_after_the_driver_is_killed_resumes_the_run_on_the_cluster(
    ray_home: RayCluster, pg_url: str, s3_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "steps"
    folder.mkdir()
    driver = subprocess.Popen(
        [
            sys.executable,
            str(PROGRAMS / "drive_chain.py"),
            ray_home.address,
            pg_url,
            s3_url,
            str(tmp_path / "driver-home"),
            str(folder),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=PROGRAMS,
        env={**os.environ, "PYTHONPATH": str(PROGRAMS)},
    )
    try:
        assert driver.stdout is not None
        run_id = driver.stdout.readline().strip()
        deadline = time.monotonic() + 60
        while not (folder / "ran-2").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (folder / "ran-2").exists(), "the run made no progress"
        driver.send_signal(signal.SIGKILL)
        driver.wait(10)
    finally:
        if driver.poll() is None:
            driver.kill()
    run = heddle.recover(run_id)
    assert run.outputs() == [0, 1, 2, 3, 4, 5]
    runs = {i: (folder / f"ran-{i}").read_text().count("ran") for i in range(6)}
    # Steps that finished before the kill are replayed, not run again.
    assert runs[0] == runs[1] == 1
    assert runs[3] == runs[4] == runs[5] == 1
    assert runs[2] in (1, 2)


def test_a_node_killed_mid_run_retries_only_the_actions_it_was_running(
    ray_home: RayCluster, tmp_path: Path
) -> None:
    folder = tmp_path / "holds"
    folder.mkdir()
    n = 5
    run = heddle.run(rtasks.hold_all, n, str(folder), wait=False)
    deadline = time.monotonic() + 60
    while len(list(folder.glob("started-*"))) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    first = {i: (folder / f"started-{i}").read_text().split() for i in range(n)}
    on_spare = {i for i, (node, _) in first.items() if node == ray_home.spare_id}
    assert on_spare, f"no action ran on the spare node: {first}"
    ray_home.cluster.remove_node(ray_home.spare, allow_graceful=False)
    # Release the others only once the spare node's workers are gone.
    pids = [int(first[i][1]) for i in on_spare]
    deadline = time.monotonic() + 20
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    (folder / "release").write_text("go")
    nodes = run.wait(120).outputs()
    assert ray_home.spare_id not in nodes
    attempts = _attempts(run)
    holds = sorted((a for a in run.actions() if a.task_name == "rtasks.hold"), key=lambda a: a.seq)
    assert len(holds) == n
    for i, action in enumerate(holds):
        if i in on_spare:
            assert attempts[action.id] == [(1, "failed", "system"), (2, "succeeded", "")]
        else:
            assert attempts[action.id] == [(1, "succeeded", "")]
    root = next(a for a in run.actions() if a.parent_id is None)
    assert attempts[root.id] == [(1, "succeeded", "")]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
