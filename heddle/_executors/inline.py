"""The inline executor: actions run in the calling process.

Async task bodies run as coroutines on the controller's event loop; sync bodies
run on a thread pool so they can block (and call other tasks) without stalling it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import os
from collections.abc import Callable
from typing import Any

from heddle._errors import TimeoutError as HeddleTimeout
from heddle._faults import crashpoint
from heddle._runtime.calls import PreparedCall
from heddle._runtime.context import ActionContext, current_action, current_group
from heddle._runtime.controller import Attempt
from heddle._runtime.spec import TaskSpec


class InlineExecutor:
    """Runs each action's body in this process, enforcing its runtime timeout.

    A sync body that times out is abandoned, not killed (threads cannot be killed):
    its caller gets heddle.TimeoutError at the deadline. Use the process executor
    where a runaway body must be stopped.
    """

    name = "inline"
    gather_turns = 0

    def __init__(
        self,
        max_threads: int | None = None,
        save_log: Callable[[str, bytes], None] | None = None,
    ) -> None:
        self._save_log = save_log
        # Sync tasks block their thread while their children run, so the pool must
        # be larger than the deepest chain of nested sync calls.
        self._threads = max_threads or max(64, (os.cpu_count() or 1) * 16)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def _get_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                self._threads, thread_name_prefix="heddle-task"
            )
        return self._pool

    async def execute(self, call: PreparedCall, attempt: Attempt, ctx: ActionContext) -> bytes:
        spec = call.spec
        inputs = spec.decode_inputs(call.encoded_inputs)
        timeout = spec.timeout.runtime_seconds if spec.timeout else None
        attempt.started()  # nothing to wait for: the body starts now
        if spec.is_async and timeout is None:
            # The common case, with one coroutine less: the body runs right here.
            token = current_action.set(ctx)
            gtoken = current_group.set(None)
            try:
                result = await spec.fn(**inputs)
            finally:
                current_group.reset(gtoken)
                current_action.reset(token)
                self._keep_log(ctx, call, attempt)
            crashpoint("inline.after_body")
            return spec.encode_output(result)
        if spec.is_async:
            body = self._run_async(spec, inputs, ctx)
        else:
            body = self._run_sync(spec, inputs, ctx)
        try:
            if timeout is None:
                result = await body
            else:
                try:
                    async with asyncio.timeout(timeout):
                        result = await body
                except TimeoutError:
                    raise HeddleTimeout(spec.name, timeout) from None
        finally:
            self._keep_log(ctx, call, attempt)
        crashpoint("inline.after_body")
        return spec.encode_output(result)

    def _keep_log(self, ctx: ActionContext, call: PreparedCall, attempt: Attempt) -> None:
        text = ctx.log.getvalue() if ctx.log is not None else ""
        if text and self._save_log is not None:
            attempt.log_key = f"logs/{ctx.run_id}/{call.action_id}/{attempt.number}.log"
            with contextlib.suppress(Exception):  # a lost log must not fail the task
                self._save_log(attempt.log_key, text.encode())

    async def _run_async(self, spec: TaskSpec, inputs: dict[str, Any], ctx: ActionContext) -> Any:
        token = current_action.set(ctx)
        gtoken = current_group.set(None)
        try:
            return await spec.fn(**inputs)
        finally:
            current_group.reset(gtoken)
            current_action.reset(token)

    async def _run_sync(self, spec: TaskSpec, inputs: dict[str, Any], ctx: ActionContext) -> Any:
        context = contextvars.copy_context()

        def call() -> Any:
            current_action.set(ctx)
            current_group.set(None)
            return spec.fn(**inputs)

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._get_pool(), context.run, call)

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
