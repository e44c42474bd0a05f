"""Population sweeps: P trials of the paper's thin nets, one SGD train step each, trained as one population
(`highway.population`) and as P nets one after another, timed side by side.

    from highway.bench.harness.population_sweep import population_sweep
    df = population_sweep("results/", depth=[20], population=[1, 8, 32, 128], backend=["torch", "compile"])

Each row times both arrangements of one case in alternation (one step of each per round), so that the
ratio between them is measured under the same load; it reports trials/s and samples/s for both and the
speed-up. Before timing, the population's logits are checked against its nets' (the same backend, the same
weights). A case that cannot run becomes a row whose status says why, as in the throughput sweep.
"""
import contextlib
import itertools
import math
import time
from dataclasses import asdict, dataclass

import pandas as pd
import torch
import torch.nn.functional as F

from highway.bench.harness.backends import BACKENDS
from highway.bench.harness.cases import DTYPES, Case, float32_precision, tolerance_for
from highway.bench.harness.environment import environment, resolve_device
from highway.bench.harness.profile import tuned_configs
from highway.bench.harness.progress import progress_bar
from highway.bench.harness.store import ResultStore
from highway.bench.harness.sweep import failure_status
from highway.bench.harness.timing import CPU_THREADS, Timing, cpu_threads, first_call, load_average
from highway.bench.schema import BASELINE_BACKEND, MODELS, POPULATION_COLUMNS, POPULATION_FILE, POPULATION_KEYS, \
    STATUS_OK
from highway.models import highway_mlp, plain_mlp
from highway.population import PopulationSGD, stack_population
from highway.tolerances import max_violation

CLASSES = 10
DEFAULT_POPULATIONS = [1, 8, 32, 128]
ROUNDS, MAX_SECONDS = 10, 20.0  # timed rounds per row: up to ROUNDS, at least 3, stopping after MAX_SECONDS
# Backends that train a net of the paper's shape: gemm-only is a GEMM reference for one stack, not a net, and
# "triton-stack" here builds each net with highway_mlp(stack=True): one net is then one launch of the
# depth-fused stack for its hidden layers, and a population of them one launch for every trial's
# (the throughput backend of that name rebuilds a bare stack of layers, not a net, so its `prepare` is not
# used here; nor is the recomputing variant's, which saves memory, not time). Nor is a backend whose step
# the throughput harness captures in a CUDA graph (`cuda_graphs="step"`): this sweep captures no steps.
STACKED = "triton-stack"
POPULATION_BACKENDS = [name for name, b in BACKENDS.items()
                       if b.computes_the_layer and b.cuda_graphs != "step"
                       and (name == STACKED or not name.startswith(STACKED))]

PRESETS = {
    # The CPU target: 32 trials, depth 20, width 50, against one by one; and how it grows with P.
    "quick": dict(model=["highway", "plain"], depth=[20], width=[50], dtype=["fp32"], batch=[64],
                  backend=["torch"], population=DEFAULT_POPULATIONS),
    # A GPU: the paper's depths, every backend that can train a population.
    "full": dict(model=["highway", "plain"], depth=[10, 100, 1000], width=[50], dtype=["fp32", "bf16"], batch=[64],
                 backend=POPULATION_BACKENDS, population=DEFAULT_POPULATIONS),
}


@dataclass(frozen=True)
class PopulationCase:
    model: str
    depth: int
    width: int
    dtype: str
    batch: int
    backend: str
    population: int

    def key(self) -> tuple:
        return tuple(asdict(self).values())

    def describe(self) -> str:
        return f"{self.model} d={self.depth} w={self.width} {self.dtype} b={self.batch} {self.backend} P={self.population}"

    def as_case(self) -> Case:
        """The throughput case of one trial: what a backend checks it can run."""
        return Case(self.model, "dense", self.depth, self.width, self.dtype, self.batch, self.backend, "train")


if list(PopulationCase.__dataclass_fields__) != POPULATION_KEYS:
    raise ImportError(f"PopulationCase fields differ from the schema's {POPULATION_KEYS}")


