"""Regression tracking: which throughput configurations got slower or faster between two result sets.

A change is real only when it passes both tests: the medians differ by more than `threshold`, and the two
runs' spreads do not overlap (slower: the new run's fastest fifth is slower than the old run's slowest
fifth, p20_new > p80_old; faster: the other way round). Two identical runs on a noisy machine then
agree, instead of failing a CI gate at random.
"""
import pandas as pd

from highway.bench.schema import RESULTS_FILE, STATUS_OK, THROUGHPUT_KEYS
from highway.reports.loading import read_throughput


def compare_throughput(old_paths, new_paths, threshold: float = 0.1) -> pd.DataFrame:
    """Configurations (status ok in both, same device) with old_ms, new_ms, ratio (new ÷ old) and change
    ("slower" / "faster" / "" when within the threshold or within the runs' spread)."""
    old, new = read_throughput(old_paths), read_throughput(new_paths)
    for paths, df in ((old_paths, old), (new_paths, new)):
        if df.empty:
            raise ValueError(f"no throughput results ({RESULTS_FILE}) in {', '.join(map(str, paths))}")
    keys = THROUGHPUT_KEYS + ["device"]
    cols = keys + ["median_ms", "p20_ms", "p80_ms", "commit"]
    both = old[old["status"] == STATUS_OK][cols].merge(new[new["status"] == STATUS_OK][cols], on=keys,
                                                       suffixes=("_old", "_new"))
    both = both.rename(columns={"median_ms_old": "old_ms", "median_ms_new": "new_ms"})
    both["ratio"] = both["new_ms"] / both["old_ms"]
    # Where a run has no spread (rows from before it was recorded), the threshold alone decides.
    apart_slower = ~(both["p20_ms_new"] <= both["p80_ms_old"])
    apart_faster = ~(both["p80_ms_new"] >= both["p20_ms_old"])
    both["change"] = ""
    both.loc[(both["ratio"] > 1 + threshold) & apart_slower, "change"] = "slower"
    both.loc[(both["ratio"] < 1 - threshold) & apart_faster, "change"] = "faster"
    return both.sort_values("ratio", ascending=False).reset_index(drop=True)
