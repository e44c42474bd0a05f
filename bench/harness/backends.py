"""The backends a case can be timed on, each declared once with `@register_backend` and found by name.

A backend turns the case's stack into the thing to time (`prepare`), and says where it cannot run: on a
CPU when it needs a GPU, or for cases it does not apply to. A backend that does not compute the highway
layer (`gemm-only`) is timed without the correctness gate. `cuda_graphs` says who captures CUDA graphs:
"own" (the backend does, as `compile-cudagraphs`), "step" (the harness captures the whole timed step,
optimizer included, into one graph and times its replays), or "" (none, unless `--timer graph` asks).
"""
from dataclasses import dataclass
from typing import Callable

import torch

from highway.bench.harness.cases import DTYPES, Case, float32_precision

BACKENDS: dict[str, "Backend"] = {}  # name → Backend, in the order registered (eager first)


@dataclass(frozen=True)
class Backend:
    name: str
    layer_backend: str  # the `backend` argument of the highway layers it builds on: "torch" or "triton"
    prepare: Callable[[torch.nn.Module], torch.nn.Module]
    needs_gpu: str | None = None  # what needs the GPU, when it does
    applies_to: Callable[[Case], str | None] = lambda case: None  # a reason it does not apply, or None
    computes_the_layer: bool = True
    cuda_graphs: str = ""  # "", "own" or "step" (the module docstring)

    def captured(self, timer: str) -> bool:
        """Whether the harness times this backend's step as one CUDA graph's replays, under `timer`."""
        return self.cuda_graphs == "step" or (timer == "graph" and not self.cuda_graphs)

    def unsupported(self, case: Case, device: torch.device) -> str | None:
        """Why this backend cannot run `case` on `device`, or None when it can."""
        reason = self.applies_to(case)
        if reason is None and self.needs_gpu and device.type != "cuda":
            reason = f"{self.needs_gpu} needs a CUDA GPU"
        return reason


def register_backend(name: str, *, layer_backend: str, needs_gpu: str | None = None,
                     applies_to: Callable[[Case], str | None] | None = None, computes_the_layer: bool = True,
                     cuda_graphs: str = ""):
    """Declare a backend: decorate its `prepare(net) -> module to time`."""
    if name in BACKENDS:
        raise ValueError(f"backend {name!r} is already registered")
    if cuda_graphs not in ("", "own", "step"):
        raise ValueError(f"cuda_graphs must be '', 'own' or 'step', got {cuda_graphs!r}")

    def wrap(prepare):
        BACKENDS[name] = Backend(name, layer_backend, prepare, needs_gpu, applies_to or (lambda case: None),
                                 computes_the_layer, cuda_graphs)
        return prepare

    return wrap


def _fresh_dynamo():
    # Each sweep row compiles a new stack; without a reset dynamo counts them as recompilations of one
    # function and, past its limit (8), silently runs the rest eagerly.
    torch._dynamo.reset()


def _highway_only(case: Case) -> str | None:
    return "plain stacks have no highway kernel" if case.model == "plain" else None


def _dense_highway_only(case: Case) -> str | None:
    if case.model != "highway" or case.layer != "dense":
        return "gemm-only is the GEMM reference for dense highway stacks"
    return None


@register_backend("torch", layer_backend="torch")
def _eager(net):
    return net


@register_backend("compile", layer_backend="torch")
def _compiled(net):
    _fresh_dynamo()
    return torch.compile(net)


@register_backend("compile-cudagraphs", layer_backend="torch", needs_gpu="CUDA graphs", cuda_graphs="own")
def _compiled_cudagraphs(net):
    _fresh_dynamo()
    return torch.compile(net, mode="reduce-overhead")


class CompiledLayer(torch.nn.Module):
    """One layer of a stack, compiled on its own. The wrapper's forward is what dynamo traces: `compile()` on a
    bare `torch.nn` module (a plain layer's `Sequential(Linear, ReLU)`) is skipped by dynamo and runs eager."""

    def __init__(self, layer: torch.nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x)


