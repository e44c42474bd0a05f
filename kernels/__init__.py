"""Triton kernels for highway layers and their launchers (`highway.kernels`). Set TRITON_INTERPRET, if at
all, before this package is first imported.

Each module holds the kernels of one layer and their launchers; nothing here is an `nn.Module` or an
autograd formula (the custom ops that wrap these launchers are in `highway.ops`).
"""
from highway.kernels.activations import ACTIVATION_CODES
from highway.kernels.highway_conv2d import highway_conv2d_bwd, highway_conv2d_fwd
from highway.kernels.highway_linear import highway_linear_bwd, highway_linear_fwd
from highway.kernels.launch import FP32_DOTS, INTERPRET, get_fp32_dots, set_fp32_dots

__all__ = [
    "ACTIVATION_CODES", "FP32_DOTS", "INTERPRET", "get_fp32_dots", "highway_conv2d_bwd", "highway_conv2d_fwd",
    "highway_linear_bwd", "highway_linear_fwd", "set_fp32_dots",
]
