"""Timing and memory measurement: CUDA events with an L2 flush (or CUDA-graph replay) on a GPU,
`time.perf_counter` on the CPU. The first call (compilation, autotuning) is timed on its own by
`first_call` and never mixed into the samples; the timers below assume it has been made.
"""
import contextlib
import ctypes
import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch

_L2_FLUSH_BYTES = 256 * 2**20  # larger than any current GPU's L2 (H100: 50 MB, H200: 60 MB)
# CPU timings run on one thread unless told otherwise: on a small, busy machine a second OpenMP thread
# fights the OS and every other process for a core, and one matmul was measured at 4.7 ms against 51 µs.
CPU_THREADS = 1


@dataclass
class Timing:
    samples: list = field(default_factory=list)  # milliseconds, one per timed call
    first_call_ms: float = float("nan")  # includes compilation and autotuning
    timer: str = ""

    def quantile(self, q: float) -> float:
        return float(np.quantile(self.samples, q)) if self.samples else float("nan")

    @property
    def median_ms(self) -> float:
        return self.quantile(0.5)


def first_call(fn, device: torch.device):
    """(fn's result, wall milliseconds of the call): compilation, autotuning and all, up to GPU completion."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, (time.perf_counter() - start) * 1e3


def cuda_time(fn, warmup: int = 10, repeats: int = 50, flush_l2: bool = True, cuda_graph: bool = False) -> Timing:
    """Time `fn` with CUDA events around each call, after zeroing a 256 MB buffer so that every call starts
    with a cold L2, as a layer deep in a network does. With `cuda_graph`, `fn` is captured once and the
    graph replayed, so that CPU launch overhead drops out; the flush stays outside the graph."""
    for _ in range(warmup):
        fn()
    call = fn
    if cuda_graph:
        graph = torch.cuda.CUDAGraph()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            fn()  # a warm-up on the capture stream, as torch.cuda.graphs asks
        torch.cuda.current_stream().wait_stream(stream)
        with torch.cuda.graph(graph):
            fn()
        call = graph.replay
    flush = torch.empty(_L2_FLUSH_BYTES, dtype=torch.int8, device="cuda")
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    for start, end in zip(starts, ends):
        if flush_l2:
            flush.zero_()
        start.record()
        call()
        end.record()
    torch.cuda.synchronize()
    samples = [s.elapsed_time(e) for s, e in zip(starts, ends)]
    return Timing(samples, timer="cuda-graph" if cuda_graph else "cuda-events")


@contextlib.contextmanager
def cpu_threads(threads: int):
    """torch's intra-op threads pinned to `threads` for the block, restored after."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def load_average() -> float:
    """The 1-minute load average (runnable processes), NaN where the OS does not say."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return float("nan")


def cpu_time(fn, warmup: int = 3, repeats: int = 20, max_seconds: float = 5.0) -> Timing:
    """Time `fn` on the CPU with perf_counter: warm-up calls, then up to `repeats` calls or `max_seconds`."""
    for _ in range(warmup):
        fn()
    samples, deadline = [], time.perf_counter() + max_seconds
    while len(samples) < repeats and (len(samples) < 3 or time.perf_counter() < deadline):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return Timing(samples, timer="cpu-perf-counter")


def _rss_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_memory_mb(fn, device: torch.device) -> float:
    """Peak memory that one call of `fn` adds: torch.cuda.max_memory_allocated on a GPU; on the CPU the
    growth of the process's peak resident set (Linux: freed heap is handed back with malloc_trim and the
    peak reset through /proc/self/clear_refs first, so the figure is this call's own, not an earlier one's)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    base = _rss_kib("VmRSS")
    fn()
    peak = _rss_kib("VmHWM")
    if base is None or peak is None:
        return float("nan")
    return max(0.0, (peak - base) / 1024)


def synchronized_perf_counter() -> float:
    """A pytest-benchmark timer that waits for the GPU, so each round measures work done, not launched."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()
