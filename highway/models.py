"""The paper's thin, deep fully connected nets (NIPS 2015, section 3.1), highway and plain.

A plain `Linear(in_features, width)` + activation changes the dimension, then `depth − 1` highway (or
plain) layers of `width`, then `Linear(width, num_classes)` gives logits (softmax lives in the loss).
`depth` counts hidden layers: `depth=100` is the paper's 100-layer net. Its comparison used width 50 for
highway and 71 for plain nets, about 5000 parameters per layer each.
"""
from torch import nn

from highway.activations import activation_module
from highway.checks import positive_int
from highway.gate_bias import DEFAULT_KEEP, resolve_gate_bias
from highway.init import init_plain_layer_
from highway.modules import HighwayLinear
from highway.stack import HighwayStack


class DeepMLP(nn.Module):
    """stem (flatten, plain layer) → `layers` (a ModuleList of depth − 1 hidden layers) → head (logits)."""

    def __init__(self, kind: str, stem: nn.Sequential, layers: list[nn.Module], head: nn.Linear):
        super().__init__()
        self.kind = kind
        self.stem = stem
        self.layers = nn.ModuleList(layers)
        self.head = head

    @property
    def depth(self) -> int:
        return 1 + sum(getattr(layer, "depth", 1) for layer in self.layers)  # a HighwayStack counts its layers

    def forward(self, x):
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


def plain_layer(in_features: int, out_features: int, activation: str) -> nn.Sequential:
    """Linear + activation with the variance-preserving init of `highway.init`."""
    linear = nn.Linear(in_features, out_features)
    init_plain_layer_(linear.weight, linear.bias, activation)
    return nn.Sequential(linear, activation_module(activation))


def _check_sizes(**sizes):
    for name, value in sizes.items():
        positive_int(name, value)


def _mlp(kind, in_features, width, depth, num_classes, activation, hidden):
    _check_sizes(in_features=in_features, width=width, depth=depth, num_classes=num_classes)
    stem = nn.Sequential(nn.Flatten(), *plain_layer(in_features, width, activation))
    head = nn.Linear(width, num_classes)
    init_plain_layer_(head.weight, head.bias)
    return DeepMLP(kind, stem, [hidden() for _ in range(depth - 1)], head)


def highway_mlp(in_features: int, width: int, depth: int, num_classes: int, activation: str = "relu",
                gate_bias: float | str = -2.0, backend: str = "auto", keep: float = DEFAULT_KEEP,
                stack: bool = False) -> DeepMLP:
    """The paper's highway net: plain stem, `depth − 1` `HighwayLinear(width)` layers, linear head.

    `gate_bias="auto"` picks the bias from the depth so that a fraction `keep` of the stem's output crosses
    all depth − 1 highway layers at initialization (`highway.gate_bias`). With `stack=True` the highway
    layers are one `HighwayStack` (backend "triton-stack" runs them all in one launch)."""
    _check_sizes(in_features=in_features, width=width, depth=depth, num_classes=num_classes)
    bias = resolve_gate_bias(gate_bias, depth - 1, keep)
    if stack:
        if depth < 2:
            raise ValueError(f"stack=True needs depth >= 2 (depth counts the plain first layer), got {depth}")
        net = _mlp("highway", in_features, width, 1, num_classes, activation, None)
        net.layers.append(HighwayStack(width, depth - 1, activation, bias, backend))
        return net
    return _mlp("highway", in_features, width, depth, num_classes, activation,
                lambda: HighwayLinear(width, activation, bias, backend))


def plain_mlp(in_features: int, width: int, depth: int, num_classes: int, activation: str = "relu") -> DeepMLP:
    """The paper's plain net: `depth` Linear + activation layers of `width`, then a linear head."""
    return _mlp("plain", in_features, width, depth, num_classes, activation,
                lambda: plain_layer(width, width, activation))


def highway_stack(width: int, depth: int, activation: str = "relu", gate_bias: float | str = -2.0,
                  backend: str = "auto", keep: float = DEFAULT_KEEP) -> nn.Sequential:
    """`depth` HighwayLinear layers of `width` and nothing else (what the benchmarks time); "auto" gate bias
    as in `highway_mlp`, for `depth` layers."""
    _check_sizes(width=width, depth=depth)
    bias = resolve_gate_bias(gate_bias, depth, keep)
    return nn.Sequential(*(HighwayLinear(width, activation, bias, backend) for _ in range(depth)))


def plain_stack(width: int, depth: int, activation: str = "relu") -> nn.Sequential:
    """`depth` plain Linear + activation layers of `width`: the plain twin of `highway_stack`."""
    _check_sizes(width=width, depth=depth)
    return nn.Sequential(*(plain_layer(width, width, activation) for _ in range(depth)))
