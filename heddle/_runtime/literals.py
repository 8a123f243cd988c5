"""Literals: how encoded values are kept, inline in the store or as a blob.

Small values (the common case) stay in the database row; larger ones go to the
object store under their content hash and the row keeps the key.
"""

from __future__ import annotations

from heddle._errors import StoreError
from heddle._storage import BlobStore

INLINE_LIMIT = 64 * 1024
_INLINE = b"i"
_REF = b"r"


class LiteralStore:
    """Turns encoded bytes into a literal and back, using blobs for large values."""

    def __init__(self, blobs: BlobStore, inline_limit: int = INLINE_LIMIT) -> None:
        self.blobs = blobs
        self.inline_limit = inline_limit

    def to_literal(self, data: bytes) -> bytes:
        if len(data) <= self.inline_limit:
            return _INLINE + data
        return _REF + self.blobs.put(data).encode()

    def from_literal(self, literal: bytes) -> bytes:
        tag, body = literal[:1], literal[1:]
        if tag == _INLINE:
            return body
        if tag == _REF:
            return self.blobs.get(body.decode())
        raise StoreError(
            f"unknown literal tag {tag!r}: the store holds data this Heddle cannot read"
        )


def literal_blob_key(literal: bytes) -> str | None:
    """The blob key a literal points to, or None for an inline literal."""
    return literal[1:].decode() if literal[:1] == _REF else None
