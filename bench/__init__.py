"""`highway.bench`: what measures the layers (extra `[bench]`).

- `highway.bench.harness`: throughput sweeps: cases and backends, timing, the results store, FLOP formulas.
- `highway.bench.study`: the paper's experiments: data sets, training, the convergence search, gate analysis.
- `highway.bench.schema`: the files, columns and names both write, which the reports read.
- `highway.bench.cli`: the `highway-bench` command, the one place that imports all of the above and reports.
"""
