"""A task that fails in a helper two calls deep, with a chained cause; and a parent that
catches its child's error and returns the traceback it sees there.

    python failing.py HOME ROOT     run ROOT (main | catcher) and print what it raised
    heddle run failing.py main
"""

import sys
import traceback

import heddle

env = heddle.TaskEnvironment(name="failing")


def parse(text: str) -> int:
    try:
        return {"one": 1}[text]
    except KeyError as exc:
        raise ValueError(f"cannot parse {text!r}") from exc  # the failing line


@env.task
async def leaf(text: str) -> int:
    return parse(text)


@env.task
async def main(text: str = "two") -> int:
    return await leaf(text) + 1


@env.task
async def catcher(text: str = "two") -> str:
    try:
        await leaf(text)
    except ValueError:
        return traceback.format_exc()
    return "no error"


if __name__ == "__main__":
    heddle.init(sys.argv[1])
    run = heddle.run(catcher if sys.argv[2] == "catcher" else main, wait=True)
    try:
        print(run.outputs())
    except ValueError:
        traceback.print_exc(file=sys.stdout)
    print(f"RUN {run.id}")
