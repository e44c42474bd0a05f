"""`highway-bench`: throughput sweeps, profiles and the demo, from the command line.

    highway-bench throughput --preset quick --out results/
    highway-bench throughput --model highway plain --depth 1 10 100 1000 --width 64 --dtype fp32 \\
        --batch 128 --backend torch triton --mode fwd train --out results/
    highway-bench profile --depth 10 --width 1024 --dtype bf16 --backend triton --mode train --out prof/
"""
import argparse
import sys

from bench.operators import BACKENDS, DTYPES, LAYERS, MODELS, MODES, Config


def _axes(parser: argparse.ArgumentParser, many: bool):
    nargs = "+" if many else None
    one = (lambda v: v) if many else (lambda v: v[0])
    parser.add_argument("--model", nargs=nargs, choices=MODELS, default=one(["highway"]), help="highway or plain")
    parser.add_argument("--layer", nargs=nargs, choices=LAYERS, default=one(["dense"]), help="dense or conv")
    parser.add_argument("--depth", nargs=nargs, type=int, default=one([10]), help="layers in the stack")
    parser.add_argument("--width", nargs=nargs, type=int, default=one([64]), help="features (dense) or channels (conv)")
    parser.add_argument("--dtype", nargs=nargs, choices=list(DTYPES), default=one(["fp32"]))
    parser.add_argument("--batch", nargs=nargs, type=int, default=one([128]))
    parser.add_argument("--backend", nargs=nargs, choices=list(BACKENDS), default=one(["torch"]))
    parser.add_argument("--mode", nargs=nargs, choices=MODES, default=one(["fwd"]),
                        help="fwd (no grad), fwd+bwd, or train (a full SGD step)")
    parser.add_argument("--spatial", nargs=nargs, type=int, default=one([16]), help="image side for conv stacks")


def cmd_throughput(args) -> int:
    from bench.throughput import PRESETS, throughput_sweep, summary_table

    axis_names = ["model", "layer", "depth", "width", "dtype", "batch", "backend", "mode", "spatial"]
    given = {a: getattr(args, a) for a in axis_names if getattr(args, a) is not None}
    sweeps = [{**preset, **given} for preset in PRESETS[args.preset]] if args.preset else [given]
    frames = []
    try:
        for axes in sweeps:
            frames.append(throughput_sweep(args.out, overwrite=args.overwrite, device=args.device, timer=args.timer,
                                           progress=not args.no_progress, argv=sys.argv, **axes))
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished configurations are in {args.out}/results.csv; run the same command to resume")
        return 130
    import pandas as pd

    print(summary_table(pd.concat(frames, ignore_index=True)))
    print(f"\nresults: {args.out}/results.csv")
    return 0


def cmd_profile(args) -> int:
    from bench.profile import profile_config

    cfg = Config(args.model, args.layer, args.depth, args.width, args.dtype, args.batch, args.backend, args.mode,
                 args.spatial)
    table = profile_config(cfg, args.out, steps=args.steps, device=args.device)
    print(f"{cfg.describe()}: {args.steps} steps")
    print(table.head(args.top).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"\ntrace: {args.out}/trace.json   table: {args.out}/kernels.csv")
    return 0


def cmd_peaks(args) -> int:
    import torch

    from bench.devices import measure_peaks, peak_for

    if not torch.cuda.is_available():
        print("no CUDA GPU: peaks are only tabulated and measured for GPUs")
        return 1
    name = torch.cuda.get_device_name()
    for dtype in ("bf16", "fp32"):
        flops, bw = measure_peaks(DTYPES[dtype])
        table = peak_for(name, dtype)
        print(f"{name} {dtype}: measured {flops:.1f} TFLOP/s, {bw:.2f} TB/s; table {table[0]} TFLOP/s, {table[1]} TB/s")
    return 0


def cmd_demo(args) -> int:
    from bench.demo import main as demo

    demo(args.rest)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="highway-bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("throughput", help="sweep depth/width/dtype/batch/backend/mode; write results.csv",
                       description="Time every configuration of the cross product of the axes given (each "
                                   "takes one or more values), checking each backend against a float64 "
                                   "reference first. Re-running the same command resumes.")
    _axes(p, many=True)
    for action in p._actions:
        if action.dest in ("model", "layer", "depth", "width", "dtype", "batch", "backend", "mode", "spatial"):
            action.default = None  # unset axes come from the preset, or the defaults of `expand`
    from bench.throughput import PRESETS

    p.add_argument("--preset", choices=list(PRESETS),
                   help="quick: a laptop CPU in about a minute; paper: the paper's thin nets; full: a GPU")
    p.add_argument("--out", default="results", help="results directory (default: results)")
    p.add_argument("--overwrite", action="store_true", help="re-run configurations already in the results")
    p.add_argument("--timer", choices=["events", "graph"], default="events",
                   help="GPU: CUDA events per call, or CUDA-graph replay to take launch overhead out")
    p.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_throughput)

    p = sub.add_parser("profile", help="one configuration under torch.profiler: Chrome trace and kernel table")
    _axes(p, many=False)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--top", type=int, default=20, help="rows of the kernel table to print")
    p.add_argument("--out", default="profile")
    p.add_argument("--device")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("peaks", help="measure this GPU's peak TFLOP/s and TB/s and compare with the table")
    p.set_defaults(func=cmd_peaks)

    p = sub.add_parser("demo", help="train a plain and a highway net on digits and print both losses")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options of python -m bench.demo")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"highway-bench {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
