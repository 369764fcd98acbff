"""The project benchmark: `python -m bench` (see bench/__main__.py and docs/benchmark.md)."""
