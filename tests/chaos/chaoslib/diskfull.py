"""A small disk that fills up: a tmpfs of a few MB mounted on a temp dir (needs root, or
CAP_SYS_ADMIN), and a filler file that leaves a chosen number of bytes free.

``unavailable()`` says why it cannot be used here (the tests then skip, saying so).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

FILLER = ".filler"


def _mount(path: Path, size: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


def unavailable() -> str | None:
    """Why a tmpfs cannot be mounted here, or None."""
    probe = Path(tempfile.mkdtemp(prefix="heddle-chaos-probe-"))
    try:
        done = _mount(probe, "64k")
        if done.returncode != 0:
            return f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})"
        subprocess.run(["umount", str(probe)], check=False)
        return None
    except FileNotFoundError:
        return "no mount command"
    finally:
        probe.rmdir()


class SmallDisk:
    """A tmpfs of ``size`` (e.g. "16m") mounted on ``path``."""

    def __init__(self, path: Path, size: str) -> None:
        path.mkdir(parents=True, exist_ok=True)
        done = _mount(path, size)
        if done.returncode != 0:
            raise RuntimeError(f"mount tmpfs on {path}: {done.stderr.strip()}")
        self.path = path

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, leave: int) -> None:
        """Take all but ``leave`` bytes of the free space."""
        take = self.free_bytes() - leave
        if take <= 0:
            return
        with (self.path / FILLER).open("ab") as f:
            block = b"\0" * 65536
            while take > 0:
                n = min(take, len(block))
                f.write(block[:n])
                take -= n

    def make_room(self) -> None:
        (self.path / FILLER).unlink(missing_ok=True)

    def unmount(self) -> None:
        # Lazy: a process that still has a file open there (a store's handle) lets go later.
        subprocess.run(["umount", "-l", str(self.path)], check=False)
