"""Heddle in one file: tasks, fan-out, retries, groups, traces and error handling.

Run it with ``python examples/quickstart.py``. Everything it does is recorded in
``.heddle/`` in the current directory, so you can look at the run afterwards.
"""

import asyncio
from dataclasses import dataclass

import heddle

# A TaskEnvironment bundles the defaults of its tasks: what they need to run
# (resources), whether their outputs are cached, how often they are retried...
env = heddle.TaskEnvironment(
    name="quickstart",
    resources=heddle.Resources(cpu=2, memory="4Gi"),
    cache="auto",
)


# Inputs and outputs are typed: Heddle stores them (by their type hints) so a
# crashed run can be recovered and any output looked at later.
@dataclass
class Dataset:
    xs: list[float]
    ys: list[float]


@dataclass
class Model:
    lr: float
    slope: float
    intercept: float
    loss: float


@dataclass
class Summary:
    best: Model
    predictions: list[float]
    description: str
    rejected: str


@env.task
async def load(n: int) -> Dataset:
    """Points on the line y = 3x + 1, with a little deterministic noise."""
    xs = [i / n for i in range(n)]
    ys = [3 * x + 1 + (0.05 if i % 2 else -0.05) for i, x in enumerate(xs)]
    return Dataset(xs, ys)


# retries=3: if fit raises, Heddle runs it again (up to 3 more times) before
# the caller sees the error.
@env.task(retries=3)
async def fit(data: Dataset, lr: float) -> Model:
    """Fit a line by gradient descent."""
    if lr <= 0:
        # Raised in the caller as this very exception type (see main).
        raise ValueError(f"learning rate must be positive, got {lr}")
    slope = intercept = 0.0
    n = len(data.xs)
    for _ in range(300):
        errors = [slope * x + intercept - y for x, y in zip(data.xs, data.ys, strict=True)]
        slope -= lr * 2 / n * sum(e * x for e, x in zip(errors, data.xs, strict=True))
        intercept -= lr * 2 / n * sum(errors)
    loss = sum(e * e for e in errors) / n
    return Model(lr, round(slope, 3), round(intercept, 3), round(loss, 5))


@env.task
async def predict(model: Model, x: float) -> float:
    return round(model.slope * x + model.intercept, 3)


# A trace is a recorded step inside a task, e.g. a call to an LLM: if the run
# crashes and is recovered, the recorded answer is returned instead of calling again.
@heddle.trace
async def describe(model: Model) -> str:
    return f"y = {model.slope}x + {model.intercept} (lr={model.lr}, loss={model.loss})"


@env.task
async def main(n: int = 1000) -> Summary:
    data = await load(n)

    # Fan out with asyncio.gather: each call is a child action, run concurrently.
    try:
        models = await asyncio.gather(*(fit(data, lr) for lr in (0.1, 0.5)))
    except heddle.OOMError:
        # Out of memory? Try again with more (same task, more resources).
        models = [await fit.override(resources=heddle.Resources(memory="16Gi"))(data, 0.1)]
    best = min(models, key=lambda m: m.loss)

    # Groups name a set of children for the views; heddle.map fans out over a list.
    with heddle.group("eval"):
        predictions = await heddle.map(predict, [best] * 5, [0.0, 0.25, 0.5, 0.75, 1.0])

    description = await describe(best)

    # A child's exception arrives in the caller with its own type.
    try:
        await fit(data, -1.0)
        rejected = "nothing"
    except ValueError as exc:
        rejected = str(exc)

    return Summary(best, predictions, description, rejected)


if __name__ == "__main__":
    heddle.init()  # store runs in .heddle/ in the current directory
    run = heddle.run(main, n=200)
    summary = run.outputs()
    print(f"run {run.id}: {run.status}")
    print(f"best model: {summary.description}")
    print(f"predictions at x = 0, 0.25 .. 1: {summary.predictions}")
    print(f"rejected: {summary.rejected}")
    print(f"{len(run.actions())} actions recorded. Try: heddle runs show {run.id}")
