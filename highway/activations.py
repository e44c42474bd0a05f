"""The block-state activations by name: as functions for the reference path, as modules for plain layers,
and the gain that keeps a layer's output variance equal to its input's at initialization."""
import math

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "gelu": F.gelu,
    "identity": lambda z: z,
}

_MODULES = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU, "identity": nn.Identity}

# He et al. (2015) for relu; 5/3 for tanh as torch.nn.init.calculate_gain; gelu behaves like relu for |z| ≳ 1.
GAINS = {"relu": math.sqrt(2.0), "tanh": 5.0 / 3.0, "sigmoid": 1.0, "gelu": math.sqrt(2.0), "identity": 1.0}


def check_activation(activation) -> str:
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}")
    return activation


def activation_module(activation: str) -> nn.Module:
    return _MODULES[check_activation(activation)]()
