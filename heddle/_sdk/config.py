"""Where runs are kept: the store and storage locations, and the executor to use.

``heddle.init()`` sets them; otherwise they come from HEDDLE_HOME, HEDDLE_DB_URL and
HEDDLE_STORAGE_URL, defaulting to ``.heddle/`` in the working directory.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from heddle._errors import ConfigError
from heddle._runtime.controller import Executor
from heddle._runtime.literals import LiteralStore
from heddle._runtime.spec import Resources
from heddle._storage import BlobStore
from heddle._store import Store, sqlite_url
from heddle._types.sink import set_default_sink

EXECUTORS = ("process", "inline", "ray")
DEFAULT_EXECUTOR = "process"


@dataclass(frozen=True)
class Settings:
    home: Path
    db_url: str
    storage_url: str
    executor: str
    capacity: Resources | None = None
    ray_address: str | None = None


def resolve_settings(
    root: str | os.PathLike[str] | None = None,
    db_url: str | None = None,
    storage_url: str | None = None,
    executor: str | None = None,
    capacity: Resources | None = None,
    ray_address: str | None = None,
) -> Settings:
    home = Path(root or os.environ.get("HEDDLE_HOME") or Path.cwd() / ".heddle").resolve()
    if home.exists() and not home.is_dir():
        raise ConfigError(f"Heddle home {home} exists and is not a directory")
    db = db_url or os.environ.get("HEDDLE_DB_URL") or sqlite_url(home / "heddle.db")
    storage = storage_url or os.environ.get("HEDDLE_STORAGE_URL") or str(home / "storage")
    ex = executor or os.environ.get("HEDDLE_EXECUTOR") or DEFAULT_EXECUTOR
    if ex not in EXECUTORS:
        raise ConfigError(f"unknown executor {ex!r}: choose one of {', '.join(EXECUTORS)}")
    if capacity is not None and not isinstance(capacity, Resources):
        raise ConfigError(
            f"capacity must be heddle.Resources(cpu=..., memory=..., gpu=...), got {capacity!r}"
        )
    return Settings(
        home=home,
        db_url=db,
        storage_url=storage,
        executor=ex,
        capacity=capacity,
        ray_address=ray_address or os.environ.get("HEDDLE_RAY_ADDRESS") or None,
    )


class Session:
    """The open store and storage for this process.

    ``create``: make the store if it is not there (starting runs); otherwise a missing
    store is a StoreError naming where it was looked for. ``read_only``: for commands
    that only look at runs; creates nothing, not even the storage folder.
    """

    def __init__(self, settings: Settings, *, create: bool = True, read_only: bool = False) -> None:
        self.settings = settings
        self.read_only = read_only
        self.store = Store(settings.db_url, create=create, read_only=read_only)
        self.blobs = BlobStore(
            settings.storage_url, cache_dir=settings.home / "cache", create=not read_only
        )
        self.literals = LiteralStore(self.blobs)
        set_default_sink(self.blobs)

    def make_executor(self, name: str | None = None) -> Executor:
        name = name or self.settings.executor
        if name == "inline":
            from heddle._executors.inline import InlineExecutor

            return InlineExecutor(save_log=self.blobs.put_text)
        if name == "process":
            from heddle._executors.process import ProcessExecutor
            from heddle._sdk.task import resolve_task

            return ProcessExecutor(
                self.settings.storage_url,
                resolve=lambda ref: resolve_task(ref).spec,
                capacity=self.settings.capacity,
                secrets=lambda spec: {s.name: s.value() for s in spec.secrets},
                session_env=lambda: {
                    "HEDDLE_HOME": str(self.settings.home),
                    "HEDDLE_DB_URL": self.settings.db_url,
                    "HEDDLE_STORAGE_URL": self.settings.storage_url,
                    **storage_credentials(),
                },
            )
        if name == "ray":
            from heddle._executors.ray import RayConfig, RayExecutor
            from heddle._sdk.image import runtime_env_for

            config = RayConfig(
                self.settings.db_url,
                self.settings.storage_url,
                self.settings.ray_address,
                storage_credentials(),
            )
            return RayExecutor(config, self.blobs, runtime_env_for)
        raise ConfigError(f"unknown executor {name!r}: choose one of {', '.join(EXECUTORS)}")

    def close(self) -> None:
        self.store.close()


_CREDENTIAL_PREFIXES = ("AWS_", "GOOGLE_", "AZURE_")


def storage_credentials() -> dict[str, str]:
    """The object-store credentials in this process's environment, for worker processes
    (which fork from a server started earlier, with the environment it had then)."""
    return {k: v for k, v in os.environ.items() if k.startswith(_CREDENTIAL_PREFIXES)}


_lock = threading.Lock()
_settings: Settings | None = None  # set by configure(); else read from the environment
_session: Session | None = None  # the writable session (starting, recovering, aborting runs)
_reader: Session | None = None  # a read-only session, while no writable one is open


def _close_sessions() -> None:
    global _session, _reader
    for s in (_session, _reader):
        if s is not None:
            s.close()
    _session = _reader = None


def init(
    root: str | os.PathLike[str] | None = None,
    *,
    db_url: str | None = None,
    storage_url: str | None = None,
    executor: str | None = None,
    capacity: Resources | None = None,
    ray_address: str | None = None,
) -> Session:
    """Set where runs are stored (``root`` for both, or a database URL and a storage URL),
    the default executor ("process", "inline" or "ray") and, for the process executor, the
    machine capacity to schedule against (detected when not given); for the ray executor,
    ``ray_address`` is the cluster to join (default $HEDDLE_RAY_ADDRESS, else a local Ray).

    Opens the store, creating it if it is not there."""
    global _session, _settings
    settings = resolve_settings(root, db_url, storage_url, executor, capacity, ray_address)
    with _lock:
        _close_sessions()
        _settings = settings
        _session = Session(settings)
        return _session


def configure(settings: Settings) -> None:
    """Use ``settings`` for the sessions opened from now on, without opening one yet
    (the command line: a command that only reads must not create the store)."""
    global _settings
    with _lock:
        _close_sessions()
        _settings = settings


def reset() -> None:
    """Close the sessions and forget configured settings (tests)."""
    global _settings
    with _lock:
        _close_sessions()
        _settings = None


def current_settings() -> Settings:
    """The configured settings, or those from the environment."""
    return _settings or resolve_settings()


def get_session(*, create: bool = True) -> Session:
    """The writable session, opened from the configured settings or the environment on
    first use. ``create=False``: the store must already exist (recover, abort)."""
    global _session
    with _lock:
        if _session is None:
            _session = Session(_settings or resolve_settings(), create=create)
        return _session


def get_reader() -> Session:
    """A session for reading runs: the writable one if it is open, else a read-only one
    on an existing store (a StoreError naming where it looked if there is none)."""
    global _reader
    with _lock:
        if _session is not None:
            return _session
        if _reader is None:
            _reader = Session(_settings or resolve_settings(), create=False, read_only=True)
        return _reader
