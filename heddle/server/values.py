"""Stored values as the UI shows them: decoded from msgpack into JSON-safe views,
never unpickled. Pickled values become "pickled (n bytes)"; blob references (tables,
files, directories) become links, with the first rows of a Parquet table.
"""

from __future__ import annotations

import ast
import datetime as dt
import io
import json
import os
import threading
from collections.abc import Callable
from typing import Any

import msgspec

from heddle._errors import HeddleError
from heddle._runtime import failures
from heddle._runtime.literals import LiteralStore

MAX_VALUE_BYTES = 8 * 1024 * 1024  # larger values are described, not decoded
MAX_ITEMS = 200  # per list or map
MAX_STRING = 20_000
PREVIEW_ROWS = 20
TABLE_FORMATS = frozenset({"parquet", "dataframe"})

# A function that turns a blob key (and a file name) into a download URL.
Linker = Callable[[str, str | None], str]


def view_of_literal(
    literals: LiteralStore, literal: bytes | None, linker: Linker, preview: bool = True
) -> dict[str, Any]:
    """The view of one stored literal (an action's output, or any value)."""
    plain, problem = _decode(literals, literal)
    if problem is not None:
        return problem
    return _Viewer(literals, linker, preview).view(plain, 0)


def input_views(
    literals: LiteralStore, literal: bytes | None, linker: Linker, names: list[str] | None
) -> list[dict[str, Any]]:
    """An action's inputs, one view per parameter (named when the names are known)."""
    plain, problem = _decode(literals, literal)
    if problem is not None:
        return [] if problem["kind"] == "none" else [{"name": "inputs", "value": problem}]
    viewer = _Viewer(literals, linker, True)
    if not isinstance(plain, list):
        return [{"name": "inputs", "value": viewer.view(plain, 0)}]
    if names is None or len(names) != len(plain):
        names = [f"arg{i}" for i in range(len(plain))]
    return [{"name": n, "value": viewer.view(p, 1)} for n, p in zip(names, plain, strict=True)]


def _decode(literals: LiteralStore, literal: bytes | None) -> tuple[Any, dict[str, Any] | None]:
    """The plain tree of a literal, or a view that says why there is none."""
    if literal is None:
        return None, {"kind": "none"}
    try:
        data = literals.from_literal(literal)
    except HeddleError as exc:
        return None, {"kind": "unavailable", "message": str(exc)}
    if len(data) > MAX_VALUE_BYTES:
        return None, {"kind": "too_large", "size": len(data)}
    try:
        return msgspec.msgpack.decode(data), None
    except msgspec.DecodeError as exc:
        return None, {"kind": "unavailable", "message": f"cannot decode the stored value: {exc}"}


