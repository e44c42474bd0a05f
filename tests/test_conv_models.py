"""The conv highway layer's contract and the paper's conv nets: parameter counts, bad input, training."""
import pytest
import torch
import torch.nn.functional as F

from highway.bench.study.datasets import fashion_mnist_available, load_dataset
from highway import HighwayConv2d
from highway.conv_models import cifar_convnet, mnist_convnet
from highway.functional import highway_conv2d
from highway.reference import highway_conv2d_reference
from highway.tolerances import assert_close
from highway_cases import ACTIVATION_NAMES, conv_inputs, sgd_steps


def n_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("build,ours,paper", [
    (lambda: mnist_convnet(width=16), 38_730, 39_000),
    (lambda: mnist_convnet(width=32), 151_178, 151_000),
    (lambda: cifar_convnet("A"), 237_794, 236_000),
    (lambda: cifar_convnet("B"), 2_262_714, 2_300_000),
    (lambda: cifar_convnet("C"), 1_255_162, 1_250_000),
])
def test_parameter_counts_match_the_paper(build, ours, paper):
    net = build()
    assert n_params(net) == ours  # the count documented next to the builder
    assert abs(ours - paper) / paper < 0.03


@pytest.mark.parametrize("kind", ["highway", "plain"])
@pytest.mark.parametrize("build,shape", [
    (lambda kind: mnist_convnet(kind, width=16), (2, 1, 28, 28)),
    (lambda kind: cifar_convnet("A", kind), (2, 3, 32, 32)),
    (lambda kind: cifar_convnet("B", kind), (2, 3, 32, 32)),
    (lambda kind: cifar_convnet("C", kind, head="gap"), (2, 3, 32, 32)),
])
def test_builders_forward_and_backward(build, shape, kind):
    torch.manual_seed(0)
    net = build(kind)
    assert net.kind == kind
    assert any(isinstance(m, HighwayConv2d) for m in net.modules()) == (kind == "highway")
    out = net(torch.randn(shape))
    assert out.shape == (2, 10)
    out.sum().backward()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in net.parameters())


def test_gap_head_is_a_1x1_conv_and_average_pool():
    net = cifar_convnet("A", head="gap", num_classes=100)
    assert isinstance(net.head[0], torch.nn.Conv2d) and net.head[0].kernel_size == (1, 1)
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 100)


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_reference_gradcheck_float64(activation):
    x, w, b = (t.requires_grad_() for t in conv_inputs(1, 2, 3, 4, 3, torch.float64, "cpu"))
    assert torch.autograd.gradcheck(lambda *a: highway_conv2d_reference(*a, activation), (x, w, b))


def test_layer_init_and_state_dict_across_backends(device):
    torch.manual_seed(0)
    ref = HighwayConv2d(16, 3, gate_bias=-2.0, backend="torch")
    assert ref.weight.shape == (32, 16, 3, 3) and torch.all(ref.bias[16:] == -2.0)
    assert ref.weight[:16].std().item() == pytest.approx(2 ** 0.5 / 12, rel=0.1)  # He: √2/√(16·9)
    fused = HighwayConv2d(16, 3, backend="triton", device=device)
    fused.load_state_dict(ref.state_dict())
    x = torch.randn(2, 16, 5, 5)
    assert_close(fused(x.to(device)), ref.double()(x.double()), torch.float32)


BAD = {
    "even kernel": (lambda x, w, b: (x, w[..., :2, :2], b), ValueError, "kernel size must be odd"),
    "channel mismatch": (lambda x, w, b: (x[:, :4], w, b), ValueError, r"\(2C, C, k, k\) = \(8, 4, k, k\)"),
    "non-square kernel": (lambda x, w, b: (x, w[..., :1], b), ValueError, r"got \(16, 8, 3, 1\)"),
    "bias shape": (lambda x, w, b: (x, w, b[:8]), ValueError, r"bias must have shape \(2C,\) = \(16,\)"),
    "3-d input": (lambda x, w, b: (x[0], w, b), ValueError, "must be 4-D"),
    "mixed dtypes": (lambda x, w, b: (x.double(), w, b), TypeError, "dtypes must match"),
    "mixed devices": (lambda x, w, b: (x, w, b.to("meta")), ValueError, "one device"),
    "integer input": (lambda x, w, b: (x.int(), w.int(), b.int()), TypeError, "floating-point"),
}


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("case", list(BAD))
def test_bad_inputs(case, backend):
    make, error, message = BAD[case]
    x, w, b = conv_inputs(2, 8, 5, 5, 3, torch.float32, "cpu")
    with pytest.raises(error, match=message):
        highway_conv2d(*make(x, w, b), backend=backend)


@pytest.mark.parametrize("kwargs", [dict(kernel_size=2), dict(channels=0), dict(gate_bias=float("inf"))])
def test_bad_layer_arguments(kwargs):
    with pytest.raises(ValueError):
        HighwayConv2d(**{"channels": 8, **kwargs})


def test_mnist_convnet_trains_on_real_images():
    """A short run on Fashion-MNIST (Debian's dataset-fashion-mnist) or, without it, digits upsampled."""
    torch.manual_seed(0)
    data = load_dataset("default", max_train=2048)
    x, y = data.x_train, data.y_train
    if not fashion_mnist_available():
        x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
    losses = sgd_steps(mnist_convnet(width=16, backend="torch"), x, y, steps=60, lr=0.02)
    assert sum(losses[-10:]) / 10 < 0.6 * sum(losses[:10]) / 10
