"""`highway-bench campaign`: one command for whoever has a GPU for a while.

The steps run most valuable first, inside a time budget, into one gallery folder ready to commit:

1. the environment and the GPU's measured peaks (`environment.json`);
2. the `gpu`-marked tests (bf16 tensor cores, wide layers), which no CPU can run (`gpu-tests.log`);
3. the throughput campaign: highway vs plain, every backend, depth 1 to 1000, widths 50 to 8192, bf16 and
   fp32, fwd and train, in order of what the open questions need most (`throughput/`);
4. the population axis: P = 1-128 trials of the paper's thin nets trained at once against one by one, on
   eager, triton, triton-stack and compile (`throughput/population.csv`);
5. a profile of the deepest configuration (`profile/`);
6. the paper's convergence protocol, as far as the time left allows (`converge/`);
7. the report (`report/`).

Every step resumes: run the same command again (with more time) and it picks up where it stopped. What a
step could not do in the time is printed at the end. `--dry-run` prints the plan and its time estimate.
"""
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from highway.bench.harness.environment import environment, resolve_device
from highway.bench.harness.sweep import expand
from highway.bench.schema import RESULTS_FILE
from highway.bench.study.convergence import PRESETS as STUDIES

REPORT_RESERVE_S = 90  # kept back from the budget for the report, which must always be written

# The throughput campaign, most valuable first. Each block is a sweep; a block that the budget cuts short
# resumes on the next run, and a configuration in two blocks runs once. Widths: the paper's 50, 128 (the
# depth-fused stack's range), GEMM-bound 1024 to 8192. The depth-fused stack's targets come first, cheapest
# first: against eager in minutes, then against CUDA graphs, whose compilation of 1000 layers is the
# campaign's most expensive wait.
STACK_TARGETS = dict(model=["highway"], layer=["dense"], depth=[1000], width=[50, 128], dtype=["bf16", "fp32"],
                     batch=[128], mode=["fwd", "train"])
THROUGHPUT_BLOCKS = [
    ("the depth-fused stack's targets against eager: depth 1000, widths 50 and 128, bf16 and fp32, fwd and train",
     dict(STACK_TARGETS, backend=["torch", "triton-stack"])),
    ("the depth-fused stack recomputing its layer inputs, for the memory target",
     dict(STACK_TARGETS, backend=["torch", "triton-stack-recompute"], mode=["train"])),
    ("the depth-fused stack's targets against CUDA graphs", dict(STACK_TARGETS, backend=["compile-cudagraphs"])),
    ("the paper's thin nets: fused triton vs eager, compile, CUDA graphs and the bare GEMM, bf16 training",
     dict(model=["highway"], layer=["dense"], depth=[1, 10, 100, 1000], width=[50, 128], dtype=["bf16"],
          batch=[128], backend=["torch", "compile", "compile-cudagraphs", "triton", "triton-stack", "triton+compile",
                                "gemm-only"], mode=["train"])),
    ("GEMM-bound widths, bf16: the fused kernels against cuBLAS and the compiler",
     dict(model=["highway"], layer=["dense"], depth=[1, 10, 100], width=[1024, 4096, 8192], dtype=["bf16"],
          batch=[1024], backend=["torch", "compile", "triton", "gemm-only"], mode=["fwd", "train"])),
    ("forward passes of the thin nets, bf16 and fp32",
     dict(model=["highway"], layer=["dense"], depth=[1, 10, 100, 1000], width=[50, 128], dtype=["bf16", "fp32"],
          batch=[128], backend=["torch", "compile", "compile-cudagraphs", "triton", "triton-stack"], mode=["fwd"])),
    ("plain twins of the thin nets (width 71), for highway's cost over plain",
     dict(model=["plain"], layer=["dense"], depth=[1, 10, 100, 1000], width=[71], dtype=["bf16"], batch=[128],
          backend=["torch", "compile", "compile-cudagraphs"], mode=["fwd", "train"])),
    ("fp32 training, thin and wide",
     dict(model=["highway"], layer=["dense"], depth=[1, 10, 100, 1000], width=[50, 1024], dtype=["fp32"],
          batch=[128], backend=["torch", "compile", "triton"], mode=["train"])),
    ("convolutional highway layers against cuDNN, bf16",
     dict(model=["highway"], layer=["conv"], depth=[1, 10, 50], width=[16, 64, 160], dtype=["bf16"], batch=[64],
          backend=["torch", "compile", "triton"], mode=["fwd", "train"], spatial=[32])),
]


