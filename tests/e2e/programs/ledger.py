"""N children that each append 'work:i:TAG:start-time' to a ledger (the counter file) and
sleep a while: the side effects a test counts to prove no body ran twice.

TAG is $HEDDLE_TEST_TAG, so a test can tell which driver's workers ran a body.

Usage: python ledger.py HOME N PAUSE [DB_URL]    or    heddle run ledger.py main --n N --pause S
"""

import os
import sys
import time

import heddle

env = heddle.TaskEnvironment(name="ledger")


@env.task
def work(i: int, pause: float) -> int:
    tag = os.environ.get("HEDDLE_TEST_TAG", "-")
    with open(os.environ["HEDDLE_TEST_COUNTER"], "a") as f:
        f.write(f"work:{i}:{tag}:{time.time():.3f}\n")
    time.sleep(pause)
    return i * i


@env.task
async def main(n: int, pause: float) -> int:
    return sum(await heddle.map(work, range(n), [pause] * n))


if __name__ == "__main__":
    heddle.init(sys.argv[1], db_url=sys.argv[4] if len(sys.argv) > 4 else None)
    print(heddle.run(main, int(sys.argv[2]), float(sys.argv[3])).outputs())
