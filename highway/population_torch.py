"""The torch backend of a population's highway layers (`highway_linear_population` on "torch"): one batched
GEMM forward, and a hand-written backward.

Autograd's backward of the reference takes about a dozen passes over (P, B, N) tensors a layer (two for
each product, a negation, a `cat` to join dZ_H and dZ_T, an add to join the carry and the GEMM's dx) plus
two copies inside `baddbmm`'s backward. This one takes six elementwise passes, writes dZ_H and dZ_T
straight into one buffer, and adds the carry to dx inside the GEMMs (`baddbmm_`). The forward applies σ and
the activation in place, on the pre-activations.

Where it pays: on small layers Python's cost per `autograd.Function` call outweighs the passes it saves,
so layers with fewer than `MIN_VALUES` values of x run the reference (measured on a 2-core CPU, 1 thread,
fwd + bwd of one width-50 layer, batch 64: 0.83x the reference's speed at P = 1, 0.93x at P = 2, 1.06x at
P = 4, 1.3x at P = 32; at batch 512 1.25x already at P = 1). A single layer's torch backend stays the
reference itself: it is the eager baseline the throughput harness measures everything against.
Second derivatives (a backward that is itself differentiated) run through the reference.
"""
import torch
import torch.nn.functional as F

from highway.reference import highway_linear_reference, reference_grads

MIN_VALUES = 8192  # the crossover measured above: P·B·N values of x
_IN_PLACE = {"relu": torch.relu_, "tanh": torch.tanh_, "sigmoid": torch.sigmoid_, "identity": lambda z: z}


def _activation_grad_(dh: torch.Tensor, h: torch.Tensor, z_h: torch.Tensor | None, activation: str):
    """dh ← dh·act′(z_H), in place, from the activation's output h (its input z_H for gelu)."""
    aten = torch.ops.aten
    if activation == "relu":
        aten.threshold_backward.grad_input(dh, h, 0, grad_input=dh)
    elif activation == "tanh":
        aten.tanh_backward.grad_input(dh, h, grad_input=dh)
    elif activation == "sigmoid":
        aten.sigmoid_backward.grad_input(dh, h, grad_input=dh)
    elif activation == "gelu":
        dh.copy_(aten.gelu_backward(dh, z_h))


class _PopulationHighwayLinear(torch.autograd.Function):
    """Saves x, weight and bias (second derivatives recompute from them), H and T (and, for gelu, Z_H):
    2·P·B·N values besides the inputs."""

    @staticmethod
    def forward(ctx, x, weight, bias, activation):
        n = x.shape[-1]
        # Z_H and Z_T as two GEMMs into two buffers rather than one into (P, B, 2N): the elementwise ops
        # below then run on contiguous tensors, which torch vectorizes (σ on a strided half is 4x slower).
        z_h = torch.baddbmm(bias[:, None, :n], x, weight[:, :n].transpose(1, 2))
        t = torch.sigmoid_(torch.baddbmm(bias[:, None, n:], x, weight[:, n:].transpose(1, 2)))
        h = F.gelu(z_h) if activation == "gelu" else _IN_PLACE[activation](z_h)
        y = h * t
        y.addcmul_(x, 1 - t)  # H·T + x·(1 − T), as the reference and the kernels write it: a carried inf stays inf
        ctx.save_for_backward(x, weight, bias, h, t, z_h if activation == "gelu" else None)
        ctx.activation = activation
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, bias, h, t, z_h = ctx.saved_tensors
        if torch.is_grad_enabled():
            return (*reference_grads(highway_linear_reference, (x, weight, bias), ctx.activation, dy), None)
        p, b, n = x.shape
        dz = dy.new_empty(p, 2, b, n)  # [dZ_H, dZ_T] per trial: dW and db come out in [W_H; W_T] order
        dz_h, dz_t = dz[:, 0], dz[:, 1]
        torch.mul(dy, t, out=dz_h)  # ∂y/∂H
        dx = dy - dz_h  # the carry's share, dy·(1 − T)
        _activation_grad_(dz_h, h, z_h, ctx.activation)
        dt = torch.sub(h, x).mul_(dy)  # ∂y/∂T = dy·(H − x)
        torch.ops.aten.sigmoid_backward.grad_input(dt, t, grad_input=dz_t)
        dx.baddbmm_(dz_h, weight[:, :n]).baddbmm_(dz_t, weight[:, n:])
        dweight = dy.new_empty(p, 2, n, n)
        torch.bmm(dz_h.transpose(1, 2), x, out=dweight[:, 0])
        torch.bmm(dz_t.transpose(1, 2), x, out=dweight[:, 1])
        return dx, dweight.view(p, 2 * n, n), dz.sum(2).view(p, 2 * n), None


def highway_linear_population_torch(x, weight, bias, activation: str):
    """y[p] = highway_linear(x[p], weight[p], bias[p]) for x (P, B, N), weight (P, 2N, N), bias (P, 2N), with
    arguments already checked (`highway_linear_population` checks them). Under torch.compile, and for small
    layers, the reference runs (Inductor fuses it itself)."""
    if torch.compiler.is_compiling() or x.numel() < MIN_VALUES:
        return highway_linear_reference(x, weight, bias, activation)
    return _PopulationHighwayLinear.apply(x, weight, bias, activation)
