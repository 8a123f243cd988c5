"""What the machine has and what running actions hold: capacity and a FIFO ledger.

An action starts only when its cpu, memory and GPU requests fit what is free; the
others wait in the order they asked. A parent blocked on its children lends its
cpu back (as Ray does), so nested fan-out cannot deadlock on a small machine.
"""

from __future__ import annotations

import asyncio
import collections
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
    """Admits requests in arrival order while they fit the free capacity."""

    def __init__(self, capacity: Capacity) -> None:
        self.capacity = capacity
        self.free_cpu = capacity.cpu
        self.free_memory = capacity.memory
        self.free_gpus = list(capacity.gpus)
        self._waiting: collections.deque[tuple[Request, asyncio.Future[Grant]]] = (
            collections.deque()
        )

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

    def _fits(self, r: Request) -> bool:
        return (
            r.cpu <= self.free_cpu + 1e-9
            and r.memory <= self.free_memory
            and r.gpu <= len(self.free_gpus)
        )

    def _take(self, r: Request) -> Grant:
        self.free_cpu -= r.cpu
        self.free_memory -= r.memory
        gpus, self.free_gpus = self.free_gpus[: r.gpu], self.free_gpus[r.gpu :]
        return Grant(r, gpus)

    async def acquire(self, request: Request) -> Grant:
        if not self._waiting and self._fits(request):
            return self._take(request)
        fut: asyncio.Future[Grant] = asyncio.get_running_loop().create_future()
        entry = (request, fut)
        self._waiting.append(entry)
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(fut.result())
            elif entry in self._waiting:
                self._waiting.remove(entry)
            self._dispatch()
            raise

    def release(self, grant: Grant) -> None:
        if grant.released:
            return
        grant.released = True
        if not grant.cpu_lent:
            self.free_cpu += grant.request.cpu
        self.free_memory += grant.request.memory
        self.free_gpus.extend(grant.gpus)
        self._dispatch()

    def lend_cpu(self, grant: Grant) -> None:
        """The action waits on its children: let them use its cpu meanwhile."""
        if not grant.cpu_lent and not grant.released:
            grant.cpu_lent = True
            self.free_cpu += grant.request.cpu
            self._dispatch()

    def reclaim_cpu(self, grant: Grant) -> None:
        """The action runs again: take its cpu back (briefly oversubscribing if need be)."""
        if grant.cpu_lent and not grant.released:
            grant.cpu_lent = False
            self.free_cpu -= grant.request.cpu

    def _dispatch(self) -> None:
        while self._waiting and self._fits(self._waiting[0][0]):
            request, fut = self._waiting.popleft()
            if not fut.done():
                fut.set_result(self._take(request))
