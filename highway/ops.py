"""The fused layers as PyTorch custom ops (`torch.ops.highway.*`), so that torch.compile, torch.export and
the dispatcher see one op where a Python launcher would be opaque and break the graph.

- `highway::linear_fwd`, `highway::linear_bwd`, `highway::conv2d_fwd`, `highway::conv2d_bwd` wrap the
  launchers of `highway.kernels`; each has a fake (meta) implementation, so compiling and exporting never
  run a kernel on a fake tensor.
- The forward ops carry their autograd formula (`register_autograd`): the backward is the fused backward
  op. When the backward itself is differentiated (`create_graph=True`, a gradient penalty), it runs
  through the eager reference instead, so second derivatives are right, never silently dropped.
- They are `custom_op`s, opaque to Inductor: our launchers pick tiles through `@triton.autotune` on a GPU
  and a fixed config under the interpreter, which `triton_op`/`wrap_triton` cannot trace on a CPU.
- The weight-gradient kernels write dW and db into one buffer; an op's outputs may not alias, so db is
  copied out (2N values).
"""
import torch

from highway.reference import highway_conv2d_reference, highway_linear_reference

_EMPTY = (0,)


@torch.library.custom_op("highway::linear_fwd", mutates_args=())
def linear_fwd(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, activation: str,
               store_preactivations: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, Z) for a 2-D x; Z is empty unless stored."""
    from highway.kernels import highway_linear_fwd

    y, z = highway_linear_fwd(x, weight, bias, activation, store_preactivations)
    return y, z if z is not None else x.new_empty(_EMPTY)


@linear_fwd.register_fake
def _(x, weight, bias, activation, store_preactivations):
    from highway.kernels.highway_linear import preactivation_dtype

    m, n = x.shape
    z = x.new_empty((m, 2 * n), dtype=preactivation_dtype(x.dtype)) if store_preactivations else x.new_empty(_EMPTY)
    return x.new_empty((m, n)), z


@torch.library.custom_op("highway::linear_bwd", mutates_args=())
def linear_bwd(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, z: torch.Tensor,
               activation: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dweight, dbias); an empty `z` recomputes the pre-activations from x."""
    from highway.kernels import highway_linear_bwd

    dx, dweight, dbias = highway_linear_bwd(dy, x, weight, bias, z if z.numel() else None, activation)
    return dx, dweight, dbias.clone()


@linear_bwd.register_fake
def _(dy, x, weight, bias, z, activation):
    return torch.empty_like(x), torch.empty_like(weight), torch.empty_like(bias)


def _linear_setup(ctx, inputs, output):
    x, weight, bias, activation, _ = inputs
    ctx.save_for_backward(x, weight, bias, output[1])
    ctx.activation = activation


def _linear_backward(ctx, dy, dz_unused):
    x, weight, bias, z = ctx.saved_tensors
    if torch.is_grad_enabled():  # create_graph=True: a differentiable backward, through the reference
        return (*_reference_grads(highway_linear_reference, (x, weight, bias), ctx.activation, dy), None, None)
    dx, dweight, dbias = linear_bwd(dy, x, weight, bias, z, ctx.activation)  # the kernels take any strides
    return dx, dweight, dbias, None, None


linear_fwd.register_autograd(_linear_backward, setup_context=_linear_setup)


@torch.library.custom_op("highway::conv2d_fwd", mutates_args=())
def conv2d_fwd(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, activation: str) -> torch.Tensor:
    from highway.kernels import highway_conv2d_fwd

    return highway_conv2d_fwd(x, weight, bias, activation)


@conv2d_fwd.register_fake
def _(x, weight, bias, activation):
    return torch.empty_like(x)


@torch.library.custom_op("highway::conv2d_bwd", mutates_args=())
def conv2d_bwd(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
               activation: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from highway.kernels import highway_conv2d_bwd

    dx, dweight, dbias = highway_conv2d_bwd(dy, x, weight, bias, activation)
    return dx, dweight, dbias.clone()


@conv2d_bwd.register_fake
def _(dy, x, weight, bias, activation):
    return torch.empty_like(x), torch.empty_like(weight), torch.empty_like(bias)


def _conv_setup(ctx, inputs, output):
    x, weight, bias, activation = inputs
    ctx.save_for_backward(x, weight, bias)
    ctx.activation = activation


def _conv_backward(ctx, dy):
    x, weight, bias = ctx.saved_tensors
    if torch.is_grad_enabled():
        return (*_reference_grads(highway_conv2d_reference, (x, weight, bias), ctx.activation, dy), None)
    dx, dweight, dbias = conv2d_bwd(dy, x, weight, bias, ctx.activation)
    return dx, dweight, dbias, None


conv2d_fwd.register_autograd(_conv_backward, setup_context=_conv_setup)


def _reference_grads(reference, tensors, activation, dy):
    """The gradients of <reference(tensors), dy>, built from the saved tensors themselves, so that they can
    be differentiated again with respect to them (and to dy)."""
    with torch.enable_grad():
        inputs = [t if t.requires_grad else t.detach().requires_grad_() for t in tensors]
        y = reference(*inputs, activation)
        return torch.autograd.grad(y, inputs, dy, create_graph=True)
