"""Highway networks (Srivastava, Greff & Schmidhuber, 2015) for PyTorch, with fused Triton kernels.

    from highway import HighwayLinear, HighwayConv2d, highway_mlp, plain_mlp
    from highway.functional import highway_linear, highway_conv2d
"""
from highway.conv_models import ConvNet, cifar_convnet, mnist_convnet
from highway.functional import highway_conv2d, highway_linear
from highway.models import DeepMLP, highway_mlp, plain_mlp
from highway.modules import HighwayConv2d, HighwayLinear

__all__ = [
    "ConvNet", "DeepMLP", "HighwayConv2d", "HighwayLinear", "cifar_convnet", "highway_conv2d", "highway_linear",
    "highway_mlp", "mnist_convnet", "plain_mlp",
]
__version__ = "0.1.0"
