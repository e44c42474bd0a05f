"""Throughput sweeps: the cross product of model, layer, depth, width, dtype, batch, backend and mode.

    from highway.bench.harness.sweep import throughput_sweep
    df = throughput_sweep("results/", model=["highway"], depth=[1, 10, 100], width=[256], backend=["torch", "compile"])

Each configuration is built, run once (timed on its own: compilation, autotuning), checked against a float64
reference (a backend that disagrees gets status `mismatch` and is not timed), timed, measured for peak
memory, and appended to the results store at once. A configuration that cannot run (a backend with no GPU,
out of memory, an exception) becomes a row whose status says why, and the sweep goes on.
"""
import copy
import itertools
import math
from dataclasses import replace

import pandas as pd
import torch

from highway.bench.harness.backends import BACKENDS
from highway.bench.harness.cases import DTYPES, GATE_MODE, KERNEL_SIZE, Case, build_stack, correctness_error, \
    float32_precision, make_inputs, make_step
from highway.bench.harness.devices import peak_for
from highway.bench.harness.environment import environment, resolve_device, worker_identity
from highway.bench.harness.flops import stack_work
from highway.bench.harness.profile import kernels_per_step, tuned_configs
from highway.bench.harness.progress import progress_bar
from highway.bench.harness.store import ResultStore
from highway.bench.harness.timing import CPU_THREADS, cpu_threads, cpu_time, cuda_time, first_call, load_average, \
    peak_memory_mb
from highway.bench.schema import BASELINE_BACKEND, LAYERS, MODELS, MODES, RESULTS_FILE, STATUS_OK, \
    THROUGHPUT_COLUMNS, THROUGHPUT_KEYS

DEFAULT_DEPTHS = [1, 10, 20, 50, 100, 200, 500, 1000]
# A row whose 80th-percentile time is more than this times its 20th is flagged `noisy`: its median is
# not a number to compare against another's.
NOISY_SPREAD = 1.3

PRESETS = {
    # A laptop CPU in about a minute: eager PyTorch vs torch.compile, highway vs plain, dense layers.
    "quick": [dict(model=["highway", "plain"], layer=["dense"], depth=[1, 10, 50], width=[64], dtype=["fp32"],
                   batch=[128], backend=["torch", "compile"], mode=["fwd", "train"])],
    # The paper's thin nets: highway width 50 vs plain width 71 (≈ 5000 parameters a layer), SGD steps.
    "paper": [dict(model=["highway"], layer=["dense"], depth=[10, 20, 50, 100, 200, 500, 1000], width=[50],
                   dtype=["fp32"], batch=[128], backend=["torch", "compile", "triton"], mode=["train"]),
              dict(model=["plain"], layer=["dense"], depth=[10, 20, 50, 100, 200, 500, 1000], width=[71],
                   dtype=["fp32"], batch=[128], backend=["torch", "compile"], mode=["train"])],
    # A GPU: every backend, widths from the paper's to GEMM-bound, the depth preset up to 1000.
    "full": [dict(model=["highway", "plain"], layer=["dense"], depth=[1, 10, 100, 1000], width=[64, 256, 1024, 4096],
                  dtype=["bf16", "fp32"], batch=[256], backend=list(BACKENDS), mode=["fwd", "fwd+bwd", "train"]),
             # the fused GEMM against the bare GEMM (cuBLAS) of the same (M, N)×(N, 2N) shape, at GEMM-bound sizes
             dict(model=["highway"], layer=["dense"], depth=[10], width=[1024, 2048, 4096, 8192], dtype=["bf16"],
                  batch=[4096], backend=["triton", "gemm-only"], mode=["fwd"]),
             dict(model=["highway"], layer=["conv"], depth=[1, 10, 50], width=[16, 64, 160], dtype=["bf16"],
                  batch=[64], backend=list(BACKENDS), mode=["fwd", "train"], spatial=[32])],
}


