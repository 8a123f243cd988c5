"""Fan-out: run one task over 10,000 inputs with heddle.map.

Each call is its own durable action (recorded, retried, recoverable), and the
store writes are batched, so tens of thousands of children are cheap.
Run it with ``python examples/fanout.py``.
"""

import time

import heddle

env = heddle.TaskEnvironment(name="fanout")


@env.task
async def score(i: int) -> int:
    """Stands in for real work: scoring one item."""
    return (i * 7919) % 1000


@env.task(retries=2)
async def check(i: int) -> int:
    if i % 1000 == 999:
        raise ValueError(f"item {i} is malformed")
    return i


@env.task
async def main(n: int = 10_000) -> dict[str, int]:
    # heddle.map calls `score` once per item, at most 500 at a time; results come
    # back in input order.
    scores = await heddle.map(score, range(n), concurrency=500)

    # With return_exceptions=True a failed child gives its exception in place of a
    # result instead of failing the whole map.
    checked = await heddle.map(check, range(2_000), return_exceptions=True)
    failures = [r for r in checked if isinstance(r, Exception)]

    return {"children": n, "total": sum(scores), "max": max(scores), "failed": len(failures)}


if __name__ == "__main__":
    heddle.init()  # runs are recorded in .heddle/ in the current directory
    started = time.perf_counter()
    run = heddle.run(main)
    result = run.outputs()
    took = time.perf_counter() - started
    print(f"run {run.id}: {run.status} in {took:.1f}s")
    print(f"scored {result['children']} items: total {result['total']}, best {result['max']}")
    print(f"{result['failed']} of 2000 checks failed (kept as exceptions, not fatal)")
    print(f"{len(run.actions())} actions recorded")
