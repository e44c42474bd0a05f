"""Looking inside highway nets: what their transform gates do on data (NIPS 2015, section 4).

Gate values are recomputed from each highway layer's input, T = σ(x W_Tᵀ + b_T), in float64, so the
statistics do not depend on which backend runs the net. These read a model and change nothing in it.
"""
import numpy as np
import torch
import torch.nn.functional as F

from highway.modules import HighwayLinear

GATE_BATCH = 2048  # rows per forward pass while recording gates: bounds the memory of the hooks' copies


def highway_layers(net) -> list[HighwayLinear]:
    return [m for m in net.modules() if isinstance(m, HighwayLinear)]


@torch.no_grad()
def gate_activity(net, x: torch.Tensor, batch: int = GATE_BATCH):
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
    input that reaches layer l's output along the carry path. Empty for a net without highway layers."""
    if not highway_layers(net):
        return np.zeros(0)
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
