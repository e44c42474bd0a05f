"""The paper's claims that our data speaks to, each with the value measured and whether it holds.

A claim with no data for it says so instead of guessing, and one that fails on a smaller study than the
paper's says "not tested at this budget" with what fell short, not "does not hold". Every row says its
basis: dataset, trials, epochs, depths. Thresholds are the paper's words made exact (e.g. "more than 2
orders of magnitude" is a ratio above 100).
"""
import numpy as np
import pandas as pd

from highway.bench.schema import DTYPE_BYTES, GATE_AUTO, GATE_SEARCH, NO_GATE, STATUS_OK
from highway.reports.summaries import best_runs, ratio_range, straddles, tf32x3_against_ieee, triton_versions


PAPER_TRIALS = 100  # random-search trials per (model, depth) in the paper's Figure 1
PAPER_LOSS = 1e-4  # the loss the paper's 10- and 20-layer plain nets reach: a horizon long enough shows it
SHALLOW = 20  # the depths whose plain nets show the horizon
NOT_TESTED = "not tested at this budget"


def _speedup(value, low, high, target=None) -> str:
    """A speed-up measured from medians, with the range its calls allow (`low`: the baseline's fastest fifth of
    calls against the sped-up side's slowest; `high`: the other way round), and whether `target` lies inside
    that range, where a noisier or a quieter run could have given the other verdict."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{value:.2f}x"
    inside = "; the target lies within that spread" if target is not None and straddles(low, high, target) else ""
    return f"{value:.2f}x (calls' fifths: {low:.2f}-{high:.2f}x{inside})"


def _times(rows: pd.DataFrame, column: str) -> pd.Series:
    """`rows[column]`, or NaN where rows were written without it."""
    return rows[column] if column in rows else pd.Series(np.nan, index=rows.index)


def _row(claim, measured, holds, basis, shortfalls=()):
    """A claims-table row. A claim that fails on a study smaller than the paper's (`shortfalls` says how) was
    not tested: fewer trials or a shorter horizon cannot refute it. A claim that holds on less still holds."""
    if holds is None:
        verdict = "no data"
    elif holds:
        verdict = "holds"
    elif shortfalls:
        verdict = NOT_TESTED
        measured = f"{measured} ({'; '.join(shortfalls)})"
    else:
        verdict = "does not hold"
    return {"claim": claim, "measured": measured, "verdict": verdict, "basis": basis}


def study_basis(study: str, dataset: str, d: pd.DataFrame) -> str:
    """What a study's claims rest on: dataset, trials per (arm, depth), epochs, depths."""
    trials = d.groupby(["model", "gate_rule", "depth"])["trial"].nunique()
    depths = "/".join(str(int(x)) for x in sorted(d["depth"].unique()))
    count = f"{trials.min()}" if trials.min() == trials.max() else f"{trials.min()}-{trials.max()}"
    epochs = int(d["epoch"].max())
    return (f"{dataset}, study '{study}': {count} trial{'' if count == '1' else 's'}, {epochs} epoch"
            f"{'' if epochs == 1 else 's'}, depths {depths}")


def search_shortfalls(d: pd.DataFrame, best: pd.DataFrame) -> list[str]:
    """How a searched study falls short of the paper's budget: fewer trials per net, or a horizon too short
    for the shallow plain nets to reach the paper's loss. Empty when it does not."""
    short = []
    trials = int(d.groupby(["model", "gate_rule", "depth"])["trial"].nunique().min())
    if trials < PAPER_TRIALS:
        short.append(f"{trials} of the paper's {PAPER_TRIALS} trials")
    shallow = best[(best["model"] == "plain") & (best["depth"] <= SHALLOW)]
    if shallow.empty:
        short.append(f"no plain net of depth {SHALLOW} or less to show the horizon is long enough")
    elif shallow["best_loss"].min() >= PAPER_LOSS:
        short.append(f"{int(d['epoch'].max())} epochs: the shallow plain nets' best loss "
                     f"{shallow['best_loss'].min():.2g} has not reached the paper's {PAPER_LOSS:g}")
    return short


