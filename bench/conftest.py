"""pytest-benchmark suites: `pytest bench --benchmark-only` (see bench/bench_layers.py)."""
