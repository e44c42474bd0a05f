"""What trained highway nets do with their gates (NIPS 2015, section 4; Figures 2–4).

- Gate statistics per layer and block (`highway.gates`): the transform-gate biases, the mean gate activity
  over a data set, the gates and the block outputs for one sample (Figure 2), and each class's mean gate
  activity minus the overall mean (Figure 3).
- Lesioning: close all transform gates of one layer (T = 0: the layer copies its input) and measure the
  training loss and error; one point per layer (Figure 4). A closed gate is a b_T of −inf, so lesioning
  runs through the same forward code, on any backend.
"""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from highway.bench.harness.environment import resolve_device
from highway.bench.harness.progress import progress_bar
from highway.bench.schema import ANALYSIS_META_FILE, GATES_FILE, LESION_FILE
from highway.bench.study.checkpoints import load_checkpoint
from highway.bench.study.datasets import class_names, load_dataset
from highway.bench.study.training import evaluate
from highway.gates import gate_statistics, highway_layers

ANALYSIS_SAMPLES = 10000  # training images the gates and lesions are measured on, unless told otherwise


@torch.no_grad()
def lesion_curve(net, x: torch.Tensor, y: torch.Tensor, progress: bool = False) -> pd.DataFrame:
    """Training loss and error with the transform gates of one highway layer closed at a time; layer 0
    is the unlesioned net. Layers count from 1 at the first highway layer."""
    rows = []
    loss, acc = evaluate(net, x, y)
    rows.append({"layer": 0, "lesioned": False, "train_loss": loss, "train_error": 1 - acc})
    for i, layer in enumerate(progress_bar(highway_layers(net), progress, "lesion"), start=1):
        saved = layer.bias.detach().clone()
        layer.bias.data[layer.width:] = float("-inf")  # σ(−inf) = 0 exactly: the layer carries its input
        try:
            loss, acc = evaluate(net, x, y)
        finally:
            layer.bias.data.copy_(saved)
        rows.append({"layer": i, "lesioned": True, "train_loss": loss, "train_error": 1 - acc})
    return pd.DataFrame(rows)


def check_analysable(checkpoint, meta: dict, dataset: str | None) -> None:
    """ValueError, naming the checkpoint, for one that gate analysis cannot take: a plain net, or one whose
    meta names no data set when none is given (a checkpoint not written by `highway-bench converge`)."""
    if meta["model"] != "highway":
        raise ValueError(f"{checkpoint} is a {meta['model']} net; gate analysis needs a highway net")
    if dataset is None and not meta.get("dataset"):
        raise ValueError(f"{checkpoint} names no data set it was trained on; give one with --dataset")


def analyze(checkpoint, out, dataset: str | None = None, max_samples: int = ANALYSIS_SAMPLES, device=None,
            progress: bool = True) -> Path:
    """Gate statistics and the lesion curve of a checkpoint, written to `out/<checkpoint name>/`:
    gates.npz, lesion.csv and meta.json. Uses the first `max_samples` of the images the net was trained on,
    unless `dataset` names another data set."""
    device = resolve_device(device)
    net, meta = load_checkpoint(checkpoint)
    check_analysable(checkpoint, meta, dataset)
    if dataset in (None, meta.get("dataset")) and "max_train" in meta:
        # the images the net was trained on, standardized as they were then (the mean and spread of the
        # study's own training subset), as the paper lesions its nets on their training set
        data = load_dataset(meta["dataset"], seed=meta.get("data_seed", 0), max_train=meta["max_train"])
    else:
        data = load_dataset(dataset or meta["dataset"], max_train=max_samples)
    if (data.in_features, data.num_classes) != (meta["in_features"], meta["num_classes"]):
        raise ValueError(f"{checkpoint}: the net takes {meta['in_features']} features and {meta['num_classes']} "
                         f"classes, data set {data.name} has {data.in_features} and {data.num_classes}")
    x, y = data.x_train[:max_samples].to(device), data.y_train[:max_samples].to(device)
    net = net.to(device)
    target = Path(out) / Path(checkpoint).stem
    target.mkdir(parents=True, exist_ok=True)
    stats = gate_statistics(net, x, y)
    names = class_names(data)
    if names is not None:  # for the figures: the data files hold numbers only
        stats["class_names"] = np.array([names[c] for c in stats["classes"]])
    np.savez_compressed(target / GATES_FILE, **stats)
    lesion_curve(net, x, y, progress).to_csv(target / LESION_FILE, index=False)
    (target / ANALYSIS_META_FILE).write_text(
        json.dumps({**meta, "analysis_samples": len(x), "analysis_dataset": data.name}, indent=1))
    return target
