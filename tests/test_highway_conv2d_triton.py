"""The fused Triton conv highway layer against the float64 reference: forward and all three gradients.

On CPU these run under Triton's interpreter (bf16 with the interpreter's fp32-dot workaround in one test,
the tensor-core path in `gpu`-marked tests), with shapes small enough that the suite stays fast.
"""
import pytest
import torch
from hypothesis import given, strategies as st

from highway.functional import highway_conv2d
from highway.tolerances import assert_close
from highway_cases import ACTIVATION_NAMES, conv_inputs, conv_reference_and_triton
from highway.kernels import highway_conv2d_bwd


def check_conv(b, c, h, w, k, activation, dtype, device, channels_last=False, seed=0, tolerance=None):
    """The layer's output and gradients against float64, within `dtype`'s tolerance (or `tolerance`'s)."""
    x, wt, bias = conv_inputs(b, c, h, w, k, dtype, device, seed=seed, channels_last=channels_last)
    dy = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed + 1)).to(device, dtype)
    (y_ref, g_ref), (y, g) = conv_reference_and_triton(x, wt, bias, activation, dy)
    assert y.shape == x.shape and y.dtype == dtype
    assert_close(y, y_ref, tolerance or dtype, "y")
    for name, actual, expected in zip(("dx", "dweight", "dbias"), g, g_ref):
        assert actual.shape == expected.shape and actual.dtype == dtype
        assert_close(actual, expected, tolerance or dtype, name)
    return y


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("c,k", [(16, 1), (16, 3), (16, 5), (48, 1), (48, 3)])
def test_kernel_sizes_and_channels(c, k, dtype, device):
    check_conv(2, c, 5, 7, k, "relu", dtype, device)


@pytest.mark.parametrize("c", [32, 96])
def test_wider_channel_counts(c, device):
    check_conv(1, c, 3, 5, 3, "relu", torch.float32, device)


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_activations(activation, device):
    check_conv(1, 16, 4, 5, 3, activation, torch.float32, device)


def test_batch_one_odd_sizes_channels_last(device):
    y = check_conv(1, 24, 7, 9, 3, "tanh", torch.float32, device, channels_last=True)
    assert y.is_contiguous(memory_format=torch.channels_last)


def test_bf16_under_interpreter_with_fp32_dot(device):
    if device.type == "cuda":
        pytest.skip("covers the interpreter's bf16 workaround")
    check_conv(2, 16, 5, 5, 3, "relu", torch.bfloat16, device)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("c,k", [(16, 3), (32, 5), (48, 1), (96, 3), (160, 3)])
def test_on_gpu(c, k, dtype, device):
    check_conv(4, c, 17, 15, k, "relu", dtype, device)
    check_conv(1, c, 9, 9, k, "tanh", dtype, device, channels_last=True)


@pytest.mark.gpu
@pytest.mark.parametrize("c,k", [(16, 3), (160, 3)])
def test_tf32_on_gpu(c, k, device, tf32_matmuls):
    """fp32 at torch's "high" precision: the kernels' TF32 configs, on the tensor cores."""
    check_conv(4, c, 17, 15, k, "relu", torch.float32, device, tolerance="tf32")


def test_split_weight_reduction_with_atomics(device):
    x, w, b = conv_inputs(2, 16, 6, 6, 3, torch.float32, device)
    dy = torch.randn(x.shape).to(device)
    got = highway_conv2d_bwd(dy, x, w, b, "relu", split=3)
    want = highway_conv2d_bwd(dy, x, w, b, "relu", split=1)
    for a, e in zip(got, want):
        assert_close(a, e.double(), torch.float32)


def test_empty_batch(device):
    x, w, b = conv_inputs(0, 16, 4, 4, 3, torch.float32, device)
    assert highway_conv2d(x, w, b, backend="triton").shape == (0, 16, 4, 4)


@given(
    b=st.integers(1, 2), c=st.sampled_from([8, 16, 20, 33]), h=st.integers(1, 6), w=st.integers(1, 6),
    k=st.sampled_from([1, 3, 5]), activation=st.sampled_from(ACTIVATION_NAMES),
    dtype=st.sampled_from([torch.float32, torch.float16]), seed=st.integers(0, 2**16),
)
def test_hypothesis_shapes(b, c, h, w, k, activation, dtype, seed, device):
    check_conv(b, c, h, w, k, activation, dtype, device, seed=seed)


def test_the_dual_gemms_leave_out_the_ieee_tile_that_spills_in_its_loop_on_older_tritons(monkeypatch):
    """Where the fp32 dot takes no BLOCK_K below 16 (triton 3.6, the GPU image's), the dual GEMMs' 128 × 64 IEEE
    tile spilled inside its K loop, so their autotuners leave it out there; with 8 (triton 3.9) it stays, as do
    the tensor-core tiles."""
    from highway.kernels import highway_conv2d as conv, launch

    tensor_core = conv._CONV2_CONFIGS
    largest = lambda configs: [c for c in configs if c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"] >= 128 * 64]  # noqa
    monkeypatch.setattr(launch, "smallest_fp32_dot_k", lambda: 8)  # as triton 3.9 says
    assert all(conv._dual_fma_fits({}, c) for c in tensor_core + launch.fma_configs(tensor_core, conv._FMA_BLOCK_K))
    monkeypatch.setattr(launch, "smallest_fp32_dot_k", lambda: 16)  # as triton 3.6 says
    fma = launch.fma_configs(tensor_core, conv._FMA_BLOCK_K)
    assert len(largest(fma)) == 1 and [c for c in fma if not conv._dual_fma_fits({}, c)] == largest(fma)
    assert all(conv._dual_fma_fits({}, c) for c in tensor_core)