def expand(model=("highway",), layer=("dense",), depth=tuple(DEFAULT_DEPTHS), width=(64,), dtype=("fp32",), batch=(128,),
           backend=("torch",), mode=("fwd",), spatial=(16,)) -> list[Case]:
    """Every configuration of the cross product, with each shape's backends next to each other and the
    eager baseline first, so that speed-ups can be computed as soon as a row is written."""
    for name, values, allowed in (("model", model, MODELS), ("layer", layer, LAYERS), ("dtype", dtype, DTYPES),
                                  ("backend", backend, BACKENDS), ("mode", mode, MODES)):
        unknown = [v for v in values if v not in allowed]
        if unknown:
            raise ValueError(f"unknown {name} {unknown}; expected some of {list(allowed)}")
    for name, values in (("depth", depth), ("width", width), ("batch", batch), ("spatial", spatial)):
        if not values or any(not isinstance(v, int) or v < 1 for v in values):
            raise ValueError(f"{name} must be positive integers, got {list(values)}")
    backends = sorted(dict.fromkeys(backend), key=lambda b: b != BASELINE_BACKEND)
    cases = []
    for m, lay, d, w, dt, b, mo in itertools.product(model, layer, depth, width, dtype, batch, mode):
        for s in (spatial if lay == "conv" else (1,)):
            cases.extend(Case(m, lay, d, w, dt, b, be, mo, s) for be in backends)
    return list(dict.fromkeys(cases))


def outputs_in_float64(outputs):
    return [t.detach().double().cpu() for t in outputs]


class Baselines:
    """The float64 reference and eager outputs of each shape, computed once and shared by its backends."""

    def __init__(self, device):
        self.device = device
        self.cache = {}

    def get(self, case: Case):
        """(float64 reference, eager) outputs of the step the gate runs for `case` (`GATE_MODE`)."""
        mode = GATE_MODE[case.mode]
        key = replace(case, backend=BASELINE_BACKEND, mode=mode)
        if key not in self.cache:
            x, dy = make_inputs(case, self.device)
            eager = build_stack(case, "torch", self.device)
            reference = copy.deepcopy(eager).double()
            ref_out = outputs_in_float64(make_step(mode, reference, x.double(), dy.double())())
            eager_out = outputs_in_float64(make_step(mode, eager, x, dy)())
            self.cache = {key: (ref_out, eager_out)}  # one shape at a time: deep stacks are large
        return self.cache[key]


def run_case(case: Case, device: torch.device, baselines: Baselines, timer: str = "events",
             threads: int = CPU_THREADS) -> dict:
    """Run, check and time one configuration; the result row (without the run's environment columns).
    On a CPU, the timed calls run on `threads` threads (see `cpu_threads`)."""
    with float32_precision(case.dtype):  # the baselines', the gate's and the timed calls' alike
        row = {**case.__dict__}
        reason = BACKENDS[case.backend].unsupported(case, device)
        if reason:
            return {**row, "status": f"unsupported: {reason}"}
        try:
            x, dy = make_inputs(case, device)
            backend = BACKENDS[case.backend]
            net = backend.prepare(build_stack(case, backend.layer_backend, device))
            step = make_step(case.mode, net, x, dy)
            gate_mode = GATE_MODE[case.mode]
            # The first call (compilation, autotuning) is the gate's; a train step is checked by its gradients.
            outputs, first_ms = first_call(step if gate_mode == case.mode else make_step(gate_mode, net, x, dy), device)
            if backend.computes_the_layer:
                reference, eager = baselines.get(case)
                error, worst = correctness_error(case, outputs_in_float64(outputs), reference, eager)
                row["max_error"] = error
                if not error <= 1.0:
                    return {**row, "status": f"mismatch: {error:.3g}x the tolerance against float64 ({worst})"}
            if device.type == "cuda":
                timing = cuda_time(step, cuda_graph=backend.captured(timer))
            else:
                with cpu_threads(threads):
                    row.update(threads=threads, load_avg=load_average())
                    timing = cpu_time(step)
            timing.first_call_ms = first_ms
            row["peak_mem_mb"] = peak_memory_mb(step, device)
            row["kernels_per_step"] = kernels_per_step(step, device)
            row["configs"] = tuned_configs(step, device)
        except Exception as e:  # a failing configuration is a result, not the end of the sweep
            return {**row, "status": failure_status(e)}
        return {**row, **derived_metrics(case, device, timing), "status": STATUS_OK}


