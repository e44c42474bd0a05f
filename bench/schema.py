"""What the harness and the study write, named once: file names, columns, keys, and how arms and
checkpoints are named. The reports read results through these names and import nothing else of `bench`.

This module imports nothing but the standard library, so that reading results never builds a model. It
also reads the two formats rows live in: the SQLite store a run writes (`STORE_FILE`, the truth) and the
CSV exports beside it (what pandas and people read), the latter row by row, so that a damaged line costs
that line and never the file.
"""
import csv
import math
import sqlite3
from pathlib import Path

# --- files ----------------------------------------------------------------------------------------------
STORE_FILE = "results.sqlite"  # every table of a results directory; the CSVs below are exports of it
RESULTS_FILE = "results.csv"  # throughput sweeps
CONVERGE_FILE = "converge.csv"  # convergence studies: one row per trial and epoch
CARRY_FILE = "carry.csv"  # convergence studies: the carried input per layer at initialization
POPULATION_FILE = "population.csv"  # population sweeps: P trials trained at once against one by one
RUNS_FILE = "runs.jsonl"  # the environment of every run, beside each of the above
STUDY_TIMES_FILE = "study_times.jsonl"  # convergence studies: each run's wall time and how far it got
CHECKPOINT_DIR = "checkpoints"  # the best trial per arm and depth, beside converge.csv
CHECKPOINT_INDEX = "index.json"
CHECKPOINT_SUFFIX = ".pt"
GATES_FILE = "gates.npz"  # a gate analysis: one directory per checkpoint analysed
LESION_FILE = "lesion.csv"
ANALYSIS_META_FILE = "meta.json"
COMPILE_CHECK_FILE = "compile_check.csv"  # compile-check: every kernel config compiled for sm_80/sm_90, judged

# --- throughput -----------------------------------------------------------------------------------------
MODELS = ("highway", "plain")
LAYERS = ("dense", "conv")
MODES = ("fwd", "fwd+bwd", "train")  # in the order figures show them
# dtype name → bytes a value: "fp32" is IEEE fp32, "tf32" fp32 tensors with TF32 dots, "tf32x3" with our
# kernels' 3xTF32 dots (`harness.cases.DTYPES`)
DTYPE_BYTES = {"fp32": 4, "tf32": 4, "tf32x3": 4, "fp16": 2, "bf16": 2}
THROUGHPUT_KEYS = ["model", "layer", "depth", "width", "dtype", "batch", "backend", "mode", "spatial"]
THROUGHPUT_COLUMNS = THROUGHPUT_KEYS + [
    "status", "median_ms", "p20_ms", "p80_ms", "q1_ms", "q3_ms", "first_call_ms", "repeats", "timer",
    "samples_per_s", "tflops", "gbps", "pct_peak_flops", "pct_peak_bw", "peak_mem_mb", "speedup_vs_torch",
    "max_error", "device", "device_type", "commit", "run_id", "timestamp", "threads", "load_avg", "spread",
    "noisy", "host", "weight_gbps", "pct_peak_bw_weights", "kernels_per_step", "configs",
]
BASELINE_BACKEND = "torch"  # the eager backend every speed-up is measured against
STATUS_OK = "ok"
STATUS_DIVERGED = "diverged"

# A population sweep row: P trials' train steps, as one population and one net after another, timed in
# alternation within the row, so that their ratio is measured side by side.
POPULATION_KEYS = ["model", "depth", "width", "dtype", "batch", "backend", "population"]
POPULATION_COLUMNS = POPULATION_KEYS + [
    "status", "population_ms", "population_p20_ms", "population_p80_ms", "one_by_one_ms", "one_by_one_p20_ms",
    "one_by_one_p80_ms", "speedup", "trials_per_s", "one_by_one_trials_per_s", "samples_per_s",
    "one_by_one_samples_per_s", "repeats", "max_error", "device", "device_type", "commit", "run_id", "timestamp",
    "threads", "load_avg", "configs",
]

