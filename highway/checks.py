"""Argument checks that the modules and the model builders share, so that every one of them refuses the
same bad values with the same words, before anything is built."""
import math
import warnings


def positive_int(name: str, value) -> int:
    """`value` when it is an integer >= 1 (a bool is not); ValueError naming `name` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def odd_kernel_size(value) -> int:
    """A kernel size for 'same' padding: a positive odd integer (an even one would grow the image)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer ('same' padding), got {value!r}")
    return value


def layer_gate_bias(value) -> float:
    """A layer's transform-gate bias: a finite number. 'auto' needs a depth, which only a builder knows;
    a positive bias is allowed but warned about, since it starts the layer transforming, not carrying."""
    if isinstance(value, str) and value == "auto":
        raise ValueError("gate_bias='auto' needs the depth, which a single layer does not know: build the net "
                         "with highway_mlp / highway_stack / mnist_convnet / cifar_convnet(..., gate_bias='auto'), "
                         "or pass highway.gate_bias.gate_bias_for_depth(layers)")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"gate_bias must be a finite number, got {value!r}")
    if value > 0:
        warnings.warn(f"gate_bias={value} is positive: the layer starts by transforming its input rather than "
                      f"carrying it; the paper starts the transform gate negative (-1 to -3, or 'auto' in the "
                      f"builders)", stacklevel=3)
    return float(value)
