"""Highway networks (Srivastava, Greff & Schmidhuber, 2015) for PyTorch, with fused Triton kernels.

    from highway import HighwayLinear, HighwayConv2d, highway_mlp, plain_mlp
    from highway.functional import highway_linear, highway_conv2d
"""
from highway.conv_models import ConvNet, cifar_convnet, highway_conv_stack, mnist_convnet, plain_conv_stack
from highway.functional import highway_conv2d, highway_linear
from highway.models import DeepMLP, highway_mlp, highway_stack, plain_mlp, plain_stack
from highway.modules import HighwayConv2d, HighwayLinear

__all__ = [
    "ConvNet", "DeepMLP", "HighwayConv2d", "HighwayLinear", "cifar_convnet", "highway_conv2d", "highway_linear",
    "highway_conv_stack", "highway_mlp", "highway_stack", "mnist_convnet", "plain_conv_stack", "plain_mlp",
    "plain_stack",
]
__version__ = "0.1.0"
