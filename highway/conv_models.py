"""The paper's convolutional nets (NIPS 2015, sections 3.2–3.3), each with a plain twin.

The paper gives depths and parameter counts, not layouts, so the layouts below are ours, chosen from the
paper's text and FitNets (Romero et al. 2014, the nets Highway A/B are modelled on) so that the parameter
counts land where the paper's do. A plain layer (conv + relu) is used where the channel count changes, as
the paper does, highway layers everywhere else, 2×2 max-pooling between stages. A plain twin has the
same layers, every one plain (so about half the parameters in the highway layers' place).

| builder | layers | ours (highway) | paper |
|---|---|---|---|
| `mnist_convnet(width=16)` | 9 conv + softmax | 38,730 | 39 K (Table 1) |
| `mnist_convnet(width=32)` | 9 conv + softmax | 151,178 | 151 K (Table 1) |
| `cifar_convnet("A")` | 10 conv + softmax | 237,794 | ~236 K (Table 2, Highway A / Fitnet A) |
| `cifar_convnet("B")` | 18 conv + softmax | 2,262,714 | ~2.3 M (Table 2, Highway B / Fitnet B) |
| `cifar_convnet("C")` | 31 conv (3×3, 1×1 alternating) + softmax | 1,255,162 | ~1.25 M (Table 2, Highway C) |

`head="gap"` gives the Table 3 variant: the final fully connected layer becomes a 1×1 convolution to the
classes followed by global average pooling. Default gate biases follow the authors' FAQ for conv nets
(−1 near depth 10–20, −2 near 20–30, −3 near 30–40). The counts are checked in `tests/test_conv_models.py`.
"""
from torch import nn

from highway.activations import activation_module
from highway.checks import odd_kernel_size, positive_int
from highway.gate_bias import DEFAULT_KEEP, resolve_gate_bias
from highway.init import init_plain_layer_
from highway.modules import HighwayConv2d

# stages: [(width, kernel sizes per layer)], pooled 2×2 in between; then the last stage's pooling; FAQ gate bias.
ARCHITECTURES = {
    "mnist": dict(stages=[(None, [3, 3, 3])] * 3, final_pool="2x2", gate_bias=-1.0),
    "A": dict(stages=[(16, [3, 3, 3]), (32, [3, 3, 3]), (56, [3, 3, 3, 3])], final_pool="global", gate_bias=-1.0),
    "B": dict(stages=[(32, [3] * 6), (80, [3] * 6), (128, [3] * 6)], final_pool="global", gate_bias=-2.0),
    "C": dict(stages=[(32, [3, 1] * 5), (48, [3, 1] * 5), (96, [3, 1] * 5 + [3])], final_pool="global",
              gate_bias=-3.0),
}


class ConvNet(nn.Module):
    """`features` (conv layers and pooling) → `head` (logits)."""

    def __init__(self, kind: str, features: nn.Sequential, head: nn.Sequential):
        super().__init__()
        self.kind = kind
        self.features = features
        self.head = head

    def forward(self, x):
        return self.head(self.features(x))


def plain_conv(in_channels: int, out_channels: int, kernel_size: int, activation: str = "relu") -> nn.Sequential:
    """Conv ('same' padding, so the image keeps its size) + activation, with the init of `highway.init`."""
    positive_int("in_channels", in_channels)
    positive_int("out_channels", out_channels)
    odd_kernel_size(kernel_size)
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
    init_plain_layer_(conv.weight, conv.bias, activation)
    return nn.Sequential(conv, activation_module(activation))


def _features(kind, in_channels, stages, final_pool, activation, gate_bias, backend, keep=DEFAULT_KEEP):
    """Layers and pools from `stages`. A plain layer goes where the channel count changes; with
    gate_bias="auto" each run of highway layers between plain layers gets the bias for its own length."""
    plan, channels = [], in_channels  # ("plain" | "highway" | "pool", in, out, k)
    for i, (width, kernel_sizes) in enumerate(stages):
        for k in kernel_sizes:
            plan.append(("plain" if kind == "plain" or width != channels else "highway", channels, width, k))
            channels = width
        if i < len(stages) - 1 or final_pool == "2x2":
            plan.append(("pool", channels, channels, 2))
    runs, run = [], 0  # the length of the highway run each highway layer belongs to
    for step in plan + [("plain", 0, 0, 0)]:
        if step[0] == "highway":
            run += 1
        elif step[0] == "plain":
            runs.extend([run] * run)
            run = 0
    layers, run_lengths = [], iter(runs)
    for what, c_in, c_out, k in plan:
        if what == "pool":
            layers.append(nn.MaxPool2d(k))
        elif what == "plain":
            layers.append(plain_conv(c_in, c_out, k, activation))
        else:
            bias = resolve_gate_bias(gate_bias, next(run_lengths), keep)
            layers.append(HighwayConv2d(c_out, k, activation, bias, backend))
    return nn.Sequential(*layers), channels


