"""The error raised when a value fails the data validation its type hint asks for
(a pandera schema on a DataFrame). Importable without pandera."""

from __future__ import annotations

from heddle._errors import TypeMismatchError


class DataValidationError(TypeMismatchError):
    """A table failed the checks of the schema its parameter or return value declares.

    ``checks`` lists each failing check as "column: check (n rows, e.g. ...)". When it
    crosses a task boundary the runtime names the task and the parameter around it.
    """

    def __init__(self, schema: str, checks: list[str], path: str = "") -> None:
        given = f"a table failing {len(checks)} check(s) of {schema}: " + "; ".join(checks)
        super().__init__(f"a table valid under {schema}", given, path)
        self.schema = schema
        self.checks = checks
