"""heddle.report: HTML appended to the running action's report, tables and figures."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import heddle
from heddle._sdk.config import get_session
from heddle._sdk.report import ReportOutsideRunWarning

env = heddle.TaskEnvironment(name="rep")
calls: dict[str, int] = {}


def report_of(run: heddle.Run, task: str) -> str:
    action = next(a for a in run.actions() if a.task_name == task)
    data = get_session().blobs.get_text(f"reports/{run.id}/{action.id}.html")
    assert data is not None
    return data.decode()


@env.task
async def writes_twice() -> None:
    heddle.report.log("<p>first</p>")
    heddle.report.log("<p>second</p>")


@env.task(retries=1)
async def retried() -> None:
    calls["retried"] = calls.get("retried", 0) + 1
    heddle.report.log(f"<p>attempt {calls['retried']}</p>")
    if calls["retried"] == 1:
        raise RuntimeError("try again")


@env.task
async def tables() -> None:
    heddle.report.table([{"name": "<b>x</b>", "score": 0.5}], title="dicts")
    heddle.report.table([(1, 2), (3, 4)], columns=["a", "b"])
    heddle.report.table([{"i": i} for i in range(5)], max_rows=2)


def test_log_appends_to_the_actions_report(home: Path) -> None:
    run = heddle.run(writes_twice, executor="inline")
    html = report_of(run, "rep.writes_twice")
    assert html.index("<p>first</p>") < html.index("<p>second</p>")


def test_a_retried_action_keeps_the_report_of_its_last_attempt(home: Path) -> None:
    calls.clear()
    run = heddle.run(retried, executor="inline")
    html = report_of(run, "rep.retried")
    assert "attempt 2" in html and "attempt 1" not in html


def test_table_escapes_cells_and_limits_rows(home: Path) -> None:
    run = heddle.run(tables, executor="inline")
    html = report_of(run, "rep.tables")
    assert "<h3>dicts</h3>" in html
    assert "<td>&lt;b&gt;x&lt;/b&gt;</td><td>0.5</td>" in html
    assert "<th>a</th><th>b</th>" in html and "<td>3</td><td>4</td>" in html
    assert "first 2 of 5 rows" in html


def test_table_takes_dataframes(home: Path) -> None:
    pd = pytest.importorskip("pandas")
    pl = pytest.importorskip("polars")

    @env.task
    async def frames() -> None:
        heddle.report.table(pd.DataFrame({"x": [1, 2], "y": ["a", "b"]}))
        heddle.report.table(pl.DataFrame({"z": [9]}))

    html = report_of(heddle.run(frames, executor="inline"), "rep.frames")
    assert "<th>x</th><th>y</th>" in html and "<td>2</td><td>b</td>" in html
    assert "<th>z</th>" in html and "<td>9</td>" in html


def test_figure_embeds_a_matplotlib_png(home: Path) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    @env.task
    async def plot() -> None:
        fig, ax = plt.subplots()
        ax.plot([1, 2, 3])
        heddle.report.figure(fig, title="line")

    html = report_of(heddle.run(plot, executor="inline"), "rep.plot")
    assert '<img alt="line" src="data:image/png;base64,' in html


def test_figure_embeds_plotly_once(home: Path) -> None:
    go = pytest.importorskip("plotly.graph_objects")

    @env.task
    async def plot() -> None:
        heddle.report.figure(go.Figure(go.Scatter(y=[1, 3, 2])))
        heddle.report.figure(go.Figure(go.Bar(y=[1, 2])))

    html = report_of(heddle.run(plot, executor="inline"), "rep.plot")
    assert html.count("plotly.js v") == 1


def test_report_outside_a_run_warns_and_does_nothing(home: Path) -> None:
    with pytest.warns(ReportOutsideRunWarning, match="outside a task"):
        heddle.report.log("<p>lost</p>")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TypeError, match="HTML text"):
            heddle.report.log(b"<p>bytes</p>")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="matplotlib or plotly"):
        heddle.report.figure(object())
