"""Sluice benchmarks. Each module is runnable: ``python -m bench.<name> --help``.

Scratch files go under ``bench/results/`` (gitignored) unless told otherwise, so they sit on
the same disk as the repository, and are deleted when the run ends.
"""
