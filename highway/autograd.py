"""autograd.Functions that put the fused Triton launchers under PyTorch's autograd."""
import torch

from highway.kernels import highway_conv2d_bwd, highway_conv2d_fwd, highway_linear_bwd, highway_linear_fwd


class HighwayLinearFunction(torch.autograd.Function):
    """Fused highway layer on a 2-D input. Saves x, W, b and, unless `recompute`, the pre-activations Z.

    Per layer that is 3·M·N saved values (x and Z; Z in fp32 for fp16 layers, see
    `highway.kernels.highway_linear.preactivation_dtype`).
    With `recompute=True` the backward re-runs the forward GEMM instead of reading Z: M·N saved values (x
    alone) for a third more GEMM FLOPs in a training step, the trade a very deep, narrow stack wants.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, activation: str, recompute: bool):
        y, z = highway_linear_fwd(x, weight, bias, activation, store_preactivations=not recompute)
        ctx.save_for_backward(x, weight, bias, z)
        ctx.activation = activation
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, bias, z = ctx.saved_tensors
        dx, dweight, dbias = highway_linear_bwd(dy, x, weight, bias, z, ctx.activation)
        return dx, dweight, dbias, None, None


class HighwayConv2dFunction(torch.autograd.Function):
    """Fused convolutional highway layer. Saves x, W, b only; the backward recomputes the gates."""

    @staticmethod
    def forward(ctx, x, weight, bias, activation: str):
        ctx.save_for_backward(x, weight, bias)
        ctx.activation = activation
        return highway_conv2d_fwd(x, weight, bias, activation)

    @staticmethod
    def backward(ctx, dy):
        x, weight, bias = ctx.saved_tensors
        dx, dweight, dbias = highway_conv2d_bwd(dy, x, weight, bias, ctx.activation)
        return dx, dweight, dbias, None