# --- convergence ----------------------------------------------------------------------------------------
# How a highway arm gets its transform-gate bias: drawn by the random search, from the depth, or a number
# (written as its string, e.g. "-2"). Plain arms have no gate: their rule is NO_GATE.
GATE_SEARCH, GATE_AUTO, NO_GATE = "search", "auto", "none"
GATE_RULES = (GATE_SEARCH, GATE_AUTO)  # the named rules; any finite number is a rule too
CONVERGE_KEYS = ["study", "dataset", "model", "gate_rule", "depth", "trial", "epoch"]
CONVERGE_COLUMNS = CONVERGE_KEYS + [
    "width", "activation", "gate_bias", "lr", "momentum", "decay", "seed", "batch", "train_loss", "val_loss",
    "val_acc", "seconds", "status", "backend", "device", "commit", "run_id", "num_classes", "host",
]
CARRY_KEYS = ["study", "dataset", "gate_rule", "depth", "layer"]
CARRY_COLUMNS = CARRY_KEYS + ["gate_bias", "carried"]

# Columns that are not text, per table. A value that does not parse as its type marks its row as damaged.
_THROUGHPUT_TYPES = {
    **dict.fromkeys(["depth", "width", "batch", "spatial", "repeats", "threads"], int),
    **dict.fromkeys(["median_ms", "p20_ms", "p80_ms", "q1_ms", "q3_ms", "first_call_ms", "samples_per_s", "tflops",
                     "gbps", "pct_peak_flops", "pct_peak_bw", "peak_mem_mb", "speedup_vs_torch", "max_error",
                     "load_avg", "spread", "weight_gbps", "pct_peak_bw_weights", "kernels_per_step"], float),
    "noisy": bool,
}
_CONVERGE_TYPES = {
    **dict.fromkeys(["depth", "trial", "epoch", "width", "seed", "batch", "num_classes"], int),
    **dict.fromkeys(["gate_bias", "lr", "momentum", "decay", "train_loss", "val_loss", "val_acc", "seconds"], float),
}
_CARRY_TYPES = {"depth": int, "layer": int, "gate_bias": float, "carried": float}
_POPULATION_TYPES = {
    **dict.fromkeys(["depth", "width", "batch", "population", "repeats", "threads"], int),
    **dict.fromkeys([c for c in POPULATION_COLUMNS if c.endswith(("_ms", "_per_s"))] + ["speedup", "max_error",
                                                                                     "load_avg"], float),
}
TABLES = {  # CSV export → (columns, keys, column types)
    RESULTS_FILE: (THROUGHPUT_COLUMNS, THROUGHPUT_KEYS, _THROUGHPUT_TYPES),
    CONVERGE_FILE: (CONVERGE_COLUMNS, CONVERGE_KEYS, _CONVERGE_TYPES),
    CARRY_FILE: (CARRY_COLUMNS, CARRY_KEYS, _CARRY_TYPES),
    POPULATION_FILE: (POPULATION_COLUMNS, POPULATION_KEYS, _POPULATION_TYPES),
}


def table_name(filename: str) -> str:
    """The store's table behind a CSV export: 'results', 'converge', 'carry'."""
    return Path(filename).stem


def parse_value(column: str, text: str, kind=str):
    """A CSV cell as `kind` (int, float, bool or str): None for an empty cell; ValueError when it does not
    parse, naming the column."""
    if text == "":
        return None
    try:
        if kind is int:
            value = float(text)
            if not value.is_integer():
                raise ValueError
            return int(value)
        if kind is float:
            return float(text)
        if kind is bool:
            if text not in ("True", "False", "1", "0"):
                raise ValueError
            return text in ("True", "1")
    except ValueError:
        raise ValueError(f"{column} {text!r} is not {_KIND_WORDS[kind]}") from None
    return text


_KIND_WORDS = {int: "a whole number", float: "a number", bool: "True or False"}


