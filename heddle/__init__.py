"""Heddle: a durable, dynamic orchestrator for data, ML and AI work.

Everything a user imports lives here; the modules behind it are private.
"""

from heddle import durable
from heddle._errors import (
    BlobCorruptError,
    BlobMissingError,
    ConfigError,
    HeddleError,
    InputError,
    NonRecoverableError,
    OOMError,
    RecoveryError,
    ResourceError,
    RunAbortedError,
    RunFailedError,
    RunNotFoundError,
    RunTakenOverError,
    StorageError,
    StoreError,
    StoreNotFoundError,
    StoreUnavailableError,
    TaskError,
    TimeoutError,
    TypeMismatchError,
    WorkerLostError,
)
from heddle._runtime.failures import RemoteTraceback
from heddle._runtime.spec import Cache, OOMRetry, Resources, RetryStrategy, Secret, Timeout
from heddle._sdk import report
from heddle._sdk.config import init
from heddle._sdk.environment import TaskEnvironment
from heddle._sdk.fanout import map
from heddle._sdk.files import DataFrame, Dir, File
from heddle._sdk.group import group
from heddle._sdk.image import Image
from heddle._sdk.run import Run, abort, get_run, recover, run
from heddle._sdk.task import Task
from heddle._sdk.trace import trace
from heddle._types.validation import DataValidationError

__version__ = "0.1.0"

__all__ = [
    "BlobCorruptError",
    "BlobMissingError",
    "Cache",
    "ConfigError",
    "DataFrame",
    "DataValidationError",
    "Dir",
    "File",
    "HeddleError",
    "Image",
    "InputError",
    "NonRecoverableError",
    "OOMError",
    "OOMRetry",
    "RecoveryError",
    "RemoteTraceback",
    "ResourceError",
    "Resources",
    "RetryStrategy",
    "Run",
    "RunAbortedError",
    "RunFailedError",
    "RunNotFoundError",
    "RunTakenOverError",
    "Secret",
    "StorageError",
    "StoreError",
    "StoreNotFoundError",
    "StoreUnavailableError",
    "Task",
    "TaskEnvironment",
    "TaskError",
    "Timeout",
    "TimeoutError",
    "TypeMismatchError",
    "WorkerLostError",
    "__version__",
    "abort",
    "durable",
    "get_run",
    "group",
    "init",
    "map",
    "recover",
    "report",
    "run",
    "trace",
]
