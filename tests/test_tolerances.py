"""The float64 comparison every kernel test and the harness's correctness gate rely on must be able to fail:
just past its tolerance, on a NaN or an inf out of place, and on a shape that differs."""
import pytest
import torch

from highway.tolerances import TOLERANCES, assert_close, max_violation

DTYPES = [torch.float32, torch.float16, torch.bfloat16, "tf32"]


def allowed(expected: torch.Tensor, dtype) -> torch.Tensor:
    tol = TOLERANCES[dtype]
    return tol["atol"] * max(1.0, expected.abs().max().item()) + tol["rtol"] * expected.abs()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("peak", [0.5, 300.0])  # below 1 the atol is absolute; above, it scales with the peak
def test_an_error_just_inside_the_tolerance_passes_and_just_outside_fails(dtype, peak):
    expected = torch.linspace(-peak, peak, 101, dtype=torch.float64)
    budget = allowed(expected, dtype)
    assert max_violation(expected, expected, dtype) == 0.0
    assert_close(expected + 0.99 * budget, expected, dtype)
    worst = expected.clone()
    worst[37] += 1.01 * budget[37]  # one element past its own bound is enough
    assert max_violation(worst, expected, dtype) == pytest.approx(1.01)
    with pytest.raises(AssertionError, match=r"dy \(.*\) differs from the float64 reference: 1.01x the tolerance"):
        assert_close(worst, expected, dtype, name="dy")


@pytest.mark.parametrize("actual,expected,passes", [
    ([1.0, float("nan")], [1.0, float("nan")], True),      # NaN where the reference has NaN
    ([1.0, float("inf")], [1.0, float("inf")], True),
    ([float("nan")] * 2, [float("nan")] * 2, True),        # nothing finite to compare
    ([1.0, float("nan")], [1.0, 2.0], False),              # a NaN the reference does not have
    ([1.0, 2.0], [1.0, float("nan")], False),              # a NaN missing
    ([1.0, float("inf")], [1.0, 2.0], False),              # an overflow
    ([1.0, float("-inf")], [1.0, float("inf")], False),    # the wrong sign of inf
    ([1.0, 1e30], [1.0, float("inf")], False),             # a large finite value where inf belongs
])
def test_nan_and_inf_must_match_in_place(actual, expected, passes):
    actual, expected = torch.tensor(actual, dtype=torch.float64), torch.tensor(expected, dtype=torch.float64)
    violation = max_violation(actual, expected, torch.float32)
    assert (violation <= 1.0) == passes
    if not passes:
        with pytest.raises(AssertionError, match="differs from the float64 reference"):
            assert_close(actual, expected, torch.float32)


def test_a_shape_that_differs_fails_even_where_broadcasting_would_hide_it():
    with pytest.raises(AssertionError, match=r"shape \(1, 4\) != expected \(4,\)"):
        assert_close(torch.zeros(1, 4), torch.zeros(4, dtype=torch.float64), torch.float32)


def test_low_precision_results_are_compared_in_float64_not_in_their_own_dtype():
    """A bf16 value is widened before the subtraction: its rounding error counts, and is not rounded away."""
    expected = torch.full((4,), 1.0 + 2.0 ** -7, dtype=torch.float64)  # exactly representable in bf16
    actual = expected.to(torch.bfloat16)
    assert max_violation(actual, expected, torch.bfloat16) == 0.0
    off = (expected + 0.2).to(torch.bfloat16)  # 0.2 away: past bf16's bound of 0.015 + 0.05·|e| ≈ 0.065
    assert max_violation(off, expected, torch.bfloat16) > 1.0
