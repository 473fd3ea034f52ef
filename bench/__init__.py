"""Benchmarks of gradcheck against the tools people would otherwise use (issue 7).

Run ``python -m bench`` (or ``python bench/run.py``); ``--json`` for machine-readable output.
"""
