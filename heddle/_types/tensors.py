"""Codecs for torch (an optional extra): tensors as safetensors blobs, modules in
torch's own format.

A tensor is stored with safetensors (no pickle); a sparse or otherwise unsupported
tensor, and an ``nn.Module`` (whose class is needed to rebuild it), use torch.save.
"""

from __future__ import annotations

import io
import typing
from typing import Any

import torch  # type: ignore[import-not-found,unused-ignore]
from safetensors.torch import load as st_load  # type: ignore[import-not-found,import-untyped,unused-ignore]
from safetensors.torch import save as st_save  # type: ignore[import-not-found,import-untyped,unused-ignore]

from heddle._types._base import Codec
from heddle._types.blobio import read_blob, write_blob

_NAME = "tensor"


def _read_bytes(source: Any) -> bytes:
    if hasattr(source, "read_bytes"):
        return bytes(source.read_bytes())
    return bytes(source.read())


class TensorCodec(Codec):
    """{"t": "safetensors", "k": key, "shape", "dtype", "device"}."""

    def __init__(self, hint: Any) -> None:
        super().__init__(hint)
        self.exact_types = (torch.Tensor,)

    def to_plain(self, value: Any, path: str = "") -> Any:
        if not isinstance(value, torch.Tensor):
            raise self.mismatch(value, path)
        device = str(value.device)
        if value.layout != torch.strided:
            key = write_blob(lambda f: torch.save(value.cpu(), f))
            return {"t": "torch", "k": key, "device": device}
        data = st_save({_NAME: value.detach().cpu().contiguous()})
        key = write_blob(lambda f: f.write(data))
        return {
            "t": "safetensors",
            "k": key,
            "shape": list(value.shape),
            "dtype": str(value.dtype),
            "device": device,
            "grad": bool(value.requires_grad),
        }

    def from_plain(self, plain: Any) -> Any:
        if plain["t"] == "torch":
            raw = read_blob(plain["k"], _read_bytes)
            tensor = torch.load(io.BytesIO(raw), weights_only=True)
        else:
            tensor = st_load(read_blob(plain["k"], _read_bytes))[_NAME]
            if plain.get("grad"):
                tensor.requires_grad_(True)
        device = plain.get("device", "cpu")
        if device != "cpu" and _device_available(device):
            tensor = tensor.to(device)
        return tensor


def _device_available(device: str) -> bool:
    if device.startswith("cuda"):
        return bool(torch.cuda.is_available())
    return False


class ModuleCodec(Codec):
    """A whole ``nn.Module`` with torch.save (its class must be importable to load it)."""

    def __init__(self, hint: Any) -> None:
        super().__init__(hint)
        cls = typing.get_origin(hint) or hint
        self.exact_types = (cls,)

    def to_plain(self, value: Any, path: str = "") -> Any:
        if not isinstance(value, self.exact_types):
            raise self.mismatch(value, path)
        key = write_blob(lambda f: torch.save(value, f))
        return {"t": "torch-module", "k": key}

    def from_plain(self, plain: Any) -> Any:
        raw = read_blob(plain["k"], _read_bytes)
        return torch.load(io.BytesIO(raw), weights_only=False)


def torch_codec(hint: Any) -> Codec:
    cls = typing.get_origin(hint) or hint
    if isinstance(cls, type) and issubclass(cls, torch.nn.Module):
        return ModuleCodec(hint)
    return TensorCodec(hint)
