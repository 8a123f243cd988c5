"""Caching: reuse a task's output across runs when it is called with the same inputs.

Run it with ``python examples/caching.py`` (twice, even: the cache lives in .heddle/).
"""

import asyncio
import time

import heddle

env = heddle.TaskEnvironment(name="caching")


# cache="auto": the key is the task's name, the hash of its source code (and of the
# helper functions, classes and constants of yours it uses) and the hash of its
# inputs. Edit any of them and the old entries no longer match; a cached task that
# calls tasks is also recomputed when one of those changes.
@env.task(cache="auto")
async def embed(text: str) -> list[float]:
    await asyncio.sleep(0.5)  # stands in for an expensive model call
    return [float(len(word)) for word in text.split()]


# heddle.Cache gives more control: `version` replaces the code hash (bump it to
# invalidate on purpose; cosmetic code edits keep the cache), and `ignored_inputs`
# are left out of the key (here: a flag that does not change the result).
@env.task(cache=heddle.Cache(version="v1", ignored_inputs=("verbose",)))
async def tokenize(text: str, verbose: bool) -> list[str]:
    await asyncio.sleep(0.5)
    if verbose:
        print(f"tokenizing {text!r}")
    return text.lower().split()


@env.task
async def main(texts: list[str], verbose: bool) -> int:
    vectors = await asyncio.gather(*(embed(t) for t in texts))
    tokens = await asyncio.gather(*(tokenize(t, verbose) for t in texts))
    return sum(len(v) for v in vectors) + sum(len(t) for t in tokens)


def timed_run(texts: list[str], verbose: bool) -> None:
    started = time.perf_counter()
    run = heddle.run(main, texts, verbose)
    took = time.perf_counter() - started
    children = [a for a in run.actions() if a.task_name != "caching.main"]
    cached = sum(a.cached for a in children)
    print(
        f"run {run.id}: output {run.outputs()} in {took:.2f}s, "
        f"{cached} of {len(children)} children served from the cache"
    )


if __name__ == "__main__":
    heddle.init()  # runs and the cache are kept in .heddle/ in the current directory
    texts = ["the quick brown fox", "jumps over", "the lazy dog"]
    print("first run: computes everything (unless an earlier run cached it)")
    timed_run(texts, verbose=False)
    print("second run, same inputs: every child comes from the cache")
    timed_run(texts, verbose=False)
    print("third run, verbose=True: tokenize ignores that input, so it is still cached")
    timed_run(texts, verbose=True)
