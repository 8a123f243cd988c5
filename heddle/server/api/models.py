"""The API's response bodies (they make the OpenAPI spec). Values are views: JSON
objects with a "kind" (scalar, json, list, dict, bytes, pickled, table, file, dir,
blob, none, too_large, unavailable)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Health(BaseModel):
    status: str = "ok"
    version: str
    store: str = Field(description="store backend: sqlite or postgresql")
    auth: bool = Field(description="whether API calls need a bearer token")
    mutations: bool = Field(description="whether abort/recover are possible on this server")


class Counts(BaseModel):
    total: int = 0
    by_status: dict[str, int] = Field(default_factory=dict)
    cached: int = 0
    retried: int = 0
    traces: int = 0


class ErrorInfo(BaseModel):
    kind: str = Field(description="user, timeout, oom, system or aborted")
    type: str
    message: str
    traceback: str = ""


class Recovery(BaseModel):
    """A `heddle recover` process this server started for the run."""

    pid: int
    started_at: float
    running: bool
    exit_code: int | None = None
    finished_at: float | None = None
    message: str = Field("", description="the last line the process printed to stderr")


class RunSummary(BaseModel):
    id: str
    name: str | None
    root_task: str
    root_action_id: str
    status: str = Field(
        description="the stored status: queued, running, succeeded, failed, aborted"
    )
    display_status: str = Field(
        description=(
            "what to show: the status, or 'orphaned' for a live run whose driver is gone "
            "(recover it), or 'recovering' while a recovery this server started takes it over"
        )
    )
    driver_alive: bool | None = Field(
        description="whether the process driving a live run still runs; null once finished"
    )
    executor: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    duration: float | None = Field(description="seconds from start to finish; null while live")
    abort_requested: bool
    actions: Counts
    failures: int
    error: ErrorInfo | None = None
    recovery: Recovery | None = None


class RunPage(BaseModel):
    runs: list[RunSummary]
    total: int
    limit: int
    offset: int


class Run(RunSummary):
    owner: str | None
    heartbeat_at: float | None
    inputs: list[dict[str, Any]]
    output: dict[str, Any]


class ActionSummary(BaseModel):
    id: str
    parent_id: str | None
    seq: int
    kind: str
    task_name: str
    task_version: str
    group: str | None
    status: str
    attempts: int
    cached: bool
    queued_at: float = Field(description="when the action was created")
    started_at: float | None = Field(description="when its first attempt's body started")
    finished_at: float | None
    queue_duration: float | None = Field(
        description="seconds from queued_at to started_at; null until a body started"
    )
    duration: float | None = Field(
        description="run time: seconds from started_at to finished_at; null until finished"
    )
    error: ErrorInfo | None = None
    children: Counts | None = None


class Group(BaseModel):
    name: str
    label: str
    counts: Counts


class TreePage(BaseModel):
    run_id: str
    parent: ActionSummary
    group: str | None
    groups: list[Group]
    actions: list[ActionSummary]
    total: int
    offset: int
    limit: int


class Attempt(BaseModel):
    number: int
    status: str
    worker: str | None
    task_version: str
    queued_at: float | None = Field(
        description="when the attempt began waiting for resources (null in older stores)"
    )
    started_at: float | None = Field(description="when its body started; null while queued")
    finished_at: float | None
    queue_duration: float | None = Field(
        description="seconds from queued_at to started_at; null if either is unknown"
    )
    duration: float | None = Field(
        description="run time: seconds from started_at to finished_at; null until finished"
    )
    error: ErrorInfo | None = None
    resources: dict[str, Any] = Field(
        default_factory=dict, description="resource use the executor measured (wall, cpu, rss...)"
    )


class TimelineItem(ActionSummary):
    attempt_spans: list[Attempt] = Field(
        default_factory=list, description="every attempt, each with its queued and running span"
    )


class Timeline(BaseModel):
    run_id: str
    start: float
    end: float | None = Field(description="when the run finished; null while it is live")
    items: list[TimelineItem]
    total: int
    offset: int
    limit: int


class Dependency(BaseModel):
    kind: str = Field(description="task or trace")
    name: str
    version: str


class Action(ActionSummary):
    run_id: str
    cache_key: str | None
    source_run_id: str | None = Field(
        None, description="a cache hit: the run of the action that computed the value"
    )
    source_action_id: str | None = Field(
        None, description="a cache hit: the action that computed the value"
    )
    depends_on: list[Dependency] = Field(
        default_factory=list,
        description="the tasks and traces its output depended on (its subtree), by version",
    )
    path: list[ActionSummary] = Field(description="ancestors from the root action down")


class Value(BaseModel):
    name: str
    value: dict[str, Any]


class Values(BaseModel):
    action_id: str
    values: list[Value]


class Attempts(BaseModel):
    action_id: str
    attempts: list[Attempt]


class Log(BaseModel):
    action_id: str
    attempt: int | None
    attempts: list[int]
    available: bool
    text: str
    offset: int = Field(description="byte offset of text in the log")
    size: int
    truncated: bool


class Trace(ActionSummary):
    inputs: list[Value]
    output: dict[str, Any]


class Traces(BaseModel):
    action_id: str
    traces: list[Trace]
    total: int
    offset: int
    limit: int


class Report(BaseModel):
    action_id: str
    available: bool
    size: int
    url: str | None = Field(None, description="signed URL of the HTML, for a sandboxed iframe")


class RunControl(BaseModel):
    id: str
    status: str
    message: str
