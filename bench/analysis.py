"""What trained highway nets do with their gates (NIPS 2015, section 4; Figures 2–4).

- Gate statistics per layer and block: the transform-gate biases, the mean gate activity over a data set,
  the gates and the block outputs for one sample (Figure 2), and each class's mean gate activity minus the
  overall mean (Figure 3).
- Lesioning: close all transform gates of one layer (T = 0: the layer copies its input) and measure the
  training loss and error; one point per layer (Figure 4). A closed gate is a b_T of −inf, so lesioning
  runs through the same forward code, on any backend.

Gate values are recomputed from each highway layer's input, T = σ(x W_Tᵀ + b_T), in float64, so the
statistics do not depend on which backend runs the net.
"""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from bench.converge import evaluate
from bench.datasets import load_dataset
from highway.models import highway_mlp, plain_mlp
from highway.modules import HighwayLinear


def load_checkpoint(path, backend: str = "auto"):
    """(net, meta) from a checkpoint written by the convergence study."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    meta = ckpt["meta"]
    if meta["model"] == "highway":
        net = highway_mlp(meta["in_features"], meta["width"], meta["depth"], meta["num_classes"], meta["activation"],
                          meta["gate_bias"], backend)
    else:
        net = plain_mlp(meta["in_features"], meta["width"], meta["depth"], meta["num_classes"], meta["activation"])
    net.load_state_dict(ckpt["state_dict"])
    return net.eval(), meta


def highway_layers(net) -> list[HighwayLinear]:
    return [m for m in net.modules() if isinstance(m, HighwayLinear)]


@torch.no_grad()
def gate_activity(net, x: torch.Tensor, batch: int = 2048):
    """(T, Y): transform gates and block outputs of every highway layer, each (samples, layers, width)."""
    layers = highway_layers(net)
    gates, outputs = [[] for _ in layers], [[] for _ in layers]
    hooks = []
    for i, layer in enumerate(layers):
        def hook(module, args, out, i=i):
            n = module.width
            z_t = F.linear(args[0].double(), module.weight[n:].double(), module.bias[n:].double())
            gates[i].append(torch.sigmoid(z_t).float().cpu())
            outputs[i].append(out.float().cpu())
        hooks.append(layer.register_forward_hook(hook))
    try:
        for start in range(0, len(x), batch):
            net(x[start:start + batch])
    finally:
        for h in hooks:
            h.remove()
    return torch.stack([torch.cat(g) for g in gates], 1), torch.stack([torch.cat(o) for o in outputs], 1)


def carried_fraction(net, x: torch.Tensor) -> np.ndarray:
    """Per highway layer l, the mean over samples and blocks of ∏_{k≤l} (1 − T_k): the share of the stack's
    input that reaches layer l's output along the carry path."""
    t, _ = gate_activity(net, x)
    return (1 - t.double()).cumprod(dim=1).mean(dim=(0, 2)).numpy()


def gate_statistics(net, x: torch.Tensor, y: torch.Tensor, sample: int = 0) -> dict:
    """Figure 2 and 3 as arrays: biases, mean_gate, sample_gate, sample_output (layers × width) and
    class_gate_diff (classes × layers × width)."""
    layers = highway_layers(net)
    if not layers:
        raise ValueError("the net has no highway layers")
    t, out = gate_activity(net, x)
    mean = t.mean(0)
    classes = sorted(int(c) for c in y.unique())
    return {
        "biases": torch.stack([layer.bias[layer.width:].detach().float().cpu() for layer in layers]).numpy(),
        "mean_gate": mean.numpy(),
        "sample_gate": t[sample].numpy(),
        "sample_output": out[sample].numpy(),
        "class_gate_diff": torch.stack([t[y.cpu() == c].mean(0) - mean for c in classes]).numpy(),
        "classes": np.array(classes),
    }


@torch.no_grad()
def lesion_curve(net, x: torch.Tensor, y: torch.Tensor) -> pd.DataFrame:
    """Training loss and error with the transform gates of one highway layer closed at a time; layer 0
    is the unlesioned net. Layers count from 1 at the first highway layer."""
    rows = []
    loss, acc = evaluate(net, x, y)
    rows.append({"layer": 0, "lesioned": False, "train_loss": loss, "train_error": 1 - acc})
    for i, layer in enumerate(highway_layers(net), start=1):
        saved = layer.bias.detach().clone()
        layer.bias.data[layer.width:] = float("-inf")  # σ(−inf) = 0 exactly: the layer carries its input
        try:
            loss, acc = evaluate(net, x, y)
        finally:
            layer.bias.data.copy_(saved)
        rows.append({"layer": i, "lesioned": True, "train_loss": loss, "train_error": 1 - acc})
    return pd.DataFrame(rows)


def analyze(checkpoint, out, dataset: str | None = None, max_samples: int = 10000, device=None) -> Path:
    """Gate statistics and the lesion curve of a checkpoint, written to `out/<checkpoint name>/`:
    gates.npz, lesion.csv and meta.json. Uses the checkpoint's own data set unless `dataset` is given."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    net, meta = load_checkpoint(checkpoint)
    if meta["model"] != "highway":
        raise ValueError(f"{checkpoint} is a {meta['model']} net; gate analysis needs a highway net")
    data = load_dataset(dataset or meta["dataset"], max_train=max_samples)
    x, y = data.x_train[:max_samples].to(device), data.y_train[:max_samples].to(device)
    net = net.to(device)
    target = Path(out) / Path(checkpoint).stem
    target.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(target / "gates.npz", **gate_statistics(net, x, y))
    lesion_curve(net, x, y).to_csv(target / "lesion.csv", index=False)
    (target / "meta.json").write_text(json.dumps({**meta, "analysis_samples": len(x), "analysis_dataset": data.name},
                                                 indent=1))
    return target
