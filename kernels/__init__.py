"""Triton kernels for highway layers. Import this package after setting TRITON_INTERPRET, if at all.

Each module holds the kernels of one layer and their launchers; nothing here is an `nn.Module` or an
autograd.Function (those are in the `highway` package).
"""
from kernels.activations import ACTIVATION_CODES
from kernels.highway_conv2d import highway_conv2d_bwd, highway_conv2d_fwd
from kernels.highway_linear import highway_linear_bwd, highway_linear_fwd
from kernels.tuning import INTERPRET

__all__ = [
    "ACTIVATION_CODES", "INTERPRET", "highway_conv2d_bwd", "highway_conv2d_fwd", "highway_linear_bwd",
    "highway_linear_fwd",
]
