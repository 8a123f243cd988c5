"""``heddle run FILE TASK --param value``: start a run of a task defined in a Python file.

The file is a command group whose subcommands are its tasks; each task's options are built
from its signature, so ``heddle run FILE TASK --help`` documents the task's parameters.
"""

from __future__ import annotations

import inspect
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

import click

import heddle
from heddle._sdk import program
from heddle._sdk.config import EXECUTORS
from heddle._sdk.task import Task
from heddle._types.storable import text_problem
from heddle.cli import _console, _live, _params

# heddle's own options for `run`; a task parameter of the same name wins, and the option
# then moves to --run-<name>.
_RUN_OPTIONS: list[tuple[str, str, dict[str, Any]]] = [
    ("name", "heddle_run_name", {"help": "A name for the run, to find it by later"}),
    ("quiet", "heddle_run_quiet", {"is_flag": True, "help": "No live progress display"}),
    ("json", "heddle_run_json", {"is_flag": True, "help": "Print only the output, as JSON"}),
    (
        "executor",
        "heddle_run_executor",
        {
            "type": click.Choice(EXECUTORS),
            "help": "Where actions run; default $HEDDLE_EXECUTOR or the configured default",
        },
    ),
]


def _import_file(path: str) -> ModuleType:
    if not Path(path).is_file():
        raise click.UsageError(f"no such Python file: {path}")
    try:
        return program.load_file(path)
    except heddle.HeddleError:
        raise
    except SystemExit as exc:
        # The program ended itself at import (sys.exit at module level, argparse, ...):
        # no task can run, and exiting silently would look like success.
        raise _exited(path, exc.code) from None
    except Exception as exc:
        # The user's module failed at import: show where, without our own frames.
        frames = traceback.extract_tb(exc.__traceback__)
        where = next(
            (f for f in reversed(frames) if Path(f.filename) == Path(path).resolve()), None
        )
        at = f" (line {where.lineno})" if where else ""
        raise click.UsageError(f"cannot import {path}{at}: {type(exc).__name__}: {exc}") from None


def _exited(path: str, code: object) -> click.exceptions.Exit:
    """Say that the program ended itself at import, and exit with its code (2, a usage
    error, when it "succeeded" or gave a message: no run was started either way)."""
    if code is None or isinstance(code, int):
        _console.error(
            f"program {path} exited with code {code or 0} while being imported "
            '(keep sys.exit() under `if __name__ == "__main__":`)'
        )
        return click.exceptions.Exit(code if isinstance(code, int) and 0 < code < 256 else 2)
    _console.error(f"program {path} exited while being imported: {code}")
    return click.exceptions.Exit(2)


def _not_utf8(args: list[str]) -> str | None:
    """The first argument the OS gave as bytes that are not UTF-8 (Python holds them as
    lone surrogates, which no store accepts), named with the option it belongs to."""
    for i, arg in enumerate(args):
        if text_problem(arg) is not None:
            option = args[i - 1] if i > 0 and args[i - 1].startswith("--") else None
            if "=" in arg and arg.startswith("--"):
                option, _, arg = arg.partition("=")
            shown = arg.encode("utf-8", "surrogateescape")
            where = f"the value of {option}" if option else f"argument {i + 1}"
            return f"{where} is not valid UTF-8 text: {shown!r:.80}"
    return None


def _tasks_in(module: ModuleType) -> dict[str, Task[Any, Any]]:
    return {k: v for k, v in vars(module).items() if isinstance(v, Task)}


class TaskCommand(click.Command):
    """One task as a command: its parameters as options, plus heddle's run options."""

    def __init__(self, path: str, attr: str, task: Task[Any, Any]) -> None:
        self.task = task
        self.task_params = _params.parameters_of(task)
        taken = {flag for p in self.task_params for flag in p.flags} | {
            f"--no-{p.name.replace('_', '-')}" for p in self.task_params
        }
        options: list[click.Parameter] = [_params.option_for(p) for p in self.task_params]
        for name, dest, attrs in _RUN_OPTIONS:
            flag = f"--{name}" if f"--{name}" not in taken else f"--run-{name}"
            options.append(click.Option([flag, dest], **attrs))
        help_names = ["--help"] if "--help" not in taken else ["--run-help"]
        doc = inspect.getdoc(task.fn) or ""
        super().__init__(
            name=attr,
            params=options,
            callback=self._start,
            help=f"{doc}\n\nRuns task {task.name!r} from {path}.".strip(),
            context_settings={"help_option_names": help_names},
            no_args_is_help=False,
        )

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        problem = _not_utf8(args)
        if problem is not None:
            raise click.UsageError(problem, ctx)
        return super().parse_args(ctx, args)

    def _start(self, **values: Any) -> None:
        ctx = click.get_current_context()
        args, kwargs = _params.call_arguments(self.task, self.task_params, ctx)
        run = heddle.run(
            self.task,
            *args,
            name=values["heddle_run_name"],
            wait=False,
            executor=values["heddle_run_executor"],
            **kwargs,
        )
        code = _live.follow(
            run,
            verb="running",
            quiet=values["heddle_run_quiet"],
            json_output=values["heddle_run_json"],
        )
        ctx.exit(code)


class FileGroup(click.Group):
    """A Python file as a command group; its tasks are the subcommands."""

    def __init__(self, path: str) -> None:
        super().__init__(
            name=path,
            help=f"Tasks defined in {path}.",
            no_args_is_help=True,
            context_settings={"help_option_names": ["-h", "--help"]},
        )
        self.path = path
        self._module: ModuleType | None = None

    @property
    def module(self) -> ModuleType:
        if self._module is None:
            self._module = _import_file(self.path)
        return self._module

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_tasks_in(self.module))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        try:
            task = program.find_task(self.module, cmd_name)
        except LookupError as exc:
            raise click.UsageError(str(exc)) from None
        return TaskCommand(self.path, cmd_name, task)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for attr, task in sorted(_tasks_in(self.module).items()):
            doc = (inspect.getdoc(task.fn) or "").strip().splitlines()
            rows.append((attr, doc[0] if doc else task.name))
        if rows:
            with formatter.section("Tasks"):
                formatter.write_dl(rows)


class RunGroup(click.Group):
    """``heddle run``: its first argument is a file, not a fixed subcommand."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return []

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if not Path(cmd_name).is_file():
            raise click.UsageError(f"no such Python file: {cmd_name}")
        return FileGroup(cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        # Click would normalise the name and refuse unknown ones; a path is used as given.
        cmd = self.get_command(ctx, args[0])
        return args[0], cmd, args[1:]

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(
            ctx.command_path,
            "FILE TASK [TASK OPTIONS] [--name NAME] [--quiet] [--json] [--executor NAME]",
        )

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        return None


@click.group(
    cls=RunGroup,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
def run() -> None:
    """Run a task from a Python file, following its progress live.

    \b
    heddle run train.py main --n 10 --lr 0.01
    heddle run train.py main --help     the task's parameters
    heddle run train.py --help          the tasks in the file

    Lists, dicts, dataclasses and pydantic models are given as JSON. The run
    is durable: if this process dies, `heddle recover RUN` finishes it.
    Exit status: 0 succeeded, 1 failed, 2 bad inputs.
    """


__all__ = ["run"]