def read_csv_rows(path, columns: list[str], keys: list[str], types: dict) -> tuple[list[dict], list[str]]:
    """(rows, damaged) of a CSV export, row by row. A row is damaged when its line was never finished (no
    newline: a crash or a full disk cut it), when it has the wrong number of fields (a cut row with the next
    one appended to it), or when a value does not parse as its column's type (a cut value, a second header);
    `damaged` says which lines and why. ValueError when the header lacks a key: not a file of this table."""
    path = Path(path)
    with open(path, newline="") as f:
        text = f.read()
    lines = text.splitlines(keepends=True)
    if not lines:
        return [], []
    header = next(csv.reader([lines[0]]))
    missing = [k for k in keys if k not in header]
    if missing:
        raise ValueError(f"{path} is not a {path.name} written by highway-bench: it has no {', '.join(missing)} "
                         f"column (its columns: {', '.join(header[:8])}{' ...' if len(header) > 8 else ''})")
    rows, damaged = [], []
    for number, line in enumerate(lines[1:], start=2):
        if not line.endswith(("\n", "\r")):
            damaged.append(f"line {number}: cut short (no end of line)")
            continue
        if not line.strip():
            continue
        fields = next(csv.reader([line]), [])
        if len(fields) != len(header):
            damaged.append(f"line {number}: {len(fields)} fields, expected {len(header)}")
            continue
        try:
            row = {c: parse_value(c, v, types.get(c, str)) for c, v in zip(header, fields) if c in columns}
        except ValueError as e:
            damaged.append(f"line {number}: {e}")
            continue
        if any(row.get(k) is None for k in keys):
            damaged.append(f"line {number}: a key column is empty")
            continue
        rows.append({c: row.get(c) for c in columns})
    return rows, damaged


def read_store_rows(db_path, table: str, columns: list[str]) -> list[dict] | None:
    """The rows of one table of a SQLite store, oldest first; None when the store has no such table."""
    connection = sqlite3.connect(f"file:{Path(db_path).resolve()}?mode=ro", uri=True, timeout=60)
    try:
        present = [r[1] for r in connection.execute(f'PRAGMA table_info("{table}")')]
        if not present:
            return None
        selected = [c for c in columns if c in present]
        cursor = connection.execute(f'SELECT {", ".join(map(quote, selected))} FROM "{table}" ORDER BY rowid')
        return [{**dict.fromkeys(columns), **dict(zip(selected, values))} for values in cursor]
    finally:
        connection.close()


def typed_frame(rows, columns: list[str], types: dict):
    """Rows (dicts or tuples) as a pandas DataFrame whose numeric columns are numeric (an empty cell is NaN)
    and whose text columns hold strings or None. pandas is imported here, not with this module."""
    import pandas as pd

    df = pd.DataFrame(list(rows), columns=columns)
    for column in columns:
        kind = types.get(column, str)
        if kind in (int, float):
            df[column] = pd.to_numeric(df[column], errors="coerce")
        elif kind is bool:
            df[column] = df[column].map(lambda v: None if v is None or v != v else bool(v)).astype("boolean")
        else:
            df[column] = df[column].astype(object).where(df[column].notna(), None)
    return df


def quote(column: str) -> str:
    """A column name as SQL writes it (ours have '+' and such only in values, but quoting costs nothing)."""
    return '"' + column.replace('"', '""') + '"'


def parse_gate_rule(rule) -> str:
    """A gate rule as the study writes it: "search", "auto", or a finite number's string; ValueError else."""
    rule = str(rule)
    if rule in GATE_RULES:
        return rule
    try:
        value = float(rule)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"gate rule must be {' or '.join(map(repr, GATE_RULES))} or a finite number, got {rule!r}")
    return rule


def arm_id(model: str, gate_rule: str) -> str:
    """An arm's name in file names: 'plain', 'highway' (searched bias), 'highway-bias-2', 'highway-biasauto'."""
    return model if gate_rule in (NO_GATE, GATE_SEARCH) else f"{model}-bias{gate_rule}"


def arm_label(model: str, gate_rule: str) -> str:
    """An arm's name in figures and tables: 'plain', 'highway', 'highway (gate bias auto)'."""
    return model if gate_rule in (NO_GATE, GATE_SEARCH) else f"{model} (gate bias {gate_rule})"


def checkpoint_name(dataset: str, model: str, gate_rule: str, depth: int) -> str:
    """The stem of a best-trial checkpoint: '<dataset>-<arm id>-d<depth>'."""
    return f"{dataset}-{arm_id(model, gate_rule)}-d{depth}"


def checkpoint_depth(stem: str) -> int:
    """The depth in a checkpoint's stem (see `checkpoint_name`)."""
    return int(stem.rsplit("-d", 1)[1])
