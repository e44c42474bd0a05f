"""`highway-bench`: convergence studies, throughput sweeps, gate analyses, profiles and reports.

    highway-bench quickstart                  # the quick study + the quick sweep + the report, on this machine
    highway-bench converge --preset quick --out results/converge
    highway-bench analyze results/converge/checkpoints/fashion-mnist-highway-d50.pt --out results/analysis
    highway-bench report results/ -o report/
    highway-bench report --compare old-results/ new-results/
    highway-bench throughput --preset quick --out results/
    highway-bench population --preset quick --out results/   # P trials at once against one by one
    highway-bench throughput --model highway plain --depth 1 10 100 1000 --width 64 --dtype fp32 \\
        --batch 128 --backend torch triton --mode fwd train --out results/
    highway-bench profile --depth 10 --width 1024 --dtype bf16 --backend triton --mode train --out prof/
"""
import argparse
import os
import sys
from pathlib import Path

from highway.activations import ACTIVATIONS
from highway.backends import BACKENDS as LAYER_BACKENDS
from highway.bench.harness.backends import BACKENDS
from highway.bench.harness.cases import DTYPES, Case
from highway.bench.harness.compile_check import DTYPES as CHECKED_DTYPES
from highway.bench.harness.population_sweep import POPULATION_BACKENDS
from highway.bench.harness.environment import resolve_device
from highway.bench.harness.executors import EXECUTORS
from highway.bench.harness.sweep import PRESETS as SWEEP_PRESETS
from highway.bench.harness.timing import CPU_THREADS
from highway.bench.schema import COMPILE_CHECK_FILE, CONVERGE_FILE, GATE_AUTO, GATE_SEARCH, LAYERS, MODELS, MODES, \
    POPULATION_FILE, RESULTS_FILE, parse_gate_rule
from highway.bench.study.analysis import ANALYSIS_SAMPLES
from highway.bench.study.convergence import PRECISIONS, PRESETS as STUDIES

# The extra that installs each optional package a command may import (pyproject.toml).
EXTRAS = {"matplotlib": "report", "seaborn": "report", "pandas": "bench", "sklearn": "bench", "tqdm": "bench",
          "ray": "distributed"}

AXES = ("model", "layer", "depth", "width", "dtype", "batch", "backend", "mode", "spatial")
POPULATION_AXES = ("model", "depth", "width", "dtype", "batch", "backend", "population")
# One case for `profile`; a sweep's unset axes come from its preset, or from `expand`'s defaults.
PROFILE_CASE = dict(model="highway", layer="dense", depth=10, width=64, dtype="fp32", batch=128, backend="torch",
                    mode="fwd", spatial=16)
DTYPE_HELP = ("fp32: IEEE fp32 (torch's default matmul precision); tf32: fp32 tensors, TF32 matmuls and convolutions; "
              "tf32x3: fp32 tensors, our kernels' 3xTF32 dots against IEEE baselines")


def _axes(parser: argparse.ArgumentParser, defaults: dict | None):
    """The case axes as options: one value each with `defaults` (profile), one or more without (a sweep)."""
    nargs = None if defaults else "+"
    default = (lambda axis: defaults[axis]) if defaults else (lambda axis: None)
    parser.add_argument("--model", nargs=nargs, choices=MODELS, default=default("model"), help="highway or plain")
    parser.add_argument("--layer", nargs=nargs, choices=LAYERS, default=default("layer"), help="dense or conv")
    parser.add_argument("--depth", nargs=nargs, type=int, default=default("depth"), help="layers in the stack")
    parser.add_argument("--width", nargs=nargs, type=int, default=default("width"),
                        help="features (dense) or channels (conv)")
    parser.add_argument("--dtype", nargs=nargs, choices=list(DTYPES), default=default("dtype"), help=DTYPE_HELP)
    parser.add_argument("--batch", nargs=nargs, type=int, default=default("batch"))
    parser.add_argument("--backend", nargs=nargs, choices=list(BACKENDS), default=default("backend"))
    parser.add_argument("--mode", nargs=nargs, choices=MODES, default=default("mode"),
                        help="fwd (no grad), fwd+bwd, or train (a full SGD step)")
    parser.add_argument("--spatial", nargs=nargs, type=int, default=default("spatial"),
                        help="image side for conv stacks")


