"""heddle.report: HTML that a task writes for people to read in the UI (tables, plots).

Each call appends to the running action's report; the first call of a new attempt
starts the report afresh, so a retried action shows what its last attempt wrote.
The UI shows reports in a sandboxed frame.
"""

from __future__ import annotations

import base64
import html as _html
import io
import threading
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from heddle._errors import HeddleError
from heddle._runtime.context import current_action

__all__ = ["figure", "log", "table"]

MAX_TABLE_ROWS = 1000

_lock = threading.Lock()
# (run id, action id) -> identity of the attempt (its context) that last wrote.
_writers: dict[tuple[str, str], int] = {}
_plotly_loaded: set[tuple[str, str, int]] = set()


class ReportOutsideRunWarning(UserWarning):
    """heddle.report was called outside a task, so there is no action to attach it to."""


def report_path(run_id: str, action_id: str) -> str:
    return f"reports/{run_id}/{action_id}.html"


def log(html: str) -> None:
    """Append an HTML fragment to the running action's report."""
    if not isinstance(html, str):
        raise TypeError(f"heddle.report.log needs HTML text (str), got {type(html).__name__}")
    ctx = current_action.get()
    if ctx is None:
        warnings.warn(
            "heddle.report.log was called outside a task: the report is dropped",
            ReportOutsideRunWarning,
            stacklevel=2,
        )
        return
    blobs = _object_store()
    key = (ctx.run_id, ctx.action_id)
    path = report_path(*key)
    with _lock:
        fresh = _writers.get(key) != id(ctx)
        _writers[key] = id(ctx)
        previous = None if fresh else blobs.get_text(path)
        blobs.put_text(path, (previous or b"") + html.encode("utf-8") + b"\n")


def _object_store() -> Any:
    """The run's object store: the one the type engine writes to (set in worker
    processes too), else the session's."""
    from heddle._types.sink import get_sink

    try:
        sink = get_sink()
    except HeddleError:
        sink = None
    if sink is not None and hasattr(sink, "put_text") and hasattr(sink, "get_text"):
        return sink
    from heddle._sdk.config import get_session

    return get_session().blobs


def table(
    rows: Any,
    columns: Sequence[str] | None = None,
    *,
    title: str | None = None,
    max_rows: int = MAX_TABLE_ROWS,
) -> None:
    """Append a table: a pandas or polars DataFrame, a list of dicts, or a list of rows
    (with ``columns`` naming them). Shows at most ``max_rows`` rows."""
    cols, body, total = _tabulate(rows, columns, max_rows)
    parts = []
    if title:
        parts.append(f"<h3>{_html.escape(title)}</h3>")
    parts.append('<table class="heddle-table"><thead><tr>')
    parts.extend(f"<th>{_html.escape(str(c))}</th>" for c in cols)
    parts.append("</tr></thead><tbody>")
    for row in body:
        parts.append("<tr>" + "".join(f"<td>{_html.escape(_cell(v))}</td>" for v in row) + "</tr>")
    parts.append("</tbody></table>")
    if total > len(body):
        parts.append(f"<p><small>first {len(body)} of {total} rows</small></p>")
    log(_TABLE_STYLE + "".join(parts))


def figure(fig: Any, *, title: str | None = None) -> None:
    """Append a matplotlib figure (as a PNG) or a plotly figure (interactive)."""
    head = f"<h3>{_html.escape(title)}</h3>" if title else ""
    module = type(fig).__module__
    if module.startswith("plotly"):
        log(head + _plotly_html(fig))
        return
    if hasattr(fig, "savefig"):
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
        data = base64.b64encode(buf.getvalue()).decode()
        log(
            head
            + f'<img alt="{_html.escape(title or "figure")}" src="data:image/png;base64,{data}">'
        )
        return
    raise TypeError(
        f"heddle.report.figure takes a matplotlib or plotly figure, got {type(fig).__name__}"
    )


def _plotly_html(fig: Any) -> str:
    # The plotly library is inlined once per attempt's report: the UI serves no CDN.
    ctx = current_action.get()
    include = True
    if ctx is not None:
        key = (ctx.run_id, ctx.action_id, id(ctx))
        with _lock:
            include = key not in _plotly_loaded
            _plotly_loaded.add(key)
    html: str = fig.to_html(full_html=False, include_plotlyjs=include)
    return html


def _tabulate(
    rows: Any, columns: Sequence[str] | None, max_rows: int
) -> tuple[list[str], list[list[Any]], int]:
    if hasattr(rows, "to_dicts"):  # polars
        cols = list(rows.columns)
        total = int(rows.height)
        body = [[r[c] for c in cols] for r in rows.head(max_rows).to_dicts()]
        return cols, body, total
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # pandas
        cols = [str(c) for c in rows.columns]
        total = len(rows)
        head = rows.head(max_rows)
        return cols, [list(r) for r in head.itertuples(index=False, name=None)], total
    if not isinstance(rows, Iterable) or isinstance(rows, str | bytes | Mapping):
        raise TypeError(
            "heddle.report.table takes a DataFrame, a list of dicts or a list of rows, "
            f"got {type(rows).__name__}"
        )
    items = list(rows)
    total = len(items)
    items = items[:max_rows]
    if items and all(isinstance(r, Mapping) for r in items):
        cols = list(columns or dict.fromkeys(k for r in items for k in r))
        return [str(c) for c in cols], [[r.get(c) for c in cols] for r in items], total
    body = [list(r) if isinstance(r, Sequence) and not isinstance(r, str) else [r] for r in items]
    width = max((len(r) for r in body), default=0)
    cols = [str(c) for c in columns] if columns else [str(i) for i in range(width)]
    return cols, body, total


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


_TABLE_STYLE = (
    "<style>.heddle-table{border-collapse:collapse;font:13px system-ui,sans-serif;margin:8px 0}"
    ".heddle-table th,.heddle-table td{border:1px solid #ddd;padding:3px 8px;text-align:left}"
    ".heddle-table th{background:#f4f4f6}</style>"
)
