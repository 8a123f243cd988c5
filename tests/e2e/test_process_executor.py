"""The process executor with real worker processes, real kills and real memory limits."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import heddle
from heddle._sdk.config import get_session

sys.path.insert(0, str(Path(__file__).parent / "process_programs"))
import ptasks


def _attempts(run: heddle.Run, task: str) -> list[tuple[int, str, str]]:
    """(number, status, error kind) of each attempt of the task's actions."""
    store = get_session().store
    ids = {a.id for a in store.actions_of_run(run.id) if a.task_name == task}
    out = []
    for t in store.attempts_of_run(run.id):
        if t.action_id in ids:
            kind = json.loads(t.error)["kind"] if t.error else ""
            out.append((t.number, t.status, kind))
    return sorted(out)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_a_task_past_its_memory_request_is_killed_and_the_caller_can_retry_with_more(
    process_home: Path,
) -> None:
    run = heddle.run(ptasks.oom_then_override, 400)
    out = run.outputs()
    assert out.startswith("caught OOMError"), out
    assert out.endswith("then 40")
    peak = int(out.split("peak=")[1].split()[0])
    assert peak > 150 * 2**20
    kinds = [k for _, _, k in _attempts(run, "ptasks.hog")]
    assert "oom" in kinds


def test_oom_retry_policy_grows_memory_until_the_task_fits(process_home: Path) -> None:
    run = heddle.run(ptasks.hog_with_policy, 300)
    assert run.outputs() == 30
    attempts = _attempts(run, "ptasks.hog_with_policy")
    assert attempts[0][1:] == ("failed", "oom")
    assert attempts[-1][1] == "succeeded"


