"""Recorded outputs whose blobs are lost: found before they are replayed, and made again.

A succeeded action's output may refer to blobs (tables, arrays, files, a large value
kept whole in a blob). Before the controller replays it, ``recorded_output`` checks
those blobs (present, of the right size, hashed where cheap); if one is missing or
corrupt the action runs again instead (its own children that are fine still replay),
and a run event says so. A task that finds a blob of its inputs lost fails with the
blob's error naming the action that produced it (``name_producer``); the blob was set
aside by the store, so the next recovery makes it again.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import msgspec

from heddle._errors import BlobCorruptError, BlobMissingError, StorageError
from heddle._runtime.literals import LiteralStore, literal_blob_key
from heddle._storage import BlobStore
from heddle._store import SUCCEEDED, ActionRecord, RunEventKind
from heddle._types.refs import BlobRef, blob_refs

if TYPE_CHECKING:
    from heddle._runtime.calls import PreparedCall
    from heddle._runtime.controller import Controller
    from heddle._runtime.journal import ActionState

# Every blob key is written as "sha256:<hex>": a value without it refers to no blob.
_KEY_MARK = b"sha256:"
# Outputs kept in a blob larger than this are not searched for a lost blob's key.
_SEARCH_LIMIT = 64 * 2**20

LostBlob = BlobMissingError | BlobCorruptError


async def recorded_output(
    controller: Controller, call: PreparedCall, prior: ActionRecord | ActionState
) -> bytes | None:
    """The encoded output to replay for a succeeded action, or None if a blob it refers
    to is lost: the action must then run again (recorded as a run event)."""
    literal = prior.output
    assert literal is not None
    if _KEY_MARK not in literal:  # inline, and refers to no blob: the common case
        return controller.literals.from_literal(literal)
    lost = await asyncio.to_thread(_check_output, controller.literals, call, literal)
    if isinstance(lost, bytes):
        return lost
    await asyncio.to_thread(
        controller.store.add_run_event,
        controller.run_id,
        RunEventKind.OUTPUT_LOST,
        f"the output of action {prior.id} (task {prior.task_name}) refers to {_what(lost)}: "
        "it runs again",
        prior.id,
    )
    if prior.cache_key is not None:
        # The cache entry holds the same output: it must not be served instead.
        await asyncio.to_thread(controller.store.cache_delete, prior.cache_key)
    return None


def _check_output(literals: LiteralStore, call: PreparedCall, literal: bytes) -> bytes | LostBlob:
    """The encoded output if every blob it refers to is in place, else the first error."""
    try:
        encoded = literals.from_literal(literal)  # a blob literal is read and hashed whole
        codec = call.spec.output_codec
        if codec is None or _KEY_MARK not in encoded:
            return encoded
        for ref in blob_refs(codec, msgspec.msgpack.decode(encoded)):
            _check_ref(literals.blobs, ref)
    except (BlobMissingError, BlobCorruptError) as exc:
        return exc
    return encoded


def _check_ref(blobs: BlobStore, ref: BlobRef) -> None:
    blobs.check(ref.key, ref.size)
    if ref.kind == "dir":
        # A Dir's manifest lists its files: [[path, key, size], ...] (msgpack).
        manifest = msgspec.msgpack.decode(blobs.get(ref.key))
        files = manifest[0] if manifest and isinstance(manifest[0], list) else manifest
        for _path, key, size in files:
            blobs.check(str(key), int(size))


def _what(exc: LostBlob) -> str:
    state = "corrupt" if isinstance(exc, BlobCorruptError) else "missing"
    return f"blob {exc.key}, which is {state}"


async def name_producer(controller: Controller, call: PreparedCall, exc: BaseException) -> None:
    """Name, in a lost-blob error the call's task raised, the action of this run whose
    output the blob belongs to, and record a run event (the failure path only: it scans
    the run's actions)."""
    if not isinstance(exc, BlobMissingError | BlobCorruptError) or exc.producer is not None:
        return
    key = exc.key
    store, run_id = controller.store, controller.run_id

    def look_up() -> ActionRecord | None:
        return find_producer(store.actions_of_run(run_id), controller.literals, key)

    try:
        producer = await asyncio.to_thread(look_up)
    except Exception:  # best effort: the task's own error must come through unchanged
        return
    if producer is None:
        return
    exc.name_producer(f"action {producer.id} (task {producer.task_name})")
    message = (
        f"action {call.action_id} (task {call.spec.name}) could not read {_what(exc)}; "
        f"it was produced by action {producer.id} (task {producer.task_name}), which runs "
        "again when the run is recovered"
    )

    def record() -> None:
        # Once per blob and producer, however many attempts fail on it.
        if not any(e.message == message for e in store.run_events(run_id)):
            store.add_run_event(run_id, RunEventKind.INPUT_LOST, message, producer.id)
        if producer.cache_key is not None:
            store.cache_delete(producer.cache_key)

    with contextlib.suppress(Exception):
        await asyncio.to_thread(record)


def find_producer(
    actions: list[ActionRecord], literals: LiteralStore, key: str
) -> ActionRecord | None:
    """The first action (by finish time) whose recorded output refers to ``key``."""
    needle = key.encode()
    found: list[ActionRecord] = []
    for a in actions:
        if a.status != SUCCEEDED or a.output is None:
            continue
        if needle in a.output or _in_output_blob(literals, a.output, needle):
            found.append(a)
    return min(found, key=lambda a: a.finished_at or 0.0, default=None)


def _in_output_blob(literals: LiteralStore, literal: bytes, needle: bytes) -> bool:
    held = literal_blob_key(literal)
    if held is None:
        return False
    try:
        if literals.blobs.size(held) > _SEARCH_LIMIT:
            return False
        return needle in literals.blobs.get(held)
    except StorageError:
        return False