def convergence_claims(df: pd.DataFrame) -> list[dict]:
    rows = []
    if df.empty:
        return [_row("Plain nets become much harder to optimize with increasing depth; highway nets do not "
                     "(NIPS 2015, §3.1)", "no convergence results", None, "")]
    for (study, dataset), d in df[df["gate_rule"].isin([NO_GATE, GATE_SEARCH])].groupby(["study", "dataset"]):
        basis = study_basis(study, dataset, d)
        best = best_runs(d)
        short = search_shortfalls(d, best)
        loss = {(r.model, r.depth): r.best_loss for r in best.itertuples()}
        depths = sorted(best["depth"].unique())
        for model, words in (("plain", "Plain nets get harder to optimize as depth grows"),
                             ("highway", "Highway nets do not suffer from an increase in depth")):
            have = [dd for dd in depths if (model, dd) in loss]
            if len(have) < 2:
                continue
            deep = have[-1]
            ratio = loss[(model, deep)] / loss[(model, have[0])]
            if model == "plain":
                rows.append(_row(f"{words}: best loss at depth {deep} more than 10x that at depth {have[0]}",
                                 f"ratio {ratio:.3g}", ratio > 10, basis, short))
            else:
                rows.append(_row(f"{words}: best loss at depth {deep} within 10x of that at depth {have[0]}",
                                 f"ratio {ratio:.3g}", ratio < 10, basis, short))
        for depth in depths:
            if depth < 50 or ("plain", depth) not in loss or ("highway", depth) not in loss:
                continue
            ratio = loss[("plain", depth)] / loss[("highway", depth)]
            rows.append(_row(f"At depth {depth} the highway net reaches a training loss more than 100x lower than "
                             f"the plain net (the paper: 'more than 2 orders of magnitude' at 100 layers)",
                             f"plain/highway {ratio:.3g}", ratio > 100, basis, short))
        top = {(r.model, r.depth): (r.top_mean_loss, r.top) for r in best.itertuples()}
        for depth in depths:
            if depth < 50 or ("plain", depth) not in top or ("highway", depth) not in top:
                continue
            (plain, n_plain), (highway, n_highway) = top[("plain", depth)], top[("highway", depth)]
            n = min(n_plain, n_highway)
            rows.append(_row(f"At depth {depth} the mean of the top {n} highway trials is lower than the mean of the "
                             f"top {n} plain trials (the paper's Figure 1, right: top 10 of 100)",
                             f"plain {plain:.3g}, highway {highway:.3g}", highway < plain, basis, short))
        first = d[(d["epoch"] == 1) & (d["status"] == STATUS_OK)].groupby(["model", "depth"])["train_loss"].min()
        # (searched arms only: gate-rule arms have claims of their own)
        both = [dd for dd in depths if ("plain", dd) in first.index and ("highway", dd) in first.index]
        if both:
            faster = [dd for dd in both if first[("highway", dd)] < first[("plain", dd)]]
            rows.append(_row("Highway nets converge faster than plain ones: lower best loss after one epoch",
                             f"at {len(faster)} of {len(both)} depths ({', '.join(map(str, faster)) or 'none'})",
                             len(faster) == len(both), basis, short))
    return rows


