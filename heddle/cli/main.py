"""The ``heddle`` command group: global options, and errors turned into one line and an exit code.

Exit codes: 0 success, 1 a failed run or a Heddle error, 2 bad usage or inputs, 130 interrupted.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import click

import heddle
from heddle._sdk import config
from heddle.cli import _console
from heddle.cli._console import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE


def _fail(message: str, code: int) -> click.exceptions.Exit:
    _console.error(message)
    return click.exceptions.Exit(code)


def _handled(ctx: click.Context, call: Any) -> Any:
    """Run ``call`` and turn every error into an error line and exit code, never a traceback."""
    try:
        return call()
    except click.exceptions.Exit:
        raise
    except click.exceptions.NoArgsIsHelpError as exc:
        # A bare `heddle run` or `heddle runs`: the help is the message, not an error.
        click.echo(exc.format_message(), err=True)
        raise click.exceptions.Exit(EXIT_USAGE) from None
    except click.UsageError as exc:
        raise _fail(exc.format_message(), EXIT_USAGE) from None
    except click.ClickException as exc:
        raise _fail(exc.format_message(), exc.exit_code) from None
    except (KeyboardInterrupt, click.Abort):
        raise _fail("interrupted", EXIT_INTERRUPTED) from None
    except heddle.InputError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    except heddle.HeddleError as exc:
        raise _fail(str(exc), EXIT_FAILED) from None
    except Exception as exc:
        if os.environ.get("HEDDLE_DEBUG"):
            raise
        raise _fail(
            f"internal error: {type(exc).__name__}: {exc} (set HEDDLE_DEBUG=1 for the traceback)",
            EXIT_FAILED,
        ) from None


class HeddleGroup(click.Group):
    """The root group; it owns error reporting for every command below it."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        result: list[str] = _handled(ctx, lambda: super(HeddleGroup, self).parse_args(ctx, args))
        return result

    def invoke(self, ctx: click.Context) -> Any:
        return _handled(ctx, lambda: super(HeddleGroup, self).invoke(ctx))


@click.group(cls=HeddleGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=str),
    help="Heddle home (store and blobs); default $HEDDLE_HOME or ./.heddle",
)
@click.option("--db-url", help="Store database URL; default $HEDDLE_DB_URL or SQLite in the home")
@click.option(
    "--storage-url", help="Object storage URL; default $HEDDLE_STORAGE_URL or a folder in the home"
)
@click.version_option(heddle.__version__, prog_name="heddle")
def cli(home: str | None, db_url: str | None, storage_url: str | None) -> None:
    """Heddle: durable, dynamic task orchestration.

    Run a task with `heddle run FILE TASK --param value`, list runs with
    `heddle runs list`, inspect one with `heddle runs show RUN`, resume
    a run whose process died with `heddle recover RUN`, and see or clear
    cached outputs with `heddle cache list` / `heddle cache clear [TASK]`.
    """
    if home or db_url or storage_url:
        # Not opened yet: a command that only reads must not create the store.
        config.configure(config.resolve_settings(home, db_url=db_url, storage_url=storage_url))


def _register() -> None:
    from heddle.cli.cache import cache
    from heddle.cli.control import abort, recover
    from heddle.cli.image import image
    from heddle.cli.logs import logs
    from heddle.cli.run import run
    from heddle.cli.runs import runs
    from heddle.server.cli import serve

    cli.add_command(run)
    cli.add_command(runs)
    cli.add_command(recover)
    cli.add_command(abort)
    cli.add_command(logs)
    cli.add_command(cache)
    cli.add_command(serve)
    cli.add_command(image)


_register()


def main(args: Sequence[str] | None = None) -> None:
    """Console entry point."""
    cli.main(args=args, prog_name="heddle")


if __name__ == "__main__":
    main()
