"""What the harness runs, declared once: a case (one configuration of a sweep), the stack it builds, its
inputs, the step each mode times, and the correctness gate. The sweep, the pytest-benchmark suite and the
profiler all use these; the backends that run a case are in `backends.py`.
"""
import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch

from highway.bench.schema import DTYPE_BYTES, MODES, THROUGHPUT_KEYS
from highway.conv_models import highway_conv_stack, plain_conv_stack
from highway.models import highway_stack, plain_stack
from highway.stack import HighwayStack
from highway.tolerances import max_violation

# fp32 tensors come at the precisions torch offers, each a dtype of its own, so that every backend of a row
# runs at the same one and they sit side by side in one sweep: "fp32" is IEEE fp32 (torch's default for
# matmuls, "highest"), "tf32" runs matmuls and cuDNN convolutions on the TF32 tensor cores ("high"). Our
# kernels follow torch's float32 matmul precision, so they run each row as its baselines do. "tf32x3" is
# ours alone: our kernels' 3xTF32 dots (`highway.kernels.set_fp32_dots`), held to fp32's tolerance and timed
# against baselines in IEEE fp32, the only fp32-accurate precision torch has.
DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "tf32x3": torch.float32, "fp16": torch.float16,
          "bf16": torch.bfloat16}
MATMUL_PRECISION = {"fp32": "highest", "tf32": "high", "tf32x3": "highest"}  # torch's, per fp32 dtype
if {name: dtype.itemsize for name, dtype in DTYPES.items()} != DTYPE_BYTES:
    raise ImportError(f"DTYPES {DTYPES} differ from the schema's {DTYPE_BYTES}")
KERNEL_SIZE = 3  # conv stacks use 3×3 layers, the paper's most common receptive field


@dataclass(frozen=True)
class Case:
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


if list(Case.__dataclass_fields__) != THROUGHPUT_KEYS:  # the store's key is the case's fields, in order
    raise ImportError(f"Case fields {list(Case.__dataclass_fields__)} differ from the schema's {THROUGHPUT_KEYS}")


@contextmanager
def float32_precision(dtype: str):
    """Run the block at the float32 precision that the harness's `dtype` names, for matmuls and for cuDNN's
    convolutions alike (torch's defaults differ: IEEE matmuls, TF32 convolutions, so an eager conv net in
    "fp32" would otherwise run TF32 against our kernels' IEEE), and for our kernels' fp32 dots (torch's
    precision for "fp32" and "tf32", 3xTF32 for "tf32x3"); restored after. bf16 and fp16 leave all three.
    On a CPU, torch's matmuls and Triton's interpreter compute "tf32" as IEEE fp32.

    cuDNN's is set through `torch.backends.cudnn.allow_tf32`, not torch 2.9's `cudnn.conv.fp32_precision`:
    once the new setting has been used, reading the old flag raises (torch 2.13: even with conv and rnn set
    alike), and Inductor's convolution templates read the old flag."""
    if dtype not in MATMUL_PRECISION:
        yield
        return
    # here, not at the top: importing the kernels refuses an interpreter that would fail, and commands that
    # never launch one (compile-check, which refuses the interpreter itself) import this module too
    from highway.kernels.launch import set_fp32_dots

    saved = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision(MATMUL_PRECISION[dtype])
    torch.backends.cudnn.allow_tf32 = dtype == "tf32"
    ours = set_fp32_dots("tf32x3" if dtype == "tf32x3" else "auto")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(saved[0])
        torch.backends.cudnn.allow_tf32 = saved[1]
        set_fp32_dots(ours)


def build_stack(case: Case, layer_backend: str, device, dtype=None) -> torch.nn.Module:
    """The `depth`-layer stack of `case`, its highway layers on `layer_backend` ("torch" or "triton")."""
    torch.manual_seed(0)
    if case.layer == "dense":
        net = (highway_stack(case.width, case.depth, backend=layer_backend) if case.model == "highway"
               else plain_stack(case.width, case.depth))
    else:
        net = (highway_conv_stack(case.width, case.depth, KERNEL_SIZE, backend=layer_backend)
               if case.model == "highway" else plain_conv_stack(case.width, case.depth, KERNEL_SIZE))
    return net.to(device=device, dtype=dtype or DTYPES[case.dtype])