# Population training against one by one: the GPU target's shape (P = 100, depth 100) first, then its
# neighbours.
POPULATION_BLOCK = dict(model=["highway"], depth=[100, 10], width=[50], dtype=["fp32"], batch=[64],
                        backend=["torch", "triton", "triton-stack", "compile"], population=[100, 1, 8, 32, 128])


def estimate_case_s(case) -> float:
    """A rough guess of one case's wall time on a GPU (build, gate, first call, timing), for planning only:
    eager costs launches, compilation grows with depth, the first triton call autotunes."""
    layers = case.depth
    base = 1.0 + 0.004 * layers * (3 if case.mode != "fwd" else 1)
    if case.backend.startswith("compile"):
        base += 15 + 0.25 * layers
    if case.backend.startswith("triton"):
        base += 20
    return base


@dataclass
class Step:
    name: str
    estimate_s: float
    run: Callable[[float], str]  # (deadline) → a one-line outcome
    plan: str = ""
    elastic: float = 0.0  # > 0: takes this share of the time the fixed steps leave (and what earlier ones left)


def campaign_steps(out: Path, device, progress: bool, argv, executor=None) -> list[Step]:
    from highway.bench.harness.population_sweep import expand as expand_population

    cases = list(dict.fromkeys(c for _, axes in THROUGHPUT_BLOCKS for c in expand(**axes)))
    population_cases = expand_population(**POPULATION_BLOCK)
    study = STUDIES["paper"]
    trials = len(study.depths) * len(study.arms()) * study.trials

    def env_step(deadline):
        from highway.bench.harness.cases import DTYPES
        from highway.bench.harness.devices import measure_peaks, peak_for

        env = environment(device, argv)
        if device.type == "cuda":
            import torch

            env["peaks"] = {}
            for dtype in ("bf16", "fp32"):
                flops, bandwidth = measure_peaks(DTYPES[dtype])
                env["peaks"][dtype] = {"measured_tflops": flops, "measured_tbps": bandwidth,
                                       "table": peak_for(torch.cuda.get_device_name(device), dtype)}
        (out / "environment.json").write_text(json.dumps(env, indent=1))
        return f"environment and peaks in {out / 'environment.json'}"

    def gpu_tests_step(deadline):
        tests = Path(__file__).resolve().parents[2] / "tests"
        if not tests.is_dir():
            return "skipped: no tests/ beside the package (install from a checkout: pip install -e .)"
        log = out / "gpu-tests.log"
        timeout = max(60, deadline - time.monotonic())
        try:
            run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", str(tests)], capture_output=True,
                                 text=True, timeout=timeout, cwd=tests.parent)
        except subprocess.TimeoutExpired:
            return "stopped: the time budget ran out"
        log.write_text(run.stdout + run.stderr)
        last = (run.stdout.strip().splitlines() or ["no output"])[-1]
        return f"{last} (log: {log})"

    def throughput_step(deadline):
        from highway.bench.harness.sweep import throughput_sweep

        done = 0
        for _, axes in THROUGHPUT_BLOCKS:
            if time.monotonic() > deadline:
                break
            df = throughput_sweep(out / "throughput", device=device, progress=progress, argv=argv, deadline=deadline,
                                  executor=executor, **axes)
            done += len(df)
        return f"{done} of {len(cases)} configurations in {out / 'throughput' / RESULTS_FILE}"

    def population_step(deadline):
        from highway.bench.harness.population_sweep import population_sweep

        df = population_sweep(out / "throughput", device=device, progress=progress, argv=argv, deadline=deadline,
                              **POPULATION_BLOCK)
        return f"{len(df)} of {len(population_cases)} population cases in {out / 'throughput'}"

    def profile_step(deadline):
        from highway.bench.harness.cases import Case
        from highway.bench.harness.profile import profile_config

        if (out / "profile" / "kernels.csv").exists():
            return "already done"
        if device.type != "cuda":
            return "skipped: the triton backend is profiled on a GPU only"
        case = Case("highway", "dense", 1000, 50, "bf16", 128, "triton", "train")
        profile_config(case, out / "profile", device=device)
        return f"{case.describe()}: trace and kernel table in {out / 'profile'}"

    def converge_step(deadline):
        from highway.bench.study.convergence import convergence_study, trial_finished

        df = convergence_study(out / "converge", study, device=device, progress=progress, argv=argv, deadline=deadline,
                               executor=executor)
        trials_seen = df.groupby(["model", "gate_rule", "depth", "trial"]) if len(df) else []
        finished = sum(trial_finished(g, study.epochs) for _, g in trials_seen)
        return (f"{finished} of {trials} trials of the paper protocol finished (or diverged), {len(trials_seen)} "
                f"started, in {out / 'converge'}")

    def report_step(deadline):
        from highway.reports.render import build_report

        page = build_report([out], out / "report", progress=progress)
        return f"report: {page}"

    return [
        Step("environment and peaks", 60, env_step),
        Step("gpu-marked tests", 240, gpu_tests_step, "python -m pytest -m gpu"),
        Step("throughput", sum(estimate_case_s(c) for c in cases), throughput_step,
             f"{len(cases)} configurations in {len(THROUGHPUT_BLOCKS)} blocks, most valuable first: "
             + "; ".join(f"({i + 1}) {what}" for i, (what, _) in enumerate(THROUGHPUT_BLOCKS)), elastic=0.6),
        Step("population axis", sum(5 + 0.05 * c.depth * c.population ** 0.5 for c in population_cases),
             population_step, f"{len(population_cases)} cases: P = 1-128 trials of a highway net (depth 10 and 100, "
             "width 50) at once against one by one, eager, triton, triton-stack and compile", elastic=0.15),
        Step("profile of the deepest configuration", 120, profile_step,
             "highway dense depth 1000 width 50 bf16 triton train"),
        Step("convergence (paper protocol)", trials * study.epochs * 2.0, converge_step,
             f"{trials} trials x {study.epochs} epochs, depth by depth, as populations, as far as the time "
             f"left allows", elastic=0.25),
        Step("report", REPORT_RESERVE_S, report_step),
    ]


