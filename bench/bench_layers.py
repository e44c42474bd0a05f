"""pytest-benchmark suite: every backend over a small grid of highway stacks, grouped by shape.

    pytest bench --benchmark-only
    pytest bench --benchmark-only --benchmark-autosave            # then, after a change:
    pytest bench --benchmark-only --benchmark-compare --benchmark-compare-fail=median:10%
    pytest bench --benchmark-disable                              # every bench run once, as a test

The timer waits for the GPU before reading the clock, so a round measures finished work, not queued
launches. Each backend is checked against the float64 reference before it is timed. The configuration
(model, layer, depth, width, batch, dtype, mode, backend, shape, device) and TFLOP/s and GB/s (from
`highway.bench.harness.flops`) are in each result's `extra_info`. On a CPU the GPU-only backends skip,
saying why, and the timed calls run on one thread (`highway.bench.harness.timing.CPU_THREADS`).
"""
import contextlib

import pytest
import torch

from highway.bench.harness.backends import BACKENDS
from highway.bench.harness.cases import DTYPES, GATE_MODE, KERNEL_SIZE, Case, build_stack, correctness_error, \
    float32_precision, make_inputs, make_step
from highway.bench.harness.environment import resolve_device
from highway.bench.harness.flops import stack_work
from highway.bench.harness.sweep import Baselines, outputs_in_float64
from highway.bench.harness.timing import CPU_THREADS, cpu_threads, synchronized_perf_counter

DEVICE = resolve_device()
ON_GPU = DEVICE.type == "cuda"

SHAPES = [  # (layer, depth, width, batch, dtype): small on a CPU, GEMM-sized on a GPU
    ("dense", 10, 64, 128, "fp32"),
    ("dense", 10, 1024 if ON_GPU else 256, 256, "bf16" if ON_GPU else "fp32"),
    ("conv", 4, 32, 8, "bf16" if ON_GPU else "fp32"),
]
_baselines = Baselines(DEVICE)


@pytest.mark.benchmark(timer=synchronized_perf_counter)
@pytest.mark.parametrize("mode", ["fwd", "train"])
@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "{}-d{}-w{}-b{}-{}".format(*s))
def test_highway_stack(benchmark, shape, backend, mode):
    layer, depth, width, batch, dtype = shape
    case = Case("highway", layer, depth, width, dtype, batch, backend, mode, spatial=16)
    reason = BACKENDS[backend].unsupported(case, DEVICE)
    if reason:
        pytest.skip(reason)
    with float32_precision(dtype):  # the baselines', the gate's and the timed calls' alike
        x, dy = make_inputs(case, DEVICE)
        net = BACKENDS[backend].prepare(build_stack(case, BACKENDS[backend].layer_backend, DEVICE))
        step = make_step(mode, net, x, dy)
        outputs = make_step(GATE_MODE[mode], net, x, dy)()
        if BACKENDS[backend].computes_the_layer:
            reference, eager = _baselines.get(case)
            error, worst = correctness_error(case, outputs_in_float64(outputs), reference, eager)
            assert error <= 1.0, f"{backend} disagrees with the float64 reference: {error:.3g}x the tolerance ({worst})"

        benchmark.group = f"{layer} depth={depth} width={width} batch={batch} {dtype} {mode}"
        benchmark.extra_info.update(
            model="highway", layer=layer, depth=depth, width=width, batch=batch, dtype=dtype, mode=mode,
            backend=backend, shape=list(x.shape), device=torch.cuda.get_device_name() if ON_GPU else "cpu",
            **({} if ON_GPU else {"threads": CPU_THREADS}))
        # Rounds, time budget and warm-up are pytest-benchmark's own options (--benchmark-min-rounds,
        # --benchmark-max-time, --benchmark-warmup); under --benchmark-disable the step runs once, as a test.
        with contextlib.nullcontext() if ON_GPU else cpu_threads(CPU_THREADS):
            benchmark(step)
    if benchmark.stats is not None:
        work = stack_work("highway", layer, depth, width, batch, mode, DTYPES[dtype].itemsize, 16, KERNEL_SIZE)
        median = benchmark.stats.stats.median
        benchmark.extra_info.update(tflops=work.flops / median / 1e12, gbps=work.bytes / median / 1e9)
