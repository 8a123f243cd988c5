"""The chaos suite's machinery: programs driven in subprocesses, SIGKILLs at random moments
and at crash points, store faults, and the invariants checked after every run.

Used by the tests in tests/chaos (the short profile) and by bench/chaos.py (the long one).
"""
