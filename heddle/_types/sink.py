"""Where codecs for large values (tables, arrays, files) put their bytes.

The type engine sits beside storage, not above it, so the session registers its
blob store here and codecs reach it through ``get_sink()``.
"""

from __future__ import annotations

from typing import Protocol

from heddle._errors import ConfigError


class BlobSink(Protocol):
    """Content-addressed bytes: put returns a key, get returns the verified bytes."""

    def put(self, data: bytes) -> str: ...

    def get(self, key: str) -> bytes: ...


_default: BlobSink | None = None


def set_default_sink(sink: BlobSink | None) -> None:
    """Called by the session when it opens its object store."""
    global _default
    _default = sink


def get_sink() -> BlobSink:
    if _default is None:
        raise ConfigError(
            "this value is stored in the object store, but no Heddle session is open: "
            "call heddle.init() first"
        )
    return _default
