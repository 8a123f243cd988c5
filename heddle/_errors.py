"""Heddle's error hierarchy, rooted at HeddleError.

Every layer raises these, so this module sits below all of them and imports nothing
from the package. Each error carries what a user needs to act on it.
"""

from __future__ import annotations

import builtins


def _rebuild(
    cls: type[BaseException], args: tuple[object, ...], state: dict[str, object]
) -> BaseException:
    exc = cls.__new__(cls)
    BaseException.__init__(exc, *args)
    exc.__dict__.update(state)
    return exc


class HeddleError(Exception):
    """Base of every error that Heddle itself raises."""

    def __reduce__(self) -> tuple[object, ...]:
        # Subclasses take their own constructor arguments; rebuild from message and
        # attributes instead, so errors cross process boundaries with their type.
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


class ConfigError(HeddleError):
    """The store, storage or runtime configuration is unusable."""


class StoreError(HeddleError):
    """The store could not be opened or read (missing, corrupt, wrong schema)."""


class StoreNotFoundError(StoreError):
    """No Heddle store where one was looked for (a read does not create one)."""


class StoreUnavailableError(StoreError):
    """The store could not be reached for longer than Heddle rides out an outage
    (``HEDDLE_STORE_OUTAGE_SECONDS``): the database is down or the network is gone."""


class RunTakenOverError(HeddleError):
    """Another process took this run over (``heddle recover --force``) while this one
    drove it: this process stopped its work and recorded nothing more."""

    def __init__(self, run_id: str, owner: str | None, generation: int | None) -> None:
        by = f" by {owner}" if owner else ""
        super().__init__(
            f"run {run_id!r} was taken over{by} (heddle recover): this process stopped "
            "driving it and recorded nothing more; the run goes on there"
        )
        self.run_id = run_id
        self.owner = owner
        self.generation = generation


class StorageError(HeddleError):
    """The object store could not be reached or returned bad data."""


class BlobCorruptError(StorageError):
    """A blob's bytes do not match the content hash it is stored under.

    ``producer`` names the action whose output the blob belongs to, when it is known.
    """

    def __init__(self, key: str, actual: str) -> None:
        super().__init__(f"blob {key!r} is corrupt: its content hashes to {actual!r}")
        self.key = key
        self.actual = actual
        self.producer: str | None = None

    def name_producer(self, producer: str) -> None:
        """Add the producing action ("action A (task T) of run R") to the message."""
        self.producer = producer
        self.args = (f"{self.args[0]}; it was produced by {producer}",)


class BlobMissingError(StorageError):
    """A blob that a value refers to is not in the object store (deleted, or set aside
    because its bytes were corrupt)."""

    def __init__(self, key: str, where: str) -> None:
        super().__init__(f"blob {key} is missing from {where}")
        self.key = key
        self.producer: str | None = None

    def name_producer(self, producer: str) -> None:
        """Add the producing action ("action A (task T) of run R") to the message."""
        self.producer = producer
        self.args = (f"{self.args[0]}; it was produced by {producer}",)


class TypeMismatchError(HeddleError, TypeError):
    """A value does not match the type it was declared with.

    `path` says where inside a nested value the mismatch is, e.g. ``[2].name``.
    """

    def __init__(self, expected: str, given: str, path: str = "") -> None:
        where = f" at {path}" if path else ""
        super().__init__(f"expected {expected}, got {given}{where}")
        self.expected = expected
        self.given = given
        self.path = path


class InputError(HeddleError, TypeError):
    """A task was called with inputs that do not match its signature.

    Raised before anything is recorded.
    """

    def __init__(self, task: str, message: str, parameter: str | None = None) -> None:
        prefix = f"task {task!r}"
        if parameter is not None:
            prefix += f", parameter {parameter!r}"
        super().__init__(f"{prefix}: {message}")
        self.task = task
        self.parameter = parameter


class TaskError(HeddleError):
    """A task failed with an exception that could not be rebuilt in the caller.

    Carries the remote exception's type name, message and formatted traceback.
    """

    def __init__(
        self,
        task: str,
        type_name: str,
        message: str,
        traceback: str = "",
        action_id: str | None = None,
        run_id: str | None = None,
    ) -> None:
        super().__init__(f"task {task!r} failed with {type_name}: {message}")
        self.task = task
        self.type_name = type_name
        self.message = message
        self.traceback = traceback
        self.action_id = action_id
        self.run_id = run_id


class NonRecoverableError(HeddleError):
    """Raise inside a task to fail it at once, skipping any remaining retries."""


class TimeoutError(HeddleError, builtins.TimeoutError):
    """A task ran (or waited in the queue) past its timeout."""

    def __init__(self, task: str, seconds: float, phase: str = "run") -> None:
        what = "ran" if phase == "run" else "was queued"
        super().__init__(f"task {task!r} {what} longer than its timeout of {seconds:g}s")
        self.task = task
        self.seconds = seconds
        self.phase = phase


class OOMError(HeddleError):
    """A task was killed for using more memory than it was allowed."""

    def __init__(self, task: str, limit_bytes: int | None, peak_bytes: int | None) -> None:
        parts = [f"task {task!r} ran out of memory"]
        if limit_bytes is not None:
            parts.append(f"limit {limit_bytes / 2**20:.0f} MiB")
        if peak_bytes is not None:
            parts.append(f"peak {peak_bytes / 2**20:.0f} MiB")
        super().__init__(", ".join(parts))
        self.task = task
        self.limit_bytes = limit_bytes
        self.peak_bytes = peak_bytes


class WorkerLostError(HeddleError):
    """The process (or node) running an action died: a system failure, not the task's."""

    def __init__(self, task: str, detail: str) -> None:
        super().__init__(f"task {task!r} lost its worker: {detail}")
        self.task = task
        self.detail = detail


class ResourceError(HeddleError):
    """A task asks for more cpu, memory or GPUs than this machine (or cluster) has."""


class RunNotFoundError(HeddleError, LookupError):
    """No run with this id (or unique id prefix) is in the store."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run {run_id!r} in the store")
        self.run_id = run_id


class RunFailedError(HeddleError):
    """Raised by ``Run.outputs()`` when the run did not succeed and no rebuilt error exists."""

    def __init__(self, run_id: str, status: str, message: str = "") -> None:
        tail = f": {message}" if message else ""
        super().__init__(f"run {run_id!r} {status}{tail}")
        self.run_id = run_id
        self.status = status


class RunAbortedError(HeddleError):
    """The run was aborted (``heddle abort``) while this call waited."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id!r} was aborted")
        self.run_id = run_id


class RecoveryError(HeddleError):
    """A run cannot be recovered (it is still alive, finished, or its code is gone)."""