def writable_dir(path) -> Path:
    """`path` as a directory this process can write into, made if missing; ValueError naming the problem
    before any work starts (a file in the way, no permission, a read-only file system)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file; give a directory for the results")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".highway-bench-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"cannot write to {path}: {e.strerror or e}") from None
    return path


def cmd_throughput(args) -> int:
    import pandas as pd

    from highway.bench.harness.sweep import expand, summary_table, throughput_sweep

    given = {a: getattr(args, a) for a in AXES if getattr(args, a) is not None}
    sweeps = [{**preset, **given} for preset in SWEEP_PRESETS[args.preset]] if args.preset else [given]
    for axes in sweeps:
        expand(**axes)  # every axis checked before anything runs
    resolve_device(args.device)
    writable_dir(args.out)
    executor = _executor(args)
    frames = []
    try:
        for axes in sweeps:
            frames.append(throughput_sweep(args.out, overwrite=args.overwrite, device=args.device, timer=args.timer,
                                           progress=not args.no_progress, argv=sys.argv, threads=args.threads,
                                           executor=executor, retry_failed=args.retry_failed, **axes))
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished configurations are in {args.out}/{RESULTS_FILE}; "
              "run the same command to resume")
        return 130
    print(summary_table(pd.concat(frames, ignore_index=True)))
    print(f"\nresults: {args.out}/{RESULTS_FILE}")
    return 0


def cmd_population(args) -> int:
    from highway.bench.harness.population_sweep import PRESETS, expand, population_sweep, population_table

    axes = {**(PRESETS[args.preset] if args.preset else {}),
            **{a: getattr(args, a) for a in POPULATION_AXES if getattr(args, a) is not None}}
    expand(**axes)  # every axis checked before anything runs
    resolve_device(args.device)
    writable_dir(args.out)
    try:
        df = population_sweep(args.out, overwrite=args.overwrite, device=args.device, progress=not args.no_progress,
                              argv=sys.argv, threads=args.threads, retry_failed=args.retry_failed, **axes)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished cases are in {args.out}/{POPULATION_FILE}; run the same command to resume")
        return 130
    print(population_table(df))
    print(f"\nresults: {args.out}/{POPULATION_FILE}")
    return 0


def cmd_profile(args) -> int:
    from highway.bench.harness.profile import profile_config

    case = Case(**{a: getattr(args, a) for a in AXES})
    resolve_device(args.device)
    writable_dir(args.out)
    table = profile_config(case, args.out, steps=args.steps, device=args.device)
    print(f"{case.describe()}: {args.steps} steps")
    print(table.head(args.top).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"\ntrace: {args.out}/trace.json.gz   table: {args.out}/kernels.csv")
    return 0


def cmd_compile_check(args) -> int:
    import time

    from highway.bench.harness.compile_check import compile_check, table, write_csv
    from highway.bench.harness.progress import progress_bar

    start = time.perf_counter()
    bar = (lambda items, total: progress_bar(items, True, "compile", total=total)) if not args.no_progress else None
    results = compile_check(args.arch, args.dtype, args.kernel, args.jobs, bar)
    print(table(results))
    if args.out:
        write_csv(results, writable_dir(args.out) / COMPILE_CHECK_FILE)
    failed = [r for r in results if r.problem]
    seconds, processes = time.perf_counter() - start, args.jobs or os.cpu_count()
    print(f"\n{len(results)} compiles in {seconds:.0f} s ({processes} processes): "
          + (f"{len(failed)} with problems" if failed else "no compile failure, no spill in bf16/fp16/fp32 (IEEE)/"
             "tf32x3 but those a kernel's spec allows, no shared memory overflow the autotuner would try, none "
             "above the bound it prunes by, tensor cores in every bf16 GEMM tile of 64 and up, no load left in a pipelined "
             "loop for a dot to wait on but those a kernel's spec explains"))
    looped = [r for r in results if r.spills_in_loops > 0]
    if looped:  # allowed or not, what a spill costs every iteration is worth a line
        print(f"{len(looped)} configs spill inside a loop ({'/'.join(sorted({r.dtype for r in looped}))}): "
              f"up to {max(r.spills_in_loops for r in looped)} local loads and stores an iteration (column 'loop')")
    return 1 if failed else 0


def cmd_peaks(args) -> int:
    import torch

    from highway.bench.harness.devices import PEAK_DTYPES, measure_peaks, peak_for

    if not torch.cuda.is_available():
        print("no CUDA GPU: peaks are only tabulated and measured for GPUs")
        return 1
    name = torch.cuda.get_device_name()
    for dtype in PEAK_DTYPES:
        flops, bw = measure_peaks(dtype)
        table = peak_for(name, dtype)
        print(f"{name} {dtype}: measured {flops:.1f} TFLOP/s, {bw:.2f} TB/s; table {table[0]} TFLOP/s, {table[1]} TB/s")
    return 0


def _population_size(text: str):
    """--population: a positive integer or 'auto'."""
    from highway.bench.study.convergence import AUTO

    if text == AUTO:
        return AUTO
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or '{AUTO}', got {text!r}") from None


def _study(args):
    from dataclasses import replace

    from highway.bench.study.convergence import PRESETS, SearchSpace, Study

    study = PRESETS[args.preset] if args.preset else Study()
    changes = {k: getattr(args, k) for k in ("dataset", "trials", "epochs", "batch", "max_train", "seed", "backend",
                                             "population", "max_val", "cuda_graph", "precision")
               if getattr(args, k) is not None}
    if args.depth:
        changes["depths"] = tuple(args.depth)
    if args.model:
        changes["models"] = tuple(args.model)
    if args.name:
        changes["name"] = args.name
    fixed = {k: v for k, v in (("lr", args.lr), ("momentum", args.momentum), ("decay", args.decay),
                               ("activation", args.activation)) if v is not None}
    if fixed:
        changes["search"] = SearchSpace(fixed={**study.search.fixed, **fixed})
    if args.gate_bias:
        changes["gate_rules"] = tuple(parse_gate_rule(rule) for rule in args.gate_bias)
    return replace(study, **changes)


def cmd_converge(args) -> int:
    from highway.bench.study.convergence import convergence_study
    from highway.reports.summaries import best_runs

    study = _study(args)
    study.validate()
    resolve_device(args.device)
    if not args.dry_run:
        writable_dir(args.out)
    executor = _executor(args)
    try:
        df = convergence_study(args.out, study, device=args.device, progress=not args.no_progress,
                               overwrite=args.overwrite, argv=sys.argv, estimate=not args.no_estimate,
                               executor=executor, dry_run=args.dry_run)
        if args.dry_run:
            return 0
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished trials are in {args.out}/{CONVERGE_FILE}; run the same command to resume")
        return 130
    best = best_runs(df)
    print(f"study '{study.name}' on {df['dataset'].iloc[0] if len(df) else study.dataset}: final training loss")
    if best.empty:
        print("  every trial diverged: no final loss to show (try a lower --lr, or more trials)")
    else:
        print(best.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"\nresults: {args.out}/{CONVERGE_FILE}   checkpoints: {args.out}/checkpoints/")
    return 0


def cmd_analyze(args) -> int:
    from highway.bench.study.analysis import analyze, check_analysable
    from highway.bench.study.checkpoints import load_checkpoint

    resolve_device(args.device)
    for checkpoint in args.checkpoint:  # every file checked before any is analysed
        check_analysable(checkpoint, load_checkpoint(checkpoint)[1], args.dataset)
    if args.samples < 1:
        raise ValueError(f"--samples must be positive, got {args.samples}")
    writable_dir(args.out)
    for checkpoint in args.checkpoint:
        target = analyze(checkpoint, args.out, dataset=args.dataset, max_samples=args.samples, device=args.device,
                         progress=not args.no_progress)
        print(f"{checkpoint}: gates.npz, lesion.csv, meta.json in {target}")
    return 0


def cmd_report(args) -> int:
    if args.compare:
        from highway.reports.compare import compare_throughput

        old, new = args.compare
        if not 0 <= args.threshold:
            raise ValueError(f"--threshold must be a fraction >= 0, got {args.threshold}")
        diff = compare_throughput([old], [new], args.threshold)
        changed = diff[diff["change"] != ""]
        print(f"{len(diff)} configurations in both; {len(changed)} changed by more than {args.threshold:.0%}:")
        cols = [a for a in AXES if a != "spatial"] + ["old_ms", "new_ms", "ratio", "change"]
        print(changed[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}") if len(changed) else "  none")
        if args.output:
            diff.to_csv(writable_dir(args.output) / "compare.csv", index=False)
        return 1 if args.fail_on_slower and (changed["change"] == "slower").any() else 0
    if not args.results:
        raise ValueError("give one or more results directories, or --compare OLD NEW")
    from highway.reports.render import build_report

    page = build_report(args.results, writable_dir(args.output or "report"), progress=not args.no_progress)
    print(f"report: {page}  (Markdown: {page.with_suffix('.md')})")
    return 0


def cmd_campaign(args) -> int:
    from highway.bench.cli.campaign import run_campaign

    if not args.dry_run:
        writable_dir(args.out)
    return run_campaign(args.out, args.budget_minutes, args.device, args.dry_run, not args.no_progress, sys.argv,
                        None if args.dry_run else _executor(args), args.dataset, args.retry_failed,
                        report=not args.no_report)


def cmd_quickstart(args) -> int:
    from highway.bench.cli.quickstart import quickstart

    writable_dir(args.out)
    quickstart(args.out, progress=not args.no_progress, argv=sys.argv)
    return 0


def _run_options(parser: argparse.ArgumentParser, device: bool = True, executor: bool = False):
    """The options every command that runs something shares; with `executor`, where its units run."""
    if device:
        parser.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda when available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    if executor:
        parser.add_argument("--executor", choices=EXECUTORS, default="local",
                            help="local: one unit after another here; ray: spread over every GPU (or CPU) of a Ray "
                                 "cluster, this process the only writer (needs the [distributed] extra)")
        parser.add_argument("--address", help="--executor ray: the cluster's address (default: start a local Ray "
                                              "instance on this machine), e.g. ray://head:10001 or auto")


def _executor(args):
    from highway.bench.harness.executors import make_executor

    return make_executor(args.executor, args.address)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="highway-bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("throughput", help="sweep depth/width/dtype/batch/backend/mode; write results.csv",
                       description="Time every configuration of the cross product of the axes given (each "
                                   "takes one or more values), checking each backend against a float64 "
                                   "reference first. Re-running the same command resumes.")
    _axes(p, defaults=None)
    p.add_argument("--preset", choices=list(SWEEP_PRESETS),
                   help="quick: a laptop CPU in about a minute; paper: the paper's thin nets; full: a GPU")
    p.add_argument("--out", default="results", help="results directory (default: results)")
    p.add_argument("--overwrite", action="store_true", help="re-run configurations already in the results")
    p.add_argument("--retry-failed", action="store_true",
                   help="re-run configurations whose row is a failure (an error, a mismatch, oom), e.g. after a fix")
    p.add_argument("--timer", choices=["events", "graph"], default="events",
                   help="GPU: CUDA events per call, or CUDA-graph replay to take launch overhead out")
    p.add_argument("--threads", type=int, default=CPU_THREADS,
                   help=f"CPU timing: torch threads for the timed calls (default {CPU_THREADS}; more threads on a "
                        "busy machine measure the scheduler)")
    _run_options(p, executor=True)
    p.set_defaults(func=cmd_throughput)

    p = sub.add_parser("population", help="P trials trained at once against one by one: trials/s, samples/s",
                       description="Time one SGD train step of P trials of the paper's thin nets, as one "
                                   "population and as P nets one after another, in alternation, for every case of "
                                   "the axes given; write population.csv. Re-running the same command resumes.")
    p.add_argument("--model", nargs="+", choices=MODELS)
    p.add_argument("--depth", nargs="+", type=int, help="layers per net, the plain first layer included")
    p.add_argument("--width", nargs="+", type=int)
    p.add_argument("--dtype", nargs="+", choices=list(DTYPES), help=DTYPE_HELP)
    p.add_argument("--batch", nargs="+", type=int, help="rows per trial and step")
    p.add_argument("--backend", nargs="+", choices=POPULATION_BACKENDS)
    p.add_argument("--population", nargs="+", type=int, help="trials P (default 1 8 32 128)")
    p.add_argument("--preset", choices=["quick", "full"],
                   help="quick: depth 20, width 50, eager, P = 1-128 (a CPU in a few minutes); full: a GPU")
    p.add_argument("--out", default="results", help="results directory (default: results)")
    p.add_argument("--overwrite", action="store_true", help="re-run cases already in the results")
    p.add_argument("--retry-failed", action="store_true",
                   help="re-run cases whose row is a failure (an error, a mismatch, oom), e.g. after a fix")
    p.add_argument("--threads", type=int, default=CPU_THREADS, help=f"CPU timing: torch threads (default {CPU_THREADS})")
    _run_options(p)
    p.set_defaults(func=cmd_population)

    p = sub.add_parser("profile", help="one configuration under torch.profiler: Chrome trace and kernel table")
    _axes(p, defaults=PROFILE_CASE)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--top", type=int, default=20, help="rows of the kernel table to print")
    p.add_argument("--out", default="profile")
    p.add_argument("--device")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("compile-check", help="compile every kernel for sm_80/sm_90 without a GPU: registers, "
                                             "spills, shared memory, occupancy, tensor cores",
                       description="Compiles every kernel x autotune config x dtype for each arch with the ptxas "
                                   "in the triton wheel, prints registers, spill bytes and the local loads and "
                                   "stores of a spill inside a loop (column 'loop'), shared memory, the blocks an "
                                   "SM holds at once and whether the tensor cores are used, and exits 1 on a compile failure, a bf16/fp16 "
                                   "spill, a shared-memory overflow the autotuner would try, shared memory above "
                                   "the bound the autotuner prunes by, a bf16 GEMM tile of 64+ off the tensor "
                                   "cores, or a load that a dot of a pipelined loop waits for every iteration.")
    p.add_argument("--arch", nargs="+", type=int, default=[80, 90], help="compute capabilities (default 80 90)")
    p.add_argument("--dtype", nargs="+", choices=["bf16", "fp16", "tf32", "fp32", "tf32x3"],
                   default=list(CHECKED_DTYPES), help="tf32: fp32 with TF32 dots (torch's 'high' matmul precision); "
                   "fp32: IEEE fp32 (its default); tf32x3: our kernels' 3xTF32 dots (set_fp32_dots)")
    p.add_argument("--kernel", nargs="+", help="only kernels whose name contains one of these")
    p.add_argument("--jobs", type=int, help="compiler processes (default: one per CPU)")
    p.add_argument("--out", help="also write compile_check.csv here")
    _run_options(p, device=False)
    p.set_defaults(func=cmd_compile_check)

    p = sub.add_parser("peaks", help="measure this GPU's peak TFLOP/s and TB/s and compare with the table")
    p.set_defaults(func=cmd_peaks)

    p = sub.add_parser("campaign", help="everything worth running on a GPU, most valuable first, time-boxed",
                       description="Environment and peaks, the open targets (the depth-fused stack, the population), "
                                   "the gpu-marked tests, the rest of the throughput campaign, a profile of the "
                                   "deepest configuration, the paper's convergence protocol as far as time allows, "
                                   "and the report, into one gallery folder, most valuable first. Resumable.")
    p.add_argument("--out", required=True, help="the gallery folder, e.g. reports/gallery/h200")
    p.add_argument("--budget-minutes", type=float, default=20, help="time box (default 20)")
    p.add_argument("--no-report", action="store_true",
                   help="leave the report out and give its 1.5 minutes to the steps: on a lease of minutes, draw "
                        "it afterwards off the GPU with `highway-bench report`")
    p.add_argument("--dry-run", action="store_true", help="print the plan and its time estimate, run nothing")
    p.add_argument("--retry-failed", action="store_true",
                   help="re-run throughput and population cases whose row is a failure (an error, a mismatch, oom), "
                        "e.g. after a fix")
    p.add_argument("--dataset", default="default",
                   help="the convergence step's data (as converge takes it; default: Fashion-MNIST when installed, "
                        "else digits; on a machine without it, idx:DIR with its files)")
    _run_options(p, executor=True)
    p.set_defaults(func=cmd_campaign)

    p = sub.add_parser("quickstart", help="quick study + quick sweep + gate analysis + report (a few minutes, CPU)")
    p.add_argument("--out", default="quickstart", help="where results and the report go (default: quickstart)")
    _run_options(p, device=False)
    p.set_defaults(func=cmd_quickstart)

    p = sub.add_parser("converge", help="plain vs highway optimization at growing depth (the paper's Figure 1)",
                       description="Random-search convergence study; re-running the same command resumes.")
    p.add_argument("--preset", choices=list(STUDIES),
                   help="quick: a 2-core CPU in minutes; paper: the paper's protocol (100 trials a net, depths 10-1000); "
                        "paper-cpu: the paper's protocol cut to about an hour on a 2-core CPU; paper-digits: the "
                        "paper's protocol whole at depths 10-100 on digits, about an hour on a 2-core CPU; gate-bias: "
                        "-2 against 'auto', no search")
    p.add_argument("--dataset", help="digits, fashion-mnist, default, idx:DIR, cifar10:DIR, cifar100:DIR")
    p.add_argument("--depth", nargs="+", type=int, help="hidden layers (e.g. 10 20 50 100 200 500 1000)")
    p.add_argument("--model", nargs="+", choices=MODELS)
    p.add_argument("--trials", type=int, help="random-search trials per (model, depth)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--max-train", type=int, help="use at most this many training images")
    p.add_argument("--max-val", type=int, help="evaluate at most this many validation images after every epoch")
    p.add_argument("--population", type=_population_size, metavar="N|auto",
                   help="train up to N trials of one (model, gate rule, depth, activation) at once, as one population; "
                        "1: one after another; default auto: as many as fit in half the free memory")
    p.add_argument("--seed", type=int)
    p.add_argument("--backend", choices=LAYER_BACKENDS, help="highway layers' backend")
    p.add_argument("--name", help="study name, part of every row's key (default: the preset's)")
    p.add_argument("--lr", type=float, help="fix the learning rate instead of searching it")
    p.add_argument("--momentum", type=float, help="fix the momentum")
    p.add_argument("--decay", type=float, help="fix the per-epoch learning-rate decay")
    p.add_argument("--activation", choices=sorted(ACTIVATIONS), help="fix the activation")
    p.add_argument("--gate-bias", nargs="+", metavar="RULE",
                   help=f"highway gate bias, one arm each: {GATE_SEARCH} (drawn in [-10, -1]), {GATE_AUTO} (from the "
                        f"depth, highway.gate_bias), or a number; e.g. --gate-bias -2 {GATE_AUTO}")
    p.add_argument("--out", default="results/converge")
    p.add_argument("--no-estimate", action="store_true",
                   help="start at once, without first timing a few steps to print the expected running time")
    p.add_argument("--dry-run", action="store_true",
                   help="print the expected running time (timed on a few steps) and stop: nothing trained or written")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="fp32 matmuls: fp32 (IEEE, torch's default), tf32, or tf32x3 (the depth-fused stack's 3xTF32 "
                        "dots, fp32's accuracy on the tensor cores); the CPU computes all three alike. A study "
                        "resumed at another precision mixes the two: give it another --name")
    p.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_false", default=None,
                   help="on a GPU, launch a population's training step op by op instead of replaying it as one "
                        "captured CUDA graph")
    p.add_argument("--overwrite", action="store_true")
    _run_options(p, executor=True)
    p.set_defaults(func=cmd_converge)

    p = sub.add_parser("analyze", help="gate statistics and lesions of trained highway nets (Figures 2-4)")
    p.add_argument("checkpoint", nargs="+", help="checkpoints written by `highway-bench converge`")
    p.add_argument("--out", default="results/analysis")
    p.add_argument("--dataset", help="data to analyse on (default: the checkpoint's own)")
    p.add_argument("--samples", type=int, default=ANALYSIS_SAMPLES, help="training samples to use")
    _run_options(p)
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("report", help="HTML and Markdown report from results directories; --compare for regressions")
    p.add_argument("results", nargs="*", help="results directories (searched for results.csv, converge.csv, "
                                               "population.csv, gates.npz, compile_check.csv)")
    p.add_argument("-o", "--output", help="output directory (default: report)")
    p.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"), help="compare two throughput result sets")
    p.add_argument("--threshold", type=float, default=0.1, help="relative change that counts (default 0.1)")
    p.add_argument("--fail-on-slower", action="store_true",
                   help="exit 1 when anything got slower beyond the threshold and both runs' spread (for CI)")
    _run_options(p, device=False)
    p.set_defaults(func=cmd_report)

    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as e:  # bad input, a missing or unwritable file: the user's to fix
        print(f"highway-bench {args.command}: error: {_message(e)}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        extra = EXTRAS.get((e.name or "").split(".")[0])
        if extra is None:
            raise
        print(f"highway-bench {args.command}: error: this needs {e.name}, which comes with the [{extra}] extra: "
              f"pip install 'highway-triton[{extra}]'", file=sys.stderr)
        return 2


def _message(error: Exception) -> str:
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"
    return str(error)


if __name__ == "__main__":
    sys.exit(main())