def make_inputs(case: Case, device, dtype=None):
    """(x, dy): the stack's input and a fixed cotangent for its output, the same for every backend."""
    g = torch.Generator().manual_seed(1)
    shape = (case.batch, case.width) if case.layer == "dense" else (case.batch, case.width, case.spatial, case.spatial)
    x, dy = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    dtype = dtype or DTYPES[case.dtype]
    return x.to(device, dtype), dy.to(device, dtype)


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
            dx, *grads = torch.autograd.grad(y, [xg, *params], dy, allow_unused=True)
            return [y.detach(), dx, *layer_by_layer(net, [g for g in grads if g is not None])]  # gemm-only: no biases
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


def layer_by_layer(net: torch.nn.Module, params: list) -> list:
    """`params` (a net's parameters or their gradients, in its order) as the per-layer stack it stands for
    lists them: weight and bias of layer 0, then of layer 1, ... A `HighwayStack` holds all its layers' in two
    tensors (depth, 2W, W) and (depth, 2W), so that without this the gate would compare them with the
    reference's one-layer tensors."""
    if not isinstance(net, HighwayStack):
        return params
    weight, bias = params
    return [t for w, b in zip(weight, bias) for t in (w, b)]


# What the correctness gate runs for each timed mode. A train step's update is −lr·(momentum-filtered)
# gradient, so checking the output and every gradient (fwd+bwd) checks what the step does.
GATE_MODE = {"fwd": "fwd", "fwd+bwd": "fwd+bwd", "train": "fwd+bwd"}


def tolerance_for(dtype: str):
    """The key of `highway.tolerances.TOLERANCES` that the harness's `dtype` is held to: its torch dtype's
    (fp32's for tf32x3, which claims fp32's accuracy), or, for tf32, TF32's own."""
    return dtype if dtype == "tf32" else DTYPES[dtype]


def correctness_error(case: Case, candidate_outputs, reference_outputs, eager_outputs) -> tuple[float, str]:
    """How far a backend is from the float64 reference, in units of what eager PyTorch in the same dtype
    gets: the smaller of (violation of the per-dtype tolerance, violation ÷ 4·(eager's violation)). ≤ 1 passes.
    With it, which of the gate's outputs is furthest off (`gate_output_name`), for a mismatch to name.

    Deep stacks legitimately drift further from float64 than one layer does; measuring against eager's own
    drift keeps the gate meaningful at depth 1000 without loosening it at depth 1."""
    if not len(candidate_outputs) == len(reference_outputs) == len(eager_outputs):
        raise ValueError(f"the gate got {len(candidate_outputs)} outputs from {case.backend}, "
                         f"{len(reference_outputs)} from the reference: they must match one for one")
    dtype = tolerance_for(case.dtype)
    worst, where = 0.0, 0
    for i, (cand, ref, eager) in enumerate(zip(candidate_outputs, reference_outputs, eager_outputs)):
        v = max_violation(cand, ref, dtype)
        base = max_violation(eager, ref, dtype)
        error = min(v, v / (4 * base)) if math.isfinite(base) and base > 0 else v
        if not math.isnan(worst) and (math.isnan(error) or error > worst):  # a NaN stays the worst
            worst, where = error, i
    return worst, gate_output_name(where)


def gate_output_name(index: int) -> str:
    """What the `index`-th output of `make_step`'s gate is: the output, the input's gradient, then each
    layer's weight and bias gradients in turn (a `HighwayStack`'s too, split by `layer_by_layer`)."""
    if index < 2:
        return ("the output", "the input's gradient")[index]
    layer, which = divmod(index - 2, 2)
    return f"layer {layer}'s {('weight', 'bias')[which]} gradient"
