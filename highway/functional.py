"""Functional API: `highway_linear` and `highway_conv2d` (x, weight, bias, activation, backend).

Every argument is checked here, before anything is launched, so that a bad call fails with a message
naming the offending shapes or values instead of a kernel error or, worse, a silently wrong result.
"""
import warnings

import torch

from highway.activations import check_activation
from highway.backends import STACK_BACKENDS, check_weight_grads, resolve_backend
from highway.population_torch import highway_linear_population_torch
from highway.reference import highway_conv2d_reference, highway_linear_reference, highway_stack_reference, \
    layer_by_layer

TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def check_same_dtype_and_device(x, weight, bias):
    """TypeError for a non-tensor, non-floating or mixed-dtype argument; ValueError for mixed devices.

    The common case returns after a few attribute reads: this runs once per layer call, and a deep stack
    of small layers on a GPU is bound by exactly this kind of Python time."""
    tensor = torch.Tensor
    if (isinstance(x, tensor) and isinstance(weight, tensor) and isinstance(bias, tensor)
            and x.dtype == weight.dtype == bias.dtype and x.device == weight.device == bias.device
            and x.is_floating_point()):
        return
    tensors = {"x": x, "weight": weight, "bias": bias}
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    dtypes = {name: t.dtype for name, t in tensors.items()}
    if len(set(dtypes.values())) > 1:
        raise TypeError(f"dtypes must match, got {dtypes}")
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        raise ValueError(f"tensors must be on one device, got {devices}")