def failure_status(e: Exception) -> str:
    """The status row of a configuration that raised: "oom" (the cache emptied for the next one), or the error."""
    if isinstance(e, torch.cuda.OutOfMemoryError):
        torch.cuda.empty_cache()
        return "oom"
    return f"error: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"


def derived_metrics(case: Case, device: torch.device, timing) -> dict:
    median = timing.median_ms
    work = stack_work(case.model, case.layer, case.depth, case.width, case.batch, case.mode,
                      DTYPES[case.dtype].itemsize, case.spatial, KERNEL_SIZE)
    tflops = work.flops / (median * 1e-3) / 1e12
    gbps = work.bytes / (median * 1e-3) / 1e9
    weight_gbps = work.weight_bytes / (median * 1e-3) / 1e9
    peak_flops, peak_bw = (None, None)
    if device.type == "cuda":
        peak_flops, peak_bw = peak_for(torch.cuda.get_device_name(device), case.dtype)
    spread = timing.quantile(0.8) / timing.quantile(0.2)
    return {
        "spread": spread, "noisy": bool(spread > NOISY_SPREAD),
        "median_ms": median, "p20_ms": timing.quantile(0.2), "p80_ms": timing.quantile(0.8),
        "q1_ms": timing.quantile(0.25), "q3_ms": timing.quantile(0.75), "first_call_ms": timing.first_call_ms,
        "repeats": len(timing.samples), "timer": timing.timer, "samples_per_s": case.batch / (median * 1e-3),
        "tflops": tflops, "gbps": gbps,
        "pct_peak_flops": 100 * tflops / peak_flops if peak_flops else math.nan,
        "pct_peak_bw": 100 * gbps / (peak_bw * 1e3) if peak_bw else math.nan,
        "weight_gbps": weight_gbps, "pct_peak_bw_weights": 100 * weight_gbps / (peak_bw * 1e3) if peak_bw else math.nan,
    }


def _speedup(row: dict, store: ResultStore) -> float:
    """Eager time ÷ this row's time, from the eager row of the same shape (one indexed lookup)."""
    if row.get("status") != STATUS_OK:
        return math.nan
    shape = {k: row[k] for k in THROUGHPUT_KEYS if k != "backend"}
    base = store.select(**shape, backend=BASELINE_BACKEND)
    base = base[base["status"] == STATUS_OK]
    return float(base["median_ms"].iloc[-1]) / row["median_ms"] if len(base) else math.nan


_BASELINES: dict = {}  # per process (a Ray worker keeps its own): the float64 and eager outputs of a shape


def throughput_unit(work: tuple) -> dict:
    """One configuration, run where the executor put it: (case, device, timer, threads) → its row, with the
    host and device it ran on. Top level and free of the store, so that a Ray worker can run it."""
    case, device, timer, threads = work
    device = resolve_device(device)
    baselines = _BASELINES.setdefault(str(device), Baselines(device))
    return {**run_case(case, device, baselines, timer, threads), **worker_identity(device)}


