"""Choosing the transform-gate bias from the depth, so that a chosen fraction of the input crosses the stack.

Derivation. At initialization a highway layer computes y = x + T·(H − x), so the input reaches the output
of L stacked layers along the carry path with weight ∏ₗ (1 − Tₗ). With Tₗ = σ(bₗ + zₗ), where zₗ = w_T·x
is the gate's data term, and log(1 − σ(u)) = −softplus(u), the carried fraction of a unit is

    log ∏ₗ (1 − Tₗ) = −Σₗ softplus(b + zₗ)  ≈  −L · E_z[softplus(b + z)].

Asking that a fraction `keep` survives all L layers gives the rule

    E_z[softplus(b + z)] = −ln(keep) / L.

First term (no data term, z = 0): softplus(b) = −ln(keep)/L, i.e. b₀ = ln(keep^(−1/L) − 1) = logit(1 − keep^(1/L)),
≈ ln(−ln(keep)/L): the bias must fall like −ln L. A fixed bias instead lets the carried fraction decay
geometrically, (1 − σ(b))^L: at b = −2 only 0.88^L, 3·10⁻⁶ of the input after 100 layers.

Second term (the data term): with W_T ~ N(0, 1/N) (`highway.init`) and inputs of mean square q, z is about
N(0, s²) with s² = q. For the very negative biases deep stacks need, softplus(b + z) ≈ e^(b+z) and
E[e^z] = e^(s²/2), so b ≈ b₀ − s²/2: half a unit lower for unit-variance activations. `gate_bias_for_depth`
solves the equation exactly (Gauss–Hermite quadrature over z) for a given s.

Which L: the highway layers that a signal must cross in a row. In `highway_mlp(depth=D)` that is D − 1. In
conv nets a plain layer (where the channel count changes) transforms everything and restarts the carry
path, so each run of highway layers between plain layers gets the bias for its own length; pooling passes
the carried signal on and does not restart it.
"""
import math

import numpy as np

from highway.checks import positive_int

DEFAULT_KEEP = 0.5
DEFAULT_GATE_STD = 1.0


def gate_bias_for_depth(layers: int, keep: float = DEFAULT_KEEP, gate_std: float = DEFAULT_GATE_STD) -> float:
    """The transform-gate bias b with E_z[softplus(b + z)] = −ln(keep)/layers, z ~ N(0, gate_std²): at
    initialization a fraction `keep` of the input crosses `layers` highway layers along the carry path.

    `gate_std=0` gives the first-order rule logit(1 − keep^(1/layers)). See the module docstring.
    """
    positive_int("layers", layers)
    if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0.0 < keep < 1.0:
        raise ValueError(f"keep must be a fraction in (0, 1), got {keep!r}")
    if isinstance(gate_std, bool) or not isinstance(gate_std, (int, float)) or not 0.0 <= gate_std < math.inf:
        raise ValueError(f"gate_std must be a finite number >= 0, got {gate_std!r}")
    target = -math.log(keep) / layers
    first = math.log(math.expm1(target))  # softplus(b0) = target
    if gate_std == 0.0:
        return first
    nodes, weights = np.polynomial.hermite_e.hermegauss(48)
    z, w = gate_std * nodes, weights / weights.sum()

    def mean_softplus(b):
        return float(np.sum(w * np.logaddexp(0.0, b + z)))

    lo, hi = first - 4.0 * gate_std * gate_std - 5.0, first
    for _ in range(100):  # E[softplus(b + z)] increases with b: bisection
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if mean_softplus(mid) < target else (lo, mid)
    return 0.5 * (lo + hi)


def resolve_gate_bias(gate_bias, layers: int, keep: float = DEFAULT_KEEP) -> float:
    """A model builder's `gate_bias` argument as a number: "auto" means `gate_bias_for_depth(layers, keep)`."""
    if isinstance(gate_bias, str):
        if gate_bias != "auto":
            raise ValueError(f"gate_bias must be a number or 'auto', got {gate_bias!r}")
        return gate_bias_for_depth(max(layers, 1), keep)
    return gate_bias
