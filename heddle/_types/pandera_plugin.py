"""pandera validation for tables: ``Annotated[pd.DataFrame, Schema]`` (a DataFrameModel
or a DataFrameSchema, pandas or polars) and ``pandera.typing.DataFrame[Model]``.

The table is validated when it is encoded, i.e. when it crosses a task boundary as an
input (in the caller) or as a return value (in the task).
"""

from __future__ import annotations

import typing
from typing import Any

from heddle._errors import TypeMismatchError
from heddle._types._base import Codec, codec_for
from heddle._types.validation import DataValidationError

_MAX_CHECKS = 10
_MAX_EXAMPLES = 3


def _schema_of(hint: Any) -> tuple[Any, Any]:
    """(frame hint, pandera schema object) of a schema-annotated hint."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        frame = args[0]
        schema = next(m for m in args[1:] if _is_pandera(m))
        return frame, schema
    # pandera.typing.DataFrame[Model]: stored as the library's own frame class.
    base = next(c for c in origin.__mro__ if c.__module__.partition(".")[0] in ("pandas", "polars"))
    return base, args[0]


def _is_pandera(obj: Any) -> bool:
    cls = obj if isinstance(obj, type) else type(obj)
    return any(c.__module__.partition(".")[0] == "pandera" for c in cls.__mro__)


def _name(schema: Any) -> str:
    if isinstance(schema, type):
        return schema.__name__
    return str(getattr(schema, "name", None) or type(schema).__name__)


def _records(frame: Any) -> list[dict[str, Any]]:
    if hasattr(frame, "to_dicts"):  # polars
        return list(frame.to_dicts())
    return list(frame.to_dict("records"))


def summarize(exc: Any) -> list[str]:
    """One line per failing (column, check): "column 'x': greater_than(0) (2 rows, e.g. -1)"."""
    cases = getattr(exc, "failure_cases", None)
    if cases is None:
        return [str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__]
    grouped: dict[tuple[str, str], list[Any]] = {}
    for row in _records(cases):
        column = row.get("column")
        where = f"column {column!r}" if column is not None else str(row.get("schema_context"))
        grouped.setdefault((where, str(row.get("check"))), []).append(row.get("failure_case"))
    lines = []
    for (where, check), failures in list(grouped.items())[:_MAX_CHECKS]:
        examples = ", ".join(repr(f) for f in failures[:_MAX_EXAMPLES])
        lines.append(f"{where}: {check} ({len(failures)} failure(s), e.g. {examples})")
    if len(grouped) > _MAX_CHECKS:
        lines.append(f"... and {len(grouped) - _MAX_CHECKS} more")
    return lines


class PanderaCodec(Codec):
    """Validates with the schema, then stores the (validated, maybe coerced) frame with
    the frame type's own codec."""

    def __init__(self, hint: Any) -> None:
        super().__init__(hint)
        frame, schema = _schema_of(hint)
        self.inner = codec_for(frame)
        self.exact_types = self.inner.exact_types
        self.schema = schema.to_schema() if hasattr(schema, "to_schema") else schema
        self.schema_name = _name(schema)

    def to_plain(self, value: Any, path: str = "") -> Any:
        if self.exact_types and not isinstance(value, self.exact_types):
            raise self.inner.mismatch(value, path)
        validated = self.validate(value, path)
        return self.inner.to_plain(validated, path)

    def validate(self, value: Any, path: str = "") -> Any:
        from pandera.errors import SchemaError, SchemaErrors

        try:
            return self.schema.validate(value, lazy=True)
        except (SchemaErrors, SchemaError) as exc:
            raise DataValidationError(self.schema_name, summarize(exc), path) from None
        except TypeMismatchError:
            raise
        except Exception as exc:  # a check that itself crashed is a failed check too
            check = f"{type(exc).__name__}: {exc}"
            raise DataValidationError(self.schema_name, [check], path) from None

    def from_plain(self, plain: Any) -> Any:
        return self.inner.from_plain(plain)


def pandera_codec(hint: Any) -> Codec:
    return PanderaCodec(hint)
