"""A dress rehearsal of the first GPU report: every configuration the campaign times, as rows a GPU run would
write, drawn into a report. The timings are made up (a smooth function of the shape, with a spread), so
nothing here measures anything; what is tested is that a whole campaign's variety (dtypes, widths 50 to 8192,
conv layers, ten backends, shapes that one mode ran and another did not, population sizes) draws into figures
a person can read, and that the targets' claims find their rows."""
import itertools
from dataclasses import asdict

import numpy as np
import pandas as pd
from PIL import Image

from highway.bench.cli.campaign import POPULATION_BLOCK, THROUGHPUT_BLOCKS
from highway.bench.harness.sweep import expand
from highway.bench.schema import POPULATION_COLUMNS, THROUGHPUT_COLUMNS
from highway.reports.claims import claims_table
from highway.reports.loading import load_results
from highway.reports.render import build_report

GPU = dict(device="NVIDIA H200", device_type="cuda", commit="rehearsal", run_id="r", host="gpu")
# made-up shares of eager's time: the per-layer kernels a little faster, the depth-fused stack much faster
SHARE = {"torch": 1.0, "compile": 0.7, "compile-cudagraphs": 0.4, "compile-layers-cudagraphs": 0.45, "triton": 0.5,
         "triton+compile": 0.45, "triton-stack": 0.08, "triton-stack-recompute": 0.1, "triton-stack-atomic": 0.09,
         "gemm-only": 0.35}


def campaign_rows() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    cases = {c.key(): c for _, axes in THROUGHPUT_BLOCKS for c in expand(**axes)}
    rows = []
    for case in cases.values():
        c = asdict(case)
        passes = 3 if c["mode"] == "train" else 1
        eager_ms = c["depth"] * passes * (0.012 + 4 * c["batch"] * c["width"] ** 2 / 400e12 * 1e3)
        ms = eager_ms * SHARE[c["backend"]] * (2 if c["dtype"] == "fp32" else 1) * rng.uniform(0.9, 1.1)
        spread = rng.uniform(1.02, 1.4)
        fits = not (c["backend"].startswith("triton-stack") and c["width"] > 128)
        rows.append(dict(c, **GPU, status="ok" if fits else "unsupported: the stack holds widths up to 128",
                         median_ms=ms if fits else np.nan, p20_ms=ms / spread ** 0.5, p80_ms=ms * spread ** 0.5,
                         samples_per_s=c["batch"] / ms * 1e3, pct_peak_flops=min(95.0, c["width"] / 90),
                         peak_mem_mb=c["depth"] * c["width"] * c["batch"] * 4e-6 * (4 if c["backend"] == "torch" else 1),
                         spread=spread, noisy=spread > 1.3, weight_gbps=c["depth"] * c["width"] ** 2 * 8 / ms / 1e6,
                         pct_peak_bw_weights=c["depth"] * c["width"] ** 2 * 8 / ms / 1e6 / 48,
                         kernels_per_step=6 * c["depth"] if c["backend"] == "torch" else 2))
    df = pd.DataFrame(rows)
    config = ["model", "layer", "depth", "width", "dtype", "batch", "mode", "spatial"]
    eager = df[df["backend"] == "torch"].set_index(config)["median_ms"]
    df["speedup_vs_torch"] = eager.reindex(pd.MultiIndex.from_frame(df[config])).to_numpy() / df["median_ms"]
    return df.reindex(columns=THROUGHPUT_COLUMNS)


def population_rows() -> pd.DataFrame:
    rows = []
    keys = ["model", "depth", "width", "dtype", "batch", "backend", "population"]
    for values in itertools.product(*(POPULATION_BLOCK[k] for k in keys)):
        r = dict(zip(keys, values))
        one, p = 0.05 * r["depth"], r["population"]
        pop = one * (1 + p / 60)
        rows.append(dict(r, **GPU, status="ok", population_ms=pop, population_p20_ms=0.95 * pop,
                         population_p80_ms=1.05 * pop, one_by_one_ms=one * p, one_by_one_p20_ms=0.95 * one * p,
                         one_by_one_p80_ms=1.05 * one * p, speedup=one * p / pop, trials_per_s=p / pop * 1e3,
                         one_by_one_trials_per_s=1e3 / one))
    return pd.DataFrame(rows).reindex(columns=POPULATION_COLUMNS)


def test_a_whole_campaigns_rows_draw_into_a_readable_report(tmp_path):
    (tmp_path / "gpu" / "throughput").mkdir(parents=True)
    (tmp_path / "gpu" / "population").mkdir()
    campaign_rows().to_csv(tmp_path / "gpu" / "throughput" / "results.csv", index=False)
    population_rows().to_csv(tmp_path / "gpu" / "population" / "population.csv", index=False)
    build_report([tmp_path / "gpu"], tmp_path / "report", progress=False)
    figures = {f.stem: Image.open(f).size for f in (tmp_path / "report" / "figures").glob("*.png")}
    slug = "NVIDIA-H200"
    for dtype in ("bf16", "tf32", "fp32"):  # a figure per dtype, never one that averages them together
        assert {f"throughput-dense-{slug}-{dtype}", f"speedup-dense-{slug}-{dtype}", f"per-layer-{slug}-{dtype}",
                f"weight-streaming-{slug}-{dtype}"} <= set(figures)
    assert {f"stack-targets-{slug}", f"memory-dense-{slug}", f"throughput-conv-{slug}-bf16", f"population-{slug}",
            f"precision-{slug}", f"kernels-{slug}"} <= set(figures)
    # none so tall that it reads as a wall of panels (one figure for every dtype was 4,580 pixels)
    tallest = max(figures, key=lambda k: figures[k][1])
    assert figures[tallest][1] < 3000, (tallest, figures[tallest])
    claims = claims_table(load_results([tmp_path / "gpu"]))
    stack = claims[claims["claim"].str.startswith("Depth-fused stack")]
    assert len(stack) and stack["verdict"].isin(["holds", "does not hold"]).all()  # each target found its rows
    gpu_population = claims[claims["claim"].str.startswith("GPU, eager: 100 trials")]
    assert gpu_population["verdict"].isin(["holds", "does not hold"]).all() and len(gpu_population) == 1
