"""Regression tracking: which throughput configurations got slower or faster between two result sets."""
import pandas as pd

from highway.bench.schema import STATUS_OK, THROUGHPUT_KEYS
from highway.reports.loading import read_throughput


def compare_throughput(old_paths, new_paths, threshold: float = 0.1) -> pd.DataFrame:
    """Configurations (status ok in both, same device) whose median time changed by more than `threshold`
    (a fraction): columns old_ms, new_ms, ratio (new ÷ old) and change ("slower" / "faster")."""
    old, new = read_throughput(old_paths), read_throughput(new_paths)
    keys = THROUGHPUT_KEYS + ["device"]
    both = old[old["status"] == STATUS_OK][keys + ["median_ms", "commit"]].merge(
        new[new["status"] == STATUS_OK][keys + ["median_ms", "commit"]], on=keys, suffixes=("_old", "_new"))
    both = both.rename(columns={"median_ms_old": "old_ms", "median_ms_new": "new_ms"})
    both["ratio"] = both["new_ms"] / both["old_ms"]
    both["change"] = ""
    both.loc[both["ratio"] > 1 + threshold, "change"] = "slower"
    both.loc[both["ratio"] < 1 - threshold, "change"] = "faster"
    return both.sort_values("ratio", ascending=False).reset_index(drop=True)
