"""heddle.Image: the software a task needs (base image, pip and apt packages, env vars).

It renders to a Ray runtime_env (pip packages and env vars installed per worker) and
to a Dockerfile, for clusters whose workers run containers.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from heddle._errors import ConfigError
from heddle._runtime.spec import TaskSpec

_APT_NAME = re.compile(r"[a-z0-9][a-z0-9+.\-]*(=[A-Za-z0-9+.:~\-]+)?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DEFAULT_BASE = "python:3.11-slim"


@dataclass(frozen=True)
class Image:
    """A task's software: ``base`` image, ``pip`` and ``apt`` packages, ``env`` vars.

    ``name`` is the tag the built image is pushed under (``registry/repo:tag``); when
    set, Ray workers run in that container instead of installing packages themselves.
    """

    base: str = DEFAULT_BASE
    pip: Sequence[str] = ()
    apt: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    name: str | None = None

    def __post_init__(self) -> None:
        for attr in ("pip", "apt"):
            value = getattr(self, attr)
            if isinstance(value, str) or not all(isinstance(p, str) and p for p in value):
                raise ConfigError(f"Image {attr} must be a list of package names, got {value!r}")
            object.__setattr__(self, attr, tuple(value))
        bad_apt = [p for p in self.apt if not _APT_NAME.fullmatch(p)]
        if bad_apt:
            raise ConfigError(f"Image apt packages {bad_apt!r} are not Debian package names")
        bad_env = [
            k
            for k, v in dict(self.env).items()
            if not isinstance(k, str) or not _ENV_NAME.fullmatch(k) or not isinstance(v, str)
        ]
        if bad_env:
            raise ConfigError(f"Image env must map variable names to strings; bad: {bad_env!r}")
        object.__setattr__(self, "env", dict(self.env))
        if not isinstance(self.base, str) or not self.base.strip():
            raise ConfigError(f"Image base must be an image reference, got {self.base!r}")

    def __repr__(self) -> str:
        # Part of a task's version: stable and complete.
        return (
            f"Image(base={self.base!r}, pip={list(self.pip)!r}, apt={list(self.apt)!r}, "
            f"env={sorted(dict(self.env).items())!r}, name={self.name!r})"
        )

    def runtime_env(self, env_vars: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The Ray runtime_env for this image (``env_vars`` are the task's, on top)."""
        out: dict[str, Any] = {}
        merged = {**self.env, **(env_vars or {})}
        if merged:
            out["env_vars"] = merged
        if self.name is not None:
            out["image_uri"] = self.name
            return out
        if self.apt:
            raise ConfigError(
                f"Image with apt packages {list(self.apt)} needs a container: build it with "
                "`heddle image build FILE ENV --dockerfile`, push it, and set Image(name=...)"
            )
        if self.pip:
            out["pip"] = list(self.pip)
        return out

    def dockerfile(self) -> str:
        """A Dockerfile that builds this image."""
        lines = [f"FROM {self.base}"]
        if self.apt:
            lines.append(
                "RUN apt-get update \\\n"
                f" && apt-get install -y --no-install-recommends {' '.join(self.apt)} \\\n"
                " && rm -rf /var/lib/apt/lists/*"
            )
        if self.pip:
            packages = " ".join(shlex.quote(p) for p in self.pip)
            lines.append(f"RUN pip install --no-cache-dir {packages}")
        for k, v in self.env.items():
            lines.append(f"ENV {k}={json.dumps(v)}")
        return "\n".join(lines) + "\n"


def image_of(value: Any) -> Image | None:
    """A TaskEnvironment's ``image`` as an Image: a string names a built image."""
    if value is None or isinstance(value, Image):
        return value
    if isinstance(value, str):
        return Image(name=value)
    raise ConfigError(f"image must be heddle.Image(...) or an image name, got {value!r}")


_runtime_envs: dict[tuple[str, str], dict[str, Any] | None] = {}


def runtime_env_for(spec: TaskSpec) -> dict[str, Any] | None:
    """The Ray runtime_env of a task: its image and its env vars (computed once per version)."""
    key = (spec.name, spec.version)
    if key in _runtime_envs:
        return _runtime_envs[key]
    from heddle._sdk.task import resolve_task

    image = image_of(resolve_task(spec.ref.get()).env.image)
    env_vars = dict(spec.env_vars)
    if image is not None:
        env: dict[str, Any] | None = image.runtime_env(env_vars)
    else:
        env = {"env_vars": env_vars} if env_vars else None
    _runtime_envs[key] = env or None
    return env or None
