"""What the machine has and what running actions hold: capacity and a FIFO ledger.

An action starts only when its cpu, memory and GPU requests fit what is free; the
others wait in the order they asked. A parent blocked on its children lends its
cpu back (as Ray does), so nested fan-out cannot deadlock on a small machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field

import psutil

from heddle._errors import ResourceError
from heddle._runtime.spec import Resources

DEFAULT_CPU = 1.0


@dataclass(frozen=True)
class Capacity:
    cpu: float
    memory: int
    gpus: tuple[int, ...] = ()

    def describe(self) -> str:
        return f"cpu={self.cpu:g}, memory={self.memory / 2**30:.1f}GiB, gpus={len(self.gpus)}"


def detect_gpus() -> tuple[int, ...]:
    """GPU indices from nvidia-smi, or none when it is absent or fails."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return ()
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(int(line) for line in out.split() if line.strip().isdigit())


def detect_capacity() -> Capacity:
    try:
        cpus = float(len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        cpus = float(os.cpu_count() or 1)
    return Capacity(cpu=cpus, memory=psutil.virtual_memory().total, gpus=detect_gpus())


def capacity_from(value: Resources | Capacity | None) -> Capacity:
    """Capacity from heddle.init(capacity=...): Resources fill gaps from detection."""
    if isinstance(value, Capacity):
        return value
    detected = detect_capacity()
    if value is None:
        return detected
    gpus = detected.gpus if value.gpu is None else tuple(range(value.gpu))
    return Capacity(
        cpu=value.cpu_cores if value.cpu_cores is not None else detected.cpu,
        memory=value.memory_bytes if value.memory_bytes is not None else detected.memory,
        gpus=gpus,
    )


@dataclass(frozen=True)
class Request:
    cpu: float
    memory: int
    gpu: int

    @classmethod
    def of(cls, resources: Resources) -> Request:
        cpu = resources.cpu_cores
        return cls(
            cpu=DEFAULT_CPU if cpu is None else cpu,
            memory=resources.memory_bytes or 0,
            gpu=resources.gpu or 0,
        )


@dataclass
class Grant:
    request: Request
    gpus: list[int] = field(default_factory=list)
    cpu_lent: bool = False
    released: bool = False


class Ledger:
    """What is free now. The executor admits requests in arrival order while the head
    of its queue fits (``take``), and admits again whenever something is freed."""

    def __init__(self, capacity: Capacity) -> None:
        self.capacity = capacity
        self.free_cpu = capacity.cpu
        self.free_memory = capacity.memory
        self.free_gpus = list(capacity.gpus)

    def check(self, request: Request, task: str) -> None:
        """Refuse at once a request that could never fit this machine."""
        c = self.capacity
        if request.gpu and not c.gpus:
            raise ResourceError(
                f"task {task!r} asks for {request.gpu} GPU(s) but this machine has none"
            )
        too_big = []
        if request.cpu > c.cpu:
            too_big.append(f"cpu={request.cpu:g} (machine has {c.cpu:g})")
        if request.memory > c.memory:
            too_big.append(
                f"memory={request.memory / 2**30:.1f}GiB (machine has {c.memory / 2**30:.1f}GiB)"
            )
        if request.gpu > len(c.gpus):
            too_big.append(f"gpu={request.gpu} (machine has {len(c.gpus)})")
        if too_big:
            raise ResourceError(
                f"task {task!r} asks for more than this machine has: {', '.join(too_big)}"
            )

    def take(self, r: Request) -> Grant | None:
        """Hold the request's resources if they are free now, else None."""
        if not (
            r.cpu <= self.free_cpu + 1e-9
            and r.memory <= self.free_memory
            and r.gpu <= len(self.free_gpus)
        ):
            return None
        self.free_cpu -= r.cpu
        self.free_memory -= r.memory
        gpus, self.free_gpus = self.free_gpus[: r.gpu], self.free_gpus[r.gpu :]
        return Grant(r, gpus)

    def release(self, grant: Grant) -> None:
        if grant.released:
            return
        grant.released = True
        if not grant.cpu_lent:
            self.free_cpu += grant.request.cpu
        self.free_memory += grant.request.memory
        self.free_gpus.extend(grant.gpus)

    def lend_cpu(self, grant: Grant) -> None:
        """The action waits on its children: let them use its cpu meanwhile."""
        if not grant.cpu_lent and not grant.released:
            grant.cpu_lent = True
            self.free_cpu += grant.request.cpu

    def reclaim_cpu(self, grant: Grant) -> None:
        """The action runs again: take its cpu back (briefly oversubscribing if need be)."""
        if grant.cpu_lent and not grant.released:
            grant.cpu_lent = False
            self.free_cpu -= grant.request.cpu
