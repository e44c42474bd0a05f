"""Test set-up: without a GPU, our Triton kernels run under Triton's CPU interpreter.

TRITON_INTERPRET must be set before triton is first imported (Triton reads it when a kernel is
decorated), so it is set here, at collection time, before any test module imports `highway.kernels`.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

from highway.bench.harness import ledger  # noqa: E402


# Kernels under the interpreter cost about a second an example: keep hypothesis's runs short there. On a
# GPU every new shape autotunes; HIGHWAY_HYPOTHESIS_PROFILE=interpreter keeps a short lease's runs short too.
settings.register_profile("interpreter", max_examples=12, deadline=None, derandomize=True)
settings.register_profile("gpu", max_examples=100, deadline=None)
settings.load_profile(os.environ.get("HIGHWAY_HYPOTHESIS_PROFILE") or ("gpu" if torch.cuda.is_available() else
                                                                       "interpreter"))


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU (bf16 kernels, large shapes); skipped on CPU")


# A run that a short GPU lease cuts off goes on where it stopped (`highway-bench campaign`'s test steps): with
# HIGHWAY_TEST_LEDGER naming a ledger (`highway.bench.harness.ledger`), each test's outcome is appended to it as
# the test ends, and a later run leaves out the tests it already names.
LEDGER = os.environ.get("HIGHWAY_TEST_LEDGER")


def pytest_collection_modifyitems(config, items):
    if LEDGER:
        _, done = ledger.read(LEDGER)
        config.hook.pytest_deselected(items=[item for item in items if item.nodeid in done])
        items[:] = [item for item in items if item.nodeid not in done]
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (bf16 tensor cores, wide layers, Inductor): the CPU "
                                   "interpreter computes bf16 tl.dot wrongly and has no Inductor GPU backend")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def pytest_runtest_logreport(report):
    # a test ends at its call, or at its setup when that skips or fails (then it has no call)
    if LEDGER and (report.when == "call" or (report.when == "setup" and not report.passed)):
        outcome = "error" if report.when == "setup" and report.failed else report.outcome
        ledger.record(LEDGER, outcome, report.nodeid)


@pytest.fixture(scope="session")  # session-scoped, so that hypothesis tests may use it too
def device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture
def tf32_matmuls():
    """fp32 GEMMs on TF32 tensor cores, torch's and our kernels' alike (torch.set_float32_matmul_precision
    ("high")); the process's own precision back after. Tests under it are held to TOLERANCES["tf32"]."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    yield
    torch.set_float32_matmul_precision(before)