def gate_bias_claims(df: pd.DataFrame, carry: pd.DataFrame) -> list[dict]:
    """Claims about `gate_bias="auto"`, from studies that ran it."""
    rows = []
    runs = df[df["gate_rule"] == GATE_AUTO] if not df.empty else df
    for (study, dataset), d in runs.groupby(["study", "dataset"]):
        src = study_basis(study, dataset, d)
        epoch1 = d[(d["epoch"] == 1) & (d["status"] == STATUS_OK)].groupby("depth")["train_loss"].min()
        if len(epoch1) >= 2:
            shallow, deep = epoch1.index.min(), epoch1.index.max()
            ratio = epoch1[deep] / epoch1[shallow]
            rows.append(_row(f"With gate_bias='auto', the {deep}-layer highway net's training loss after one epoch is "
                             f"within 1.5x of the {shallow}-layer net's", f"ratio {ratio:.3g}", ratio <= 1.5, src))
        everything = df[(df["study"] == study) & (df["dataset"] == dataset) & (df["status"] == STATUS_OK)]
        learned = {}
        for (rule, depth), g in everything[everything["model"] == "highway"].groupby(["gate_rule", "depth"]):
            start = g[g["epoch"] == 0]["train_loss"].min()
            end = g[g["epoch"] == g["epoch"].max()]["train_loss"].min()
            learned[(rule, int(depth))] = end < 0.5 * start
        fixed_rules = sorted({r for r, _ in learned if r not in (GATE_AUTO, GATE_SEARCH, NO_GATE)})
        auto_depths = sorted(dd for r, dd in learned if r == GATE_AUTO)
        if auto_depths:
            ok = [dd for dd in auto_depths if learned[(GATE_AUTO, dd)]]
            rows.append(_row("With gate_bias='auto' the highway net learns (final loss below half the initial) at "
                             "every depth", f"learns at {len(ok)} of {len(auto_depths)} depths",
                             len(ok) == len(auto_depths), src))
        for rule in fixed_rules:
            both = [dd for dd in auto_depths if (rule, dd) in learned]
            wins = [dd for dd in both if learned[(GATE_AUTO, dd)] and not learned[(rule, dd)]]
            rows.append(_row(f"There are depths where 'auto' learns and the fixed bias {rule} does not",
                             f"depths {', '.join(map(str, wins)) or 'none'} of {len(both)} compared", bool(wins), src))
    if not carry.empty:
        last = carry.sort_values("layer").groupby(["study", "dataset", "gate_rule", "depth"]).tail(1)
        for (study, rule), g in last.groupby(["study", "gate_rule"]):
            lo = g.loc[g["carried"].idxmin()]
            if rule == GATE_SEARCH:
                continue  # a different random bias at every depth: no rule to test
            if rule == GATE_AUTO:
                rows.append(_row("With 'auto', about half of the input (keep = 0.5) reaches the last layer at "
                                 "initialization at every depth (between 0.25 and 1)",
                                 f"lowest {lo['carried']:.3g} (depth {int(lo['depth'])})",
                                 bool(g["carried"].between(0.25, 1.0).all()), f"carry, study '{study}'"))
            else:
                deepest = g.loc[g["depth"].idxmax()]
                rows.append(_row(f"With the fixed bias {rule}, the input reaching the last layer at initialization "
                                 f"vanishes with depth (below 1e-3 at the deepest)",
                                 f"{deepest['carried']:.3g} at depth {int(deepest['depth'])}",
                                 bool(deepest["carried"] < 1e-3), f"carry, study '{study}'"))
    return rows


def _training_study(meta: dict, converge: pd.DataFrame) -> pd.DataFrame:
    """The convergence rows of the study that trained an analysed net: the study its checkpoint names, else
    (older checkpoints name none) the one study holding a trial of its dataset, model, depth, trial number,
    learning rate and gate bias. Empty when neither is found."""
    none = converge.iloc[0:0]
    if converge.empty or not all(k in meta for k in ("dataset", "model", "depth")):
        return none
    if "study" in meta:
        studies = {meta["study"]}
    else:
        d = converge[(converge["dataset"] == meta["dataset"]) & (converge["model"] == meta["model"])
                     & (converge["depth"] == meta["depth"]) & (converge["trial"] == meta.get("trial"))]
        same = np.isclose(d["lr"], meta.get("lr", np.nan), rtol=1e-9) & np.isclose(
            d["gate_bias"], meta.get("gate_bias", np.nan), rtol=1e-9)
        studies = set(d.loc[same, "study"])
    if len(studies) != 1:
        return none
    return converge[(converge["study"] == studies.pop()) & (converge["dataset"] == meta["dataset"])]


def lesion_basis(meta: dict, converge: pd.DataFrame) -> tuple[str, list[str]]:
    """(basis, shortfalls) of a lesion claim: the study that trained the net, with its trials and epochs,
    and how that study falls short of the paper's, whose Figure 4 lesions the best nets of its full search."""
    net = f"the best depth-{meta['depth']} net" if "depth" in meta else "its net"
    if "train_loss" in meta:
        net += f", training loss {meta['train_loss']:.3g}"
    rows = _training_study(meta, converge)
    if not rows.empty:
        study, dataset = rows["study"].iloc[0], rows["dataset"].iloc[0]
        return f"{study_basis(study, dataset, rows)}; {net}", search_shortfalls(rows, best_runs(rows))
    if "study" in meta and "epochs" in meta and "trials" in meta:  # the study's own rows are not in this report
        short = [f"{meta['trials']} of the paper's {PAPER_TRIALS} trials"] if meta["trials"] < PAPER_TRIALS else []
        return (f"{meta.get('dataset', '?')}, study '{meta['study']}': {meta['trials']} trials, {meta['epochs']} "
                f"epochs; {net}", short + ["the study's rows are not in this report, so its horizon is not known"])
    return f"{meta.get('dataset', '?')}, {net} (the checkpoint does not record its study)", [
        "the net's training budget is not recorded"]


