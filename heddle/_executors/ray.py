"""The Ray executor: each action attempt is a Ray task, placed by its declared resources.

The controller that calls ``execute`` may be the driver's or one running inside a Ray
worker (nested calls): both submit the same way. Heddle owns retries, so Ray never
retries a task; Ray's own failures come back as Heddle's system, OOM or config errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import ray
import ray.exceptions

from heddle._errors import ConfigError, OOMError, ResourceError, WorkerLostError
from heddle._errors import TimeoutError as HeddleTimeout
from heddle._runtime import failures
from heddle._runtime.calls import PreparedCall
from heddle._runtime.context import ActionContext
from heddle._runtime.controller import Attempt
from heddle._runtime.spec import Resources, Secret, TaskSpec
from heddle._storage import BlobStore

DEFAULT_CPU = 1.0
# Connection settings forwarded to every worker, so it opens the run's session.
FORWARDED_ENV_PREFIXES = ("AWS_", "GOOGLE_", "AZURE_")


@dataclass(frozen=True)
class RayConfig:
    """What a Ray worker needs to open the run's store and storage."""

    db_url: str
    storage_url: str
    address: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ActionJob:
    """One attempt of one action, as it travels to a Ray worker."""

    ref: Any  # heddle._sdk.task.TaskRef
    encoded_inputs: bytes
    run_id: str
    action_id: str
    task_name: str
    attempt: int
    memory_limit: int | None
    log_key: str
    config: RayConfig
    # Secret values by secret_key(): the task's own, and those its ancestors were
    # given, so nested calls find them without the driver's environment.
    secrets: Mapping[str, str]
    secret_names: tuple[tuple[str, str], ...]  # (env var name, secret_key) of this task


@dataclass(frozen=True)
class Outcome:
    """What the remote function returns: never raises, so user errors keep their type."""

    ok: bool
    payload: bytes | str  # encoded output, or a failure's JSON
    worker: str
    cpu_seconds: float
    peak_rss: int
    # What the body called (JSON, see Attempt.deps): its children ran in the worker.
    deps: str | None = None


def secret_key(secret: Secret) -> str:
    return f"{secret.name}|{secret.env or ''}|{secret.file or ''}"


def oom_marker(run_id: str, action_id: str, attempt: int) -> str:
    """Where a worker notes that it killed itself past its memory limit."""
    return f"oom/{run_id}/{action_id}/{attempt}"


def store_is_local(db_url: str) -> bool:
    return db_url.startswith("sqlite")


def storage_is_local(storage_url: str) -> bool:
    return "://" not in storage_url or storage_url.startswith("file://")


_connect_lock = threading.Lock()


def connect(address: str | None) -> None:
    """Join the Ray cluster at ``address`` (or start a local one) unless already joined.

    A program that called ``ray.init`` itself (for a runtime_env with its code, say)
    keeps its connection.
    """
    with _connect_lock:
        if ray.is_initialized():
            return
        kwargs: dict[str, Any] = {"log_to_driver": True, "configure_logging": False}
        if address is None:
            kwargs["include_dashboard"] = False
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise ConfigError(
                f"cannot connect to the Ray cluster at {address or '(local)'}: {exc} "
                "(set HEDDLE_RAY_ADDRESS or heddle.init(ray_address=...))"
            ) from exc


def alive_nodes() -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
    return [n for n in nodes if n.get("Alive")]


def check_reachable(config: RayConfig) -> None:
    """Refuse a store or storage that other nodes of the cluster could not reach."""
    nodes = alive_nodes()
    if len(nodes) <= 1:
        return
    if store_is_local(config.db_url):
        raise ConfigError(
            f"the Ray cluster has {len(nodes)} nodes but the store is a SQLite file "
            f"({config.db_url}) that other nodes cannot reach: set HEDDLE_DB_URL "
            "(or heddle.init(db_url=...)) to a PostgreSQL URL"
        )
    if storage_is_local(config.storage_url):
        raise ConfigError(
            f"the Ray cluster has {len(nodes)} nodes but blobs are in a local folder "
            f"({config.storage_url}) that other nodes cannot reach: set HEDDLE_STORAGE_URL "
            "(or heddle.init(storage_url=...)) to an s3://, gs:// or az:// URL"
        )


