"""The type engine: turns Python values into bytes and back, driven by type hints.

Pure conversion, no I/O. `encode`/`decode` are what the runtime calls for every task's
inputs and outputs; `register` lets plugins add codecs for their own types.
"""

from __future__ import annotations

# Importing the family modules is what registers their codecs (and the pickle fallback).
from heddle._types import builtins, containers, dynamic, structured  # noqa: F401
from heddle._types._base import (
    Codec,
    codec_for,
    decode,
    encode,
    register,
    set_fallback,
    type_name,
)
from heddle._types.dynamic import PickleFallbackWarning, reset_pickle_warnings
from heddle._types.lazy import register_optional_families

# Tables, arrays, tensors and pandera: registered by name, imported on first use.
register_optional_families()

__all__ = [
    "Codec",
    "PickleFallbackWarning",
    "codec_for",
    "decode",
    "encode",
    "register",
    "reset_pickle_warnings",
    "set_fallback",
    "type_name",
]
