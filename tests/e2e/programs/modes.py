"""One run that records every kind of durable step — tasks, async and sync traces (one in a
group), durable.now, durable.sleep, a cache hit — then waits at a gate until a marker file
exists, so a test can kill it at a known point. Every task and trace body appends a line to
a ledger file, so the test sees exactly what ran again after recovery.

    python modes.py run HOME LEDGER MARKER          start a run (prints its outputs)
    python modes.py recover HOME RUN                 recover it with heddle.recover
    heddle --home HOME run modes.py main --ledger LEDGER --marker MARKER

The same source fed on stdin (``python - run ...``) stands in for a notebook: code with
no file behind it.
"""

import asyncio
import os
import sys
from pathlib import Path

import heddle

env = heddle.TaskEnvironment(name="modes")


def note(ledger: str, line: str) -> None:
    # One write() per line on an O_APPEND file: lines from concurrent bodies never interleave.
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


@heddle.trace
async def ask(ledger: str, prompt: str) -> str:
    note(ledger, f"ask:{prompt}")
    return prompt.upper()


@heddle.trace
def count_words(ledger: str, text: str) -> int:
    note(ledger, f"count:{text}")
    return len(text.split())


@env.task
async def work(ledger: str, i: int) -> str:
    note(ledger, f"work:{i}")
    # A comprehension is a code object of its own, whose repr holds an address: the
    # task's version must not depend on it, or recovery would run the task again.
    words = [w.lower() for w in ("WORK", str(i))]
    return await ask(ledger, " ".join(words))


@env.task(cache="auto")
async def cached(ledger: str, x: int) -> int:
    note(ledger, f"cached:{x}")
    return x * x


@env.task
async def gate(ledger: str, marker: str) -> str:
    note(ledger, "gate")
    while not Path(marker).exists():
        await asyncio.sleep(0.02)
    return "open"


@env.task
async def main(ledger: str, marker: str) -> dict[str, object]:
    note(ledger, "main")
    answers = [await ask(ledger, f"q{i}") for i in range(3)]
    with heddle.group("phase"):
        grouped = await ask(ledger, "in a group")
    words = count_words(ledger, "one two three")
    started = heddle.durable.now()
    await heddle.durable.sleep(0.05)
    children = await asyncio.gather(*(work(ledger, i) for i in range(2)))
    squares = [await cached(ledger, 3), await cached(ledger, 3)]  # the second is a cache hit
    await gate(ledger, marker)
    last = await ask(ledger, "after the gate")
    return {
        "answers": [*answers, grouped, *children, last],
        "words": words,
        "now": started.timestamp(),
        "squares": squares,
    }


if __name__ == "__main__":
    command, home = sys.argv[1], sys.argv[2]
    heddle.init(home)
    if command == "run":
        print(heddle.run(main, sys.argv[3], sys.argv[4]).outputs())
    else:
        print(heddle.recover(sys.argv[3]).outputs())
