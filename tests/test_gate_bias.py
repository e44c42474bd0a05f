"""The depth-aware transform-gate bias: the rule's values, the builders using it, and that it trains deep nets."""
import math

import pytest
import torch
import torch.nn.functional as F

from highway.gates import carried_fraction
from highway.bench.study.datasets import load_dataset
from highway import HighwayConv2d, cifar_convnet, highway_mlp, highway_stack, mnist_convnet  # noqa: F401
from highway.gate_bias import gate_bias_for_depth
from highway_cases import sgd_steps


@pytest.mark.parametrize("layers", [1, 9, 49, 99, 999])
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_first_order_rule_is_the_closed_form(layers, keep):
    b = gate_bias_for_depth(layers, keep, gate_std=0.0)
    assert b == pytest.approx(math.log(keep ** (-1 / layers) - 1), rel=1e-12)
    assert (1 - torch.sigmoid(torch.tensor(b, dtype=torch.float64))) ** layers == pytest.approx(keep, rel=1e-9)


def test_rule_values_at_the_papers_depths():
    values = {d: gate_bias_for_depth(d - 1) for d in (10, 20, 50, 100, 1000)}
    assert values == pytest.approx({10: -2.97, 20: -3.765, 50: -4.74, 100: -5.45, 1000: -7.77}, abs=0.01)
    assert all(a > b for a, b in zip(list(values.values()), list(values.values())[1:]))  # deeper → more negative
    # the data term lowers the bias by about s²/2 once the bias is very negative
    assert gate_bias_for_depth(999, gate_std=1.0) - gate_bias_for_depth(999, gate_std=0.0) == pytest.approx(-0.5, abs=0.01)


@pytest.mark.parametrize("bad", [dict(layers=0), dict(layers=10, keep=1.0), dict(layers=10, keep=0.0),
                                 dict(layers=10, gate_std=-1.0)])
def test_rule_rejects_bad_arguments(bad):
    with pytest.raises(ValueError):
        gate_bias_for_depth(**bad)


def test_builders_set_the_rule():
    net = highway_mlp(64, 16, 200, 10, gate_bias="auto")
    assert {layer.gate_bias for layer in net.layers} == {gate_bias_for_depth(199)}
    assert torch.all(net.layers[5].bias[16:] == gate_bias_for_depth(199))
    assert highway_mlp(64, 16, 20, 10, gate_bias="auto", keep=0.9).layers[0].gate_bias == gate_bias_for_depth(19, 0.9)
    assert highway_stack(16, 30, gate_bias="auto")[0].gate_bias == gate_bias_for_depth(30)
    mnist = [m.gate_bias for m in mnist_convnet(gate_bias="auto").modules() if isinstance(m, HighwayConv2d)]
    assert mnist == [gate_bias_for_depth(8)] * 8  # pooling does not restart the carry path
    cifar = [m.gate_bias for m in cifar_convnet("A", gate_bias="auto").modules() if isinstance(m, HighwayConv2d)]
    assert cifar == [gate_bias_for_depth(2)] * 4 + [gate_bias_for_depth(3)] * 3  # each stage's run
    with pytest.raises(ValueError, match="'auto'"):
        highway_mlp(64, 16, 20, 10, gate_bias="deep")


def test_measured_carry_matches_the_target_at_initialization():
    """The experiment behind the rule: on real data, about `keep` of the input crosses the stack."""
    data = load_dataset("default", max_train=600)
    x = data.x_train.flatten(1)
    for depth in (20, 200):
        torch.manual_seed(0)
        carried = carried_fraction(highway_mlp(data.in_features, 50, depth, 10, gate_bias="auto"), x)
        assert 0.35 < carried[-1] < 0.7
        torch.manual_seed(0)
        fixed = carried_fraction(highway_mlp(data.in_features, 50, depth, 10, gate_bias=-2.0), x)
        assert fixed[-1] < carried[-1] and (depth < 100 or fixed[-1] < 1e-6)


def test_auto_trains_at_depth_200_where_the_fixed_default_does_not():
    data = load_dataset("default", max_train=2000)
    x, y = data.x_train.flatten(1), data.y_train
    final = {}
    for gate_bias in ("auto", -2.0):
        torch.manual_seed(0)
        net = highway_mlp(data.in_features, 50, 200, data.num_classes, gate_bias=gate_bias, backend="torch")
        sgd_steps(net, x, y, steps=150, lr=0.01)
        with torch.no_grad():
            final[gate_bias] = F.cross_entropy(net(x), y).item()
    chance = math.log(data.num_classes)
    assert final["auto"] < 0.6 * chance, final
    assert final[-2.0] > 0.9 * chance, final
