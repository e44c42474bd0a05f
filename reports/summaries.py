"""Summaries of convergence results that figures, claims and the CLI print: arm names, best runs."""
import numpy as np
import pandas as pd

from highway.bench.schema import STATUS_OK, arm_label


def arm_names(df: pd.DataFrame) -> list[str]:
    """Each row's arm as figures show it: 'plain', 'highway' (searched gate bias), 'highway (gate bias auto)'."""
    return [arm_label(m, str(r)) for m, r in zip(df["model"], df["gate_rule"])]


TOP = 10  # the paper's Figure 1 (right) averages the best 10 of its 100 trials


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
