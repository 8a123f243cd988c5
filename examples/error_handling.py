"""Errors: retries, errors that must not be retried, catching a child's error, timeouts.

Run it with ``python examples/error_handling.py``.
"""

import asyncio
from pathlib import Path

import heddle

env = heddle.TaskEnvironment(name="errors")

# A file that counts calls, so the flaky task below fails twice, then works.
CALLS = Path(".heddle-example-calls")


class PaymentDeclined(Exception):
    """A business error: the caller decides what to do with it."""


# RetryStrategy: up to 3 retries, waiting 0.1s, then 0.2s, then 0.4s.
@env.task(retries=heddle.RetryStrategy(count=3, backoff=0.1, backoff_factor=2))
async def flaky_fetch(url: str) -> str:
    calls = int(CALLS.read_text()) + 1 if CALLS.exists() else 1
    CALLS.write_text(str(calls))
    if calls < 3:
        raise ConnectionError(f"{url}: connection reset (call {calls})")
    return f"<html>{url}</html>"


# NonRecoverableError fails the action at once: retrying cannot help.
@env.task(retries=5)
async def parse_config(text: str) -> dict[str, str]:
    if "=" not in text:
        raise heddle.NonRecoverableError(f"not a config line: {text!r}")
    key, _, value = text.partition("=")
    return {key: value}


@env.task
async def charge(amount: int) -> str:
    if amount > 100:
        raise PaymentDeclined(f"amount {amount} is over the limit")
    return f"charged {amount}"


# timeout: the action fails with heddle.TimeoutError if it runs longer.
@env.task(timeout=0.5)
async def slow_report() -> str:
    await asyncio.sleep(10)
    return "done"


@env.task
async def main() -> list[str]:
    lines = []

    page = await flaky_fetch("https://example.com")
    lines.append(f"flaky_fetch succeeded after retries: {page}")

    try:
        await parse_config("no equals sign")
    except heddle.NonRecoverableError as exc:
        lines.append(f"parse_config failed without retrying: {exc}")

    # The child raised PaymentDeclined, and the parent catches that very type.
    try:
        await charge(500)
    except PaymentDeclined as exc:
        lines.append(f"charge declined, charging less instead: {await charge(50)} ({exc})")

    try:
        await slow_report()
    except heddle.TimeoutError as exc:
        lines.append(f"slow_report timed out: {exc}")

    return lines


if __name__ == "__main__":
    heddle.init()  # runs are recorded in .heddle/ in the current directory
    CALLS.unlink(missing_ok=True)
    run = heddle.run(main)
    for line in run.outputs():
        print(line)
    CALLS.unlink(missing_ok=True)
    # Every attempt is recorded: the flaky task has 3, the non-recoverable one 1.
    for action in run.actions():
        print(f"  {action.task_name:<20} {action.status:<10} attempts={action.attempts}")
