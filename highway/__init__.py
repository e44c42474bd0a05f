"""Highway networks (Srivastava, Greff & Schmidhuber, 2015) for PyTorch, with fused Triton kernels.

    from highway import HighwayLinear, highway_mlp, plain_mlp
    from highway.functional import highway_linear
"""
from highway.functional import highway_linear
from highway.models import DeepMLP, highway_mlp, plain_mlp
from highway.modules import HighwayLinear

__all__ = ["DeepMLP", "HighwayLinear", "highway_linear", "highway_mlp", "plain_mlp"]
__version__ = "0.1.0"
