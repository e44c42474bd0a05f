"""Find and read the results a report is made from: throughput sweeps (`results.csv`), convergence studies
(`converge.csv`) and gate analyses (`*/gates.npz` with `lesion.csv`), anywhere under the given paths."""
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from highway.bench.schema import ANALYSIS_META_FILE, CARRY_COLUMNS, CARRY_FILE, CARRY_KEYS, CONVERGE_COLUMNS, \
    CONVERGE_FILE, CONVERGE_KEYS, GATES_FILE, LESION_FILE, RESULTS_FILE, RUNS_FILE, THROUGHPUT_KEYS


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
    runs: list = field(default_factory=list)  # the environments of the runs behind the data
    sources: list = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.throughput.empty and self.converge.empty and not self.analyses


def _files(paths, name):
    for p in map(Path, paths):
        if p.is_file() and p.name == name:
            yield p
        elif p.is_dir():
            yield from sorted(p.rglob(name))


def read_throughput(paths) -> pd.DataFrame:
    frames = [pd.read_csv(f) for f in _files(paths, RESULTS_FILE)]
    if not frames:
        return pd.DataFrame(columns=THROUGHPUT_KEYS + ["status", "median_ms", "device", "device_type"])
    df = pd.concat(frames, ignore_index=True)
    return df.drop_duplicates(subset=THROUGHPUT_KEYS + ["device"], keep="last").reset_index(drop=True)


def read_converge(paths) -> pd.DataFrame:
    frames = [pd.read_csv(f, dtype={"gate_rule": str}) for f in _files(paths, CONVERGE_FILE)]
    if not frames:
        return pd.DataFrame(columns=CONVERGE_COLUMNS)
    df = pd.concat(frames, ignore_index=True).drop_duplicates(subset=CONVERGE_KEYS, keep="last")
    return df.assign(gate_rule=df["gate_rule"].astype(str))


def read_carry(paths) -> pd.DataFrame:
    frames = [pd.read_csv(f, dtype={"gate_rule": str}) for f in _files(paths, CARRY_FILE)]
    if not frames:
        return pd.DataFrame(columns=CARRY_COLUMNS)
    return pd.concat(frames, ignore_index=True).drop_duplicates(subset=CARRY_KEYS, keep="last")


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


def load_results(paths) -> ReportData:
    paths = list(paths)
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"no such results: {', '.join(missing)}")
    return ReportData(throughput=read_throughput(paths), converge=read_converge(paths), analyses=read_analyses(paths),
                      carry=read_carry(paths), runs=read_runs(paths), sources=[str(p) for p in paths])
