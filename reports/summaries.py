"""Summaries of results that figures, claims, the report and the CLI print: arm names, best runs, and
compile-check's kernels at a glance."""
import numpy as np
import pandas as pd

from highway.bench.schema import STATUS_OK, arm_label


def arm_names(df: pd.DataFrame) -> list[str]:
    """Each row's arm as figures show it: 'plain', 'highway' (searched gate bias), 'highway (gate bias auto)'."""
    return [arm_label(m, str(r)) for m, r in zip(df["model"], df["gate_rule"])]


TOP = 10  # the paper's Figure 1 (right) averages the best 10 of its 100 trials


def ratio_range(over_fast, over_slow, under_fast, under_slow):
    """The range that a ratio of two timings (over ÷ under: a speed-up when `over` is the baseline's time) can take
    from their calls' fifths: over's fastest against under's slowest, to over's slowest against under's fastest.
    What a noisier or a quieter run of the same code could have shown."""
    return over_fast / under_slow, over_slow / under_fast


def straddles(low, high, target):
    """Whether `target` lies within (low, high]: a verdict against it that the calls' spread leaves open."""
    return (low < target) & (target <= high)


def best_runs(df: pd.DataFrame) -> pd.DataFrame:
    """Per (arm, depth): the final training loss of the best trial and the mean of the top `TOP` trials (`top`
    says how many that was: fewer where fewer trials finished)."""
    df = df.assign(model=arm_names(df))
    final = df.sort_values("epoch").groupby(["model", "depth", "trial"]).tail(1)
    final = final[final["status"] == STATUS_OK]
    rows = []
    for (model, depth), g in final.groupby(["model", "depth"]):
        losses = np.sort(g["train_loss"].to_numpy())
        rows.append({"model": model, "depth": int(depth), "best_loss": float(losses[0]),
                     "top_mean_loss": float(losses[:TOP].mean()), "top": int(min(TOP, len(losses))),
                     "trials": int(len(losses)),
                     "best_trial": int(g.loc[g["train_loss"].idxmin(), "trial"])})
    return pd.DataFrame(rows, columns=["model", "depth", "best_loss", "top_mean_loss", "top", "trials",
                                       "best_trial"])


def chance_loss(df: pd.DataFrame) -> float | None:
    """ln(classes): the cross-entropy of a uniform guess, from the rows' `num_classes`; None when unknown."""
    if "num_classes" not in df.columns:
        return None
    classes = pd.to_numeric(df["num_classes"], errors="coerce").dropna().unique()
    return float(np.log(classes[0])) if len(classes) == 1 and classes[0] > 1 else None


def triton_versions(rows: pd.DataFrame) -> str:
    """The triton versions that compiled compile-check `rows`; '' for files written before that column."""
    return ", ".join(sorted(set(rows["triton"]) - {""}))


def _spills(spilled: pd.DataFrame) -> str:
    """The most bytes a config spills and in which dtypes; then the configs whose spills sit in a loop, where they
    cost every iteration (the most local loads and stores there), or that none does."""
    if spilled.empty:
        return "none"
    text = f"{int(spilled['spill_bytes'].max())} B ({'/'.join(sorted(set(spilled['dtype'])))})"
    known = spilled[spilled["spills_in_loops"] >= 0]
    if known.empty:  # a file written before compile-check read the SASS
        return text
    looped = known[known["spills_in_loops"] > 0]
    if looped.empty:
        return f"{text}, all outside loops"
    return (f"{text}; in loops: {len(looped)} of {len(spilled)} ({'/'.join(sorted(set(looped['dtype'])))}), up to "
            f"{int(looped['spills_in_loops'].max())} local loads and stores")


def compile_summary(df: pd.DataFrame) -> pd.DataFrame:
    """One row per compile-check run and kernel, over the configs its autotuner may try on every arch and in
    every dtype: how many, the most registers a thread, the most bytes spilled (in which dtypes, and where), the blocks
    an SM holds at once (fewest to most, and the share of its 64 warps), the tensor-core instructions of the
    bf16 configs, and how many configs compile-check flagged."""
    if df.empty:
        return pd.DataFrame()
    rows = []
    tried = df[df["autotuner_tries"].astype(str) == "True"]
    for (source, kernel), g in tried.groupby(["source", "kernel"], sort=False):
        spilled = g[g["spill_bytes"] > 0]
        occupancy = (g["blocks_per_sm"] * g["warps"] / 64)[g["blocks_per_sm"] >= 0]
        blocks = g["blocks_per_sm"][g["blocks_per_sm"] >= 0]
        rows.append({
            "triton": triton_versions(g) or source.rstrip("/").split("/")[-1],  # else its folder names it
            "kernel": kernel, "configs": len(g), "registers": int(g["regs"].max()),
            "spills": _spills(spilled),
            "blocks / SM": f"{blocks.min()}-{blocks.max()} ({occupancy.min():.0%}-{occupancy.max():.0%} of the warps)"
                           if len(blocks) else "-",
            "bf16 tensor cores": "/".join(sorted(set(g.loc[g["dtype"] == "bf16", "tensor_cores"]) - {""})) or "-",
            "flagged": int((g["problem"] != "").sum())})
    return pd.DataFrame(rows)


def tf32x3_against_ieee(df: pd.DataFrame) -> pd.DataFrame:
    """Throughput rows with the same shape's IEEE fp32 rows of every other backend copied in as "tf32x3" rows,
    where the tf32x3 rows (our kernels' 3xTF32 dots, fp32's accuracy) lack that backend: torch has no 3xTF32,
    and at tf32x3 eager and the compiled nets run IEEE fp32, so the harness times those once, as "fp32"."""
    if df.empty or "dtype" not in df or not (df["dtype"] == "tf32x3").any():
        return df
    shape = ["model", "layer", "depth", "width", "batch", "mode", "device"]
    shape = [c for c in shape if c in df]
    ours = df[df["dtype"] == "tf32x3"]
    have = set(map(tuple, ours[shape + ["backend"]].to_numpy()))
    shapes = set(map(tuple, ours[shape].to_numpy()))
    ieee = df[(df["dtype"] == "fp32") & ~df["backend"].str.startswith("triton")]
    keep = [tuple(row[shape]) in shapes and (*row[shape], row["backend"]) not in have for _, row in ieee.iterrows()]
    return pd.concat([df, ieee[keep].assign(dtype="tf32x3")], ignore_index=True)
