"""`torch.nn` highway layers. They hold parameters and call `highway.functional`; no kernel code here."""
import math

import torch
from torch import nn

from highway.activations import check_activation
from highway.backends import BACKENDS
from highway.functional import highway_linear
from highway.init import init_highway_linear_


class HighwayLinear(nn.Module):
    """Dense highway layer y = H(x)·T(x) + x·(1 − T(x)) of `width` blocks.

    Parameters `weight (2·width, width)` = [W_H; W_T] and `bias (2·width,)` = [b_H; b_T], the same on every
    backend, so a state_dict moves freely between them. `gate_bias` (negative) starts b_T; see
    `highway.init` for the weight initialization.
    """

    def __init__(self, width: int, activation: str = "relu", gate_bias: float = -2.0, backend: str = "auto",
                 device=None, dtype=None, *, recompute: bool = False):
        super().__init__()
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer, got {width!r}")
        if not isinstance(gate_bias, (int, float)) or not math.isfinite(gate_bias):
            raise ValueError(f"gate_bias must be a finite number, got {gate_bias!r}")
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {list(BACKENDS)}")
        self.width = width
        self.activation = check_activation(activation)
        self.gate_bias = float(gate_bias)
        self.backend = backend
        self.recompute = recompute
        self.weight = nn.Parameter(torch.empty(2 * width, width, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(2 * width, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self):
        init_highway_linear_(self.weight, self.bias, self.activation, self.gate_bias)

    def forward(self, x):
        return highway_linear(x, self.weight, self.bias, self.activation, self.backend, recompute=self.recompute)

    def extra_repr(self):
        return f"width={self.width}, activation={self.activation!r}, gate_bias={self.gate_bias}, backend={self.backend!r}"