def task_options(resources: Resources, task: str) -> dict[str, Any]:
    """Ray scheduling options from an attempt's resources."""
    cpu = resources.cpu_cores
    opts: dict[str, Any] = {
        "num_cpus": DEFAULT_CPU if cpu is None else cpu,
        "max_retries": 0,  # Heddle owns retries, with its own budgets
        "retry_exceptions": False,
        "name": task,
    }
    memory = resources.memory_bytes
    if memory:
        opts["memory"] = memory
    if resources.gpu:
        opts["num_gpus"] = resources.gpu
    if resources.accelerator:
        opts["accelerator_type"] = resources.accelerator
    if resources.custom:
        opts["resources"] = dict(resources.custom)
    return opts


def _fits_somewhere(opts: Mapping[str, Any], nodes: list[dict[str, Any]]) -> bool:
    need = {"CPU": float(opts["num_cpus"]), "memory": float(opts.get("memory", 0))}
    if opts.get("num_gpus"):
        need["GPU"] = float(opts["num_gpus"])
    for name, amount in dict(opts.get("resources", {})).items():
        need[name] = float(amount)
    if opts.get("accelerator_type"):
        need[f"accelerator_type:{opts['accelerator_type']}"] = 0.001
    return any(
        all(float(n.get("Resources", {}).get(k, 0)) >= v for k, v in need.items() if v)
        for n in nodes
    )


def _describe(opts: Mapping[str, Any]) -> str:
    keys = ("num_cpus", "memory", "num_gpus", "accelerator_type", "resources")
    return ", ".join(f"{k}={opts[k]}" for k in keys if k in opts)


Waiter = Callable[[ray.ObjectRef[Any]], Awaitable[Any]]


async def _await_ref(ref: ray.ObjectRef[Any]) -> Any:
    return await ref


