"""Which implementation runs a layer: "torch" (eager reference), "triton" (fused kernels) or "auto"; a
`HighwayStack` also takes "triton-stack" (every layer in one launch)."""
import torch

BACKENDS = ("auto", "torch", "triton")
STACK_BACKENDS = BACKENDS + ("triton-stack",)
# How "triton-stack"'s backward forms the weight gradients (`highway.kernels.highway_stack`): "gemm" writes
# each layer's dZ for one batched GEMM and one sum per chunk of layers; "atomic" adds each program's share
# into fp32 gradients from the kernel itself. Which is faster is the GPU's to say (`highway-bench throughput
# --backend triton-stack triton-stack-atomic`): "gemm" stays the default until one has.
STACK_WEIGHT_GRADS = ("gemm", "atomic")


_triton_available = None  # found out on first use: importing the kernels fixes interpreter mode


@torch.compiler.assume_constant_result  # torch.compile calls it eagerly, once, and keeps the answer
def triton_available() -> bool:
    global _triton_available
    if _triton_available is None:
        try:
            import triton  # noqa: F401

            import highway.kernels  # noqa: F401
            _triton_available = True
        except ImportError:
            _triton_available = False
    return _triton_available


def triton_interpreting() -> bool:
    """True when our kernels were built for Triton's CPU interpreter (call after `triton_available()`)."""
    from highway.kernels import INTERPRET

    return INTERPRET


def resolve_backend(backend, device: torch.device, *, asked: str | None = None) -> str:
    """"torch" or "triton" for tensors on `device`; a clear error for a backend that cannot run there, naming
    `asked` where a caller resolves its own backend (the stack's "triton-stack") through "triton"."""
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {list(BACKENDS)}")
    asked = asked or backend
    if backend == "torch":
        return "torch"
    if backend == "auto":
        return "triton" if device.type == "cuda" and triton_available() else "torch"
    if not triton_available():
        raise RuntimeError(f"backend={asked!r} needs the triton package: pip install triton")
    if device.type == "cuda":
        return "triton"
    if device.type == "cpu" and triton_interpreting():
        return "triton"
    if device.type == "cpu":
        raise RuntimeError(
            f"backend={asked!r} got CPU tensors, but Triton is not in interpreter mode; move the tensors to a GPU, "
            "or set TRITON_INTERPRET=1 in the environment before triton is first imported (slow: for testing)"
        )
    raise RuntimeError(f"backend={asked!r} does not support device {device}")


def check_weight_grads(weight_grads) -> str:
    if weight_grads not in STACK_WEIGHT_GRADS:
        raise ValueError(f"unknown weight_grads {weight_grads!r}; expected one of {list(STACK_WEIGHT_GRADS)}")
    return weight_grads
