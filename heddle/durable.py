"""Durable sleep and clock: recorded in the run's log and replayed on recovery."""

from heddle._sdk.durable import now, sleep, sleep_sync, time

__all__ = ["now", "sleep", "sleep_sync", "time"]
