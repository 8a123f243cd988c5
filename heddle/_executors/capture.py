"""Per-action capture of Python-level stdout/stderr for the inline executor.

All actions share one process, so fds cannot be split per action; instead
sys.stdout/sys.stderr become proxies that copy each write to the log of the
running action (its context, made on the first write) and still pass it through.
Output written by C code straight to the fds is not captured; the process
executor captures that.
"""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from heddle._runtime.context import current_action


class _Tee(io.TextIOBase):
    def __init__(self, inner: TextIO) -> None:
        self.inner = inner

    def write(self, s: str) -> int:
        ctx = current_action.get()
        if ctx is not None:
            if ctx.log is None:
                ctx.log = io.StringIO()
            ctx.log.write(s)
        return self.inner.write(s)

    def flush(self) -> None:
        self.inner.flush()

    def isatty(self) -> bool:
        return self.inner.isatty()

    def fileno(self) -> int:
        return self.inner.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


_lock = threading.Lock()
_installed = 0


@contextmanager
def tee_installed() -> Iterator[None]:
    """Install the proxies for the duration of a run (nesting-safe)."""
    global _installed
    with _lock:
        if _installed == 0:
            sys.stdout = _Tee(sys.stdout)
            sys.stderr = _Tee(sys.stderr)
        _installed += 1
    try:
        yield
    finally:
        with _lock:
            _installed -= 1
            if _installed == 0:
                if isinstance(sys.stdout, _Tee):
                    sys.stdout = sys.stdout.inner
                if isinstance(sys.stderr, _Tee):
                    sys.stderr = sys.stderr.inner
