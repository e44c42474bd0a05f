"""Where units of work run: in this process one after another (`local`), or as Ray tasks spread over every
GPU, or CPU, of a Ray cluster (`ray`). A unit is a throughput configuration or a population chunk of a
convergence search.

Either way the driver is the only writer to the results store: an executor yields each unit's result as it
finishes, and the caller writes it. Units are claimed in the store (`take`) only when they are about to
run, so that two runs into one directory still share the work, and a unit is never run twice.

Ray:
- each unit asks for one GPU (`num_gpus=1`) when the cluster has GPUs, so that no two timings share a
  device, and otherwise `CPU_THREADS` CPUs, the threads a CPU timing uses: Ray starts no more units on a
  node than it has CPUs, so CPU timings never share a core with each other (they may still share one with
  the driver and the OS: on a small machine, time on a GPU);
- a worker that dies mid-unit is retried once (`max_retries=1`); a unit that fails again comes back as an
  error, which the caller turns into a status row or leaves for a re-run;
- Ctrl-C cancels the units not yet finished: at most the units in flight are lost.
"""
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from highway.bench.harness.timing import CPU_THREADS

EXECUTORS = ("local", "ray")
RAY_INSTALL = "pip install 'highway-triton[distributed]'"


@dataclass
class Outcome:
    unit: object  # what `take` returned for it: the payload that ran
    result: object = None
    error: str | None = None  # set when the unit could not run to the end (Ray: its worker died twice)


class LocalExecutor:
    """Units one after another in this process: exceptions propagate as they always did."""
    name = "local"

    def run(self, fn: Callable, units: Iterable, take: Callable, deadline: float | None = None) -> Iterator[Outcome]:
        """For each of `units` that `take(unit)` turns into a payload (None: skip it, another run has it),
        yield fn(payload) as an Outcome. No unit starts after `deadline` (a `time.monotonic()` value)."""
        for unit in units:
            if deadline is not None and time.monotonic() > deadline:
                return
            payload = take(unit)
            if payload is not None:
                yield Outcome(payload, fn(payload))

    def describe(self) -> str:
        return "local: units one after another in this process"


def require_ray():
    try:
        import ray
    except ImportError:
        raise ValueError(f"--executor ray needs Ray: {RAY_INSTALL}") from None
    return ray


class RayExecutor:
    """Units as Ray tasks on the cluster at `address` (None: a local Ray instance on this machine, with
    `num_cpus` CPUs, default all). `unit_wrapper`, if given, wraps the function each task runs (tests use
    it to kill a worker mid-unit)."""
    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, retries: int = 1,
                 unit_wrapper: Callable | None = None):
        ray = require_ray()
        if not ray.is_initialized():
            kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(num_cpus=num_cpus, **kwargs)
        self.ray = ray
        resources = ray.cluster_resources()
        self.gpus = int(resources.get("GPU", 0))
        self.cpus = int(resources.get("CPU", 1))
        self.options = dict(num_gpus=1, num_cpus=1) if self.gpus else dict(num_cpus=CPU_THREADS)
        self.slots = self.gpus if self.gpus else max(1, self.cpus // CPU_THREADS)
        self.retries = retries
        self.unit_wrapper = unit_wrapper

    def describe(self) -> str:
        what = f"{self.gpus} GPU(s), one unit each" if self.gpus else f"{self.cpus} CPU(s), {CPU_THREADS} a unit"
        return f"ray: {len(self.ray.nodes())} node(s), {what}"

    def run(self, fn: Callable, units: Iterable, take: Callable, deadline: float | None = None) -> Iterator[Outcome]:
        """As `LocalExecutor.run`, with up to twice as many units in flight as the cluster runs at once (each
        claimed just before it is submitted); results come back in the order units finish."""
        ray = self.ray
        task = ray.remote(max_retries=self.retries, retry_exceptions=False, **self.options)(
            self.unit_wrapper(fn) if self.unit_wrapper else fn)
        todo, pending = iter(units), {}
        try:
            while True:
                while len(pending) < 2 * self.slots and (deadline is None or time.monotonic() <= deadline):
                    unit = next(todo, None)
                    if unit is None:
                        break
                    payload = take(unit)
                    if payload is not None:
                        pending[task.remote(payload)] = payload
                if not pending:
                    return
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                payload = pending.pop(ref)
                try:
                    yield Outcome(payload, ray.get(ref))
                except ray.exceptions.RayError as e:
                    yield Outcome(payload, error=f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200]}")
        finally:  # Ctrl-C, an error in the caller, or a generator closed early: nothing keeps running
            for ref in pending:
                ray.cancel(ref, force=True)


def make_executor(name: str = "local", address: str | None = None):
    """The executor `--executor NAME --address ADDR` asks for; ValueError for an unknown one, or for Ray
    missing (naming the install command)."""
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; expected one of {list(EXECUTORS)}")
    if address and name != "ray":
        raise ValueError("--address is for --executor ray")
    return RayExecutor(address) if name == "ray" else LocalExecutor()
