"""What the harness runs, declared once: a configuration, the stack it builds, the backends that can run
it, and the step each mode times. The sweep, the pytest-benchmark suite and the profiler all use these.
"""
import math
from dataclasses import asdict, dataclass

import torch

from highway.conv_models import highway_conv_stack, plain_conv_stack
from highway.models import highway_stack, plain_stack
from highway.tolerances import max_violation

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
MODELS = ("highway", "plain")
LAYERS = ("dense", "conv")
MODES = ("fwd", "fwd+bwd", "train")
KERNEL_SIZE = 3  # conv stacks use 3×3 layers, the paper's most common receptive field


@dataclass(frozen=True)
class Config:
    """One row of a throughput sweep. `spatial` is the conv stacks' image side (ignored for dense)."""
    model: str
    layer: str
    depth: int
    width: int
    dtype: str
    batch: int
    backend: str
    mode: str
    spatial: int = 16

    def key(self) -> tuple:
        return tuple(asdict(self).values())

    def describe(self) -> str:
        shape = f"{self.width}" if self.layer == "dense" else f"{self.width}ch {self.spatial}x{self.spatial}"
        return (f"{self.model} {self.layer} d={self.depth} w={shape} {self.dtype} b={self.batch} "
                f"{self.backend} {self.mode}")


KEY_COLUMNS = list(Config.__dataclass_fields__)


def build_stack(cfg: Config, layer_backend: str, device, dtype=None) -> torch.nn.Module:
    """The `depth`-layer stack of `cfg`, its highway layers on `layer_backend` ("torch" or "triton")."""
    torch.manual_seed(0)
    if cfg.layer == "dense":
        net = (highway_stack(cfg.width, cfg.depth, backend=layer_backend) if cfg.model == "highway"
               else plain_stack(cfg.width, cfg.depth))
    else:
        net = (highway_conv_stack(cfg.width, cfg.depth, KERNEL_SIZE, backend=layer_backend)
               if cfg.model == "highway" else plain_conv_stack(cfg.width, cfg.depth, KERNEL_SIZE))
    return net.to(device=device, dtype=dtype or DTYPES[cfg.dtype])


def make_inputs(cfg: Config, device, dtype=None):
    """(x, dy): the stack's input and a fixed cotangent for its output, the same for every backend."""
    g = torch.Generator().manual_seed(1)
    shape = (cfg.batch, cfg.width) if cfg.layer == "dense" else (cfg.batch, cfg.width, cfg.spatial, cfg.spatial)
    x, dy = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    dtype = dtype or DTYPES[cfg.dtype]
    return x.to(device, dtype), dy.to(device, dtype)


# --- backends ---------------------------------------------------------------------------------------

def _unsupported_off_gpu(device, what):
    return None if device.type == "cuda" else f"{what} needs a CUDA GPU"


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


@dataclass(frozen=True)
class Backend:
    """How one backend turns a stack into something to time, and where it cannot run (a reason, or None).
    A backend that does not compute the layer (`gemm-only`) is timed without the correctness gate."""
    name: str
    layer_backend: str  # the backend argument of the highway layers it builds on
    computes_the_layer: bool = True

    def unsupported(self, cfg: Config, device: torch.device) -> str | None:
        if self.name == "gemm-only" and (cfg.model != "highway" or cfg.layer != "dense"):
            return "gemm-only is the GEMM reference for dense highway stacks"
        if self.name == "triton" and cfg.model == "plain":
            return "plain stacks have no highway kernel"
        if self.name == "triton":
            return _unsupported_off_gpu(device, "triton timing (the CPU interpreter checks correctness, not speed)")
        if self.name == "compile-cudagraphs":
            return _unsupported_off_gpu(device, "CUDA graphs")
        return None

    def prepare(self, net: torch.nn.Module) -> torch.nn.Module:
        if self.name.startswith("compile"):
            # Each sweep row compiles a new stack; without a reset dynamo counts them as recompilations of one
            # function and, past its limit (8), silently runs the rest eagerly.
            torch._dynamo.reset()
        if self.name == "compile":
            return torch.compile(net)
        if self.name == "compile-cudagraphs":
            return torch.compile(net, mode="reduce-overhead")
        if self.name == "gemm-only":
            return GemmOnly(net)
        return net


BACKENDS = {
    "torch": Backend("torch", "torch"),
    "compile": Backend("compile", "torch"),
    "compile-cudagraphs": Backend("compile-cudagraphs", "torch"),
    "triton": Backend("triton", "triton"),
    "gemm-only": Backend("gemm-only", "torch", computes_the_layer=False),
}


# --- modes ------------------------------------------------------------------------------------------

def make_step(mode: str, net: torch.nn.Module, x: torch.Tensor, dy: torch.Tensor):
    """A zero-argument callable that runs one `mode` step and returns what the correctness gate compares:
    fwd → the output; fwd+bwd → the output and the gradients of <output, dy> in x and every parameter;
    train → the output after one SGD (momentum 0.9) step's forward, backward and update."""
    params = list(net.parameters())
    if mode == "fwd":
        def step():
            with torch.no_grad():
                return [net(x)]
        return step
    if mode == "fwd+bwd":
        xg = x.detach().requires_grad_()

        def step():
            y = net(xg)
            grads = torch.autograd.grad(y, [xg, *params], dy, allow_unused=True)  # gemm-only leaves biases out
            return [y.detach(), *(g for g in grads if g is not None)]
        return step
    if mode == "train":
        opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)

        def step():
            opt.zero_grad(set_to_none=True)
            y = net(x)
            y.backward(dy)
            opt.step()
            return [y.detach()]
        return step
    raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")


# What the correctness gate runs for each timed mode. A train step's update is −lr·(momentum-filtered)
# gradient, so checking the output and every gradient (fwd+bwd) checks what the step does.
GATE_MODE = {"fwd": "fwd", "fwd+bwd": "fwd+bwd", "train": "fwd+bwd"}


def correctness_error(cfg: Config, device, candidate_outputs, reference_outputs, eager_outputs) -> float:
    """How far a backend is from the float64 reference, in units of what eager PyTorch in the same dtype
    gets: max(violation of the per-dtype tolerance, violation ÷ 4·(eager's violation)). ≤ 1 passes.

    Deep stacks legitimately drift further from float64 than one layer does; measuring against eager's own
    drift keeps the gate meaningful at depth 1000 without loosening it at depth 1."""
    dtype = DTYPES[cfg.dtype]
    worst = 0.0
    for cand, ref, eager in zip(candidate_outputs, reference_outputs, eager_outputs):
        v = max_violation(cand, ref, dtype)
        base = max_violation(eager, ref, dtype)
        worst = max(worst, min(v, v / (4 * base)) if math.isfinite(base) and base > 0 else v)
    return worst