def lesion_claims(analyses, converge: pd.DataFrame) -> list[dict]:
    rows = []
    for a in analyses:
        les = a.lesion
        if les.empty:
            continue
        base = les.loc[~les["lesioned"], "train_loss"].iloc[0]
        rel = les.loc[les["lesioned"], "train_loss"] / base
        idle = float((rel < 1.05).mean())
        worst = int(les.loc[les["lesioned"]].iloc[int(rel.to_numpy().argmax())]["layer"])
        basis, short = lesion_basis(a.meta, converge)
        rows.append(_row(f"Lesioning shows layers matter unequally: closing some layer's gates hurts much more than "
                         f"others', and some layers are nearly idle ({a.name})",
                         f"worst layer {worst}: loss x{rel.max():.3g}; {100 * idle:.0f}% of layers change it < 5%",
                         bool(rel.max() > 1.5 and idle > 0), basis, short))
    return rows


SHAPE = ["model", "layer", "depth", "width", "dtype", "batch", "mode", "device"]  # a throughput row but its backend


def _gpu_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The finished throughput rows timed on a GPU: CPU numbers cannot speak to a GPU target."""
    return df[(df.get("device_type") == "cuda") & (df["status"] == STATUS_OK)] if not df.empty else df


def _unsure(gpu: pd.DataFrame, over: str, under: str, configs, target: float) -> str:
    """How many of `configs` have `target` inside the range their calls allow for `over`'s time over `under`'s
    (as `_speedup` reads it): those a noisier or a quieter run could have put on the other side. '' if none."""
    a, b = (gpu[gpu["backend"] == name].set_index(SHAPE) for name in (over, under))
    low, high = (r.reindex(configs) for r in ratio_range(_times(a, "p20_ms"), _times(a, "p80_ms"),
                                                         _times(b, "p20_ms"), _times(b, "p80_ms")))
    inside = int(straddles(low, high, target).sum())
    return f"; {inside} with the target within their calls' fifths" if inside else ""


def throughput_claims(df: pd.DataFrame) -> list[dict]:
    """Our own speed targets, on a GPU only: CPU numbers cannot speak to them."""
    gpu = _gpu_rows(df)
    claim = "Fused triton at least 1.3x torch.compile for a training step at widths up to 1024 (GPU)"
    if gpu.empty:
        return [_row(claim, "no GPU results", None, "")]
    rows = []
    keys = SHAPE
    t = gpu[gpu["backend"] == "triton"].set_index(keys)["median_ms"]
    c = gpu[gpu["backend"] == "compile"].set_index(keys)["median_ms"]
    ratio = (c / t).dropna()
    train = ratio[[k[6] == "train" for k in ratio.index]]
    narrow = train[[k[3] <= 1024 for k in train.index]]
    wide = train[[k[3] >= 4096 for k in train.index]]
    if len(narrow):
        rows.append(_row(claim, f"min {narrow.min():.2f}x, median {narrow.median():.2f}x over {len(narrow)} configs"
                                + _unsure(gpu, "compile", "triton", narrow.index, 1.3), bool(narrow.min() >= 1.3),
                         "throughput"))
    if len(wide):
        rows.append(_row("Fused triton never slower than torch.compile for a training step at widths >= 4096 (GPU)",
                         f"min {wide.min():.2f}x over {len(wide)} configs" + _unsure(gpu, "compile", "triton",
                                                                                     wide.index, 1.0),
                         bool(wide.min() >= 1.0), "throughput"))
    g = gpu[gpu["backend"] == "gemm-only"].set_index(keys)["median_ms"]
    share = (g / t).dropna()
    share = share[[k[3] >= 1024 and k[4] == "bf16" for k in share.index]]
    if len(share):
        rows.append(_row("The fused forward reaches at least 85% of the bare GEMM's speed at N >= 1024, bf16 (GPU)",
                         f"min {100 * share.min():.0f}% over {len(share)} configs"
                         + _unsure(gpu, "gemm-only", "triton", share.index, 0.85), bool(share.min() >= 0.85),
                         "throughput"))
    return rows or [_row(claim, "no triton/compile pairs", None, "")]


# The depth-fused stack's targets at depth 1000, batch 128: mode → (x eager, x CUDA graphs).
STACK_TARGETS = {"fwd": (10.0, 3.0), "train": (5.0, 2.0)}
STACK_MEMORY_SHARE = 0.25  # of eager's peak memory, for a training step


STACK_BACKENDS = {"triton-stack": "Depth-fused stack", "triton-stack-recompute": "Depth-fused stack (recompute)"}
# What the stack is measured against: eager (index 0 of STACK_TARGETS' pairs), and CUDA graphs (index 1) both
# ways they are timed: the net compiled whole, and each layer compiled once with the whole step one graph
# (what a lease of minutes can compile at depth 1000). Each measured baseline gets a row of its own.
STACK_BASELINES = (("torch", 0), ("compile-cudagraphs", 1), ("compile-layers-cudagraphs", 1))


def stack_claims(df: pd.DataFrame) -> list[dict]:
    """The depth-fused stack (`triton-stack`, and `triton-stack-recompute`, which saves a 32nd of the layer
    inputs) against eager and CUDA graphs (`STACK_BASELINES`) at depth 1000, on a GPU only; tf32x3 rows (3xTF32
    dots) against the IEEE fp32 baselines (`tf32x3_against_ieee`)."""
    gpu = tf32x3_against_ieee(_gpu_rows(df))
    keys = SHAPE
    sel = gpu[(gpu["depth"] == 1000) & (gpu["batch"] == 128) & (gpu["layer"] == "dense")] if not gpu.empty else gpu
    ranked = []  # (order, row): a shape's rows next to each other, eager first, memory last
    for rank, (name, words) in enumerate(STACK_BACKENDS.items()):
        stack = sel[sel["backend"] == name].set_index(keys) if not sel.empty else sel
        if stack.empty:
            continue
        for kind, (backend, index) in enumerate(STACK_BASELINES):
            other = sel[sel["backend"] == backend].set_index(keys)
            ratio = (other["median_ms"] / stack["median_ms"]).dropna()
            low, high = ratio_range(_times(other, "p20_ms"), _times(other, "p80_ms"), _times(stack, "p20_ms"),
                                    _times(stack, "p80_ms"))
            for key, value in ratio.items():
                mode, width, dtype = key[6], key[3], key[4]
                if mode not in STACK_TARGETS:
                    continue
                target = STACK_TARGETS[mode][index]
                ranked.append(((rank, width, dtype, list(STACK_TARGETS).index(mode), kind), _row(
                    f"{words}, depth 1000, width {width}, {dtype}, {mode}: at least {target:g}x "
                    f"{'eager' if backend == 'torch' else backend}",
                    _speedup(value, low.get(key, np.nan), high.get(key, np.nan), target), value >= target,
                    f"throughput on {key[7]}")))
            if backend == "torch":
                memory = (stack["peak_mem_mb"] / other["peak_mem_mb"]).dropna()
                for key, share in memory.items():
                    if key[6] == "train":
                        # what any stack ends its backward with, as eager does: one gradient of every weight
                        depth, width, size = key[2], key[3], DTYPE_BYTES[key[4]]
                        floor = depth * (2 * width * width + 2 * width) * size / 2**20 / other["peak_mem_mb"][key]
                        ranked.append(((rank, width, key[4], len(STACK_TARGETS), 0), _row(
                            f"{words}, depth 1000, width {width}, {key[4]}: a training step's peak memory at most a "
                            f"quarter of eager's", f"{share:.2f} of eager's (the weight gradient alone: {floor:.2f})",
                            share <= STACK_MEMORY_SHARE, f"throughput on {key[7]}")))
    rows = [row for _, row in sorted(ranked, key=lambda pair: pair[0])]
    rows += _weight_grads_claims(sel, keys)
    return rows or [_row("The depth-fused stack at depth 1000, batch 128: forward >= 10x eager and 3x "
                         "compile-cudagraphs, training step >= 5x eager and 2x compile-cudagraphs, a quarter of "
                         "eager's memory (GPU)", "no GPU results for triton-stack", None, "")]


def _weight_grads_claims(sel: pd.DataFrame, keys) -> list[dict]:
    """Whether the stack's default way to form dW and db (each layer's dZ written out for one batched GEMM a
    chunk: `triton-stack`) is at least as fast as adding them up in the kernel with atomics
    (`triton-stack-atomic`): the issue asks which is faster, and the answer decides the default."""
    if sel.empty:
        return []
    train = sel[sel["mode"] == "train"]
    gemm, atomic = (train[train["backend"] == name].set_index(keys)["median_ms"]
                    for name in ("triton-stack", "triton-stack-atomic"))
    rows = []
    for key, atomic_ms in atomic.items():
        if key not in gemm.index:
            continue
        gemm_ms = gemm[key]
        rows.append(_row(f"Depth-fused stack, depth 1000, width {key[3]}, {key[4]}, train: the batched GEMM (the "
                         f"default) forms the weight gradients at least as fast as atomics in the kernel",
                         f"{gemm_ms:.3g} ms a step with the GEMM, {atomic_ms:.3g} ms with atomics "
                         f"({atomic_ms / gemm_ms:.2f}x)", bool(gemm_ms <= atomic_ms), f"throughput on {key[7]}"))
    return rows


# Population training's speed targets: (device type, model, depth, width, trials, at least this speed-up).
POPULATION_TARGETS = [("cpu", "highway", 20, 50, 32, 3.0), ("cuda", "highway", 100, 50, 100, 20.0)]


def population_claims(df: pd.DataFrame) -> list[dict]:
    """Population training against one by one, on the eager torch backend, at the targets' shapes."""
    rows = []
    ok = df[(df["status"] == STATUS_OK) & (df["backend"] == "torch")] if not df.empty else df
    for device_type, model, depth, width, trials, target in POPULATION_TARGETS:
        where = "CPU" if device_type == "cpu" else "GPU"
        claim = (f"{where}, eager: {trials} trials of a depth-{depth}, width-{width} {model} net train at least "
                 f"{target:g}x as many steps per second as a population as one by one")
        sel = ok[(ok["device_type"] == device_type) & (ok["model"] == model) & (ok["depth"] == depth)
                 & (ok["width"] == width) & (ok["population"] == trials)] if not ok.empty else ok
        if sel.empty:
            rows.append(_row(claim, f"no {where} population sweep at this shape", None, ""))
            continue
        for r in sel.itertuples():
            speedup = _speedup(r.speedup, *ratio_range(r.one_by_one_p20_ms, r.one_by_one_p80_ms, r.population_p20_ms,
                                                       r.population_p80_ms), target)
            rows.append(_row(claim, f"{speedup}; {r.one_by_one_ms:.3g} ms one by one, {r.population_ms:.3g} ms as a "
                                    f"population; dtype {r.dtype}, batch {r.batch}", r.speedup >= target,
                             f"population sweep on {r.device}"))
    return rows