def throughput_sweep(out, *, overwrite: bool = False, device=None, timer: str = "events", progress: bool = True,
                     argv=None, threads: int = CPU_THREADS, deadline: float | None = None, executor=None,
                     retry_failed: bool = False, **axes) -> pd.DataFrame:
    """Run the sweep of `axes` (see `expand`) into the results store in `out`; the rows of this sweep.

    Runs into one directory share the work: a case another run is timing is skipped (and timed by it),
    so two identical sweeps started together each time about half the cases, never one twice. With a
    `deadline` (a `time.monotonic()` value), no case starts after it; the rest are left for a re-run. With
    `retry_failed`, cases whose row is a failure (an error, a mismatch, "oom") run again.
    `executor` (`highway.bench.harness.executors`; default local) says where cases run; this process alone
    writes the store. On Ray, `device` is each worker's own (its GPU, or its CPU)."""
    from highway.bench.harness.executors import LocalExecutor

    executor = executor or LocalExecutor()
    device = resolve_device(device)
    worker_device = str(device) if executor.name == "local" else None
    cases = expand(**axes)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    with ResultStore(out, RESULTS_FILE, THROUGHPUT_COLUMNS, THROUGHPUT_KEYS) as store:
        todo = store.pending(cases, overwrite, "configurations", retry_failed)
        if todo:
            env = environment(device, argv)
            store.record_run({**env, "executor": executor.describe()})
            elsewhere, finished, claimed = 0, 0, set()
            bar = progress_bar(total=len(todo), enabled=progress, unit="config")

            def take(case):
                nonlocal elsewhere
                if not store.claim(case.key()):
                    elsewhere += 1  # another run is timing it
                    return None
                if not overwrite and store.has(case.key(), retry_failed):  # another run finished it since we looked
                    store.release(case.key())
                    elsewhere += 1
                    return None
                claimed.add(case)
                if hasattr(bar, "set_postfix_str"):
                    bar.set_postfix_str(case.describe())
                return case, worker_device, timer, threads

            try:
                for outcome in executor.run(throughput_unit, todo, take, deadline):
                    case = outcome.unit[0]
                    row = outcome.result if outcome.error is None else \
                        {**case.__dict__, "status": f"error: its worker failed twice: {outcome.error}"}
                    row["speedup_vs_torch"] = _speedup(row, store)
                    row = {**{k: env[k] for k in ("device", "device_type")}, **row,
                           **{k: env[k] for k in ("commit", "run_id", "timestamp")}}
                    store.append(row, unit=case.key())
                    claimed.discard(case)
                    finished += 1
                    if hasattr(bar, "update"):
                        bar.update(1)
            finally:
                for case in claimed:  # in flight when Ctrl-C or an error struck: left for a re-run
                    store.release(case.key())
                if hasattr(bar, "close"):
                    bar.close()
            if elsewhere:
                print(f"{elsewhere} configurations were run by another sweep into {store.path.parent}")
            late = len(todo) - finished - elsewhere
            if late:
                print(f"{late} configurations left for a re-run: the time budget ran out")
        return store.rows_of(cases)


def summary_table(df: pd.DataFrame) -> str:
    """A short text table: median ms per backend for each shape and mode (a `~` marks a noisy row, whose
    p80/p20 exceeds NOISY_SPREAD), plus the status of failures."""
    if df.empty:
        return "no results"
    ok = df[df["status"] == STATUS_OK]
    lines = []
    if not ok.empty:
        noisy = ok["noisy"].fillna(False).astype(bool) if "noisy" in ok else pd.Series(False, index=ok.index)
        cells = ok.assign(cell=[f"{ms:.3f}{'~' if flag else ''}" for ms, flag in zip(ok["median_ms"], noisy)])
        table = cells.pivot_table(index=["model", "layer", "depth", "width", "dtype", "batch", "mode"],
                                  columns="backend", values="cell", aggfunc="last", fill_value="")
        lines.append("median ms per step" + (" (CPU)" if (df["device_type"] == "cpu").all() else "") + ":")
        lines.append(table.to_string())
        if noisy.any():
            lines.append(f"~ noisy: the slowest fifth of calls took over {NOISY_SPREAD}x the fastest fifth "
                         f"({int(noisy.sum())} rows); compare those medians with care")
    bad = df[df["status"] != STATUS_OK]
    if not bad.empty:
        counts = bad["status"].str.slice(0, 90).value_counts()
        lines.append(f"\n{len(bad)} configurations did not run:")
        lines.extend(f"  {n:4d} × {status}" for status, n in counts.items())
    return "\n".join(lines)
