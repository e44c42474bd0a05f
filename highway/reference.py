"""Pure-PyTorch eager reference of the highway layers: the ground truth every backend is tested against (in
float64), and the layers' `torch` backend. (A population's torch backend, `highway.population_torch`, runs
the same forward with a hand-written backward.)

y is written H·T + x·(1 − T), as the paper and the kernels write it: an infinite x is carried as inf.
(`torch.lerp(x, H, T)` is one op instead of four, but computes x + T·(H − x), which turns that inf into NaN.)"""
import torch.nn.functional as F
import torch

from highway.activations import ACTIVATIONS


def highway_linear_reference(x, weight, bias, activation: str = "relu"):
    """y = act(x W_Hᵀ + b_H)·T + x·(1 − T), T = σ(x W_Tᵀ + b_T), with W = [W_H; W_T] of shape (2N, N).
    A population of P layers: x (P, B, N), weight (P, 2N, N), bias (P, 2N), each trial its own GEMM."""
    n = x.shape[-1]
    if weight.dim() == 3:
        z = torch.baddbmm(bias.unsqueeze(-2), x, weight.transpose(-1, -2))
    else:
        z = F.linear(x, weight, bias)
    z_h, z_t = z.split(n, dim=-1)  # split's backward is one cat; slicing's is a fill and a copy per half
    t = torch.sigmoid(z_t)
    return ACTIVATIONS[activation](z_h) * t + x * (1 - t)


def highway_stack_reference(x, weight, bias, activation: str = "relu"):
    """`depth` highway layers of one width, one after another: weight (depth, 2N, N), bias (depth, 2N); or a
    population of stacks: x (P, B, N), weight (P, depth, 2N, N), bias (P, depth, 2N)."""
    return layer_by_layer(highway_linear_reference, x, weight, bias, activation)


def layer_by_layer(layer, x, weight, bias, activation: str):
    """`layer(x, weight_l, bias_l, activation)` for each layer of a (…, depth, 2N, N) stack in turn. unbind,
    not indexing: its backward stacks the layers' gradients once, where each index's backward would fill a
    whole-stack gradient with zeros, depth times over."""
    for w, b in zip(weight.unbind(-3), bias.unbind(-2)):
        x = layer(x, w, b, activation)
    return x


def highway_conv2d_reference(x, weight, bias, activation: str = "relu"):
    """The convolutional highway layer: H and T from "same"-padded stride-1 convolutions of x."""
    c = x.shape[1]
    z = F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2)
    h = ACTIVATIONS[activation](z[:, :c])
    t = torch.sigmoid(z[:, c:])
    return h * t + x * (1 - t)


def reference_grads(reference, tensors, activation, dy):
    """The gradients of <reference(*tensors, activation), dy>, built from the tensors themselves, so that a
    backward that is itself differentiated (create_graph=True: a gradient penalty) gets second derivatives
    right: what the fused ops' and the hand-written backwards run in that case."""
    with torch.enable_grad():
        inputs = [t if t.requires_grad else t.detach().requires_grad_() for t in tensors]
        y = reference(*inputs, activation)
        return torch.autograd.grad(y, inputs, dy, create_graph=True)
