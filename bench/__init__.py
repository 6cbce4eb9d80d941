"""Benchmarks: `python -m bench [name ...]` (or `make bench`). Figures go to docs/performance.md."""