class _Viewer:
    def __init__(self, literals: LiteralStore, linker: Linker, preview: bool) -> None:
        self.literals = literals
        self.linker = linker
        self.preview = preview

    def view(self, plain: Any, depth: int) -> dict[str, Any]:
        if plain is None or isinstance(plain, bool | int | float):
            return {"kind": "scalar", "value": _safe_scalar(plain)}
        if isinstance(plain, str):
            if len(plain) > MAX_STRING:
                return {"kind": "scalar", "value": plain[:MAX_STRING], "truncated": len(plain)}
            return {"kind": "scalar", "value": plain}
        if isinstance(plain, bytes | bytearray | memoryview):
            raw = bytes(plain)
            return {"kind": "bytes", "size": len(raw), "hex": raw[:32].hex()}
        if isinstance(plain, dt.datetime | dt.date | dt.time):
            return {"kind": "scalar", "value": plain.isoformat()}
        if isinstance(plain, msgspec.msgpack.Ext):
            data = bytes(plain.data)
            return {"kind": "bytes", "size": len(data), "hex": data[:32].hex()}
        if isinstance(plain, list):
            items = [self.view(p, depth + 1) for p in plain[:MAX_ITEMS]]
            return self._container("list", items, len(plain))
        if isinstance(plain, dict):
            if len(plain) == 1 and isinstance(plain.get("pickle"), bytes):
                return {"kind": "pickled", "size": len(plain["pickle"])}
            if _is_blob_ref(plain):
                return self._ref(plain)
            keys = list(plain)[:MAX_ITEMS]
            entries = {str(k): self.view(plain[k], depth + 1) for k in keys}
            return self._container("dict", entries, len(plain))
        return {"kind": "scalar", "value": repr(plain)[:MAX_STRING]}

    def _container(self, kind: str, items: Any, size: int) -> dict[str, Any]:
        values = items.values() if isinstance(items, dict) else items
        simple = all(v["kind"] in ("scalar", "json") for v in values)
        out: dict[str, Any] = {"kind": kind, "items": items, "size": size}
        if simple:
            # Only scalars inside: the UI can show it as one JSON document.
            out = {"kind": "json", "value": _to_json(out), "size": size}
        if size > MAX_ITEMS:
            out["truncated"] = size
        return out

    def _ref(self, plain: dict[str, Any]) -> dict[str, Any]:
        """A value kept in the object store (or inline bytes tagged with a format)."""
        fmt = str(plain["t"])
        key = plain.get("k") if isinstance(plain.get("k"), str) else None
        parts = [p for p in plain.get("parts") or [] if isinstance(p, str)]
        meta = {
            str(k): _safe_meta(v) for k, v in plain.items() if k not in ("t", "k", "b", "parts")
        }
        name = next((str(meta[k]) for k in ("name", "filename", "path") if k in meta), None)
        if name is not None:
            name = os.path.basename(name.rstrip("/")) or None
        kind = "dir" if fmt == "dir" else "file" if fmt == "file" else "blob"
        if fmt in TABLE_FORMATS:
            kind = "table"
        out: dict[str, Any] = {"kind": kind, "format": fmt, "key": key, "name": name, "meta": meta}
        if key is not None:
            out["download"] = self.linker(key, name)
        if isinstance(plain.get("b"), bytes):
            out["size"] = len(plain["b"])
        if parts:
            out["parts"] = [{"key": k, "download": self.linker(k, None)} for k in parts[:MAX_ITEMS]]
        first = key or (parts[0] if parts else None)
        if kind == "table" and self.preview and first is not None:
            out["preview"] = self._parquet_preview(first)
        if kind == "dir" and key is not None:
            out["files"] = self._dir_listing(key)
        return out

    def _local(self, key: str) -> Any:
        """A file-like object or path for a blob: a verified local file when the store
        offers one (no full read into memory), else the bytes."""
        blobs = self.literals.blobs
        local = getattr(blobs, "local_file", None)
        if callable(local):
            return str(local(key))
        return io.BytesIO(blobs.get(key))

    def _parquet_preview(self, key: str) -> dict[str, Any]:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            return {"error": "install pyarrow to preview tables"}
        try:
            pf = pq.ParquetFile(self._local(key))
            batch = next(pf.iter_batches(batch_size=PREVIEW_ROWS), None)
            columns = [f.name for f in pf.schema_arrow]
            rows = [] if batch is None else batch.to_pylist()
            return {
                "columns": columns,
                "types": [str(f.type) for f in pf.schema_arrow],
                "rows": [[_cell(r.get(c)) for c in columns] for r in rows[:PREVIEW_ROWS]],
                "num_rows": pf.metadata.num_rows,
                "size": pf.metadata.serialized_size,
            }
        except Exception as exc:  # a preview must never break the page
            return {"error": f"cannot preview this table: {type(exc).__name__}: {exc}"}

    def _dir_listing(self, key: str) -> dict[str, Any]:
        """The files of a Dir, read from its manifest (msgpack: [[path, key, size], ...])."""
        try:
            manifest = msgspec.msgpack.decode(self.literals.blobs.get(key))
            files = manifest[0] if manifest and isinstance(manifest[0], list) else manifest
            listed = [
                {
                    "path": str(f[0]),
                    "size": int(f[2]),
                    "download": self.linker(str(f[1]), os.path.basename(str(f[0]))),
                }
                for f in files[:MAX_ITEMS]
            ]
            return {"files": listed, "total": len(files)}
        except Exception as exc:  # an unknown manifest layout still shows the Dir
            return {"files": [], "total": 0, "error": f"cannot list this directory: {exc}"}


