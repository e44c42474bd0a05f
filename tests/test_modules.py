"""HighwayLinear and the paper's MLPs: initialization, state_dict portability, depth 1000, and training."""
import math

import pytest
import torch
import torch.nn.functional as F

from highway import DeepMLP, HighwayLinear, highway_mlp, plain_mlp
from highway.tolerances import assert_close
from highway_cases import sgd_steps


def test_parameters_and_gate_bias():
    layer = HighwayLinear(50, activation="relu", gate_bias=-3.0)
    assert layer.weight.shape == (100, 50) and layer.bias.shape == (100,)
    assert torch.all(layer.bias[50:] == -3.0) and torch.all(layer.bias[:50] == 0.0)
    assert set(layer.state_dict()) == {"weight", "bias"}


@pytest.mark.parametrize("activation,gain", [("relu", math.sqrt(2)), ("tanh", 5 / 3), ("identity", 1.0)])
def test_init_is_variance_preserving(activation, gain):
    torch.manual_seed(0)
    layer = HighwayLinear(400, activation=activation)
    w_h, w_t = layer.weight[:400], layer.weight[400:]
    assert abs(w_h.mean().item()) < 2e-3 and abs(w_t.mean().item()) < 2e-3
    assert w_h.std().item() == pytest.approx(gain / math.sqrt(400), rel=0.02)
    assert w_t.std().item() == pytest.approx(1 / math.sqrt(400), rel=0.02)


def test_plain_layers_keep_signal_variance():
    torch.manual_seed(0)
    net = plain_mlp(100, 256, 20, 10, activation="relu")
    x = net.stem(torch.randn(2048, 100))
    first = x.pow(2).mean().item()
    for layer in net.layers:
        x = layer(x)
    assert 0.5 < x.pow(2).mean().item() / first < 2.0


@pytest.mark.parametrize("bad", [dict(width=0), dict(width=2.5), dict(gate_bias=float("nan")), dict(activation="elu"),
                                 dict(backend="gpu")])
def test_bad_constructor_arguments(bad):
    with pytest.raises(ValueError):
        HighwayLinear(**{"width": 8, **bad})


def test_state_dict_is_the_same_on_every_backend(device):
    torch.manual_seed(0)
    ref = HighwayLinear(50, activation="tanh", backend="torch")
    fused = HighwayLinear(50, activation="tanh", backend="triton", device=device)
    assert ref.state_dict().keys() == fused.state_dict().keys()
    fused.load_state_dict(ref.state_dict())
    x = torch.randn(33, 50)
    assert_close(fused(x.to(device)), ref.double()(x.double()), torch.float32)

    net_ref = highway_mlp(64, 16, 5, 10, backend="torch")
    net_fused = highway_mlp(64, 16, 5, 10, backend="triton").to(device)
    net_fused.load_state_dict(net_ref.state_dict())
    x = torch.randn(7, 64)
    assert_close(net_fused(x.to(device)), net_ref.double()(x.double()), torch.float32)


def test_builders_follow_the_paper():
    net = highway_mlp(784, 50, 100, 10)
    assert isinstance(net, DeepMLP) and net.depth == 100 and len(net.layers) == 99
    assert all(isinstance(layer, HighwayLinear) for layer in net.layers)
    assert net.stem[1].in_features == 784 and net.head.out_features == 10
    plain = plain_mlp(784, 71, 100, 10)
    assert plain.depth == 100 and plain.layers[0][0].weight.shape == (71, 71)
    per_layer = sum(p.numel() for p in net.layers[0].parameters()), sum(p.numel() for p in plain.layers[0].parameters())
    assert per_layer == (5100, 5112)  # "roughly identical numbers of parameters (≈ 5000) per layer"
    assert highway_mlp(20, 8, 1, 3).depth == 1
    with pytest.raises(ValueError, match="depth"):
        highway_mlp(20, 8, 0, 3)


@pytest.mark.parametrize("build", [highway_mlp, plain_mlp])
def test_depth_1000_forward_and_backward(build):
    torch.manual_seed(0)
    net = build(784, 50, 1000, 10)
    x = torch.randn(16, 1, 28, 28)
    loss = F.cross_entropy(net(x), torch.randint(0, 10, (16,)))
    loss.backward()
    assert loss.isfinite()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in net.parameters())
    if build is highway_mlp:  # the carry path delivers gradient all the way down
        assert net.stem[1].weight.grad.abs().sum() > 0


def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    return (x - x.mean(0)) / (x.std(0) + 1e-3), torch.tensor(data.target)


def test_highway_mlp_trains_on_digits():
    torch.manual_seed(0)
    x, y = digits()
    losses = sgd_steps(highway_mlp(64, 32, 20, 10, backend="torch"), x, y, steps=300, lr=0.02)
    assert sum(losses[-10:]) / 10 < 0.3 * sum(losses[:10]) / 10


def test_fused_kernels_train(device):
    torch.manual_seed(0)
    x, y = digits()
    net = highway_mlp(64, 16, 4, 10, backend="triton").to(device)
    losses = sgd_steps(net, x.to(device), y.to(device), steps=25, batch=128, lr=0.1)
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5
