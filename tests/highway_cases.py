"""Inputs and float64 reference results shared by the layer tests."""
import math

import torch

from highway.functional import highway_linear
from highway.reference import highway_linear_reference

ACTIVATION_NAMES = ["relu", "tanh", "sigmoid", "gelu", "identity"]


def linear_inputs(m, n, dtype, device, seed=0, lead=()):
    """x (*lead, m, n), weight (2n, n), bias (2n,) with a negative gate bias, as a highway layer starts."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*lead, m, n, generator=g)
    w = torch.randn(2 * n, n, generator=g) / math.sqrt(n)
    b = 0.5 * torch.randn(2 * n, generator=g)
    b[n:] -= 1.5
    return tuple(t.to(device=device, dtype=dtype) for t in (x, w, b))


def tf32(t: torch.Tensor, rounding: str = "nearest") -> torch.Tensor:
    """fp32 `t` with TF32's 10 mantissa bits: "nearest" (ties away from zero) or "truncate" (toward zero)."""
    bits = t.contiguous().view(torch.int32)
    if rounding == "nearest":
        bits = bits + 0x1000
    return (bits & ~0x1FFF).view(torch.float32)


def stack_inputs(depth, n, device, rows=32):
    """x (rows, n), weight (depth, 2n, n), bias (depth, 2n) with gate bias −2, and dy, as a stack starts."""
    g = torch.Generator().manual_seed(depth)
    x, dy = torch.randn(rows, n, generator=g), torch.randn(rows, n, generator=g)
    w = torch.randn(depth, 2 * n, n, generator=g) / n ** 0.5
    b = torch.zeros(depth, 2 * n)
    b[:, n:] = -2.0
    return [t.to(device) for t in (x, w, b, dy)]


def output_and_grads_on_cpu(fn, tensors, dy):
    """[fn's output, the gradients of <output, dy> in each of `tensors`], on the CPU."""
    tensors = [t.detach().clone().requires_grad_() for t in tensors]
    y = fn(*tensors)
    y.backward(dy)
    return [y.detach().cpu(), *(t.grad.cpu() for t in tensors)]


def run_with_grads(fn, tensors, dy, dtype=None):
    """fn(*tensors) and the gradients of <fn, dy> for leaf copies of `tensors` cast to `dtype`."""
    leaves = [t.detach().to(dtype or t.dtype).requires_grad_() for t in tensors]  # .to keeps memory format
    y = fn(*leaves)
    y.backward(dy.to(y.dtype))
    return y.detach(), [leaf.grad for leaf in leaves]


def reference_and_triton(x, w, b, activation, dy, **kwargs):
    """(reference y and grads in float64 from the same rounded inputs, triton y and grads)."""
    ref = run_with_grads(lambda *t: highway_linear_reference(*t, activation), (x, w, b), dy, torch.float64)
    tri = run_with_grads(lambda *t: highway_linear(*t, activation, backend="triton", **kwargs), (x, w, b), dy)
    return ref, tri


def conv_inputs(b, c, h, w, k, dtype, device, seed=0, channels_last=False):
    """x (b, c, h, w), weight (2c, c, k, k), bias (2c,) with a negative gate bias."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, h, w, generator=g)
    wt = torch.randn(2 * c, c, k, k, generator=g) / math.sqrt(c * k * k)
    bias = 0.5 * torch.randn(2 * c, generator=g)
    bias[c:] -= 1.0
    x = x.to(device=device, dtype=dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    return x, wt.to(device=device, dtype=dtype), bias.to(device=device, dtype=dtype)


def conv_reference_and_triton(x, w, b, activation, dy):
    from highway.functional import highway_conv2d
    from highway.reference import highway_conv2d_reference

    ref = run_with_grads(lambda *t: highway_conv2d_reference(*t, activation), (x, w, b), dy, torch.float64)
    tri = run_with_grads(lambda *t: highway_conv2d(*t, activation, backend="triton"), (x, w, b), dy)
    return ref, tri


def sgd_steps(net, x, y, steps, lr, batch=64, seed=0):
    """`steps` SGD (momentum 0.9) steps on random minibatches of (x, y); the minibatch losses."""
    import torch.nn.functional as F

    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=g).to(x.device)
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def graph_ops(tensor) -> set:
    """The names of the autograd nodes behind `tensor` (what its backward will run)."""
    seen, todo = set(), [tensor.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        todo.extend(next_fn for next_fn, _ in fn.next_functions)
    return {type(fn).__name__ for fn in seen}
