"""`highway-bench campaign`: one command for whoever has a GPU for a while.

The steps run most valuable first, one after another until the time budget is spent, into one gallery folder
ready to commit: the environment and the GPU's measured peaks, then the open targets (the depth-fused stack
against eager and CUDA graphs at depth 1000, its recomputing variant, the population target at P = 100,
depth 100, the stack's two ways to form the weight gradients), the `gpu`-marked tests, a profile, the
kernel tests run again on the GPU, the population target at TF32, the rest of the population axis and of
the throughput campaign, the paper's convergence protocol, and the report (left out with `--no-report`, to
be drawn off the GPU).

Made for a GPU lent for a quarter of an hour in calls of at most ten minutes (`scripts/gpu-lease.sh`): every
step resumes, and a finished one is skipped, so the same command run again (with more time) picks up where
the last stopped. What a step could not do in the time is printed at the end. `--dry-run` prints the plan,
what is done, and where the budget runs out.
"""
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from highway.bench.harness import ledger as test_ledger
from highway.bench.harness.environment import environment, git_commit, resolve_device
from highway.bench.harness.sweep import expand
from highway.bench.schema import RESULTS_FILE, STATUS_OK
from highway.bench.study.convergence import PRESETS as STUDIES
from highway.reports.claims import PAPER_TIME

REPORT_RESERVE_S = 90  # kept back from the budget for the report, which is always written (unless `report=False`)
TESTS_LIMIT_S = 420  # a test run's own time box: a hung test must not eat a lease
TESTS_MIN_S = 60  # ... and the least it is given, so that a run late in a budget still gets somewhere
TESTS_PROGRESS_S = 30  # how often a test run says how far it has got
# The tests that run kernels, layers and populations on whatever device there is (on a GPU, the CPU
# interpreter's runs again on the real thing); the harness, study, report and compile-check tests need none.
KERNEL_TESTS = [f"tests/{name}.py" for name in (
    "test_highway_linear_triton", "test_highway_conv2d_triton", "test_highway_stack", "test_population",
    "test_population_torch", "test_torch_integration", "test_functional", "test_modules", "test_conv_models",
    "test_tf32_rounding", "test_tf32x3")]
# The deepest configuration of the per-layer kernels, profiled: two steps of 4000 kernels each
PROFILE_CASE = dict(model="highway", layer="dense", depth=1000, width=50, dtype="bf16", batch=128, backend="triton",
                    mode="train")

# The throughput campaign, most valuable first. Each block is a sweep; a block that the budget cuts short
# resumes on the next run, and a configuration in two blocks runs once. Widths: the paper's 50, 128 (the
# depth-fused stack's range), GEMM-bound 1024 to 8192. The depth-fused stack's targets come first, shape by
# shape (width 50 first), each against eager and CUDA graphs side by side, so that a call cut short still
# leaves whole ratios. The CUDA-graph baseline at depth 1000 is `compile-layers-cudagraphs` (each layer
# compiled once, the whole step one graph): it compiles in seconds, where the whole-net `compile-cudagraphs`
# takes minutes a case at that depth and waits for the last block, for a lease long enough to hold it.
# The targets' fp32 comes at both of torch's precisions, every backend of a row at the same one: first tf32 (TF32
# dots, where the stack holds width 128), then, in a block of its own, IEEE fp32 (torch's default, where it holds
# 64). Between them the stack alone in tf32x3, its 3xTF32 dots at fp32's accuracy, read against the IEEE rows:
# on the first H200 the IEEE stack's forward was 0.91x CUDA graphs' there, its FMA dots 6x bf16's time a layer.
STACK_TARGETS = dict(model=["highway"], layer=["dense"], depth=[1000], width=[50, 128], dtype=["bf16", "tf32"],
                     batch=[128], mode=["fwd", "train"])