def _check_kind(kind):
    if kind not in ("highway", "plain"):
        raise ValueError(f"kind must be 'highway' or 'plain', got {kind!r}")


def mnist_convnet(kind: str = "highway", width: int = 16, num_classes: int = 10, activation: str = "relu",
                  gate_bias: float | str = -1.0, backend: str = "auto", keep: float = DEFAULT_KEEP) -> ConvNet:
    """Table 1's 10-layer net for 1×28×28 images: a plain 3×3 conv to `width` channels, 8 highway 3×3
    layers, max-pooling after layers 3, 6 and 9 (28 → 14 → 7 → 3), then a linear softmax layer.
    `gate_bias="auto"`: the bias for one run of 8 highway layers (`highway.gate_bias`)."""
    _check_kind(kind)
    positive_int("width", width)
    positive_int("num_classes", num_classes)
    stages = [(width, ks) for _, ks in ARCHITECTURES["mnist"]["stages"]]
    features, channels = _features(kind, 1, stages, "2x2", activation, gate_bias, backend, keep)
    head = nn.Linear(channels * 3 * 3, num_classes)
    init_plain_layer_(head.weight, head.bias)
    return ConvNet(kind, features, nn.Sequential(nn.Flatten(), head))


def cifar_convnet(arch: str = "A", kind: str = "highway", num_classes: int = 10, head: str = "linear",
                  activation: str = "relu", gate_bias: float | str | None = None, backend: str = "auto",
                  keep: float = DEFAULT_KEEP) -> ConvNet:
    """Table 2's Highway A, B or C for 3×32×32 images (or its plain twin). `head="linear"`: global
    max-pooling and a linear softmax layer; `head="gap"`: Table 3's 1×1 conv and global average pooling.
    `gate_bias` None takes the architecture's FAQ default; "auto" gives each stage's run of highway layers
    the bias for its length (`highway.gate_bias`)."""
    _check_kind(kind)
    positive_int("num_classes", num_classes)
    if arch not in ("A", "B", "C"):
        raise ValueError(f"arch must be 'A', 'B' or 'C', got {arch!r}")
    if head not in ("linear", "gap"):
        raise ValueError(f"head must be 'linear' or 'gap', got {head!r}")
    spec = ARCHITECTURES[arch]
    bias = spec["gate_bias"] if gate_bias is None else gate_bias
    features, channels = _features(kind, 3, spec["stages"], spec["final_pool"], activation, bias, backend, keep)
    if head == "linear":
        linear = nn.Linear(channels, num_classes)
        init_plain_layer_(linear.weight, linear.bias)
        return ConvNet(kind, features, nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), linear))
    conv = nn.Conv2d(channels, num_classes, 1)
    init_plain_layer_(conv.weight, conv.bias)
    return ConvNet(kind, features, nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten()))


def highway_conv_stack(channels: int, depth: int, kernel_size: int = 3, activation: str = "relu",
                       gate_bias: float | str = -1.0, backend: str = "auto", keep: float = DEFAULT_KEEP) -> nn.Sequential:
    """`depth` HighwayConv2d layers of `channels` and nothing else (what the benchmarks time)."""
    positive_int("channels", channels)
    positive_int("depth", depth)
    bias = resolve_gate_bias(gate_bias, depth, keep)
    return nn.Sequential(*(HighwayConv2d(channels, kernel_size, activation, bias, backend) for _ in range(depth)))


def plain_conv_stack(channels: int, depth: int, kernel_size: int = 3, activation: str = "relu") -> nn.Sequential:
    """`depth` plain conv layers of `channels`: the plain twin of `highway_conv_stack`."""
    positive_int("channels", channels)
    positive_int("depth", depth)
    odd_kernel_size(kernel_size)
    return nn.Sequential(*(plain_conv(channels, channels, kernel_size, activation) for _ in range(depth)))
