"""Executors: where an action's body runs (inline today; process and ray build on the same interface)."""

from heddle._executors.inline import InlineExecutor

__all__ = ["InlineExecutor"]