THIN_DEPTHS = [1, 10, 100, 1000]
WHOLE_NET_COMPILES = ["compile", "compile-cudagraphs", "triton+compile"]  # compile time grows with depth
THROUGHPUT_BLOCKS = [
    ("the depth-fused stack's targets: depth 1000, widths 50 and 128, bf16 and tf32, fwd and train, against eager "
     "and CUDA graphs", dict(STACK_TARGETS, backend=["torch", "triton-stack", "compile-layers-cudagraphs"])),
    ("the depth-fused stack's targets in fp32 through its 3xTF32 dots (fp32's accuracy, on the tensor cores): "
     "width 50, against the IEEE fp32 block's eager and CUDA graphs (torch has no 3xTF32)",
     dict(STACK_TARGETS, width=[50], dtype=["tf32x3"], backend=["triton-stack", "triton-stack-recompute"])),
    ("the depth-fused stack recomputing its layer inputs, for the memory target",
     dict(STACK_TARGETS, backend=["torch", "triton-stack-recompute"], mode=["train"])),
    ("the depth-fused stack's weight gradients by atomics in the kernel, against its batched GEMM",
     dict(STACK_TARGETS, backend=["triton-stack", "triton-stack-atomic"], mode=["train"])),
    ("the depth-fused stack's targets in IEEE fp32, torch's default precision: width 50 (past 64, IEEE dots take "
     "the per-layer kernels)", dict(STACK_TARGETS, width=[50], dtype=["fp32"],
                                    backend=["torch", "triton-stack", "compile-layers-cudagraphs"])),
    ("the paper's thin nets: fused triton vs eager, compile, CUDA graphs and the bare GEMM, bf16 training",
     dict(model=["highway"], layer=["dense"], depth=THIN_DEPTHS, width=[50, 128], dtype=["bf16"], batch=[128],
          backend=["torch", "compile-layers-cudagraphs", "triton", "triton-stack", "gemm-only"], mode=["train"])),
    ("the thin nets compiled whole, up to depth 100, bf16 training",
     dict(model=["highway"], layer=["dense"], depth=THIN_DEPTHS[:-1], width=[50, 128], dtype=["bf16"],
          batch=[128], backend=WHOLE_NET_COMPILES, mode=["train"])),
    ("GEMM-bound widths, bf16: the fused kernels against cuBLAS and the compiler",
     dict(model=["highway"], layer=["dense"], depth=[1, 10, 100], width=[1024, 4096, 8192], dtype=["bf16"],
          batch=[1024], backend=["torch", "compile", "triton", "gemm-only"], mode=["fwd", "train"])),
    ("forward passes of the thin nets, bf16, tf32 and fp32",
     dict(model=["highway"], layer=["dense"], depth=THIN_DEPTHS, width=[50, 128], dtype=["bf16", "tf32", "fp32"],
          batch=[128], backend=["torch", "compile-layers-cudagraphs", "triton", "triton-stack"], mode=["fwd"])),
    ("plain twins of the thin nets (width 71), for highway's cost over plain",
     dict(model=["plain"], layer=["dense"], depth=THIN_DEPTHS, width=[71], dtype=["bf16"], batch=[128],
          backend=["torch", "compile-layers-cudagraphs"], mode=["fwd", "train"])),
    ("fp32 training at both precisions (tf32 and IEEE), thin and wide",
     dict(model=["highway"], layer=["dense"], depth=THIN_DEPTHS, width=[50, 1024], dtype=["tf32", "fp32"],
          batch=[128], backend=["torch", "triton"], mode=["train"])),
    ("convolutional highway layers against cuDNN, bf16",
     dict(model=["highway"], layer=["conv"], depth=[1, 10, 50], width=[16, 64, 160], dtype=["bf16"], batch=[64],
          backend=["torch", "compile", "triton"], mode=["fwd", "train"], spatial=[32])),
    ("the stack's targets compiled whole at depth 1000 (minutes a case)",
     dict(STACK_TARGETS, backend=["compile-cudagraphs", "compile"])),
]


# Population training against one by one on the paper's thin nets: the GPU target's shape (P = 100,
# depth 100) is a step of its own, early; its neighbours come later.
POPULATION_BLOCK = dict(model=["highway"], depth=[100, 10], width=[50], dtype=["fp32"], batch=[64],
                        backend=["torch", "triton", "triton-stack", "compile"], population=[100, 1, 8, 32, 128])