def expand(model=("highway",), depth=(20,), width=(50,), dtype=("fp32",), batch=(64,), backend=("torch",),
           population=tuple(DEFAULT_POPULATIONS)) -> list[PopulationCase]:
    """Every case of the cross product; ValueError naming the first bad value, before anything runs."""
    for name, values, allowed in (("model", model, MODELS), ("dtype", dtype, DTYPES),
                                  ("backend", backend, POPULATION_BACKENDS)):
        unknown = [v for v in values if v not in allowed]
        if not values or unknown:
            raise ValueError(f"unknown {name} {unknown}; expected some of {list(allowed)}")
    for name, values in (("depth", depth), ("width", width), ("batch", batch), ("population", population)):
        if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
            raise ValueError(f"{name} must be positive integers, got {list(values)}")
    if "highway" in model and min(depth) < 2:
        raise ValueError(f"a highway net needs depth >= 2 (its first layer is plain), got depths {list(depth)}")
    backends = sorted(dict.fromkeys(backend), key=lambda b: b != BASELINE_BACKEND)
    return list(dict.fromkeys(PopulationCase(*c) for c in itertools.product(model, depth, width, dtype, batch,
                                                                             backends, population)))


def build_nets(case: PopulationCase, layer_backend: str, device) -> list:
    """P nets of the paper's shape (a plain first layer, depth − 1 hidden layers, a softmax layer) on
    width-sized inputs, each with its own initialization."""
    torch.manual_seed(0)
    dtype = DTYPES[case.dtype]
    if case.model == "highway":
        stack = case.backend == STACKED
        nets = [highway_mlp(case.width, case.width, case.depth, CLASSES, "relu", -2.0,
                            STACKED if stack else layer_backend, stack=stack) for _ in range(case.population)]
    else:
        nets = [plain_mlp(case.width, case.width, case.depth, CLASSES, "relu") for _ in range(case.population)]
    return [net.to(device=device, dtype=dtype) for net in nets]


def _steps(case: PopulationCase, device):
    """(one-by-one step, population step, error of the population's logits against its nets')."""
    backend = BACKENDS[case.backend]
    nets = build_nets(case, backend.layer_backend, device)
    population = stack_population(nets)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(case.population, case.batch, case.width, generator=g).to(device, DTYPES[case.dtype])
    y = torch.randint(0, CLASSES, (case.population, case.batch), generator=g).to(device)
    with torch.no_grad():
        expected = torch.stack([net(xp) for net, xp in zip(nets, x)])
        error = max_violation(population(x), expected.double(), tolerance_for(case.dtype))
    prepare = (lambda net: net) if case.backend == STACKED else backend.prepare  # noqa: E731
    alone = [prepare(net) for net in nets]
    opts = [torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9) for net in nets]
    together = prepare(population)
    opt = PopulationSGD(population.parameters(), [1e-3] * case.population, 0.9)

    def one_by_one():
        for net, o, xp, yp in zip(alone, opts, x, y):
            o.zero_grad(set_to_none=True)
            F.cross_entropy(net(xp), yp).backward()
            o.step()

    def as_population():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(together(x).transpose(1, 2), y, reduction="none").mean(1).sum().backward()
        opt.step()

    return one_by_one, as_population, error


