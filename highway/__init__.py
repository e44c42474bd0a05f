"""Highway networks (Srivastava, Greff & Schmidhuber, 2015) for PyTorch, with fused Triton kernels.

    from highway import HighwayLinear, HighwayConv2d, HighwayStack, highway_mlp, plain_mlp
    from highway.functional import highway_linear, highway_conv2d

Subpackages: `highway.kernels` (Triton kernels and launchers), `highway.bench` (throughput harness and
convergence study, CLI `highway-bench`; extra `[bench]`), `highway.reports` (figures and reports; extra
`[report]`). Importing `highway` loads torch and numpy, and nothing from those subpackages.
"""
__version__ = "0.2.0"  # the one place the version is written (pyproject.toml reads it)

from highway.conv_models import ConvNet, cifar_convnet, highway_conv_stack, mnist_convnet, plain_conv_stack
from highway.functional import highway_conv2d, highway_linear
from highway.models import DeepMLP, highway_mlp, highway_stack, plain_mlp, plain_stack
from highway.modules import HighwayConv2d, HighwayLinear
from highway.stack import HighwayStack

__all__ = [
    "ConvNet", "DeepMLP", "HighwayConv2d", "HighwayLinear", "HighwayStack", "cifar_convnet", "highway_conv2d", "highway_linear",
    "highway_conv_stack", "highway_mlp", "highway_stack", "mnist_convnet", "plain_conv_stack", "plain_mlp",
    "plain_stack",
]
