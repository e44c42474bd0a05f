"""Find and read the results a report is made from: throughput sweeps (`results.csv`), population sweeps
(`population.csv`), convergence studies (`converge.csv`), gate analyses (`*/gates.npz` with `lesion.csv`) and
compile-check runs (`compile_check.csv`), anywhere under the given paths.

A results directory's SQLite store is read when it is there (it is the truth; the CSVs are its exports),
else its CSVs, row by row: a damaged row is left out with a warning, never fatal. A configuration found
in more than one of the given paths is kept once, from the last path, with a warning that says so.
"""
import json
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from highway.bench.schema import ANALYSIS_META_FILE, CARRY_FILE, COMPILE_CHECK_FILE, CONVERGE_FILE, GATES_FILE, \
    LESION_FILE, POPULATION_FILE, RESULTS_FILE, RUNS_FILE, STORE_FILE, STUDY_TIMES_FILE, TABLES, read_csv_rows, \
    read_store_rows, table_name, typed_frame


@dataclass
class Analysis:
    name: str
    gates: dict
    lesion: pd.DataFrame
    meta: dict


@dataclass
class ReportData:
    throughput: pd.DataFrame
    converge: pd.DataFrame
    analyses: list = field(default_factory=list)
    carry: pd.DataFrame = field(default_factory=pd.DataFrame)
    population: pd.DataFrame = field(default_factory=pd.DataFrame)  # population sweeps
    runs: list = field(default_factory=list)  # the environments of the runs behind the data
    study_times: pd.DataFrame = field(default_factory=pd.DataFrame)  # convergence runs' wall times
    sources: list = field(default_factory=list)
    compile_check: pd.DataFrame = field(default_factory=pd.DataFrame)  # compiled kernel configs, judged

    @property
    def empty(self) -> bool:
        return self.throughput.empty and self.converge.empty and self.population.empty and not self.analyses \
            and self.compile_check.empty


def _files(paths, name):
    for p in map(Path, paths):
        if p.is_file() and p.name == name:
            yield p
        elif p.is_dir():
            yield from sorted(p.rglob(name))


def read_table(paths, filename: str) -> pd.DataFrame:
    """Every row of one table (`RESULTS_FILE`, `CONVERGE_FILE` or `CARRY_FILE`) under `paths`, the last
    one per key. A configuration in more than one results directory is kept from the last, and said."""
    columns, keys, types = TABLES[filename]
    if filename in (RESULTS_FILE, POPULATION_FILE):
        keys = keys + ["device"]  # one configuration timed on several devices is several results
    frames = []
    directories = dict.fromkeys(f.parent for name in (filename, STORE_FILE) for f in _files(paths, name))
    for directory in directories:
        store, csv_path = directory / STORE_FILE, directory / filename
        rows = read_store_rows(store, table_name(filename), columns) if store.exists() else None
        if rows is None and csv_path.exists():
            rows, damaged = read_csv_rows(csv_path, columns, keys, types)
            if damaged:
                print(f"{csv_path}: {len(damaged)} damaged row(s) left out: {'; '.join(damaged[:3])}",
                      file=sys.stderr)
        if rows:
            frames.append(typed_frame(rows, columns, types).assign(_source=str(directory)))
    if not frames:
        return typed_frame([], columns, types)
    df = pd.concat(frames, ignore_index=True)
    by_key = df.groupby(keys, dropna=False)["_source"].nunique()
    overlapping = int((by_key > 1).sum())
    if overlapping:
        warnings.warn(f"{overlapping} {table_name(filename)} rows appear in more than one results directory "
                      f"({', '.join(sorted(df['_source'].unique()))}); each is kept from the last one given",
                      stacklevel=2)
    return df.drop_duplicates(subset=keys, keep="last").drop(columns="_source").reset_index(drop=True)


def read_throughput(paths) -> pd.DataFrame:
    return read_table(paths, RESULTS_FILE)


def read_converge(paths) -> pd.DataFrame:
    return read_table(paths, CONVERGE_FILE)


def read_carry(paths) -> pd.DataFrame:
    return read_table(paths, CARRY_FILE)


def read_population(paths) -> pd.DataFrame:
    return read_table(paths, POPULATION_FILE)


def read_analyses(paths) -> list[Analysis]:
    out = []
    for f in _files(paths, GATES_FILE):
        lesion = f.parent / LESION_FILE
        meta = f.parent / ANALYSIS_META_FILE
        with np.load(f) as z:
            gates = {k: z[k] for k in z.files}
        out.append(Analysis(f.parent.name, gates, pd.read_csv(lesion) if lesion.exists() else pd.DataFrame(),
                            json.loads(meta.read_text()) if meta.exists() else {}))
    return out


def read_runs(paths) -> list[dict]:
    runs = []
    for f in _files(paths, RUNS_FILE):
        runs.extend(json.loads(line) for line in f.read_text().splitlines() if line.strip())
    return runs


def read_study_times(paths) -> pd.DataFrame:
    """Every convergence run's wall-time record (STUDY_TIMES_FILE) under `paths`; a damaged line is skipped."""
    records = []
    for f in _files(paths, STUDY_TIMES_FILE):
        for line in f.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return pd.DataFrame(records).drop_duplicates(subset=["run_id", "study"], keep="last") if records else pd.DataFrame()


def read_compile_checks(paths) -> pd.DataFrame:
    """Every compile-check CSV under `paths`, each row with its `source` folder; `triton` says which version
    compiled it (empty in files written before that column), `spills_in_loops` where its spills sit (-1 there)."""
    frames = [pd.read_csv(f, keep_default_na=False).assign(source=str(f.parent))  # an empty problem is ""
              for f in _files(paths, COMPILE_CHECK_FILE)]
    if not frames:
        return pd.DataFrame()
    df = pd.concat(frames, ignore_index=True)  # a column one file lacks is NaN in its rows
    return df.assign(triton=df["triton"].fillna("").astype(str) if "triton" in df else "",
                     blocks_per_sm=df["blocks_per_sm"].fillna(-1).astype(int) if "blocks_per_sm" in df else -1,
                     spills_in_loops=df["spills_in_loops"].fillna(-1).astype(int) if "spills_in_loops" in df else -1)


def load_results(paths) -> ReportData:
    paths = list(paths)
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"no such results: {', '.join(missing)}")
    return ReportData(throughput=read_throughput(paths), converge=read_converge(paths), analyses=read_analyses(paths),
                      carry=read_carry(paths), population=read_population(paths), runs=read_runs(paths),
                      study_times=read_study_times(paths), compile_check=read_compile_checks(paths),
                      sources=[str(p) for p in paths])