# The target's case alone comes early. Its claim reads the eager arm; compile, whose one-by-one arm compiles
# nets of depth 100 for minutes, waits for the later step.
POPULATION_TARGET = dict(POPULATION_BLOCK, depth=[100], population=[100], backend=["torch", "triton-stack", "triton"])
# The same at TF32: on the first H200 the IEEE fp32 population step at the target's shape was bound by the FMA
# units' dots (9.5 ms on the depth-fused stack), which puts the paper preset's 100 epochs near an hour; how
# much TF32 takes off says whether the paper-time target needs it.
POPULATION_TARGET_TF32 = dict(POPULATION_TARGET, dtype=["tf32"])
# And in 3xTF32 (fp32's accuracy), whose step on the depth-fused stack the paper preset would train at
# (`converge --precision tf32x3`): right after the IEEE target, against which it is read.
POPULATION_TARGET_TF32X3 = dict(POPULATION_TARGET, dtype=["tf32x3"], backend=["triton-stack"])
# Right after, the paper preset's time at depths 10-100 as `converge --dry-run` expects it, timed on a few steps
# at each precision: a minute that says whether the 30-minute target is in reach before a lease trains it.
PAPER_ESTIMATE_FILE = "paper-estimate.json"
PAPER_ESTIMATE_PRECISIONS = ("fp32", "tf32x3")


def estimate_case_s(case) -> float:
    """A rough guess of one case's wall time on a GPU (build, gate, first call, timing), for planning only:
    eager costs launches, compilation grows with depth, the first triton call autotunes; a backend that does
    not apply to the case writes its row at once."""
    from highway.bench.harness.backends import BACKENDS

    if BACKENDS[case.backend].applies_to(case):
        return 0.0
    layers = case.depth
    base = 1.0 + 0.004 * layers * (3 if case.mode != "fwd" else 1)
    if case.backend in WHOLE_NET_COMPILES:
        base += 15 + 0.25 * layers
    elif "compile" in case.backend:  # compile-layers-cudagraphs: one layer compiled, whatever the depth
        base += 20
    if case.backend.startswith("triton"):
        base += 20
    return base


def estimate_population_case_s(case) -> float:
    """A rough guess of one population case's wall time on a GPU, for planning only."""
    return 5 + 0.05 * case.depth * case.population ** 0.5


@dataclass
class Step:
    name: str
    estimate_s: float  # what is left of it, roughly (0 when it is done)
    run: Callable[[float], str]  # (deadline) → a one-line outcome
    plan: str = ""


def _done_keys(directory: Path, filename: str, retry_failed: bool) -> set:
    """The keys of the rows already in a results folder: its store's, or its CSV export's where the store
    stayed behind (a copy of the tree without its ignored files)."""
    from highway.bench.harness.store import ResultStore
    from highway.bench.schema import STORE_FILE, TABLES

    if not (directory / STORE_FILE).exists() and not (directory / filename).exists():
        return set()
    columns, keys, _ = TABLES[filename]
    with ResultStore(directory, filename, columns, keys) as store:
        return store.done_keys(retry_failed)