def test_a_worker_killed_mid_attempt_is_a_system_error_retried_on_its_own_budget(
    process_home: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "died"
    run = heddle.run(ptasks.die_once, str(marker))
    assert run.outputs().startswith("survived")
    assert _attempts(run, "ptasks.die_once") == [(1, "failed", "system"), (2, "succeeded", "")]
    # The task had no user retries: the system budget alone brought it back.
    assert ptasks.die_once.retry.count == 0


def test_a_timeout_kills_the_worker_process(process_home: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    started = time.monotonic()
    run = heddle.run(ptasks.sleeps_forever, str(pidfile))
    with pytest.raises(heddle.TimeoutError):
        run.outputs()
    assert time.monotonic() - started < 20
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), "the timed-out worker is still running"


def test_actions_wait_in_order_while_their_cpu_request_does_not_fit(tmp_path: Path) -> None:
    heddle.init(tmp_path / "home", executor="process", capacity=heddle.Resources(cpu=2))
    log = tmp_path / "log"
    run = heddle.run(ptasks.fan_out_two_cpu_tasks, 3, str(log))
    assert run.outputs() == [0, 1, 2]
    events = [line.split() for line in log.read_text().splitlines()]
    spans = {}
    for kind, i, t in events:
        spans.setdefault(int(i), {})[kind] = float(t)
    ordered = sorted(spans.values(), key=lambda s: s["start"])
    for earlier, later in itertools.pairwise(ordered):
        assert later["start"] >= earlier["end"] - 0.01, "two cpu=2 actions ran at once on 2 cpus"


def test_a_request_larger_than_the_machine_is_refused_with_a_clear_error(
    process_home: Path,
) -> None:
    with pytest.raises(heddle.ResourceError, match=r"cpu=64 \(machine has"):
        heddle.run(ptasks.too_big).outputs()


def test_a_gpu_request_without_gpus_is_refused(tmp_path: Path) -> None:
    heddle.init(tmp_path / "home", executor="process", capacity=heddle.Resources(gpu=0))
    with pytest.raises(heddle.ResourceError, match="GPU"):
        heddle.run(ptasks.wants_gpu).outputs()


def test_stdout_and_stderr_of_each_attempt_are_captured_in_the_object_store(
    process_home: Path,
) -> None:
    run = heddle.run(ptasks.shout, "boo")
    assert run.outputs() == "BOO"
    (action,) = [a for a in run.actions() if a.task_name == "ptasks.shout"]
    log = get_session().blobs.get_text(f"logs/{run.id}/{action.id}/1.log")
    assert log is not None
    text = log.decode()
    assert "stdout says boo with hello from env" in text
    assert "stderr says boo" in text


def test_nested_calls_from_workers_are_durable_children(process_home: Path) -> None:
    run = heddle.run(ptasks.top, 4)
    assert run.outputs() == [10, 20, 30, 40]
    actions = run.actions()
    by_id = {a.id: a for a in actions}
    leaves = [a for a in actions if a.task_name == "ptasks.leaf"]
    assert len(leaves) == 4
    assert {by_id[a.parent_id].task_name for a in leaves if a.parent_id} == {"ptasks.middle"}
    workers = {t.worker for t in get_session().store.attempts_of_run(run.id)}
    assert all(w and w.startswith("process:") for w in workers)
    assert len(workers) > 1


def test_each_action_runs_in_a_worker_not_in_the_driver(process_home: Path) -> None:
    run = heddle.run(ptasks.pids, 3)
    assert os.getpid() not in run.outputs()


def test_secrets_reach_the_task_but_never_the_logs_or_the_store(
    process_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = "s3cr3t-" + "x" * 20
    monkeypatch.setenv("PTASKS_TOKEN_SOURCE", value)
    run = heddle.run(ptasks.uses_secret)
    assert run.outputs() == f"token has {len(value)} characters"
    (action,) = [a for a in run.actions() if a.task_name == "psecret.uses_secret"]
    log = get_session().blobs.get_text(f"logs/{run.id}/{action.id}/1.log")
    assert log is not None and b"the token is ****" in log
    get_session().store.checkpoint()
    for path in process_home.rglob("*"):
        if path.is_file():
            assert value.encode() not in path.read_bytes(), f"secret leaked into {path}"


def test_a_missing_secret_fails_with_a_message_naming_it(process_home: Path) -> None:
    os.environ.pop("PTASKS_TOKEN_SOURCE", None)
    with pytest.raises(heddle.ConfigError, match="PTASKS_TOKEN_SOURCE"):
        heddle.run(ptasks.uses_secret).outputs()


def test_resource_use_is_recorded_per_attempt(process_home: Path) -> None:
    run = heddle.run(ptasks.shout, "x")
    run.outputs()
    (attempt,) = get_session().store.attempts_of_run(run.id)
    assert attempt.cpu_seconds is not None and attempt.cpu_seconds >= 0
    assert attempt.peak_rss is not None and attempt.peak_rss > 10 * 2**20


def test_traces_and_durable_steps_inside_workers_are_recorded(process_home: Path) -> None:
    run = heddle.run(ptasks.traced_in_worker, 2)
    assert run.outputs() == 3.0
    kinds = sorted(a.kind for a in run.actions())
    assert kinds == ["now", "sleep", "task", "trace"]
    assert all(a.status == "succeeded" for a in run.actions())


def test_abort_kills_the_runs_worker_processes(process_home: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    Path(f"{pidfile}.block").touch()
    run = heddle.run(ptasks.slow_children, 2, str(pidfile), wait=False)
    deadline = time.monotonic() + 30
    while (
        not pidfile.exists() or len(pidfile.read_text().split()) < 2
    ) and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = [int(p) for p in pidfile.read_text().split()]
    assert heddle.abort(run.id, wait=20) == "aborted"
    run.wait(timeout=30)
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)
    statuses = {a.task_name: a.status for a in run.actions()}
    assert statuses["ptasks.sleep_and_note"] == "aborted"


def test_workers_exit_when_the_driver_is_killed_and_the_run_recovers(tmp_path: Path) -> None:
    home = tmp_path / "home"
    pidfile = tmp_path / "pids"
    Path(f"{pidfile}.block").touch()
    program = (
        "import sys, heddle\n"
        f"sys.path.insert(0, {str(Path(ptasks.__file__).parent)!r})\n"
        "import ptasks\n"
        f"heddle.init({str(home)!r}, executor='process')\n"
        f"heddle.run(ptasks.slow_children, 2, {str(pidfile)!r})\n"
    )
    driver = subprocess.Popen([sys.executable, "-c", program])
    try:
        deadline = time.monotonic() + 60
        while (
            not pidfile.exists() or len(pidfile.read_text().split()) < 2
        ) and time.monotonic() < deadline:
            time.sleep(0.05)
        worker_pids = [int(p) for p in pidfile.read_text().split()]
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in worker_pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(p) for p in worker_pids), "orphaned workers outlived their driver"
    finally:
        if driver.poll() is None:
            driver.kill()
    heddle.init(home, executor="process")
    (record,) = heddle._sdk.run.list_runs()
    assert record.status == "running"
    Path(f"{pidfile}.block").unlink()
    recovered = heddle.recover(record.id)
    assert recovered.outputs() == 1
    assert recovered.status == "succeeded"


def test_heddle_logs_prints_each_attempts_output(process_home: Path) -> None:
    run = heddle.run(ptasks.shout, "cli")
    run.outputs()
    result = subprocess.run(
        [sys.executable, "-m", "heddle.cli", "--home", str(process_home), "logs", run.id, "shout"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "stdout says cli with hello from env" in result.stdout
    assert "stderr says cli" in result.stdout
    assert "ptasks.shout" in result.stderr and "attempt 1" in result.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "heddle.cli", "--home", str(process_home), "logs", run.id, "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2
    assert "no action 'nope'" in missing.stderr


# -- jobs sent ahead to a busy worker ---------------------------------------------------
# With capacity cpu=1 every second job waits for the first one's cpu, and is sent
# ahead to its worker, to start the moment the first one ends.


def test_a_job_queued_behind_a_parent_is_taken_back_when_the_parent_calls_a_task(
    tmp_path: Path,
) -> None:
    heddle.init(tmp_path / "home", executor="process", capacity=heddle.Resources(cpu=1))
    # Warm workers left by an earlier run: the parent's child starts on one at once, so
    # the job after it is sent ahead to it instead of waiting for a worker to start.
    heddle.run(ptasks.pids, 3).outputs()
    log = tmp_path / "log"
    run = heddle.run(ptasks.parent_with_a_job_queued_behind_it, 4, str(log), wait=False)
    # Without the recall this run never ends: the parent waits on the queued job.
    run.wait(timeout=60)
    assert run.outputs() == [41, 40]
    # Computed once, on a worker of its own, and never counted as a failed attempt.
    assert len(log.read_text().splitlines()) == 1
    # Both calls succeeded, each with a single attempt (the inner one shares the
    # outer one's computation): the recalled job never counted as a failed attempt.
    assert _attempts(run, "pcached.shared_work") == [(1, "succeeded", "")]


def test_jobs_queued_behind_a_killed_job_run_elsewhere_without_a_failed_attempt(
    tmp_path: Path,
) -> None:
    heddle.init(tmp_path / "home", executor="process", capacity=heddle.Resources(cpu=1))
    pidfile = tmp_path / "pid"
    run = heddle.run(ptasks.quick_jobs_behind_one_that_is_killed, 3, str(pidfile))
    assert run.outputs() == ["TimeoutError", 0, 2, 4]
    assert not _alive(int(pidfile.read_text()))
    # The quick jobs never ran on the killed worker: one attempt each, all succeeded.
    assert _attempts(run, "ptasks.quick") == [(1, "succeeded", "")] * 3


def test_aborting_a_run_with_jobs_queued_behind_running_ones(tmp_path: Path) -> None:
    heddle.init(tmp_path / "home", executor="process", capacity=heddle.Resources(cpu=1))
    pidfile = tmp_path / "pids"
    Path(f"{pidfile}.block").touch()
    run = heddle.run(ptasks.slow_children, 3, str(pidfile), wait=False)
    deadline = time.monotonic() + 30
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    assert heddle.abort(run.id, wait=20) == "aborted"
    run.wait(timeout=30)
    pids = [int(p) for p in pidfile.read_text().split()]
    assert len(pids) == 1, "only one cpu=1 job may run at a time"
    deadline = time.monotonic() + 5
    while _alive(pids[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pids[0])
    statuses = sorted(a.status for a in run.actions() if a.task_name == "ptasks.sleep_and_note")
    assert statuses == ["aborted"] * 3


def test_a_job_sent_ahead_behind_a_slow_job_is_taken_back_to_run_elsewhere(
    tmp_path: Path,
) -> None:
    heddle.init(tmp_path / "home", executor="process", capacity=heddle.Resources(cpu=2))
    heddle.run(ptasks.pids, 4).outputs()  # warm workers, so slow_one starts at once
    run = heddle.run(ptasks.quick_job_behind_a_slow_one)
    assert run.outputs() == ["slow", "medium", 14]
    finished = {a.task_name: a.finished_at for a in run.actions()}
    assert finished["ptasks.quick"] is not None and finished["ptasks.slow_one"] is not None
    # It ran on the cpu medium_one freed, not after slow_one.
    assert finished["ptasks.quick"] < finished["ptasks.slow_one"] - 1.0
    assert _attempts(run, "ptasks.quick") == [(1, "succeeded", "")]


def test_a_memory_limit_counts_from_what_a_warm_worker_already_maps(process_home: Path) -> None:
    # The worker that mapped 3 GiB stays warm for the next run; a job with a 150Mi limit
    # that uses far less must still run there, not die on the address-space backstop.
    pid = heddle.run(ptasks.maps_three_gib).outputs()
    assert heddle.run(ptasks.small_hog, 40).outputs() == pid


def test_gpu_jobs_get_devices_no_other_job_holds_and_a_worker_of_their_own(
    tmp_path: Path,
) -> None:
    # This machine has no GPU: the capacity declares two device indices, and the test
    # checks what each job is given (CUDA_VISIBLE_DEVICES), not what a device does.
    heddle.init(tmp_path / "home", executor="process", capacity=heddle.Resources(cpu=4, gpu=2))
    cpu_workers = {str(p) for p in heddle.run(ptasks.pids, 3).outputs()}
    first, second = heddle.run(ptasks.two_gpu_jobs_at_once).outputs()
    assert sorted([first[1], second[1]]) == ["0", "1"]
    (third_pid, third_devices) = heddle.run(ptasks.sees_gpus, 0.0).outputs()
    assert third_devices in ("0", "1")
    gpu_workers = {first[0], second[0], third_pid}
    # A fresh worker each: CUDA pins a process to the devices it first saw.
    assert len(gpu_workers) == 3
    assert not gpu_workers & cpu_workers


def test_memory_a_warm_worker_holds_from_earlier_jobs_is_not_charged_to_the_next(
    process_home: Path,
) -> None:
    pid = heddle.run(ptasks.holds_300_mib).outputs()
    # The same worker, its RSS now ~350 MiB, runs a job limited to 150Mi that adds 40.
    run = heddle.run(ptasks.small_hog, 40)
    assert run.outputs() == pid
    (attempt,) = get_session().store.attempts_of_run(run.id)
    assert attempt.peak_rss is not None and attempt.peak_rss < 150 * 2**20