class RayExecutor:
    """Submits each attempt as a Ray task and awaits its outcome."""

    name = "ray"
    gather_turns = 0

    def __init__(
        self,
        config: RayConfig,
        blobs: BlobStore,
        runtime_env: Callable[[TaskSpec], dict[str, Any] | None],
        secrets: Mapping[str, str] | None = None,
        waiter: Waiter | None = None,
        check: bool = True,
    ) -> None:
        self.config = config
        self._blobs = blobs
        self._runtime_env = runtime_env
        # Secret values this executor already holds (a worker's, from its ancestors).
        self._secrets = dict(secrets or {})
        self._wait = waiter or _await_ref
        self._fits: dict[tuple[tuple[str, Any], ...], bool] = {}
        connect(config.address)
        if check:
            check_reachable(config)
        self._remote = _remote_function()

    # -- submission ------------------------------------------------------------------

    def _secrets_for(self, spec: TaskSpec) -> tuple[dict[str, str], tuple[tuple[str, str], ...]]:
        values = dict(self._secrets)
        names = []
        for s in spec.secrets:
            key = secret_key(s)
            if key not in values:
                values[key] = s.value()
            names.append((s.name, key))
        return values, tuple(names)

    def _check_fits(self, opts: dict[str, Any], task: str) -> None:
        """Refuse at once a request no node of the cluster could ever hold."""
        signature = tuple(sorted((k, repr(v)) for k, v in opts.items() if k != "name"))
        fits = self._fits.get(signature)
        if fits is None:
            fits = self._fits[signature] = _fits_somewhere(opts, alive_nodes())
        if not fits:
            raise ResourceError(
                f"task {task!r} asks for more than any node of the Ray cluster has: "
                f"{_describe(opts)}"
            )

    async def execute(self, call: PreparedCall, attempt: Attempt, ctx: ActionContext) -> bytes:
        spec = call.spec
        opts = task_options(attempt.resources, spec.name)
        self._check_fits(opts, spec.name)
        env = self._runtime_env(spec)
        if env:
            opts["runtime_env"] = env
        secrets, names = self._secrets_for(spec)
        attempt.log_key = f"logs/{ctx.run_id}/{call.action_id}/{attempt.number}.log"
        job = ActionJob(
            ref=spec.ref.get(),
            encoded_inputs=call.encoded_inputs,
            run_id=ctx.run_id,
            action_id=call.action_id,
            task_name=spec.name,
            attempt=attempt.number,
            memory_limit=attempt.resources.memory_bytes,
            log_key=attempt.log_key,
            config=self.config,
            secrets=secrets,
            secret_names=names,
        )
        ref = self._remote.options(**opts).remote(job)
        # Ray queues the task itself and does not say when it starts: from here on it
        # counts as running (the worker reports the body's real start when it ends).
        attempt.started()
        runtime = spec.timeout.runtime_seconds if spec.timeout else None
        try:
            async with asyncio.timeout(runtime):
                outcome: Outcome = await self._wait(ref)
        except TimeoutError:
            _cancel(ref)
            raise HeddleTimeout(spec.name, runtime or 0) from None
        except asyncio.CancelledError:
            _cancel(ref)
            raise
        except ray.exceptions.RayError as exc:
            raise await self._system_failure(exc, call, attempt, ctx) from exc
        attempt.worker = outcome.worker
        attempt.cpu_seconds = outcome.cpu_seconds
        attempt.peak_rss = outcome.peak_rss or None
        attempt.deps = outcome.deps
        if outcome.ok:
            assert isinstance(outcome.payload, bytes)
            return outcome.payload
        assert isinstance(outcome.payload, str)
        raise failures.rebuild(
            failures.Failure.from_json(outcome.payload), spec.name, call.action_id, ctx.run_id
        )

    async def _system_failure(
        self, exc: ray.exceptions.RayError, call: PreparedCall, attempt: Attempt, ctx: ActionContext
    ) -> BaseException:
        """Heddle's error for a failure Ray reported instead of the task."""
        task = call.spec.name
        limit = attempt.resources.memory_bytes
        if isinstance(exc, ray.exceptions.OutOfMemoryError):
            return OOMError(task, limit, None)
        if isinstance(exc, ray.exceptions.RuntimeEnvSetupError):
            return ConfigError(f"task {task!r}: Ray could not set up its runtime_env: {exc}")
        if isinstance(exc, ray.exceptions.RayTaskError):
            # The remote function never raises, so this is Heddle failing to start in
            # the worker (not installed there, say): the task's own error type.
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            return cause
        if limit:
            # The worker may have stopped itself past its memory limit (it leaves a note).
            marker = oom_marker(ctx.run_id, call.action_id, attempt.number)
            note = await asyncio.to_thread(_read_quietly, self._blobs, marker)
            if note is not None:
                peak = int(note.decode() or 0) or None
                attempt.peak_rss = peak
                return OOMError(task, limit, peak)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return WorkerLostError(task, f"{type(exc).__name__}: {first}")

    def shutdown(self) -> None:
        # The connection to the cluster outlives runs: other runs of this process use it.
        pass


_remote: Any = None


def _remote_function() -> Any:
    """The Ray task every attempt runs (made once: Ray exports it to the cluster once)."""
    global _remote
    if _remote is None:
        from heddle._executors.ray_worker import run_action

        _remote = ray.remote(run_action)
    return _remote


def _cancel(ref: ray.ObjectRef[Any]) -> None:
    with contextlib.suppress(Exception):
        ray.cancel(ref, force=True, recursive=True)


def _read_quietly(blobs: BlobStore, key: str) -> bytes | None:
    try:
        return blobs.get_text(key)
    except Exception:
        return None