@register_backend("compile-layers-cudagraphs", layer_backend="torch", needs_gpu="CUDA graphs", cuda_graphs="step")
def _compiled_layers_cudagraphs(net):
    # Compiling a whole net takes time that grows with its depth (68 s for 100 highway layers, training, on
    # 2 CPU cores), minutes a case at depth 1000. Compiled layer by layer ("regional compilation"), the
    # layers of one shape share one compiled graph, forward and backward, and compile in seconds at any
    # depth; the harness then captures the whole step in one CUDA graph, so the launches drop out as they do
    # for `compile-cudagraphs`. Inductor fuses within a layer here and cannot fuse across two.
    _fresh_dynamo()
    if torch.__version__ < "2.5":
        # Before 2.5 dynamo compiled each module instance on its own: 12 layers made 12 graphs, and past its
        # recompile limit (8) the rest ran eagerly without a word. 2.5 made inlining built-in modules (their
        # parameters graph inputs) the default; on 2.4 it is a flag, turned on here for the whole process.
        torch._dynamo.config.inline_inbuilt_nn_modules = True
    layers = torch.nn.Sequential(*(CompiledLayer(layer) for layer in net))
    for layer in layers:
        layer.compile()
    return layers


@register_backend("triton", layer_backend="triton", applies_to=_highway_only,
                  needs_gpu="triton timing (the CPU interpreter checks correctness, not speed)")
def _fused(net):
    return net


@register_backend("triton+compile", layer_backend="triton", applies_to=_highway_only,
                  needs_gpu="triton timing (the CPU interpreter checks correctness, not speed)")
def _fused_compiled(net):
    # The fused layers are custom ops (highway.ops), so Inductor compiles everything around them (the rest
    # of the step) without a graph break: this row shows what that adds to the per-layer kernels.
    _fresh_dynamo()
    return torch.compile(net)


def _stackable(case: Case) -> str | None:
    from highway.kernels.highway_stack import widest_stack

    if case.model != "highway" or case.layer != "dense":
        return "the depth-fused stack is for dense highway stacks"
    with float32_precision(case.dtype):
        widest = widest_stack(DTYPES[case.dtype])
    if case.width > widest:
        dots = {"fp32": "IEEE", "tf32x3": "3xTF32"}.get(case.dtype)
        return f"the depth-fused stack holds widths up to {widest} in {case.dtype}" + \
            (f" ({dots} dots; tf32 holds 128)" if dots else "")
    return None


@register_backend("triton-stack", layer_backend="triton", applies_to=_stackable,
                  needs_gpu="triton timing (the CPU interpreter checks correctness, not speed)")
def _depth_fused(net):
    # The same layers and weights as one HighwayStack: one launch forward and one backward for all of them.
    from highway.stack import HighwayStack

    return HighwayStack.from_layers(net, backend="triton-stack")


@register_backend("triton-stack-recompute", layer_backend="triton", applies_to=_stackable,
                  needs_gpu="triton timing (the CPU interpreter checks correctness, not speed)")
def _depth_fused_recomputing(net):
    # The depth-fused stack saving every 32nd layer's input and recomputing the rest in backward: one more
    # forward pass for a 32nd of the saved activations (the memory target).
    from highway.stack import HighwayStack

    stack = HighwayStack.from_layers(net, backend="triton-stack")
    stack.recompute = True
    return stack


@register_backend("triton-stack-atomic", layer_backend="triton", applies_to=_stackable,
                  needs_gpu="triton timing (the CPU interpreter checks correctness, not speed)")
def _depth_fused_atomic(net):
    # The depth-fused stack adding its weight gradients up in the kernel with atomics, where "triton-stack"
    # writes each layer's dZ for one batched GEMM a chunk: the two timed side by side say which is faster.
    from highway.stack import HighwayStack

    stack = HighwayStack.from_layers(net, backend="triton-stack")
    stack.weight_grads = "atomic"
    return stack


class GemmOnly(torch.nn.Module):
    """The bare GEMMs of a highway stack, x·[W_H | W_T]ᵀ per layer (cuBLAS on a GPU), keeping the first N
    columns to feed the next layer: the speed a fused kernel's GEMM is measured against. Not a highway net."""

    def __init__(self, stack: torch.nn.Sequential):
        super().__init__()
        self.stack = stack

    def forward(self, x):
        for layer in self.stack:
            x = torch.nn.functional.linear(x, layer.weight)[..., : layer.width]
        return x


@register_backend("gemm-only", layer_backend="torch", applies_to=_dense_highway_only, computes_the_layer=False)
def _gemm_only(net):
    return GemmOnly(net)
