"""How failures are recorded, rebuilt in a caller and shown: the remote traceback is
kept, passed on unchanged through Heddle, and shown without Heddle's own frames."""

from __future__ import annotations

import traceback

import heddle
from heddle._runtime import failures

REMOTE = """\
Traceback (most recent call last):
  File "/opt/venv/lib/python3.11/site-packages/heddle/_executors/worker.py", line 294, in run_job
    result = run_body(self.loop, task, inputs, ctx)
             ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/lib/python3.11/asyncio/base_events.py", line 653, in run_until_complete
    return future.result()
  File "/home/ana/heddle/flows/train.py", line 12, in fit
    return json.loads(text)
  File "/usr/lib/python3.11/json/__init__.py", line 346, in loads
    return _default_decoder.decode(s)
ValueError: bad json
"""


def _failure(text: str = REMOTE) -> failures.Failure:
    try:
        raise ValueError("bad json")
    except ValueError as exc:
        return failures.Failure(
            "user", "ValueError", "bad json", text, failures.failure_of(exc).pickled
        )


def test_user_traceback_drops_heddles_frames_and_the_stdlib_frames_heddle_called() -> None:
    shown = failures.user_traceback(REMOTE)
    assert shown == (
        "Traceback (most recent call last):\n"
        '  File "/home/ana/heddle/flows/train.py", line 12, in fit\n'
        "    return json.loads(text)\n"
        '  File "/usr/lib/python3.11/json/__init__.py", line 346, in loads\n'
        "    return _default_decoder.decode(s)\n"
        "ValueError: bad json\n"
    )


def test_user_traceback_keeps_chained_causes_and_their_separators() -> None:
    chained = (
        REMOTE
        + "\nThe above exception was the direct cause of the following exception:\n\n"
        + REMOTE
    )
    shown = failures.user_traceback(chained)
    assert shown.count('train.py", line 12, in fit') == 2
    assert "The above exception was the direct cause" in shown
    assert "heddle/_executors" not in shown


def test_a_rebuilt_exception_is_caused_by_the_remote_traceback() -> None:
    failure = _failure()

    exc = failures.rebuild(failure, "train.fit", "a1", "r1")

    assert isinstance(exc, ValueError)
    assert isinstance(exc.__cause__, heddle.RemoteTraceback)
    assert exc.__cause__.traceback == REMOTE
    printed = "".join(traceback.format_exception(exc))
    assert 'train.py", line 12, in fit' in printed
    assert "in heddle task 'train.fit' (action a1)" in printed
    assert "heddle/_executors" not in printed


def test_an_exception_that_could_not_be_rebuilt_is_a_task_error_with_the_same_cause() -> None:
    failure = failures.Failure("user", "weird.Error", "odd", REMOTE, b"not a pickle")
    exc = failures.rebuild(failure, "train.fit", "a1", "r1")
    assert isinstance(exc, heddle.TaskError)
    assert isinstance(exc.__cause__, heddle.RemoteTraceback)


def test_a_rebuilt_exception_passed_on_by_heddle_alone_is_recorded_as_it_was() -> None:
    failure = _failure()
    exc = failures.rebuild(failure, "train.fit", "a1", "r1")
    assert failures.failure_of(exc) == failure
    aborted = failures.failure_of(exc, failures.ABORTED)
    assert (aborted.kind, aborted.traceback) == (failures.ABORTED, REMOTE)


def test_a_rebuilt_exception_that_user_code_let_through_is_recorded_with_its_frames() -> None:
    exc = failures.rebuild(_failure(), "train.fit", "a1", "r1")
    try:
        raise exc  # user code (this test) re-raises it
    except ValueError as raised:
        recorded = failures.failure_of(raised)
    assert 'train.py", line 12, in fit' in recorded.traceback  # the cause
    assert "test_failures.py" in recorded.traceback  # and where it went through
    assert "The above exception was the direct cause" in recorded.traceback