# The paper preset's depths 10-100 (800 runs) on one GPU within this many minutes.
PAPER_TIME = dict(study="paper", depths=[10, 20, 50, 100], minutes=30.0)


def study_time_claims(times: pd.DataFrame) -> list[dict]:
    """The paper protocol's wall time on one GPU, summed over the runs of `converge --preset paper --depth 10 20
    50 100` (a study stopped and resumed is the sum of its runs)."""
    claim = (f"The paper preset's depths 10-100 ({PAPER_TIME['study']}, all 800 runs) train in under "
             f"{PAPER_TIME['minutes']:g} minutes on one GPU")
    if not times.empty:
        times = times[(times["study"] == PAPER_TIME["study"]) & (times["device_type"] == "cuda")
                      & times["depths"].map(lambda d: sorted(d) == PAPER_TIME["depths"])]
    if times.empty:
        return [_row(claim, "no GPU run of `highway-bench converge --preset paper --depth 10 20 50 100`", None, "")]
    rows = []
    for (dataset, device), g in times.groupby(["dataset", "device"]):
        minutes, finished, total = g["elapsed_s"].sum() / 60, int(g["finished"].max()), int(g["total"].max())
        basis = f"{dataset}, study '{PAPER_TIME['study']}' on {device}: {len(g)} run{'s' if len(g) > 1 else ''}"
        if dataset == "digits":  # 1,437 training images: a time on them says nothing of the paper's 60,000
            rows.append(_row(claim, f"{finished} of {total} runs in {minutes:.1f} min on digits, not a data set of "
                                    f"the paper's size: not tested", None, basis))
        elif finished == total:
            rows.append(_row(claim, f"{minutes:.1f} min for {total} runs", minutes <= PAPER_TIME["minutes"], basis))
        elif minutes > PAPER_TIME["minutes"]:
            rows.append(_row(claim, f"{minutes:.1f} min for {finished} of {total} runs", False, basis))
        else:
            rows.append(_row(claim, f"{finished} of {total} runs in {minutes:.1f} min so far", None, basis))
    return rows