def autocast_inputs(x, weight, bias):
    """x, weight and bias in the autocast dtype when autocast is on for x's device (as nn.Linear and
    nn.Conv2d take theirs), else as they are."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        return x, weight, bias
    device_type = x.device.type
    if not torch.is_autocast_enabled(device_type):
        return x, weight, bias
    dtype = torch.get_autocast_dtype(device_type)
    cast = [t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t for t in (x, weight, bias)]
    return tuple(cast)


def under_functorch(*tensors) -> bool:
    """True inside torch.func transforms (vmap's batched tensors, grad's tracking tensors): our custom ops have
    no batching or functorch rules, so the reference path, made of vmappable torch ops, runs there."""
    if torch.compiler.is_compiling():  # dynamo sees fake tensors, and handles transforms itself
        return False
    return any(torch._C._functorch.is_functorch_wrapped_tensor(t) for t in tensors)


def needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def check_triton_dtype(dtype: torch.dtype):
    if dtype not in TRITON_DTYPES:
        raise TypeError(f"backend='triton' supports {[str(d) for d in TRITON_DTYPES]}, got {dtype}")


def highway_linear(x, weight, bias, activation: str = "relu", backend: str = "auto", *, recompute: bool = False):
    """Highway layer `act(x W_Hᵀ + b_H)·T + x·(1 − T)` with `T = σ(x W_Tᵀ + b_T)`.

    Args:
        x: `(..., N)`, any leading dims and strides.
        weight: `(2N, N)` in `nn.Linear` convention; rows `[0, N)` are W_H, rows `[N, 2N)` are W_T.
        bias: `(2N,)`; `bias[:N]` is b_H, `bias[N:]` is b_T.
        activation: "relu", "tanh", "sigmoid", "gelu" or "identity" (the block state's nonlinearity).
        backend: "torch" (eager reference), "triton" (fused kernels; CPU tensors only under
            TRITON_INTERPRET=1), or "auto" (triton for CUDA tensors when Triton is usable, else torch).
        recompute: triton backend only: keep only x for backward and recompute the gates there.
    Returns:
        A tensor of x's shape and dtype, differentiable in x, weight and bias on every backend (twice
        over, too: second derivatives run through the reference).

    Under `torch.autocast` x, weight and bias are cast to the autocast dtype first, as `nn.Linear` casts
    its own. Under `torch.func` transforms (vmap, grad, jacrev, ...) the reference path runs, on any backend.
    """
    x, weight, bias = autocast_inputs(x, weight, bias)
    check_same_dtype_and_device(x, weight, bias)
    if x.dim() < 1:
        raise ValueError("x must have at least one dimension (..., N), got a 0-d tensor")
    n = x.shape[-1]
    if n == 0:
        raise ValueError(f"x must have at least one feature (..., N) with N >= 1, got shape {tuple(x.shape)}")
    if weight.shape != (2 * n, n):
        raise ValueError(
            f"weight must have shape (2N, N) = ({2 * n}, {n}) for x of shape {tuple(x.shape)} (N = {n}), "
            f"got {tuple(weight.shape)}"
        )
    if bias.shape != (2 * n,):
        raise ValueError(f"bias must have shape (2N,) = ({2 * n},) for N = {n}, got {tuple(bias.shape)}")
    check_activation(activation)
    if resolve_backend(backend, x.device) == "torch" or under_functorch(x, weight, bias):
        return highway_linear_reference(x, weight, bias, activation)

    check_triton_dtype(x.dtype)
    from highway.ops import linear_fwd

    store = needs_grad(x, weight, bias) and not recompute
    y, _ = linear_fwd(x.reshape(-1, n), weight, bias, activation, store)
    return y.reshape(x.shape)


def highway_linear_population(x, weight, bias, activation: str = "relu", backend: str = "auto"):
    """P highway layers of one width at once, one per trial of a population (`highway.population`):
    y[p] = highway_linear(x[p], weight[p], bias[p]).

    Args:
        x: `(P, B, N)`, any strides; weight: `(P, 2N, N)`; bias: `(P, 2N)`.
        activation, backend: as for `highway_linear`. On triton, one launch serves every trial (the fused
            kernels' grid runs over the trials); on torch, one batched GEMM (`baddbmm`) and a hand-written
            backward (`highway.population_torch`).
    """
    x, weight, bias = autocast_inputs(x, weight, bias)
    check_same_dtype_and_device(x, weight, bias)
    if x.dim() != 3 or x.shape[-1] == 0:
        raise ValueError(f"x must be (P, B, N) with N >= 1, got shape {tuple(x.shape)}")
    p, _, n = x.shape
    if weight.shape != (p, 2 * n, n):
        raise ValueError(f"weight must have shape (P, 2N, N) = ({p}, {2 * n}, {n}) for x of shape {tuple(x.shape)}, "
                         f"got {tuple(weight.shape)}")
    if bias.shape != (p, 2 * n):
        raise ValueError(f"bias must have shape (P, 2N) = ({p}, {2 * n}), got {tuple(bias.shape)}")
    check_activation(activation)
    if under_functorch(x, weight, bias):
        return highway_linear_reference(x, weight, bias, activation)
    if resolve_backend(backend, x.device) == "torch":
        return highway_linear_population_torch(x, weight, bias, activation)

    check_triton_dtype(x.dtype)
    from highway.ops import linear_fwd

    y, _ = linear_fwd(x, weight, bias, activation, needs_grad(x, weight, bias))
    return y


_FELL_BACK: set = set()  # (width, dtype, reason)s whose "auto" fallback to the per-layer kernels has been said


def stack_backend(backend: str, width: int, device: torch.device, dtype: torch.dtype = torch.float32, *,
                  depth: int = 0, layer_stride: int = 0) -> str:
    """What runs a stack: "torch", "triton" (a launch per layer) or "triton-stack" (all layers in one).
    "auto" takes triton-stack on a GPU where the stack fits on chip (widths up to 128, within the GPU's
    shared memory, and `depth` layers `layer_stride` values apart within its kernels' int32 offsets) and the
    per-layer kernels elsewhere, said once with a warning; a forced "triton-stack" that does not fit is a
    ValueError (never a wrong answer or a launch failure)."""
    if backend not in STACK_BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {list(STACK_BACKENDS)}")
    wants_stack = backend == "triton-stack"
    resolved = resolve_backend("triton" if wants_stack else backend, device, asked=backend)
    if resolved == "torch":
        return "torch"
    from highway.kernels.highway_stack import why_the_stack_cannot_index, why_the_stack_does_not_fit

    reason = why_the_stack_does_not_fit(width, dtype, device) or why_the_stack_cannot_index(width, depth, layer_stride)
    if reason is None:
        return "triton-stack" if wants_stack or backend == "auto" else "triton"
    if wants_stack:
        raise ValueError(f"backend='triton-stack' cannot hold this stack: {reason}; use backend='triton' "
                         f"(a launch per layer) or 'auto'")
    if backend == "auto" and (width, dtype, reason) not in _FELL_BACK:
        _FELL_BACK.add((width, dtype, reason))
        warnings.warn(f"HighwayStack of width {width} in {dtype}: the depth-fused kernels cannot hold it "
                      f"({reason}); running the per-layer triton kernels, a launch per layer", stacklevel=3)
    return "triton"


def highway_linear_stack(x, weight, bias, activation: str = "relu", backend: str = "auto", *,
                         recompute: bool = False, weight_grads: str = "gemm"):
    """`depth` highway layers of one width applied in turn: x (..., N), weight (depth, 2N, N) with layer l's
    rows [W_H; W_T], bias (depth, 2N). With a leading trial axis, a population of stacks: x (P, B, N),
    weight (P, depth, 2N, N), bias (P, depth, 2N), trial p's rows through trial p's stack.

    backend: "torch", "triton" (the per-layer fused kernels, a launch per layer), "triton-stack" (every
    layer in one launch forward and one backward; widths up to 128) or "auto" (see `stack_backend`).
    recompute: triton-stack only: keep every STACK_RECOMPUTE_EVERY-th layer's input (32) for backward
    instead of each layer's, and recompute the rest there, a chunk at a time: one more forward pass, a 32nd
    of the saved activations.
    weight_grads: triton-stack only: how its backward forms dW and db, "gemm" (each layer's dZ written out
    for one batched GEMM per chunk of layers) or "atomic" (added up in the kernel; no dZ is written).
    Autocast and `torch.func` transforms as for `highway_linear`.
    """
    x, weight, bias = autocast_inputs(x, weight, bias)
    check_same_dtype_and_device(x, weight, bias)
    population = weight.dim() == 4
    if weight.dim() not in (3, 4) or weight.shape[-2] != 2 * weight.shape[-1]:
        raise ValueError(f"weight must have shape (depth, 2N, N), or (P, depth, 2N, N) for a population, got "
                         f"{tuple(weight.shape)}")
    n, depth = weight.shape[-1], weight.shape[-3]
    if x.dim() < 1 or x.shape[-1] != n or (population and (x.dim() != 3 or x.shape[0] != weight.shape[0])):
        want = f"({weight.shape[0]}, B, {n})" if population else f"(..., {n})"
        raise ValueError(f"x must have shape {want} for weight of shape {tuple(weight.shape)}, got {tuple(x.shape)}")
    if bias.shape != (*weight.shape[:-2], 2 * n):
        raise ValueError(f"bias must have shape {(*weight.shape[:-2], 2 * n)} for weight of shape "
                         f"{tuple(weight.shape)}, got {tuple(bias.shape)}")
    check_activation(activation)
    check_weight_grads(weight_grads)
    resolved = stack_backend(backend, n, x.device, x.dtype, depth=depth, layer_stride=weight.stride(-3))
    if under_functorch(x, weight, bias) or depth == 0 or (resolved == "torch" and not population):
        return highway_stack_reference(x, weight, bias, activation)
    if resolved == "torch":
        return layer_by_layer(highway_linear_population_torch, x, weight, bias, activation)
    check_triton_dtype(x.dtype)
    if resolved == "triton":
        layer = highway_linear_population if population else highway_linear
        return layer_by_layer(lambda *args: layer(*args, "triton"), x, weight, bias, activation)
    from highway.kernels.highway_stack import most_stack_rows, saved_every
    from highway.ops import stack_fwd

    rows = x if population else x.reshape(-1, n)
    save_every = saved_every(needs_grad(x, weight, bias), recompute)
    most = most_stack_rows(depth, n, save_every, weight_grads, x.dtype)
    if most is None or rows.shape[-2] <= most:
        y, _ = stack_fwd(rows, weight, bias, activation, save_every, weight_grads)
    else:  # past the kernels' int32 offsets (from 16,778 rows of 1000 layers of width 128) the batch runs in parts
        # that stay within them, and autograd adds up their dW and db
        y = torch.cat([stack_fwd(part, weight, bias, activation, save_every, weight_grads)[0]
                       for part in rows.split(most, dim=-2)], dim=-2)
    return y.reshape(x.shape)


def highway_conv2d(x, weight, bias, activation: str = "relu", backend: str = "auto"):
    """Convolutional highway layer `act(conv(x, W_H) + b_H)·T + x·(1 − T)`, `T = σ(conv(x, W_T) + b_T)`.

    Args:
        x: `(B, C, H, W)`, NCHW or channels_last.
        weight: `(2C, C, k, k)` with odd k; output channels `[0, C)` are W_H, `[C, 2C)` are W_T.
        bias: `(2C,)`.
        activation, backend: as for `highway_linear`.
    Stride 1 and "same" zero padding (k // 2), so y has x's shape, dtype (and, on triton, memory layout).
    Autocast and `torch.func` transforms as for `highway_linear`.
    """
    x, weight, bias = autocast_inputs(x, weight, bias)
    check_same_dtype_and_device(x, weight, bias)
    if x.dim() != 4:
        raise ValueError(f"x must be 4-D (B, C, H, W), got shape {tuple(x.shape)}")
    c = x.shape[1]
    if c == 0 or x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"x must have at least one channel and one pixel (B, C >= 1, H >= 1, W >= 1), got shape "
                         f"{tuple(x.shape)}; an empty batch (B = 0) is fine")
    if weight.dim() != 4 or weight.shape[:2] != (2 * c, c) or weight.shape[2] != weight.shape[3]:
        raise ValueError(
            f"weight must have shape (2C, C, k, k) = ({2 * c}, {c}, k, k) for x with C = {c} channels, "
            f"got {tuple(weight.shape)}"
        )
    if weight.shape[-1] % 2 == 0:
        raise ValueError(f"kernel size must be odd for 'same' padding, got k = {weight.shape[-1]}")
    if bias.shape != (2 * c,):
        raise ValueError(f"bias must have shape (2C,) = ({2 * c},) for C = {c}, got {tuple(bias.shape)}")
    check_activation(activation)
    if resolve_backend(backend, x.device) == "torch" or under_functorch(x, weight, bias):
        return highway_conv2d_reference(x, weight, bias, activation)

    check_triton_dtype(x.dtype)
    from highway.ops import conv2d_fwd

    return conv2d_fwd(x, weight, bias, activation)
