"""The functional API's contract: the reference's gradients, backend choice, and every bad input."""
import os
import subprocess
import sys

import pytest
import torch

from highway.backends import resolve_backend
from highway.functional import highway_linear
from highway.reference import highway_linear_reference
from highway_cases import ACTIVATION_NAMES, linear_inputs
from highway.kernels import INTERPRET


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_reference_gradcheck_float64(activation):
    x, w, b = (t.requires_grad_() for t in linear_inputs(4, 6, torch.float64, "cpu", lead=(2,)))
    assert torch.autograd.gradcheck(lambda *a: highway_linear_reference(*a, activation), (x, w, b))


def test_reference_is_the_papers_equation():
    x, w, b = linear_inputs(5, 3, torch.float64, "cpu")
    h = torch.tanh(x @ w[:3].T + b[:3])
    t = torch.sigmoid(x @ w[3:].T + b[3:])
    torch.testing.assert_close(highway_linear(x, w, b, "tanh", backend="torch"), h * t + x * (1 - t))


def test_closed_gates_carry_the_input():
    x, w, b = linear_inputs(5, 8, torch.float64, "cpu")
    b[8:] = -60.0  # T ≈ 1e-26: the layer copies x
    torch.testing.assert_close(highway_linear(x, w, b, backend="torch"), x)


@pytest.mark.parametrize("backend", ["torch", "auto", "triton"])
def test_every_backend_is_differentiable(backend, device):
    x, w, b = (t.requires_grad_() for t in linear_inputs(3, 16, torch.float32, device))
    highway_linear(x, w, b, backend=backend).sum().backward()
    assert all(t.grad is not None and t.grad.isfinite().all() for t in (x, w, b))


def test_auto_backend_uses_torch_on_cpu_and_triton_on_cuda():
    assert resolve_backend("auto", torch.device("cpu")) == "torch"
    assert resolve_backend("auto", torch.device("cuda")) == "triton"
    if INTERPRET:
        assert resolve_backend("triton", torch.device("cpu")) == "triton"
    else:
        with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
            resolve_backend("triton", torch.device("cpu"))


def test_triton_on_cpu_without_interpreter_is_a_clear_error():
    code = (
        "import torch; from highway.functional import highway_linear\n"
        "try:\n    highway_linear(torch.randn(2, 4), torch.randn(8, 4), torch.randn(8), backend='triton')\n"
        "except RuntimeError as e:\n    print('ERR', e)\n"
    )
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.startswith("ERR") and "TRITON_INTERPRET=1" in out


BAD_CALLS = {
    "wrong last dim": (lambda x, w, b: (x[:, :3], w, b), ValueError, r"weight must have shape \(2N, N\) = \(6, 3\)"),
    "weight not 2N x N": (lambda x, w, b: (x, w[:7], b), ValueError, r"got \(7, 4\)"),
    "weight transposed": (lambda x, w, b: (x, w.T, b), ValueError, r"got \(4, 8\)"),
    "bias shape": (lambda x, w, b: (x, w, b[:4]), ValueError, r"bias must have shape \(2N,\) = \(8,\)"),
    "bias 2-d": (lambda x, w, b: (x, w, b[None]), ValueError, r"got \(1, 8\)"),
    "mixed dtypes": (lambda x, w, b: (x.half(), w, b), TypeError, "dtypes must match"),
    "integer input": (lambda x, w, b: (x.long(), w.long(), b.long()), TypeError, "floating-point"),
    "not a tensor": (lambda x, w, b: (x.tolist(), w, b), TypeError, "x must be a torch.Tensor"),
    "0-d input": (lambda x, w, b: (x[0, 0], w, b), ValueError, "at least one dimension"),
    "mixed devices": (lambda x, w, b: (x, w.to("meta"), b), ValueError, "one device"),
}


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_inputs_raise_before_launch(case, backend):
    make, error, message = BAD_CALLS[case]
    x, w, b = linear_inputs(2, 4, torch.float32, "cpu")
    with pytest.raises(error, match=message):
        highway_linear(*make(x, w, b), backend=backend)


@pytest.mark.parametrize("kwargs,message", [
    (dict(activation="swish"), "unknown activation 'swish'"),
    (dict(activation=None), "unknown activation None"),
    (dict(backend="cuda"), "unknown backend 'cuda'"),
])
def test_unknown_activation_or_backend(kwargs, message):
    x, w, b = linear_inputs(2, 4, torch.float32, "cpu")
    with pytest.raises(ValueError, match=message):
        highway_linear(x, w, b, **kwargs)


def test_float64_on_triton_is_a_type_error(device):
    x, w, b = linear_inputs(2, 4, torch.float64, device)
    with pytest.raises(TypeError, match="backend='triton' supports"):
        highway_linear(x, w, b, backend="triton")


def test_without_triton_the_layers_run_on_torch_and_a_forced_triton_says_how_to_get_it():
    """torch runs where triton has no wheel (macOS, Windows): `import highway` and every layer must work there."""
    code = (
        "import sys; sys.modules['triton'] = None  # as if triton were not installed\n"
        "import torch\n"
        "from highway import HighwayConv2d, HighwayLinear, HighwayStack, highway_mlp\n"
        "from highway.functional import highway_linear\n"
        "from highway.population import stack_population\n"
        "x = torch.randn(4, 8)\n"
        "HighwayLinear(8)(x).sum().backward(); HighwayStack(8, 3)(x).sum().backward()\n"
        "HighwayConv2d(2, kernel_size=3)(torch.randn(1, 2, 5, 5)).sum().backward()\n"
        "stack_population([highway_mlp(8, 8, 3, 2) for _ in range(2)])(x).sum().backward()\n"
        "for run in (lambda: highway_linear(x, torch.randn(16, 8), torch.randn(16), backend='triton'),\n"
        "            lambda: HighwayStack(8, 3, backend='triton-stack')(x)):\n"
        "    try:\n        run(); print('RAN')\n"
        "    except RuntimeError as e:\n        print('ERR', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    asked = ("triton", "triton-stack")
    assert out == [f"ERR backend={name!r} needs the triton package: pip install triton" for name in asked]