# What a whole check covers; tf32x3 (the depth-fused stack's 3xTF32 dots) is counted where a check compiled it.
COMPILE_CHECK_ARCHS, COMPILE_CHECK_DTYPES = {80, 90}, {"bf16", "tf32", "fp32"}


def compile_claims(df: pd.DataFrame) -> list[dict]:
    """GPU readiness without a GPU, from each compile-check run under the report's paths (two rows each): every
    config of every kernel compiles for sm_80 and sm_90; and none has anything compile-check flags, as it judged
    when it ran. None where the report was given no compile-check results: a study's report does not speak to
    it."""
    compiles = "Every kernel config compiles for sm_80 and sm_90 in bf16, tf32 and fp32"
    clean = (f"{compiles} with nothing compile-check flags (no spill but those a kernel is allowed, shared memory "
             f"within bounds, tensor cores in bf16 GEMM tiles, no load a pipelined dot waits on)")
    rows = []
    for source, g in (df.groupby("source", sort=False) if not df.empty else ()):
        versions = triton_versions(g)  # files written before the column: their folder
        basis = f"compile-check, triton {versions}" if versions else f"compile-check in {source}"
        archs = "/".join(f"sm_{a}" for a in sorted(g["arch"].unique()))
        configs = f"{len(g)} configs of {g['kernel'].nunique()} kernels on {archs}"
        if "tf32x3" in set(g["dtype"]):
            configs += " (tf32x3 too)"
        if set(g["arch"]) != COMPILE_CHECK_ARCHS or not COMPILE_CHECK_DTYPES <= set(g["dtype"]):
            part = f"{configs}, {'/'.join(sorted(set(g['dtype'])))} only: a part of the check"
            rows += [_row(compiles, part, None, basis), _row(clean, part, None, basis)]
            continue
        failed = g[g["problem"].str.startswith("compile failed")]
        rows.append(_row(compiles, f"{len(g) - len(failed)} of {configs} compile", failed.empty, basis))
        flagged = g[g["problem"] != ""]
        if len(flagged):
            # a spill whose local memory sits outside every loop (compile-check reads the SASS) costs once a program
            once = flagged["problem"].str.fullmatch(r"spills \d+ bytes \(outside its loops[^)]*\)")
            first = flagged[~once].iloc[0] if (~once).any() else flagged.iloc[0]
            measured = (f"{configs}: {len(flagged)} flagged"
                        + (f" ({once.sum()} of them only for a spill outside the loops)" if once.any() else "")
                        + f", e.g. {first['kernel']} sm_{first['arch']} {first['dtype']} {first['tile']}: "
                        f"{first['problem']}")
        else:
            measured = f"{configs}: none flagged"
        rows.append(_row(clean, measured, flagged.empty, basis))
    return rows


def claims_table(data) -> pd.DataFrame:
    rows = (convergence_claims(data.converge) + gate_bias_claims(data.converge, data.carry)
            + lesion_claims(data.analyses, data.converge) + throughput_claims(data.throughput)
            + stack_claims(data.throughput) + population_claims(data.population) + study_time_claims(data.study_times)
            + compile_claims(data.compile_check))
    return pd.DataFrame(rows, columns=["claim", "measured", "verdict", "basis"])

