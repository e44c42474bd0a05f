"""Initialization of plain and highway layers, as in the paper's optimization experiments.

Weights are zero-mean normal with variance gain²/fan_in (He et al. 2015; the "normalized initialization"
the paper gives plain and highway nets alike), with the gain of the activation that follows
(`highway.activations.GAINS`: √2 for relu, 5/3 for tanh), so that a plain layer's output has the variance
of its input. In a highway layer W_H gets the block activation's gain and W_T gain 1 (it feeds a sigmoid,
which is near-linear around the negative bias it starts at). Biases start at 0, except the transform-gate
bias b_T, which starts at `gate_bias` (negative: the layer starts by carrying its input).
"""
import math

import torch

from highway.activations import GAINS, check_activation


@torch.no_grad()
def init_plain_layer_(weight: torch.Tensor, bias: torch.Tensor | None, activation: str = "identity"):
    """In place, for linear `(out, in)` and conv `(out, in, k, k)` weights alike: fan_in = in·k²."""
    fan_in = weight[0].numel()
    weight.normal_(0.0, GAINS[check_activation(activation)] / math.sqrt(fan_in))
    if bias is not None:
        bias.zero_()


@torch.no_grad()
def init_highway_layer_(weight: torch.Tensor, bias: torch.Tensor, activation: str, gate_bias: float):
    """In place: W_H ~ N(0, gain²/fan_in), W_T ~ N(0, 1/fan_in), b_H = 0, b_T = gate_bias; weight is
    `(2N, N)` (dense, fan_in = N) or `(2C, C, k, k)` (conv, fan_in = C·k²)."""
    n = weight.shape[1]
    init_plain_layer_(weight[:n], bias[:n], activation)
    init_plain_layer_(weight[n:], None, "identity")
    bias[n:].fill_(gate_bias)
