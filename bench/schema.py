"""What the harness and the study write, named once: file names, columns, keys, and how arms and
checkpoints are named. The reports read results through these names and import nothing else of `bench`.

This module imports nothing but the standard library, so that reading results never builds a model.
"""
import math

# --- files ----------------------------------------------------------------------------------------------
RESULTS_FILE = "results.csv"  # throughput sweeps
CONVERGE_FILE = "converge.csv"  # convergence studies: one row per trial and epoch
CARRY_FILE = "carry.csv"  # convergence studies: the carried input per layer at initialization
RUNS_FILE = "runs.jsonl"  # the environment of every run, beside each of the above
CHECKPOINT_DIR = "checkpoints"  # the best trial per arm and depth, beside converge.csv
CHECKPOINT_INDEX = "index.json"
CHECKPOINT_SUFFIX = ".pt"
GATES_FILE = "gates.npz"  # a gate analysis: one directory per checkpoint analysed
LESION_FILE = "lesion.csv"
ANALYSIS_META_FILE = "meta.json"

# --- throughput -----------------------------------------------------------------------------------------
MODELS = ("highway", "plain")
LAYERS = ("dense", "conv")
MODES = ("fwd", "fwd+bwd", "train")  # in the order figures show them
THROUGHPUT_KEYS = ["model", "layer", "depth", "width", "dtype", "batch", "backend", "mode", "spatial"]
THROUGHPUT_COLUMNS = THROUGHPUT_KEYS + [
    "status", "median_ms", "p20_ms", "p80_ms", "q1_ms", "q3_ms", "first_call_ms", "repeats", "timer",
    "samples_per_s", "tflops", "gbps", "pct_peak_flops", "pct_peak_bw", "peak_mem_mb", "speedup_vs_torch",
    "max_error", "device", "device_type", "commit", "run_id", "timestamp",
]
BASELINE_BACKEND = "torch"  # the eager backend every speed-up is measured against
STATUS_OK = "ok"
STATUS_DIVERGED = "diverged"

# --- convergence ----------------------------------------------------------------------------------------
# How a highway arm gets its transform-gate bias: drawn by the random search, from the depth, or a number
# (written as its string, e.g. "-2"). Plain arms have no gate: their rule is NO_GATE.
GATE_SEARCH, GATE_AUTO, NO_GATE = "search", "auto", "none"
GATE_RULES = (GATE_SEARCH, GATE_AUTO)  # the named rules; any finite number is a rule too
CONVERGE_KEYS = ["study", "dataset", "model", "gate_rule", "depth", "trial", "epoch"]
CONVERGE_COLUMNS = CONVERGE_KEYS + [
    "width", "activation", "gate_bias", "lr", "momentum", "decay", "seed", "batch", "train_loss", "val_loss",
    "val_acc", "seconds", "status", "backend", "device", "commit", "run_id", "num_classes",
]
CARRY_KEYS = ["study", "dataset", "gate_rule", "depth", "layer"]
CARRY_COLUMNS = CARRY_KEYS + ["gate_bias", "carried"]


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