def allot(steps: list[Step], budget: float) -> list[float]:
    """Seconds for each step: a fixed step its estimate (as far as the budget goes), an elastic one its share
    of what the fixed steps leave."""
    fixed = sum(s.estimate_s for s in steps if not s.elastic)
    spare = max(0.0, budget - fixed)
    weights = sum(s.elastic for s in steps) or 1.0
    return [spare * s.elastic / weights if s.elastic else min(s.estimate_s, budget) for s in steps]


def run_campaign(out, budget_minutes: float = 20, device=None, dry_run: bool = False, progress: bool = True,
                 argv=None, executor=None) -> int:
    out = Path(out)
    if not budget_minutes > 0:
        raise ValueError(f"--budget-minutes must be positive, got {budget_minutes}")
    device = resolve_device(device)
    steps = campaign_steps(out, device, progress, argv, executor)
    budget = budget_minutes * 60
    allotted = allot(steps, budget)
    print(f"campaign into {out} on {device}, budget {budget_minutes:g} min:")
    for i, (step, seconds) in enumerate(zip(steps, allotted), start=1):
        share = "all of it" if step.estimate_s <= seconds else f"{seconds / 60:.1f} min of it, resumable"
        print(f"  {i}. {step.name}: about {step.estimate_s / 60:.1f} min; gets {share}"
              + (f"\n     {step.plan}" if step.plan else ""))
    total = sum(s.estimate_s for s in steps)
    print(f"about {total / 60:.0f} min for everything (rough per-case guesses, for planning; the rows record what "
          f"each case took)")
    if dry_run:
        return 0
    if device.type != "cuda":
        print("note: no GPU here; GPU-only backends and tests will be recorded as skipped")
    start = time.monotonic()
    outcomes, deadline = [], start
    for step, seconds in zip(steps, allotted):
        deadline += seconds  # cumulative: time an earlier step did not use passes to the next
        if step.estimate_s and step.name != "report" and time.monotonic() > deadline:
            outcomes.append((step.name, "skipped: the time budget ran out"))
            continue
        print(f"\n== {step.name}", flush=True)
        outcomes.append((step.name, step.run(deadline)))
    took = time.monotonic() - start
    print(f"\ncampaign done in {took / 60:.1f} min" + (
        f" ({(took - budget) / 60:.1f} over the budget: a case, trial epoch or test run in flight when its time ran "
        f"out is finished, not cut)" if took > budget else "") + ":")
    for name, outcome in outcomes:
        print(f"  {name}: {outcome}")
    print(f"\ncommit {out} (results, report, environment); run the same command again to go on where it stopped")
    return 0
