"""The results store: one tidy CSV per results directory, one row per configuration, appended and flushed
as each configuration finishes, so that Ctrl-C or a crash loses at most the one in progress.

Re-running a sweep reads the file back and skips the configurations already in it. A re-run with
`overwrite` appends fresh rows; readers keep the last row per configuration. Every run's environment is
appended to `runs.jsonl` (`RUNS_FILE`) beside it. pandas reads the CSV directly: `pandas.read_csv(dir / "results.csv")`.
"""
import csv
import json
import os
from pathlib import Path

import pandas as pd

from highway.bench.schema import RUNS_FILE


class ResultStore:
    def __init__(self, directory, filename: str, columns: list[str], key_columns: list[str]):
        self.dir = Path(directory)
        self.path = self.dir / filename
        self.columns = list(columns)
        self.key_columns = list(key_columns)

    def read(self) -> pd.DataFrame:
        """All rows, the last one per configuration; an empty frame with the columns when nothing is there."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return pd.DataFrame(columns=self.columns)
        df = pd.read_csv(self.path)
        return df.drop_duplicates(subset=self.key_columns, keep="last").reset_index(drop=True)

    def done_keys(self) -> set:
        df = self.read()
        return {tuple(_normalize(v) for v in row) for row in df[self.key_columns].itertuples(index=False)}

    def append(self, row: dict):
        self.dir.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        if not new:
            with open(self.path, newline="") as f:
                header = next(csv.reader(f), [])
            if header != self.columns:
                raise ValueError(f"{self.path} has columns {header}, not this harness's {self.columns}; "
                                 f"write to a new directory")
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, extrasaction="raise")
            if new:
                writer.writeheader()
            writer.writerow({c: row.get(c, "") for c in self.columns})
            f.flush()
            os.fsync(f.fileno())

    def record_run(self, env: dict):
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / RUNS_FILE, "a") as f:
            f.write(json.dumps(env) + "\n")


def _normalize(value):
    """CSV round-trips ints as ints and strings as strings; make keys compare equal either way."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if not hasattr(value, "item") else value.item()
