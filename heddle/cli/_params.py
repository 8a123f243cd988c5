"""A task's parameters as Click options, built from its signature and type hints.

Numbers, strings and flags map to Click types; other types (lists, dicts, dataclasses, pydantic
models, enums, dates ...) are parsed with pydantic, from JSON, so the task gets real objects.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import inspect
import json
import pathlib
import types
import typing
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click
import pydantic

from heddle._sdk.task import Task

if TYPE_CHECKING:
    # Click 8.2+ makes ParamType generic; older Clicks cannot be subscripted at run time.
    AnyParamType = click.ParamType[Any, Any]
else:
    AnyParamType = click.ParamType

_SCALARS = (
    str,
    int,
    float,
    bool,
    bytes,
    enum.Enum,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    pathlib.PurePath,
    uuid.UUID,
    decimal.Decimal,
)
# Keyword arguments of heddle.run itself: a keyword-only task parameter cannot share them.
_RUN_KEYWORDS = frozenset({"name", "wait", "executor"})


@dataclass(frozen=True)
class TaskParameter:
    """One parameter of a task, as the command line sees it."""

    name: str
    hint: Any
    default: Any
    keyword_only: bool

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty

    @property
    def flags(self) -> list[str]:
        """``--learning-rate`` and ``--learning_rate`` for ``learning_rate``."""
        dashed = "--" + self.name.replace("_", "-")
        plain = "--" + self.name
        return [dashed] if dashed == plain else [dashed, plain]


def parameters_of(task: Task[Any, Any]) -> list[TaskParameter]:
    hints = typing.get_type_hints(task.fn)
    return [
        TaskParameter(
            name=p.name,
            hint=hints.get(p.name, Any),
            default=p.default,
            keyword_only=p.kind is inspect.Parameter.KEYWORD_ONLY,
        )
        for p in task.signature.parameters.values()
    ]


def _strip_optional(hint: Any) -> Any:
    """``X | None`` -> ``X`` (the command line cannot spell None for a scalar anyway)."""
    if typing.get_origin(hint) is typing.Annotated:
        return _strip_optional(typing.get_args(hint)[0])
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(rest) == 1:
            return _strip_optional(rest[0])
    return hint


def type_label(hint: Any) -> str:
    """A short readable name for a type hint: ``list[Point]``, ``int | None``."""
    if hint is type(None):
        return "None"
    if hint is Any:
        return "any"
    if hint is Ellipsis:
        return "..."
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        return type_label(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_label(a) for a in args)
    if origin is typing.Literal:
        return "Literal[" + ", ".join(repr(a) for a in args) + "]"
    if origin is not None:
        name = getattr(origin, "__name__", repr(origin))
        return f"{name}[{', '.join(type_label(a) for a in args)}]" if args else name
    if isinstance(hint, type):
        return hint.__name__
    return repr(hint).replace("typing.", "")


def _is_scalar(hint: Any) -> bool:
    if typing.get_origin(hint) is typing.Literal:
        return True
    return isinstance(hint, type) and issubclass(hint, _SCALARS)


def _choices(hint: Any) -> list[str]:
    """The spellings of an enum's or a Literal's values, for the help text."""
    if typing.get_origin(hint) is typing.Literal:
        return [str(a) for a in typing.get_args(hint)]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return [str(m.value) for m in hint]
    return []


def _error_text(exc: pydantic.ValidationError, limit: int = 3) -> str:
    """A pydantic error as one line: ``at [1].x: Input should be a valid integer``."""
    parts = []
    errors = exc.errors(include_url=False)
    if any(e["type"] == "recursion_loop" or "recursion" in e["msg"].lower() for e in errors):
        return "the JSON is nested too deep"
    for e in errors[:limit]:
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"]).lstrip(".")
        parts.append(f"at {loc}: {e['msg']}" if loc else e["msg"])
    if len(errors) > limit:
        parts.append(f"and {len(errors) - limit} more")
    return "; ".join(parts)


class PydanticType(AnyParamType):
    """A Click type for any hint pydantic can validate: JSON text, or plain text for scalars."""

    def __init__(self, hint: Any, adapter: pydantic.TypeAdapter[Any]) -> None:
        self.hint = hint
        self.adapter = adapter
        self.scalar = _is_scalar(_strip_optional(hint))
        self.name = type_label(hint)

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        if not self.scalar:
            return "JSON"
        base = _strip_optional(self.hint)
        choices = _choices(base)
        if choices:
            return "[" + "|".join(choices) + "]"
        return type_label(base).upper()

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            json.loads(value)
        except RecursionError:
            self.fail(f"the JSON for {self.name} is nested too deep", param, ctx)
        except ValueError as exc:
            if self.scalar or self.hint is Any:
                return self._from_text(value, param, ctx)
            self.fail(f"expected JSON for {self.name}, got {value!r:.80} ({exc})", param, ctx)
        try:
            # Strict: JSON `true` is not an int and `1.0` is not one either (an int is
            # still a float); text still parses as dates, UUIDs, enums and the like.
            return self.adapter.validate_json(value, strict=True)
        except pydantic.ValidationError as exc:
            if self.scalar:
                # `"007"` is valid JSON for a number but meant as text for a string enum.
                try:
                    return self.adapter.validate_strings(value)
                except pydantic.ValidationError:
                    pass
            self.fail(f"not a valid {self.name}: {_error_text(exc)}", param, ctx)

    def _from_text(
        self, value: str, param: click.Parameter | None, ctx: click.Context | None
    ) -> Any:
        if self.hint is Any:
            return value
        try:
            return self.adapter.validate_strings(value)
        except pydantic.ValidationError as exc:
            self.fail(f"not a valid {self.name}: {_error_text(exc)}", param, ctx)


class UnsupportedType(AnyParamType):
    """A parameter whose type the command line cannot express (a DataFrame, a model object)."""

    def __init__(self, hint: Any, reason: str) -> None:
        self.name = type_label(hint)
        self.reason = reason

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        self.fail(f"a {self.name} cannot be given on the command line ({self.reason})", param, ctx)


def _click_type(hint: Any) -> AnyParamType:
    base = _strip_optional(hint)
    if base is int:
        return click.INT
    if base is float:
        return click.FLOAT
    if base is str:
        return click.STRING
    try:
        adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(hint)
    except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError, TypeError) as exc:
        return UnsupportedType(hint, type(exc).__name__)
    return PydanticType(hint, adapter)


def _default_text(value: Any) -> str:
    if dataclasses.is_dataclass(value) or isinstance(value, pydantic.BaseModel):
        return repr(value)
    if isinstance(value, enum.Enum):
        return str(value.value)
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def option_for(p: TaskParameter) -> click.Option:
    """The Click option for one task parameter; its value is left unset unless given."""
    label = type_label(p.hint)
    default = "" if p.required else f"  [default: {_default_text(p.default)}]"
    if _strip_optional(p.hint) is bool:
        dashed = p.name.replace("_", "-")
        decls = [f"--{dashed}/--no-{dashed}"]
        if dashed != p.name:
            decls.append(f"--{p.name}/--no_{p.name}")
        return click.Option(
            [*decls, p.name],
            default=None,
            required=p.required,
            help=f"{label}{default}",
        )
    ptype = _click_type(p.hint)
    as_json = isinstance(ptype, PydanticType) and not ptype.scalar
    unsupported = isinstance(ptype, UnsupportedType)
    return click.Option(
        [*p.flags, p.name],
        type=ptype,
        # An unsupported required parameter is reported by name when the task is run.
        required=p.required and not unsupported,
        help=f"{label}{' as JSON' if as_json else ''}{default}",
    )


def call_arguments(
    task: Task[Any, Any], params: Sequence[TaskParameter], ctx: click.Context
) -> tuple[list[Any], dict[str, Any]]:
    """Positional and keyword arguments for ``heddle.run`` from the options given.

    Positional where the signature allows, so parameters called ``name`` or ``wait`` do not
    collide with heddle.run's own keywords; omitted ones take the signature's default.
    """
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for p in params:
        given = ctx.get_parameter_source(p.name) in (
            click.core.ParameterSource.COMMANDLINE,
            click.core.ParameterSource.ENVIRONMENT,
        )
        value = ctx.params.get(p.name) if given else p.default
        if value is inspect.Parameter.empty:
            raise click.UsageError(_missing_message(task, p))
        if not p.keyword_only:
            args.append(value)
        elif given:
            if p.name in _RUN_KEYWORDS:
                raise click.UsageError(
                    f"keyword-only parameter {p.name!r} of task {task.name!r} clashes with "
                    f"heddle.run's own {p.name!r} argument; make it a positional parameter"
                )
            kwargs[p.name] = value
    return args, kwargs


def _missing_message(task: Task[Any, Any], p: TaskParameter) -> str:
    flag = p.flags[0]
    if _strip_optional(p.hint) is bool:
        # Click never reports a required on/off flag as missing: it defaults to off.
        return f"Missing option '{flag}' / '--no-{flag[2:]}' (parameter {p.name!r} has no default)"
    return (
        f"parameter {p.name!r} of task {task.name!r} has type {type_label(p.hint)}, "
        f"which cannot be given on the command line ({flag})"
    )
