"""The ``heddle`` command line: run tasks from files, inspect, recover and abort runs.

``heddle.cli.main:main`` is the console entry point; each command group lives in its own module.
"""

from heddle.cli.main import cli, main

__all__ = ["cli", "main"]