def campaign_steps(out: Path, device, progress: bool, argv, executor=None, dataset: str = "default",
                   retry_failed: bool = False, report: bool = True) -> list[Step]:
    """The campaign's steps in the order they run, each with an estimate of what is left of it; the
    convergence step trains on `dataset`; with `retry_failed` failed cases count as left; the report last,
    unless `report` is False."""
    from highway.bench.harness.cases import Case
    from highway.bench.harness.population_sweep import expand as expand_population, population_sweep
    from highway.bench.harness.sweep import throughput_sweep
    from highway.bench.schema import POPULATION_FILE

    done = _done_keys(out / "throughput", RESULTS_FILE, retry_failed)
    done_population = _done_keys(out / "throughput", POPULATION_FILE, retry_failed)
    study = replace(STUDIES["paper"], dataset=dataset)
    trials = len(study.depths) * len(study.arms()) * study.trials

    def sweep_step(name: str, cases: list, done: set, estimate, sweep, filename: str, noun: str, about: str = "",
                   **kwargs) -> Step:
        """A sweep into out/throughput as a step, estimated by what is left of its `cases`."""
        left = [c for c in cases if c.key() not in done]

        def run(deadline):
            df = sweep(out / "throughput", device=device, progress=progress, argv=argv, deadline=deadline,
                       retry_failed=retry_failed, **kwargs)
            return f"{len(df)} of {len(cases)} {noun} in {out / 'throughput' / filename}"

        done_note = f" ({len(cases) - len(left)} done)" if len(left) < len(cases) else ""
        return Step(name, sum(estimate(c) for c in left), run, f"{len(cases)} {noun}{done_note}{about}")

    def throughput(what: str, axes: dict) -> Step:
        return sweep_step(f"throughput: {what}", expand(**axes), done, estimate_case_s, throughput_sweep,
                          RESULTS_FILE, "configurations", executor=executor, **axes)

    def population(what: str, axes: dict) -> Step:
        return sweep_step(f"population: {what}", expand_population(**axes), done_population,
                          estimate_population_case_s, population_sweep, POPULATION_FILE, "population cases",
                          ": P trials of a highway net (width 50) trained at once against one by one", **axes)

    def env_step(deadline):
        from highway.bench.harness.devices import PEAK_DTYPES, measure_peaks, peak_for

        if (out / "environment.json").exists():  # and from this device: `check_same_device`
            return f"kept from the first run: {out / 'environment.json'}"
        env = environment(device, argv)
        if device.type == "cuda":
            import torch

            env["peaks"] = {}
            for dtype in PEAK_DTYPES:
                flops, bandwidth = measure_peaks(dtype)
                env["peaks"][dtype] = {"measured_tflops": flops, "measured_tbps": bandwidth,
                                       "table": peak_for(torch.cuda.get_device_name(device), dtype)}
        (out / "environment.json").write_text(json.dumps(env, indent=1))
        return f"environment and peaks in {out / 'environment.json'}"

    def tests(name: str, log_name: str, args: list, estimate_s: float, plan: str) -> Step:
        """A pytest run on this machine's device, timeboxed; done once its log is written. A run cut short
        goes on where it stopped: each test's outcome goes to a ledger beside the log as it ends (the tests'
        conftest.py, HIGHWAY_TEST_LEDGER), and the next run leaves those tests out. Both speak for one commit
        (the ledger's first line): a campaign at another commit runs the tests again."""
        log = out / log_name
        ledger = log.with_suffix(".ledger")
        commit = git_commit().removesuffix("+dirty")  # the results this campaign writes make a checkout dirty

        def finished() -> bool:
            return log.exists() and test_ledger.read(ledger)[0] == commit

        def run(deadline):
            if test_ledger.read(ledger)[0] != commit:
                for stale in (log, ledger, log.with_name(log.stem + ".partial.log")):
                    stale.unlink(missing_ok=True)  # another commit's outcomes: in git's history, not this run's
                test_ledger.start(ledger, commit)
            if finished():
                done = test_ledger.summary(ledger) or _last_line(log.read_text())
                return f"already run: {done} (delete {log} and {ledger.name} to run them again)"
            root = Path(__file__).resolve().parents[2]
            if not (root / "tests").is_dir():
                return "skipped: no tests/ beside the package (install from a checkout: pip install -e .)"
            timeout = max(TESTS_MIN_S, min(TESTS_LIMIT_S, deadline - time.monotonic()))
            env = {**os.environ, "HIGHWAY_HYPOTHESIS_PROFILE": "interpreter",  # 12 shapes a property, not 100
                   "HIGHWAY_TEST_LEDGER": str(ledger.resolve())}
            # pytest writes straight to the partial log, which a crash or a kill leaves behind; the log proper
            # is that file renamed once the run ends
            partial = log.with_name(log.stem + ".partial.log")
            with open(partial, "w") as sink:
                proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", *args], stdout=sink,
                                        stderr=subprocess.STDOUT, cwd=root, env=env)
                stop = time.monotonic() + timeout
                try:
                    while True:
                        left = stop - time.monotonic()
                        if left <= 0:
                            proc.kill()
                            proc.wait()
                            done = test_ledger.summary(ledger) or "no test finished"
                            return (f"stopped after {timeout:.0f} s with {done}; the next run goes on from there "
                                    f"(what it printed: {partial})")
                        try:
                            proc.wait(timeout=min(TESTS_PROGRESS_S, left))
                            break
                        except subprocess.TimeoutExpired:
                            if progress:
                                print(f"  {name}: {test_ledger.summary(ledger) or 'none finished'} so far", flush=True)
                finally:
                    if proc.poll() is None:  # Ctrl-C or an error here: the tests stop with the campaign
                        proc.kill()
                        proc.wait()
            partial.replace(log)
            return f"{test_ledger.summary(ledger) or _last_line(log.read_text())} (log: {log})"

        return Step(name, 0 if finished() else estimate_s, run,
                    f"{plan} (delete {log_name} and {ledger.name} to run them again)")

    def profile_step(deadline):
        from highway.bench.harness.profile import profile_config

        if profiled:
            return f"already done: {out / 'profile'}"
        if device.type != "cuda":
            return "skipped: the triton backend is profiled on a GPU only"
        case = Case(**PROFILE_CASE)
        profile_config(case, out / "profile", steps=2, device=device)
        return f"{case.describe()}: trace and kernel table in {out / 'profile'}"

    def converge_step(deadline):
        from highway.bench.study.convergence import convergence_study, trial_finished

        df = convergence_study(out / "converge", study, device=device, progress=progress, argv=argv, deadline=deadline,
                               executor=executor)
        trials_seen = df.groupby(["model", "gate_rule", "depth", "trial"]) if len(df) else []
        finished = sum(trial_finished(g, study.epochs) for _, g in trials_seen)
        return (f"{finished} of {trials} trials of the paper protocol finished (or diverged), {len(trials_seen)} "
                f"started, in {out / 'converge'}")

    def paper_estimate_step(deadline):
        from highway.bench.study.convergence import expected_study_seconds, study_data

        path = out / PAPER_ESTIMATE_FILE
        if path.exists():
            return f"already done: {path}"
        paper = replace(study, depths=tuple(PAPER_TIME["depths"]))
        data = study_data(paper.dataset, paper.seed, paper.max_train, paper.max_val)  # once for both precisions
        seconds = {p: expected_study_seconds(replace(paper, precision=p), device, data)
                   for p in PAPER_ESTIMATE_PRECISIONS}
        path.write_text(json.dumps({"study": paper.name, "dataset": dataset, "depths": list(paper.depths),
                                    "trials": paper.trials, "epochs": paper.epochs, "device": str(device),
                                    "target_minutes": PAPER_TIME["minutes"], "expected_seconds": seconds}, indent=1))
        said = ", ".join(f"{p} {s / 60:.0f} min" for p, s in seconds.items())
        return (f"the paper preset at depths {'/'.join(map(str, paper.depths))}, expected (timed on a few steps, "
                f"not trained): {said}; target {PAPER_TIME['minutes']:g} min; in {path}")

    def report_step(deadline):
        from highway.reports.render import build_report

        page = build_report([out], out / "report", progress=progress)
        return f"report: {page}"

    first, tf32x3, recompute, atomic, *rest = THROUGHPUT_BLOCKS
    profiled = (out / "profile" / "kernels.csv").exists()
    return [
        Step("environment and peaks", 0 if (out / "environment.json").exists() else 60, env_step),
        throughput(*first),
        throughput(*tf32x3),
        throughput(*recompute),
        population("the target's shape, P = 100 at depth 100", POPULATION_TARGET),
        population("the target's shape in 3xTF32 on the depth-fused stack", POPULATION_TARGET_TF32X3),
        Step("the paper preset's expected time, IEEE and 3xTF32", 0 if (out / PAPER_ESTIMATE_FILE).exists() else 90,
             paper_estimate_step, "converge --dry-run's estimate of depths 10-100 at each precision"),
        throughput(*atomic),
        tests("gpu-marked tests", "gpu-tests.log", ["-m", "gpu", "tests"], 240, "python -m pytest -m gpu"),
        Step("profile of the deepest configuration", 0 if profiled else 120, profile_step,
             Case(**PROFILE_CASE).describe()),
        tests("the kernel tests on this GPU", "kernel-tests.log", ["-m", "not gpu", *KERNEL_TESTS], 360,
              "every test of the kernels, layers and populations, run on the GPU (12 hypothesis shapes a property)"),
        population("the target's shape at TF32", POPULATION_TARGET_TF32),
        population("depth 10 and 100, P = 1 to 128", POPULATION_BLOCK),
        *[throughput(*block) for block in rest],
        # planned as if the paper-time target held (depths 10-100 in 30 min), scaled by depth to the preset's
        Step("convergence (paper protocol)", PAPER_TIME["minutes"] * 60 * sum(study.depths) / sum(PAPER_TIME["depths"]),
             converge_step,
             f"{trials} trials x {study.epochs} epochs, depth by depth, as populations, as far as the time "
             f"left allows"),
    ] + ([Step("report", REPORT_RESERVE_S, report_step)] if report else [])


