"""``python -m heddle.cli``: the same as the ``heddle`` command."""

from heddle.cli.main import main

main()
