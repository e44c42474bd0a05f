"""How a convergence study will fit this machine, worked out before it starts: how many trials of one group
train at once as a population (`population="auto"`), and how long the whole study should take.

The population size is memory-bound, not speed-bound: on a GPU a population is faster the larger it is,
until it fills the chip; on a CPU the per-trial cost is flat past a few dozen trials. So "auto" takes as
many trials of a group as fit in half the memory free now, by a count of what a training step keeps alive.

The time estimate is measured, not modelled: it times a few training steps and an evaluation pass of a
population of the study's size at two depths per model on this machine, fits time = a + b·depth, and sums
over the study's groups, trials and epochs. It is an estimate, printed before a long study starts.
"""
import math
import os
import time

import torch

from highway.bench.study.training import EVAL_BATCH

FLOAT_BYTES = 4
# Tensors per hidden layer, each (batch, width), that a training step keeps alive for the backward: highway
# layers save the input, both pre-activations, H, T and the output (and autograd's temporaries); plain ones
# the input, the pre-activation and the output.
SAVED_PER_LAYER = {"highway": 10, "plain": 4}
PARAMETER_COPIES = 4  # weight, gradient, momentum buffer and one temporary in the update
MEMORY_SHARE = 0.5  # of the memory free now: leave the rest to the data, the allocator and everything else
TIMED_STEPS = 3


def free_memory_bytes(device, meminfo: str = "/proc/meminfo") -> int:
    """Memory a population may take now: the GPU's free memory, or on the CPU what Linux calls available
    (MemAvailable: free pages and the page cache it would drop), else the free pages alone. The free pages
    alone undercount by whatever the page cache holds: a machine that has just read its data sets may show a
    few GB free of 20 available, and "auto" would then split a group into many small populations."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 << 30  # no way to ask: assume a small machine


def trial_bytes(model: str, depth: int, width: int, in_features: int, classes: int, batch: int) -> int:
    """Memory one trial of a population holds during a training step or an evaluation pass, whichever is more."""
    rows = 2 * width if model == "highway" else width
    params = in_features * width + (depth - 1) * rows * (width + 1) + classes * (width + 1)
    saved = batch * width * (2 + SAVED_PER_LAYER[model] * (depth - 1))
    evaluation = EVAL_BATCH * (in_features + 4 * rows + classes)  # no grad: a few layers' tensors live at once
    return FLOAT_BYTES * (PARAMETER_COPIES * params + max(saved, evaluation))


def population_that_fits(model: str, depth: int, width: int, in_features: int, classes: int, batch: int,
                         trials: int, device) -> int:
    """The most trials (at most `trials`, at least 1) whose training fits in MEMORY_SHARE of free memory."""
    per_trial = trial_bytes(model, depth, width, in_features, classes, batch)
    return max(1, min(trials, int(MEMORY_SHARE * free_memory_bytes(device) // per_trial)))


def _seconds_per_trial(make_population, population: int, batch: int, in_features: int, classes: int, device,
                       cuda_graph: bool):
    """(training step, evaluation of one row) in seconds per trial, for a population of `population` nets,
    stepped as the study steps it (`population_step`, replayed as a CUDA graph where the study would)."""
    from highway.bench.study.training import GRAPH_WARMUP_STEPS, population_step, warm_up_and_capture
    from highway.population import PopulationSGD

    pop = make_population(population).to(device)
    opt = PopulationSGD(pop.parameters(), [1e-3] * population, [0.9] * population)
    flat = torch.randn(population * batch, in_features, device=device)
    labels = torch.randint(0, classes, (population * batch,), device=device)
    idx = torch.arange(population * batch, device=device).view(population, batch)
    x, y = flat[idx], labels[idx]
    diverged = torch.zeros(population, dtype=torch.bool, device=device)

    def step():
        population_step(pop, opt, x, y, diverged)

    def synchronize():
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)

    graphed = None
    if cuda_graph and torch.device(device).type == "cuda":
        graphed = warm_up_and_capture(pop, opt, flat, labels, [idx] * GRAPH_WARMUP_STEPS, diverged)
    if graphed is not None:
        step = lambda: graphed(idx)  # noqa: E731
    step()
    synchronize()
    start = time.perf_counter()
    for _ in range(TIMED_STEPS):
        step()
    synchronize()
    train = (time.perf_counter() - start) / TIMED_STEPS
    rows = min(EVAL_BATCH, 512)
    with torch.no_grad():
        pop(x[0, :1].expand(rows, -1))
        synchronize()
        start = time.perf_counter()
        pop(x[0, :1].expand(rows, -1))
        synchronize()
    evaluate = (time.perf_counter() - start) / rows
    return train / population, evaluate / population


def expected_seconds(study, data, device, population_for, widths: dict) -> float:
    """The study's expected running time on `device`: measured at two depths per model (at most 20 and 40
    layers, so that the measurement itself stays short), extrapolated linearly in depth, summed over every
    (arm, depth, trial, epoch). `population_for(model, depth)` is the population size the study will use;
    `widths` maps each model to its width."""
    from highway.models import highway_mlp, plain_mlp
    from highway.population import stack_population

    steps = math.ceil(len(data.x_train) / study.batch)
    evaluated = len(data.x_train) + len(data.x_val)
    total = 0.0
    for model in study.models:
        arms = len(study.gate_rules) if model == "highway" else 1
        low, high = min(min(study.depths), 20), min(max(study.depths), 40)
        high = high if high > low else low + 10
        population = population_for(model, max(study.depths))
        measured = {}
        for depth in (low, high):
            def make(p, depth=depth):
                if model == "highway":
                    nets = [highway_mlp(data.in_features, widths[model], depth, data.num_classes, "relu", -2.0,
                                        study.backend) for _ in range(p)]
                else:
                    nets = [plain_mlp(data.in_features, widths[model], depth, data.num_classes, "relu")
                            for _ in range(p)]
                return stack_population(nets)
            measured[depth] = _seconds_per_trial(make, population, study.batch, data.in_features,
                                                 data.num_classes, device, study.cuda_graph)
        for depth in study.depths:
            train, evaluate = (measured[low][i] + (measured[high][i] - measured[low][i]) * (depth - low) / (high - low)
                               for i in range(2))
            per_trial = study.epochs * steps * max(train, 0.0) + (study.epochs + 1) * evaluated * max(evaluate, 0.0)
            total += arms * study.trials * per_trial
    return total


def describe_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
