"""`highway-bench quickstart`, the README's main job: the quick convergence study and the quick throughput
sweep on this machine, the gates and lesions of the deepest highway net trained, and one report."""
from pathlib import Path

from highway.bench.harness.sweep import PRESETS as SWEEPS
from highway.bench.harness.sweep import throughput_sweep
from highway.bench.schema import CHECKPOINT_DIR, CHECKPOINT_SUFFIX, GATE_SEARCH, arm_id, checkpoint_depth
from highway.bench.study.analysis import analyze
from highway.bench.study.convergence import PRESETS as STUDIES
from highway.bench.study.convergence import convergence_study
from highway.reports.render import build_report

QUICK_ANALYSIS_SAMPLES = 5000  # half the default: the analysis step stays under half a minute on 2 cores


def quickstart(out, progress: bool = True, argv=None) -> Path:
    """Run the four steps into `out`; the report's HTML page. Re-running resumes every step."""
    out = Path(out)
    study = STUDIES["quick"]
    print(f"1/4 convergence study (quick preset): plain vs highway at depths {', '.join(map(str, study.depths))}")
    convergence_study(out / "converge", study, progress=progress, argv=argv)
    print("2/4 throughput sweep (quick preset)")
    for axes in SWEEPS["quick"]:
        throughput_sweep(out / "throughput", progress=progress, argv=argv, **axes)
    print("3/4 gates and lesions of the deepest highway net")
    highway = f"-{arm_id('highway', GATE_SEARCH)}-d"
    checkpoints = sorted((p for p in (out / "converge" / CHECKPOINT_DIR).glob(f"*{CHECKPOINT_SUFFIX}")
                          if highway in p.stem), key=lambda p: checkpoint_depth(p.stem))
    if checkpoints:
        analyze(checkpoints[-1], out / "analysis", max_samples=QUICK_ANALYSIS_SAMPLES, progress=progress)
    print("4/4 report")
    page = build_report([out], out / "report", progress=progress)
    print(f"\nreport: {page}\n        {page.with_suffix('.md')}")
    return page