# Before anything is timed: the depth-fused stack's training step (the first steps' kernels) at a small shape
# through the throughput gate, in bf16 and in fp32 at every precision (TF32, IEEE and 3xTF32 dots compile apart), so
# that kernels that fail on this GPU (a compiler that rejects them, a wrong result) stop the campaign in seconds
# instead of filling its folder with failure rows. Only a failure of every case stops it: where some pass (the
# first H200 run: bf16 and IEEE fp32 passed, TF32 did not), the rest of the lease is worth more than the
# failing dtype's rows cost, and those rows record their failure themselves. The per-layer kernels are left
# to their own rows' gate: autotuning their 7 tiles for 4 kernels in 3 dtypes would cost a minute of a
# quarter-hour lease before anything is timed.
SMOKE_CASES = [dict(model="highway", layer="dense", depth=4, width=50, dtype=dtype, batch=128, backend=backend,
                    mode="train") for backend in ("triton-stack", "triton-stack-recompute")
               for dtype in ("bf16", "tf32", "fp32", "tf32x3")]


def smoke_check(device) -> list[str]:
    """One line for each `SMOKE_CASES` case that fails on `device` (a backend it cannot run is no failure)."""
    from highway.bench.harness.cases import Case
    from highway.bench.harness.sweep import Baselines, run_case

    baselines, problems = Baselines(device), []
    for case in [Case(**c) for c in SMOKE_CASES]:
        status = run_case(case, device, baselines)["status"]
        if status != STATUS_OK and not status.startswith("unsupported"):
            problems.append(f"{case.describe()}: {status}")
    return problems