def _is_blob_ref(plain: dict[Any, Any]) -> bool:
    """The plain form of the data types: {"t": format, "k": key | "parts": [keys] | "b": bytes}."""
    if not isinstance(plain.get("t"), str):
        return False
    k = plain.get("k")
    if isinstance(k, str) and k.startswith("sha256:"):
        return True
    return isinstance(plain.get("parts"), list) or isinstance(plain.get("b"), bytes)


def _safe_scalar(value: Any) -> Any:
    # JSON numbers beyond 2**53 lose precision in the browser: send them as text.
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        return str(value)
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return str(value)
    return value


def _safe_meta(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isinstance(value, str | int | float | bool) or value is None:
        return _safe_scalar(value)
    return _to_json({"kind": "raw", "value": value})


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return _safe_scalar(value)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)[:200]


def _to_json(view: dict[str, Any]) -> Any:
    """A JSON-safe tree from a view made only of scalars (or raw metadata)."""
    kind = view["kind"]
    if kind == "scalar":
        return view["value"]
    if kind == "json":
        return view["value"]
    if kind == "list":
        return [_to_json(v) for v in view["items"]]
    if kind == "dict":
        return {k: _to_json(v) for k, v in view["items"].items()}
    try:
        return json.loads(json.dumps(view["value"], default=str))
    except (TypeError, ValueError):
        return str(view["value"])


def error_view(text: str | None) -> dict[str, Any] | None:
    """A stored failure (JSON) as the UI shows it: kind, type, message, traceback.

    The pickled exception is dropped unread; only its size is reported.
    """
    if not text:
        return None
    try:
        f = failures.Failure.from_json(text)
    except (ValueError, KeyError, TypeError):
        return {"kind": "user", "type": "error", "message": text[:MAX_STRING], "traceback": ""}
    return {
        "kind": f.kind,
        "type": f.type_name,
        "message": f.message[:MAX_STRING],
        "traceback": f.traceback[-MAX_STRING:],
    }


# -- parameter names, read from the program's source without running it ---------------

_names_lock = threading.Lock()
_names_cache: dict[tuple[str, float], dict[str, list[list[str]]]] = {}


def parameter_names(program_json: str, task_name: str, kind: str) -> list[str] | None:
    """The parameter names of a task or trace, found by parsing (never importing) the
    file the run was started from; None when they cannot be told for sure."""
    try:
        file = json.loads(program_json).get("file")
    except (ValueError, AttributeError):
        return None
    if not isinstance(file, str) or not file.endswith(".py"):
        return None
    defs = _defs_in(file)
    if defs is None:
        return None
    # Tasks are named "<environment>.<function>", traces "<module>.<qualname>".
    fn = task_name.rsplit(".", 1)[-1] if kind in ("task", "trace") else None
    if fn is None:
        return None
    candidates = defs.get(fn, [])
    if not candidates or any(c != candidates[0] for c in candidates):
        return None
    return candidates[0]


def _defs_in(file: str) -> dict[str, list[list[str]]] | None:
    try:
        mtime = os.stat(file).st_mtime
    except OSError:
        return None
    with _names_lock:
        hit = _names_cache.get((file, mtime))
    if hit is not None:
        return hit
    try:
        with open(file, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=file)
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return None
    defs: dict[str, list[list[str]]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            a = node.args
            names = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
            defs.setdefault(node.name, []).append(names)
    with _names_lock:
        if len(_names_cache) > 256:
            _names_cache.clear()
        _names_cache[(file, mtime)] = defs
    return defs
