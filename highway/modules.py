"""`torch.nn` highway layers. They hold parameters and call `highway.functional`; no kernel code here."""
import torch
from torch import nn

from highway.activations import check_activation
from highway.backends import BACKENDS
from highway.checks import layer_gate_bias, odd_kernel_size, positive_int
from highway.functional import highway_conv2d, highway_linear
from highway.init import init_highway_layer_


def _check_backend(backend):
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {list(BACKENDS)}")


class HighwayLinear(nn.Module):
    """Dense highway layer y = H(x)·T(x) + x·(1 − T(x)) of `width` blocks.

    Parameters `weight (2·width, width)` = [W_H; W_T] and `bias (2·width,)` = [b_H; b_T], the same on every
    backend, so a state_dict moves freely between them. `gate_bias` (negative) starts b_T; see
    `highway.init` for the weight initialization.
    """

    def __init__(self, width: int, activation: str = "relu", gate_bias: float = -2.0, backend: str = "auto",
                 device=None, dtype=None, *, recompute: bool = False):
        super().__init__()
        self.width = positive_int("width", width)
        self.gate_bias = layer_gate_bias(gate_bias)
        _check_backend(backend)
        self.activation = check_activation(activation)
        self.backend = backend
        self.recompute = recompute
        self.weight = nn.Parameter(torch.empty(2 * width, width, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(2 * width, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self):
        init_highway_layer_(self.weight, self.bias, self.activation, self.gate_bias)

    def forward(self, x):
        return highway_linear(x, self.weight, self.bias, self.activation, self.backend, recompute=self.recompute)

    def extra_repr(self):
        return f"width={self.width}, activation={self.activation!r}, gate_bias={self.gate_bias}, backend={self.backend!r}"


class HighwayConv2d(nn.Module):
    """Convolutional highway layer of `channels` blocks: H and T are "same"-padded stride-1 convolutions
    with one receptive field, `kernel_size` (odd). Parameters `weight (2C, C, k, k)` = [W_H; W_T] and
    `bias (2C,)` = [b_H; b_T]. The FAQ's guide for `gate_bias` in conv nets: −1 near depth 10–20, −2 near
    20–30, −3 near 30–40."""

    def __init__(self, channels: int, kernel_size: int = 3, activation: str = "relu", gate_bias: float = -1.0,
                 backend: str = "auto", device=None, dtype=None):
        super().__init__()
        self.channels = positive_int("channels", channels)
        self.kernel_size = odd_kernel_size(kernel_size)
        self.gate_bias = layer_gate_bias(gate_bias)
        _check_backend(backend)
        self.activation = check_activation(activation)
        self.backend = backend
        self.weight = nn.Parameter(torch.empty(2 * channels, channels, kernel_size, kernel_size, device=device,
                                               dtype=dtype))
        self.bias = nn.Parameter(torch.empty(2 * channels, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self):
        init_highway_layer_(self.weight, self.bias, self.activation, self.gate_bias)

    def forward(self, x):
        return highway_conv2d(x, self.weight, self.bias, self.activation, self.backend)

    def extra_repr(self):
        return (f"channels={self.channels}, kernel_size={self.kernel_size}, activation={self.activation!r}, "
                f"gate_bias={self.gate_bias}, backend={self.backend!r}")
