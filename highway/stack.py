"""`HighwayStack`: `depth` highway layers of one width as one module, so that a narrow, deep stack can run
as one kernel launch forward and one backward (`backend="triton-stack"`), not one (or four) per layer.

    stack = HighwayStack(50, 1000, activation="relu", gate_bias="auto")   # weight (1000, 100, 50)
    y = stack(x)                                                           # x (..., 50)
    layers = stack.to_layers()                                             # nn.Sequential of HighwayLinear
    same = HighwayStack.from_layers(layers)                                # and back, identical outputs
"""
import torch
from torch import nn

from highway.activations import check_activation
from highway.backends import STACK_BACKENDS, check_weight_grads
from highway.checks import layer_gate_bias, positive_int
from highway.functional import highway_linear_stack
from highway.gate_bias import DEFAULT_KEEP, resolve_gate_bias
from highway.init import init_highway_layer_
from highway.modules import HighwayLinear


class HighwayStack(nn.Module):
    """`depth` `HighwayLinear(width)` layers applied in turn, with parameters `weight (depth, 2·width, width)`
    (layer l's rows [W_H; W_T]) and `bias (depth, 2·width)`.

    backend: "triton-stack" (all layers in one launch; widths up to 128), "triton" (a launch per layer),
    "torch", or "auto" (triton-stack on a GPU where the width fits, the per-layer kernels past it, torch on
    a CPU). `gate_bias="auto"` picks the bias from the depth, as `highway_mlp` does. `recompute=True`
    (triton-stack): save a 32nd of the layer inputs for backward and recompute the rest there.
    `weight_grads` (triton-stack): how the backward forms dW and db, "gemm" or "atomic"
    (`highway_linear_stack`).
    """

    def __init__(self, width: int, depth: int, activation: str = "relu", gate_bias: float | str = -2.0,
                 backend: str = "auto", device=None, dtype=None, keep: float = DEFAULT_KEEP, *,
                 recompute: bool = False, weight_grads: str = "gemm"):
        super().__init__()
        self.width = positive_int("width", width)
        self.depth = positive_int("depth", depth)
        self.activation = check_activation(activation)
        if backend not in STACK_BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {list(STACK_BACKENDS)}")
        self.backend = backend
        self.recompute = recompute
        self.weight_grads = check_weight_grads(weight_grads)
        self.gate_bias = layer_gate_bias(resolve_gate_bias(gate_bias, depth, keep))
        self.weight = nn.Parameter(torch.empty(depth, 2 * width, width, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(depth, 2 * width, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self):
        for layer in range(self.depth):  # each layer as HighwayLinear initializes its own
            init_highway_layer_(self.weight.data[layer], self.bias.data[layer], self.activation, self.gate_bias)

    def forward(self, x):
        return highway_linear_stack(x, self.weight, self.bias, self.activation, self.backend, recompute=self.recompute,
                                    weight_grads=self.weight_grads)

    @classmethod
    def from_layers(cls, layers, backend: str | None = None) -> "HighwayStack":
        """One stack holding copies of the weights of `layers` (HighwayLinear of one width and activation,
        in order); its backend is `backend`, or "auto" when the layers' is, else the layers' own."""
        layers = list(layers)
        if not layers:
            raise ValueError("from_layers needs at least one HighwayLinear layer")
        first = layers[0]
        for i, layer in enumerate(layers):
            if not isinstance(layer, HighwayLinear):
                raise TypeError(f"layer {i} is a {type(layer).__name__}, not a HighwayLinear")
            if (layer.width, layer.activation) != (first.width, first.activation):
                raise ValueError(f"layer {i} has width {layer.width} and activation {layer.activation!r}; layer 0 "
                                 f"has width {first.width} and {first.activation!r}: a stack has one of each")
        stack = cls(first.width, len(layers), first.activation, first.gate_bias, backend or first.backend,
                    device=first.weight.device, dtype=first.weight.dtype)
        with torch.no_grad():
            stack.weight.copy_(torch.stack([layer.weight for layer in layers]))
            stack.bias.copy_(torch.stack([layer.bias for layer in layers]))
        return stack

    def to_layers(self) -> nn.Sequential:
        """The same layers as an `nn.Sequential` of `HighwayLinear`, holding copies of the weights (on the
        per-layer kernels where this stack is on "triton-stack")."""
        backend = "triton" if self.backend == "triton-stack" else self.backend
        layers = []
        for layer in range(self.depth):
            linear = HighwayLinear(self.width, self.activation, self.gate_bias, backend, device=self.weight.device,
                                   dtype=self.weight.dtype)
            with torch.no_grad():
                linear.weight.copy_(self.weight[layer])
                linear.bias.copy_(self.bias[layer])
            layers.append(linear)
        return nn.Sequential(*layers)

    def extra_repr(self):
        return (f"width={self.width}, depth={self.depth}, activation={self.activation!r}, "
                f"gate_bias={self.gate_bias}, backend={self.backend!r}" + (", recompute=True" if self.recompute else "")
                + (f", weight_grads={self.weight_grads!r}" if self.weight_grads != "gemm" else ""))