def _last_line(text: str) -> str:
    return (text.strip().splitlines() or ["no output"])[-1]


def check_same_device(out: Path, device) -> None:
    """ValueError when `out` holds a campaign from another device: its rows would be compared with this one's."""
    from highway.bench.harness.environment import device_name

    path = out / "environment.json"
    if not path.exists():
        return
    first = json.loads(path.read_text()).get("device")
    if first != device_name(device):
        raise ValueError(f"{out} holds a campaign run on {first}; this is {device_name(device)}. Give this device a "
                         f"folder of its own (--out), so that no figure compares two machines' numbers")


def run_campaign(out, budget_minutes: float = 20, device=None, dry_run: bool = False, progress: bool = True,
                 argv=None, executor=None, dataset: str = "default", retry_failed: bool = False,
                 report: bool = True) -> int:
    """Run the campaign's steps into `out` until `budget_minutes` are spent; the exit status. With
    `report=False` the report step is left out and its reserve goes to the steps: on a lease of minutes the
    report is drawn afterwards, off the GPU (`highway-bench report`), since reports never run kernels."""
    out = Path(out)
    if not budget_minutes > 0:
        raise ValueError(f"--budget-minutes must be positive, got {budget_minutes}")
    device = resolve_device(device)
    check_same_device(out, device)
    if dataset != "default" and not dry_run:  # a bad --dataset fails now, not after the throughput steps
        from highway.bench.study.convergence import study_data

        paper = STUDIES["paper"]
        study_data(dataset, paper.seed, paper.max_train, paper.max_val)  # cached for the convergence step
    steps = campaign_steps(out, device, progress, argv, executor, dataset, retry_failed, report)
    budget = budget_minutes * 60
    work_budget = max(0.0, budget - (REPORT_RESERVE_S if report else 0))
    print(f"campaign into {out} on {device}, budget {budget_minutes:g} min, steps in this order (estimates of what "
          f"is left, rough per-case guesses for planning; the rows record what each case took):")
    elapsed, budget_shown = 0.0, False
    for i, step in enumerate(steps, start=1):
        if step.name != "report" and not budget_shown and elapsed + step.estimate_s > work_budget:
            print(f"  -- the budget runs out {'in the next step' if elapsed < work_budget else 'here'}; a later run "
                  f"goes on from where this one stops")
            budget_shown = True
        elapsed += step.estimate_s
        left = "done" if not step.estimate_s else f"about {step.estimate_s / 60:.1f} min"
        print(f"  {i}. {step.name}: {left}" + (f"\n     {step.plan}" if step.plan else ""))
    print(f"about {elapsed / 60:.0f} min for everything left")
    if dry_run:
        return 0
    if device.type != "cuda":
        print("note: no GPU here; GPU-only backends and tests will be recorded as skipped")
    start = time.monotonic()  # the smoke check's time is the budget's too
    print("\n== smoke check: the depth-fused stack's training step at a small shape, against float64", flush=True)
    problems = smoke_check(device)
    why = "(`python -m pytest tests/test_highway_stack.py tests/test_highway_linear_triton.py` shows more)"
    if len(problems) == len(SMOKE_CASES):
        print(f"the fused kernels fail on this device, so nothing was timed {why}:\n  " + "\n  ".join(problems))
        return 1
    if problems:  # a dtype that fails costs its stack rows, not the lease: they and their baselines still run
        print(f"some of the fused kernels fail on this device {why}; their rows will say so, the rest goes on:\n  "
              + "\n  ".join(problems), flush=True)
    deadline = start + work_budget  # the report's reserve is kept back from every other step
    outcomes, interrupted = [], False
    for step in steps:
        if step.name != "report" and time.monotonic() > deadline:
            outcomes.append((step.name, "left for a later run: the time budget ran out"))
            continue
        print(f"\n== {step.name}", flush=True)
        try:
            outcomes.append((step.name, step.run(deadline)))
        except KeyboardInterrupt:  # Ctrl-C, or a lease's time box: every finished row is already stored
            outcomes.append((step.name, "stopped by Ctrl-C; what it finished is kept, the rest is left for a later "
                                        "run (`highway-bench report` draws what there is)"))
            interrupted = True
            break
    took = time.monotonic() - start
    print(f"\ncampaign {'stopped' if interrupted else 'done'} in {took / 60:.1f} min" + (
        f" ({(took - budget) / 60:.1f} over the budget: a case, trial epoch or test run in flight when its time ran "
        f"out is finished, not cut)" if took > budget else "") + ":")
    for name, outcome in outcomes:
        print(f"  {name}: {outcome}")
    if not report:
        print(f"\nno report drawn here (--no-report): draw it with `highway-bench report {out} -o {out / 'report'}`")
    print(f"\ncommit {out} (results, {'report, ' if report else ''}environment); run the same command again to go "
          f"on where it stopped")
    return 130 if interrupted else 0
