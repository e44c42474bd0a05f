"""The fused layers as PyTorch custom ops (`torch.ops.highway.*`), so that torch.compile, torch.export and
the dispatcher see one op where a Python launcher would be opaque and break the graph.

- `highway::linear_fwd`, `highway::linear_bwd`, `highway::conv2d_fwd`, `highway::conv2d_bwd`,
  `highway::stack_fwd`, `highway::stack_bwd` wrap the launchers of `highway.kernels`; each has a fake (meta) implementation, so compiling and exporting never
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

from highway.reference import highway_conv2d_reference, highway_linear_reference, highway_stack_reference, \
    reference_grads

_EMPTY = (0,)


@torch.library.custom_op("highway::linear_fwd", mutates_args=())
def linear_fwd(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, activation: str,
               store_preactivations: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, Z) for x (M, N) with weight (2N, N), or for a population: x (P, M, N), weight (P, 2N, N), bias
    (P, 2N); Z is empty unless stored."""
    from highway.kernels import highway_linear_fwd

    y, z = highway_linear_fwd(x, weight, bias, activation, store_preactivations)
    return y, z if z is not None else x.new_empty(_EMPTY)


@linear_fwd.register_fake
def _(x, weight, bias, activation, store_preactivations):
    from highway.kernels.highway_linear import preactivation_dtype

    *lead, m, n = x.shape
    z = (x.new_empty((*lead, m, 2 * n), dtype=preactivation_dtype(x.dtype)) if store_preactivations
         else x.new_empty(_EMPTY))
    return x.new_empty(x.shape), z


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


def _autograd_from_saved(reference, backward_kernels):
    """(backward, setup_context) for `register_autograd` of a forward op `(x, weight, bias, activation,
    *options) -> (y, saved)`: the backward runs `backward_kernels(dy, x, weight, bias, saved, activation,
    *options)`, or, when it is itself differentiated (create_graph=True: a gradient penalty), the eager
    `reference`'s differentiable grads."""
    def setup(ctx, inputs, output):
        x, weight, bias, activation, *options = inputs
        ctx.save_for_backward(x, weight, bias, output[1])
        ctx.activation, ctx.options = activation, options
        # `saved` is for the backward alone: without these, autograd fills a zero gradient as large as it
        # for every call (a layer's Z, a whole stack's inputs: 25 MB at depth 1000) and a kernel to fill it
        ctx.mark_non_differentiable(output[1])
        ctx.set_materialize_grads(False)

    def backward(ctx, dy, d_saved_unused):
        no_grads = (None,) * (1 + len(ctx.options))  # for the activation and the options
        if dy is None:  # y took no part in what is differentiated
            return None, None, None, *no_grads
        x, weight, bias, saved = ctx.saved_tensors
        if torch.is_grad_enabled():
            return (*reference_grads(reference, (x, weight, bias), ctx.activation, dy), *no_grads)
        grads = backward_kernels(dy, x, weight, bias, saved, ctx.activation, *ctx.options)  # any dy strides
        return (*grads, *no_grads)

    return backward, setup


_backward, _setup = _autograd_from_saved(
    highway_linear_reference,
    lambda dy, x, weight, bias, z, activation, stored: linear_bwd(dy, x, weight, bias, z, activation))
linear_fwd.register_autograd(_backward, setup_context=_setup)


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
        return (*reference_grads(highway_conv2d_reference, (x, weight, bias), ctx.activation, dy), None)
    dx, dweight, dbias = conv2d_bwd(dy, x, weight, bias, ctx.activation)
    return dx, dweight, dbias, None


conv2d_fwd.register_autograd(_conv_backward, setup_context=_conv_setup)


@torch.library.custom_op("highway::stack_fwd", mutates_args=())
def stack_fwd(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, activation: str,
              save_every: int, weight_grads: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, saved inputs) of a depth-fused stack (x (M, N), weight (depth, 2N, N)) or of a population of
    stacks (leading trial axis): every `save_every`-th layer's input (1: each layer's; 0: none, empty).
    `weight_grads` is for the backward alone: how it forms dW and db."""
    from highway.kernels.highway_stack import highway_stack_fwd

    y, xs = highway_stack_fwd(x, weight, bias, activation, save_every)
    return y, xs if xs is not None else x.new_empty(_EMPTY)


@stack_fwd.register_fake
def _(x, weight, bias, activation, save_every, weight_grads):
    *lead, m, n = x.shape
    saved = -(-weight.shape[-3] // save_every) if save_every else 0
    return x.new_empty(x.shape), x.new_empty((*lead, saved, m, n)) if save_every else x.new_empty(_EMPTY)


@torch.library.custom_op("highway::stack_bwd", mutates_args=())
def stack_bwd(dy: torch.Tensor, xs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, activation: str,
              save_every: int, weight_grads: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from highway.kernels.highway_stack import highway_stack_bwd

    return highway_stack_bwd(dy, xs, weight, bias, activation, save_every, weight_grads)


@stack_bwd.register_fake
def _(dy, xs, weight, bias, activation, save_every, weight_grads):
    return torch.empty_like(dy), torch.empty_like(weight), torch.empty_like(bias)


_backward, _setup = _autograd_from_saved(
    highway_stack_reference,
    lambda dy, x, weight, bias, xs, activation, save_every, weight_grads: stack_bwd(dy, xs, weight, bias, activation,
                                                                                  save_every, weight_grads))
stack_fwd.register_autograd(_backward, setup_context=_setup)
