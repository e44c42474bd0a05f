"""Block-state activations for the highway epilogues, with their derivatives, in fp32 registers.

The code of each activation is a `tl.constexpr`, so every kernel is specialized to one activation and
the branch below costs nothing at run time. The derivative is returned with the value because both
come from the same intermediate (tanh and sigmoid reuse the output; gelu reuses erf).
"""
import triton
import triton.language as tl

ACTIVATION_CODES = {"relu": 0, "tanh": 1, "sigmoid": 2, "gelu": 3, "identity": 4}

# Globals read inside @triton.jit must be tl.constexpr: the compiler refuses a plain float (the interpreter
# does not, which is why `highway-bench compile-check` exists).
_INV_SQRT2 = tl.constexpr(0.7071067811865476)
_INV_SQRT_2PI = tl.constexpr(0.3989422804014327)


@triton.jit
def activation_fwd(z, ACTIVATION: tl.constexpr):
    """act(z) for a fp32 tile. NaN propagates (relu keeps z unless z < 0, as torch.relu does)."""
    if ACTIVATION == 0:
        a = tl.where(z < 0.0, 0.0, z)
    elif ACTIVATION == 1:
        # tanh(z) = 2σ(2z) − 1: the interpreter and every GPU backend have σ; not all have tanh.
        a = 2.0 * tl.sigmoid(2.0 * z) - 1.0
    elif ACTIVATION == 2:
        a = tl.sigmoid(z)
    elif ACTIVATION == 3:
        a = 0.5 * z * (1.0 + tl.math.erf(z * _INV_SQRT2))
    else:
        a = z
    return a


@triton.jit
def activation_fwd_bwd(z, ACTIVATION: tl.constexpr):
    """(act(z), act'(z)) for a fp32 tile; relu'(0) = 0 and relu'(NaN) = 1, as PyTorch's relu backward
    (a gradient passes unless the output is <= 0)."""
    if ACTIVATION == 0:
        a = tl.where(z < 0.0, 0.0, z)
        da = tl.where(z <= 0.0, 0.0, 1.0)
    elif ACTIVATION == 1:
        a = 2.0 * tl.sigmoid(2.0 * z) - 1.0
        da = 1.0 - a * a
    elif ACTIVATION == 2:
        a = tl.sigmoid(z)
        da = a * (1.0 - a)
    elif ACTIVATION == 3:
        cdf = 0.5 * (1.0 + tl.math.erf(z * _INV_SQRT2))
        a = z * cdf
        da = cdf + z * _INV_SQRT_2PI * tl.exp(-0.5 * z * z)
    else:
        a = z
        da = tl.full(z.shape, 1.0, tl.float32)
    return a, da
