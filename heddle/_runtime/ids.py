"""Deterministic ids: action ids, input hashes and cache keys, and random run ids.

Pure functions, no I/O. An action id depends only on where and how the task was
called, so re-running the same program names the same actions again.
"""

from __future__ import annotations

import hashlib
import secrets

_SEP = b"\x1f"


def input_hash(encoded_inputs: bytes) -> str:
    """Hash of a call's encoded inputs (32 hex chars)."""
    return hashlib.blake2b(encoded_inputs, digest_size=16).hexdigest()


def action_id(run_id: str, parent_id: str | None, task_name: str, in_hash: str, n: int) -> str:
    """The id of the n-th call (counting from 0) of ``task_name`` with these inputs by this parent."""
    key = "\x1f".join((run_id, parent_id or "", task_name, in_hash, str(n))).encode()
    return "a" + hashlib.blake2b(key, digest_size=16).hexdigest()


def cache_key(task_name: str, version: str, in_hash: str) -> str:
    """The cache key of a call: same task, same cache version, same (non-ignored) inputs."""
    h = hashlib.blake2b(digest_size=20)
    for part in (task_name, version, in_hash):
        h.update(part.encode())
        h.update(_SEP)
    return "c" + h.hexdigest()


def source_version(*parts: str | bytes) -> str:
    """A short version hash of a task's source and environment."""
    h = hashlib.blake2b(digest_size=10)
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(_SEP)
    return h.hexdigest()


def new_run_id() -> str:
    """A fresh, random run id: 'r' + 16 lowercase base-32 characters."""
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    return "r" + "".join(secrets.choice(alphabet) for _ in range(16))