def run_population_case(case: PopulationCase, device: torch.device, threads: int = CPU_THREADS) -> dict:
    """Check and time one case; its row (without the run's environment columns)."""
    row = {**asdict(case)}
    reason = BACKENDS[case.backend].unsupported(case.as_case(), device)
    if reason:
        return {**row, "status": f"unsupported: {reason}"}
    try:
        with cpu_threads(threads) if device.type == "cpu" else contextlib.nullcontext(), float32_precision(case.dtype):
            one_by_one, as_population, error = _steps(case, device)
            row["max_error"] = error
            if not error <= 1.0:
                return {**row, "status": f"mismatch: the population's logits are {error:.3g}x the tolerance off "
                                         f"its nets'"}
            for _ in range(2):  # compilation, autotuning, allocator warm-up
                one_by_one()
                as_population()
            alone, together, deadline = [], [], time.perf_counter() + MAX_SECONDS
            while len(alone) < ROUNDS and (len(alone) < 3 or time.perf_counter() < deadline):
                alone.append(first_call(one_by_one, device)[1])  # a whole step, up to GPU completion
                together.append(first_call(as_population, device)[1])
            if device.type == "cpu":
                row.update(threads=threads, load_avg=load_average())
            row["configs"] = tuned_configs(as_population, device)
    except Exception as e:  # a failing configuration is a result, not the end of the sweep
        return {**row, "status": failure_status(e)}
    together, alone = Timing(together), Timing(alone)
    pop_ms, one_ms = together.median_ms, alone.median_ms
    return {**row, "status": STATUS_OK, "population_ms": pop_ms, "population_p20_ms": together.quantile(0.2),
            "population_p80_ms": together.quantile(0.8), "one_by_one_ms": one_ms,
            "one_by_one_p20_ms": alone.quantile(0.2), "one_by_one_p80_ms": alone.quantile(0.8),
            "speedup": one_ms / pop_ms,
            "trials_per_s": case.population / (pop_ms * 1e-3), "one_by_one_trials_per_s": case.population / (one_ms * 1e-3),
            "samples_per_s": case.population * case.batch / (pop_ms * 1e-3),
            "one_by_one_samples_per_s": case.population * case.batch / (one_ms * 1e-3),
            "repeats": len(alone.samples)}


def population_sweep(out, *, overwrite: bool = False, device=None, progress: bool = True, argv=None,
                     threads: int = CPU_THREADS, deadline: float | None = None, retry_failed: bool = False,
                     **axes) -> pd.DataFrame:
    """Run the sweep of `axes` (see `expand`) into the results store in `out`; the rows of this sweep.
    Resumes, shares work with other runs into `out` and retries failures as `throughput_sweep` does."""
    device = resolve_device(device)
    cases = expand(**axes)
    with ResultStore(out, POPULATION_FILE, POPULATION_COLUMNS, POPULATION_KEYS) as store:
        todo = store.pending(cases, overwrite, "population cases", retry_failed)
        if todo:
            env = environment(device, argv)
            store.record_run(env)
            late = 0
            bar = progress_bar(todo, progress, "case")
            for case in bar:
                if deadline is not None and time.monotonic() > deadline:
                    late += 1
                    continue
                if not store.claim(case.key()):
                    continue
                if hasattr(bar, "set_postfix_str"):
                    bar.set_postfix_str(case.describe())
                try:
                    row = run_population_case(case, device, threads)
                except BaseException:
                    store.release(case.key())
                    raise
                row.update({k: env[k] for k in ("device", "device_type", "commit", "run_id", "timestamp")})
                store.append(row, unit=case.key())
            if late:
                print(f"{late} population cases left for a re-run: the time budget ran out")
        return store.rows_of(cases)


def population_table(df: pd.DataFrame) -> str:
    """A short text table: per case, the speed-up of the population over one by one, and trials/s."""
    if df.empty:
        return "no results"
    ok = df[df["status"] == STATUS_OK]
    lines = []
    if not ok.empty:
        # the speed-up a noisy machine could have shown: the population's slowest fifth of calls against one
        # by one's fastest, and the other way round
        spread = [f"{a:.3g}-{b:.3g}" for a, b in zip(ok["one_by_one_p20_ms"] / ok["population_p80_ms"],
                                                       ok["one_by_one_p80_ms"] / ok["population_p20_ms"])]
        show = ok[POPULATION_KEYS + ["one_by_one_ms", "population_ms", "speedup"]].assign(spread=spread)
        show = show.join(ok[["trials_per_s", "one_by_one_trials_per_s"]])
        lines.append("train steps of P trials, one by one against one population"
                     + (" (CPU)" if (df["device_type"] == "cpu").all() else "") + ":")
        lines.append(show.to_string(index=False, float_format=lambda v: f"{v:.3g}" if math.isfinite(v) else "-"))
    bad = df[df["status"] != STATUS_OK]
    if not bad.empty:
        lines.append(f"\n{len(bad)} cases did not run:")
        lines.extend(f"  {n:4d} × {s}" for s, n in bad["status"].str.slice(0, 90).value_counts().items())
    return "\n".join(lines)
