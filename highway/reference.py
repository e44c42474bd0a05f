"""Pure-PyTorch eager reference of the highway layers: the ground truth every backend is tested against."""
import torch.nn.functional as F
import torch

from highway.activations import ACTIVATIONS


def highway_linear_reference(x, weight, bias, activation: str = "relu"):
    """y = act(x W_Hᵀ + b_H)·T + x·(1 − T), T = σ(x W_Tᵀ + b_T), with W = [W_H; W_T] of shape (2N, N)."""
    n = x.shape[-1]
    z = F.linear(x, weight, bias)
    h = ACTIVATIONS[activation](z[..., :n])
    t = torch.sigmoid(z[..., n:])
    return h * t + x * (1 - t)


def highway_conv2d_reference(x, weight, bias, activation: str = "relu"):
    """The convolutional highway layer: H and T from "same"-padded stride-1 convolutions of x."""
    c = x.shape[1]
    z = F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2)
    h = ACTIVATIONS[activation](z[:, :c])
    t = torch.sigmoid(z[:, c:])
    return h * t + x * (1 - t)
