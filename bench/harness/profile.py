"""Profile one configuration: a Chrome trace and a per-kernel table from `torch.profiler`, and, on a GPU
with Triton's proton available, a proton profile beside them.
"""
import math
import warnings
from pathlib import Path

import pandas as pd
import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from highway.bench.harness.backends import BACKENDS
from highway.bench.harness.cases import Case, build_stack, float32_precision, make_inputs, make_step
from highway.bench.harness.environment import resolve_device


def _kernel_table(prof, on_gpu: bool) -> pd.DataFrame:
    rows = []
    for e in prof.key_averages():
        total = (getattr(e, "self_device_time_total", 0) if on_gpu else e.self_cpu_time_total) or 0
        if total > 0:
            rows.append({"name": e.key, "calls": e.count, "total_ms": total / 1e3, "mean_us": total / max(e.count, 1)})
    df = pd.DataFrame(rows, columns=["name", "calls", "total_ms", "mean_us"])
    if df.empty:
        return df.assign(share=[])
    df = df.sort_values("total_ms", ascending=False).reset_index(drop=True)
    df["share"] = df["total_ms"] / df["total_ms"].sum()
    return df


def count_kernels(events) -> int:
    """The device kernels among the profiler's raw events (`prof.profiler.kineto_results.events()`): GPU events
    other than copies and fills. Raw, because `prof.events()` builds a Python object tree first: 7 s for the
    100k events of one eager training step at depth 1000 (CPU), against 0.3 s to read them raw."""
    return sum(1 for e in events
               if e.device_type() == DeviceType.CUDA and not e.name().startswith(("Memcpy", "Memset")))


def kernels_per_step(step, device: torch.device) -> float:
    """How many kernels one call of `step` runs on the GPU, counted by torch.profiler (a CUDA graph's kernels
    count one by one, though the host launches the graph once); NaN on a CPU. Only the GPU's activity is
    recorded: the host's ops would only slow the count down."""
    if device.type != "cuda":
        return math.nan
    torch.cuda.synchronize(device)
    try:
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            step()
            torch.cuda.synchronize(device)
        return float(count_kernels(prof.profiler.kineto_results.events()))
    except Exception as e:  # a column beside the timing: a profiler that fails must not cost the row its timing
        warnings.warn(f"kernels per step not counted (NaN): {type(e).__name__}: {e}", RuntimeWarning, stacklevel=2)
        return math.nan


def tuned_configs(step, device: torch.device) -> str:
    """Run `step` once more on a GPU and name the config each of our autotuned kernels launched with
    (`highway.kernels.launch.launched_configs`): which tile and pipeline depth a row's time is of. "" on a
    CPU, whose interpreter runs one fixed config, or without triton."""
    if device.type != "cuda":
        return ""
    try:
        from highway.kernels.launch import launched_configs
    except ImportError:
        return ""
    return launched_configs(step)


def profile_config(case: Case, out, steps: int = 5, warmup: int = 3, device=None) -> pd.DataFrame:
    """Profile `steps` steps of `case` after `warmup` (compilation and autotuning stay out of the trace).
    Writes `trace.json.gz` (gzipped: a deep stack's trace is tens of MB; chrome://tracing and Perfetto open
    it as it is) and `kernels.csv` to `out`; returns the kernel table,
    timed on the GPU (self device time) or, on a CPU, by self CPU time."""
    device = resolve_device(device)
    backend = BACKENDS[case.backend]
    reason = backend.unsupported(case, device)
    if reason:
        raise ValueError(f"cannot profile {case.describe()}: {reason}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with float32_precision(case.dtype):
        x, dy = make_inputs(case, device)
        step = make_step(case.mode, backend.prepare(build_stack(case, backend.layer_backend, device)), x, dy)
        for _ in range(warmup):
            step()
        on_gpu = device.type == "cuda"
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
        with profile(activities=activities) as prof:
            for _ in range(steps):
                step()
            if on_gpu:
                torch.cuda.synchronize()
        prof.export_chrome_trace(str(out / "trace.json.gz"))
        table = _kernel_table(prof, on_gpu)
        table.to_csv(out / "kernels.csv", index=False)
        if on_gpu:
            _proton(step, steps, out)
    return table


def _proton(step, steps, out: Path):
    """A proton profile (Triton's own profiler) when this triton has it; silently nothing otherwise."""
    try:
        import triton.profiler as proton
    except ImportError:
        return
    try:
        proton.start(str(out / "proton"), hook="triton")
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
        proton.finalize()
    except Exception as e:  # proton's API moves between releases; the torch.profiler outputs stand alone
        print(f"proton profile skipped: {type(e).__name__}: {e}")
