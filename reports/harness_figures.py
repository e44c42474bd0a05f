"""The throughput harness's figures: samples/s and speed-ups against depth, memory, time per layer, the
depth-fused stack against its targets, TF32 against IEEE, kernels per step, weight streaming, and population
training against one by one. Every function returns a list of `Figure`, drawn from a results table and never
from typed-in numbers, and empty when the data for it is missing. Figures are drawn per device, so that CPU
and GPU numbers never share a panel, and per dtype, so that no panel averages bf16 into fp32.
"""
import matplotlib
import matplotlib.pyplot as plt
from matplotlib import ticker
import numpy as np
import pandas as pd
import seaborn as sns

from highway.bench.schema import MODES, STATUS_OK, THROUGHPUT_KEYS
from highway.reports.claims import POPULATION_TARGETS, STACK_BASELINES, STACK_TARGETS
from highway.reports.figure_style import Figure, depth_axis, log_scale
from highway.reports.summaries import ratio_range, straddles, tf32x3_against_ieee

# One colour per throughput backend in every figure, by family: eager black; the compiler blues; the per-layer
# kernels orange; the depth-fused stack greens; the bare GEMM grey. Listed in the order legends show them.
BACKEND_COLORS = {
    "torch": "#000000", "compile": "#56b4e9", "compile-cudagraphs": "#0072b2", "compile-layers-cudagraphs": "#332288",
    "triton": "#e69f00", "triton+compile": "#d55e00", "triton-stack": "#009e73", "triton-stack-recompute": "#44aa99",
    "triton-stack-atomic": "#117733", "gemm-only": "#999999",
}


def backend_palette(backends) -> dict:
    """hue_order and palette for the `backends` in a figure: each known one in its colour (`BACKEND_COLORS`),
    in that order, then any other in a colour of its own."""
    present = set(backends)
    order = [b for b in BACKEND_COLORS if b in present] + sorted(present - set(BACKEND_COLORS))
    extra = iter(["#cc79a7", "#882255", "#f0e442", "#aa4499", "#ddcc77"] * 4)
    return dict(hue_order=order, palette={b: BACKEND_COLORS.get(b) or next(extra) for b in order})


def _device_label(device: str, device_type: str) -> str:
    return f"{device} (CPU numbers)" if device_type == "cpu" else f"{device} (GPU)"


def _by_device(ok: pd.DataFrame):
    """(label, file-name slug, device type, rows) for each device in `ok`."""
    for (device, device_type), d in ok.groupby(["device", "device_type"]):
        yield _device_label(device, device_type), "cpu" if device_type == "cpu" else device.replace(" ", "-"), \
            device_type, d


def _cpu_note(d: pd.DataFrame, device_type: str) -> str:
    if device_type != "cpu":
        return ""
    threads = sorted(int(t) for t in d["threads"].dropna().unique()) if "threads" in d else []
    on = f" on {'/'.join(map(str, threads))} thread{'s' if threads != [1] else ''}" if threads else ""
    return f" Timed{on}: these compare backends on this machine and say nothing about a GPU."


def _spread_band(ax, rows: pd.DataFrame, x: str, lo: str, hi: str, palette: dict, by="backend"):
    """Shade each line's spread, from column `lo` to column `hi` (a rate at the timed calls' 80th and 20th
    percentile times, say), in its `by` value's colour: a median alone hides how noisy a point is. A line
    measured at one x gets a bar instead, since a band needs two."""
    for key, d in rows.groupby(by):
        band = d.groupby(x)[[lo, hi]].mean().dropna().sort_index()
        color = palette.get(key[0] if isinstance(key, tuple) else key)
        if len(band) > 1:
            ax.fill_between(band.index, band[lo], band[hi], color=color, alpha=0.15, lw=0, zorder=1)
        elif len(band) == 1:
            ax.vlines(band.index, band[lo], band[hi], color=color, alpha=0.5, lw=4, zorder=1)


DTYPE_ORDER = ("bf16", "fp16", "tf32", "fp32", "tf32x3")  # the order a device's per-dtype figures come in
SPEEDUP_LOG2_RANGE = 4  # the speed-up heat maps' colours run from 1/16x to 16x


def _by_dtype(d: pd.DataFrame):
    """(dtype, rows) for each dtype in `d`: a figure per dtype keeps a GPU campaign's panels few, and a panel
    never averages one dtype's timings into another's."""
    for dtype in sorted(d["dtype"].unique(), key=lambda t: (DTYPE_ORDER + (t,)).index(t)):
        yield dtype, d[d["dtype"] == dtype]


def _shape(d: pd.DataFrame) -> list[str]:
    """Each row's shape as a panel names it: width (a conv layer's channels and image side) and batch (a figure
    holds one dtype)."""
    conv = d["layer"] == "conv" if "layer" in d else pd.Series(False, index=d.index)
    side = d["spatial"] if "spatial" in d else pd.Series(0, index=d.index)
    return [f"{w} channels, {int(s)}×{int(s)}, batch {b}" if c else f"width {w}, batch {b}"
            for w, b, c, s in zip(d["width"], d["batch"], conv, side)]


def _mark_empty(g, d: pd.DataFrame):
    """Say so in each (shape, mode) panel of relplot grid `g` that `d` has no row for: a shape one mode ran
    and another did not."""
    for key, ax in g.axes_dict.items():
        shape, mode = key if isinstance(key, tuple) else (None, key)
        if d[(d["mode"] == mode) & ((d["shape"] == shape) if shape is not None else True)].empty:
            ax.text(0.5, 0.5, f"no {mode} rows at this shape", transform=ax.transAxes, ha="center", va="center",
                    color="grey", fontsize=10)
            ax.tick_params(axis="y", which="both", left=False, labelleft=False)  # holds through a later log scale


# --- throughput ----------------------------------------------------------------------------------------

def _throughput_lines(dt: pd.DataFrame, layer: str, dtype: str, label: str, slug: str, device_type: str,
                      modes: list) -> Figure:
    """Samples/s against depth for one layer kind and dtype: a row per shape, a column per mode."""
    dt = dt.assign(shape=_shape(dt))
    colors = backend_palette(dt["backend"])
    g = sns.relplot(dt, x="depth", y="samples_per_s", hue="backend", style="model", col="mode", col_order=modes,
                    row="shape", kind="line", markers=True, height=3.4, aspect=1.35, errorbar=None,
                    facet_kws=dict(sharey=False), **colors)
    log_scale(g.axes)
    g.set_titles(row_template="{row_name}", col_template="{col_name}", size=10)
    noisy = dt[dt["noisy"].fillna(False).astype(bool)] if "noisy" in dt else dt.iloc[:0]
    spread = dt.assign(slowest=dt["batch"] / (dt["p80_ms"] * 1e-3), fastest=dt["batch"] / (dt["p20_ms"] * 1e-3))
    for (row_name, col_name), ax in g.axes_dict.items():
        _spread_band(ax, spread[(spread["shape"] == row_name) & (spread["mode"] == col_name)], "depth",
                     "slowest", "fastest", colors["palette"], by=["backend", "model"])
        sel = noisy[(noisy["shape"] == row_name) & (noisy["mode"] == col_name)]
        ax.scatter(sel["depth"], sel["samples_per_s"], s=120, facecolors="none", edgecolors="crimson",
                   linewidths=1.2, zorder=5)
    for ax in g.axes.flat:
        depth_axis(ax, dt["depth"].unique())
    _mark_empty(g, dt)
    g.set_axis_labels("depth (layers)", "samples / s")
    g.figure.suptitle(f"Throughput against depth, {layer} layers, {dtype} — {label}", y=1.02)
    return Figure(f"Throughput, {layer}, {dtype} ({label})", g.figure,
                  "Samples per second of a stack of `depth` layers (median of the timed calls), per backend; rows "
                  "are shapes (width, batch), columns are modes. The shaded band spans the rates of the slowest and "
                  "the fastest fifth of the calls. A red ring marks a noisy point, whose slowest fifth of calls took "
                  "over 1.3x its fastest fifth: its median is not to be compared with another's."
                  + _cpu_note(dt, device_type), f"throughput-{layer}-{slug}-{dtype}")


def _beside_eager(rows: pd.DataFrame, columns: list, how: str = "inner") -> pd.DataFrame:
    """The non-eager rows of `rows`, each with eager's `columns` at the same configuration, suffixed `_eager`."""
    config = [k for k in THROUGHPUT_KEYS if k != "backend"]
    eager = rows[rows["backend"] == "torch"][config + columns].drop_duplicates(config, keep="last")
    return rows[rows["backend"] != "torch"].merge(eager, on=config, how=how, suffixes=("", "_eager"))


def _speedups(dl: pd.DataFrame) -> pd.DataFrame:
    """Every non-eager row with a speed-up over eager, and `unsure` where the calls' fifths put it on both
    sides of 1 (eager's fastest against the backend's slowest, and the other way round): a speed-up this run
    cannot tell from eager's."""
    speed = _beside_eager(dl, ["p20_ms", "p80_ms"], how="left").dropna(subset=["speedup_vs_torch"])
    return speed.assign(unsure=straddles(*ratio_range(speed["p20_ms_eager"], speed["p80_ms_eager"],
                                                      speed["p20_ms"], speed["p80_ms"]), 1.0))


def _speedup_maps(sd: pd.DataFrame, layer: str, dtype: str, label: str, slug: str) -> Figure:
    """Heat maps of the speed-up over eager, shape against depth, a panel per (model, backend, mode)."""
    keys = sorted(sd.groupby(["backend", "mode", "model"]).groups)
    cols = min(3, len(keys))
    rows = int(np.ceil(len(keys) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.2 * rows), squeeze=False)
    for ax, (backend, mode, model) in zip(axes.flat, keys):
        sel = sd[(sd["backend"] == backend) & (sd["mode"] == mode) & (sd["model"] == model)]
        sel = sel.assign(shape=[f"{w} (b {b})" for w, b in zip(sel["width"], sel["batch"])])
        order = sel.sort_values(["width", "batch"])["shape"].unique()
        grid = sel.pivot_table(index="shape", columns="depth", values="speedup_vs_torch", aggfunc="last")
        grid = grid.reindex(order)
        unsure = sel.pivot_table(index="shape", columns="depth", values="unsure", aggfunc="last")
        unsure = unsure.reindex_like(grid).fillna(False).astype(bool).to_numpy()
        values = np.vectorize(lambda v: f"{v:.2f}" if np.isfinite(v) else "")(grid)
        # coloured by log2 of the speed-up, so that 4x and 1/4x lie as far from 1, and a 12x stack stands apart
        # from a 2x layer where a linear scale would saturate both
        sns.heatmap(np.log2(grid.astype(float)), annot=np.where(unsure, "~", "") + values, fmt="", cmap="RdBu",
                    center=0.0, vmin=-SPEEDUP_LOG2_RANGE, vmax=SPEEDUP_LOG2_RANGE, ax=ax, cbar=False,
                    annot_kws={"fontsize": 9})
        ax.set(title=f"{model} · {backend} · {mode}", ylabel=f"{'channels' if layer == 'conv' else 'width'} (batch)")
        ax.title.set_fontsize(10)
    for ax in axes.flat[len(keys):]:
        ax.axis("off")
    fig.suptitle(f"Speed-up over eager PyTorch, {layer} layers, {dtype} — {label}")
    fig.tight_layout()
    # one key for every panel, in speed-ups rather than their logarithms
    ticks = range(-SPEEDUP_LOG2_RANGE, SPEEDUP_LOG2_RANGE + 1, 2)
    bar = fig.colorbar(axes.flat[0].collections[0], ax=axes, fraction=0.02, pad=0.02, ticks=list(ticks))
    bar.ax.set_yticklabels([f"{2.0 ** t:g}x" if t >= 0 else f"1/{2 ** -t}x" for t in ticks])
    bar.set_label("speed-up over eager")
    span = 2 ** SPEEDUP_LOG2_RANGE
    return Figure(f"Speed-ups, {layer}, {dtype} ({label})", fig,
                  "Eager time ÷ backend time for the same configuration: blue is faster than eager, red slower, on "
                  f"one logarithmic colour scale from 1/{span:g}x to {span:g}x (the ends hold anything past them). "
                  "A ~ marks a speed-up that the calls' fifths put on both sides of 1 (eager's fastest fifth against "
                  "the backend's slowest, and the other way round): this run cannot tell it from eager.",
                  f"speedup-{layer}-{slug}-{dtype}")


def _memory_figure(dl: pd.DataFrame, layer: str, label: str, slug: str, mode: str) -> Figure:
    """Peak memory of a `mode` step against depth as a share of eager's at the same shape (which averages over
    shapes, where megabytes of width 50 and 8192 would not), and on a GPU in the peak table the roofline share
    against width."""
    mem = _beside_eager(dl[dl["mode"] == mode], ["peak_mem_mb"])
    mem = mem[(mem["peak_mem_mb"] > 0) & (mem["peak_mem_mb_eager"] > 0)]
    mem = mem.assign(share=mem["peak_mem_mb"] / mem["peak_mem_mb_eager"])
    roof = dl.dropna(subset=["pct_peak_flops"])
    fig, axes = plt.subplots(1, 2 if len(roof) else 1, figsize=(14 if len(roof) else 8.5, 4.2), squeeze=False)
    ax = axes[0, 0]
    if len(mem):
        # a geometric mean over the shapes at each depth: shares multiply, and 0.5 and 2 should average to 1
        sns.lineplot(mem, x="depth", y="share", hue="backend", style="model", markers=True, ax=ax,
                     estimator=lambda v: float(np.exp(np.mean(np.log(v)))), errorbar=None,
                     **backend_palette(mem["backend"]))
        log_scale(ax)
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    ax.axhline(1.0, color="black", lw=1.0, ls="--")
    ax.annotate("eager", (1.0, 1.0), xycoords=("axes fraction", "data"), xytext=(-4, 3), textcoords="offset points",
                ha="right", fontsize=8)
    ax.set(xlabel="depth (layers)", ylabel="peak memory ÷ eager's", title=f"peak memory of one {mode} step")
    depth_axis(ax, dl["depth"].unique())
    caption = (f"Left: the peak memory a {mode} step adds (GPU: the allocator's peak; CPU: growth of the process's "
               "peak RSS) over eager's at the same shape, a geometric mean over shapes; below the dashed line a "
               "backend needs less than eager.")
    what = "Memory"
    if len(roof):
        sns.lineplot(roof, x="width", y="pct_peak_flops", hue="backend", style="mode", markers=True,
                     estimator="median", errorbar=None, ax=axes[0, 1], **backend_palette(roof["backend"]))
        axes[0, 1].set(xscale="log", xlabel="width", ylabel="% of peak TFLOP/s", title="roofline share")
        axes[0, 1].set_xticks(sorted(roof["width"].unique()), [str(w) for w in sorted(roof["width"].unique())])
        axes[0, 1].xaxis.set_minor_locator(ticker.NullLocator())
        sns.move_legend(axes[0, 1], "upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
        what = "Memory and roofline"
        caption += (" Right: achieved TFLOP/s as a share of the device's peak for the row's dtype, against width "
                    "(the median over depths, dtypes and batches): the narrow layers' launches leave the tensor "
                    "cores idle, the wide ones' GEMMs fill them.")
    else:
        caption += " (The roofline share needs a GPU in the peak table.)"
    fig.suptitle(f"{what}, {layer} layers — {label}")
    fig.tight_layout()
    return Figure(f"{what}, {layer} ({label})", fig, caption, f"memory-{layer}-{slug}")


def throughput_figures(df: pd.DataFrame) -> list[Figure]:
    """Per device and layer kind: for each dtype, samples/s against depth and the speed-ups over eager; then
    memory (and the roofline share on a GPU in the peak table)."""
    ok = df[df["status"] == STATUS_OK] if not df.empty else df
    if ok.empty:
        return []
    out = []
    for label, slug, device_type, d in _by_device(_with_spread(ok)):
        for layer, dl in d.groupby("layer"):
            modes = sorted(dl["mode"].unique(), key=MODES.index)
            speed = _speedups(dl)
            for dtype, dt in _by_dtype(dl):
                out.append(_throughput_lines(dt, layer, dtype, label, slug, device_type, modes))
                if (speed["dtype"] == dtype).any():
                    out.append(_speedup_maps(speed[speed["dtype"] == dtype], layer, dtype, label, slug))
            out.append(_memory_figure(dl, layer, label, slug, modes[-1]))
    return out


def _with_spread(d: pd.DataFrame) -> pd.DataFrame:
    """`d` with p20_ms and p80_ms wherever it has a median: a row written without them shows no spread."""
    return d.assign(**{q: d[q].fillna(d["median_ms"]) if q in d else d["median_ms"] for q in ("p20_ms", "p80_ms")})


def _dense_highway(df: pd.DataFrame, *columns) -> pd.DataFrame:
    """The timed rows of dense highway stacks that have every one of `columns` (measured on this device)."""
    if df.empty or not set(columns) <= set(df.columns):
        return df.iloc[:0]
    ok = df[(df["status"] == STATUS_OK) & (df["model"] == "highway") & (df["layer"] == "dense")]
    return _with_spread(ok.dropna(subset=list(columns)))


def _against_depth(d: pd.DataFrame, y: str, ylabel: str, title: str, by_shape: bool = True, band=None, **line):
    """`y` against depth (log), a line per backend with every point marked, a column per mode and, with
    `by_shape`, a row per shape (width, batch: `d` holds one dtype). `band`, two columns, shades each line's
    spread."""
    modes = sorted(d["mode"].unique(), key=MODES.index)
    if by_shape:
        d = d.assign(shape=_shape(d))
        line.update(row="shape", facet_kws=dict(sharey=False))
    g = sns.relplot(d, x="depth", y=y, hue="backend", col="mode", col_order=modes, kind="line", marker="o",
                    height=3.2, aspect=1.3, errorbar=None, **backend_palette(d["backend"]), **line)
    for ax in g.axes.flat:
        depth_axis(ax, d["depth"].unique())
    if band:
        for key, ax in g.axes_dict.items():
            shape, mode = key if by_shape else (None, key)
            _spread_band(ax, d[(d["mode"] == mode) & ((d["shape"] == shape) if by_shape else True)], "depth", *band,
                         backend_palette(d["backend"])["palette"])
    if by_shape:
        _mark_empty(g, d)
    g.set_titles(row_template="{row_name}", col_template="{col_name}", size=10)
    g.set_axis_labels("depth (layers)", ylabel)
    g.figure.suptitle(title, y=1.02 if by_shape else 1.04)
    return g


def per_layer_figures(df: pd.DataFrame) -> list[Figure]:
    """Time per layer against depth, dense highway stacks: it falls while launches dominate, then flattens
    at what one layer costs (the depth-fused stack's chain latency; a per-layer kernel's launch)."""
    ok = _dense_highway(df)
    if ok.empty or ok["depth"].nunique() < 2:
        return []
    out = []
    for label, slug, device_type, dd in _by_device(ok):
        for dtype, d in _by_dtype(dd):
            d = d.assign(us_per_layer=1e3 * d["median_ms"] / d["depth"], fastest=1e3 * d["p20_ms"] / d["depth"],
                         slowest=1e3 * d["p80_ms"] / d["depth"])
            g = _against_depth(d, "us_per_layer", "µs per layer", f"Time per layer against depth, {dtype} — {label}",
                               band=("fastest", "slowest"))
            log_scale(g.axes)
            out.append(Figure(f"Time per layer, {dtype} ({label})", g.figure,
                              "Median time of a stack divided by its depth, per backend; the shaded band spans the "
                              "slowest and the fastest fifth of the calls. Per-layer backends flatten at "
                              "their launches' cost; the depth-fused stack (triton-stack) at one layer's dependent "
                              "chain of weight load, GEMM and epilogue." + _cpu_note(d, device_type),
                              f"per-layer-{slug}-{dtype}"))
    return out


def stack_target_figures(df: pd.DataFrame, depth: int = 1000, batch: int = 128) -> list[Figure]:
    """The depth-fused stack's speed-ups at its targets' shape, as bars against the targets: how many times
    faster `triton-stack` runs than eager and than each CUDA-graph baseline measured, per width and dtype, a
    panel per mode. GPU rows only, as the claims (`STACK_TARGETS`); tf32x3 against the IEEE baselines."""
    ok = tf32x3_against_ieee(_dense_highway(df))
    ok = ok[(ok["device_type"] == "cuda") & (ok["depth"] == depth) & (ok["batch"] == batch)] if not ok.empty else ok
    out = []
    for label, slug, _, d in _by_device(ok):
        times, fastest, slowest = (d.pivot_table(index=["mode", "width", "dtype"], columns="backend", values=v,
                                                 aggfunc="last") for v in ("median_ms", "p20_ms", "p80_ms"))
        baselines = [b for b, _ in STACK_BASELINES if b in times]
        modes = [m for m in STACK_TARGETS if m in times.index.get_level_values("mode")]
        if "triton-stack" not in times or not baselines or not modes:
            continue
        # the shapes the stack ran (a shape past its width has baselines alone), width by width, bf16 first
        ran = times["triton-stack"].dropna().index
        ran = sorted(ran, key=lambda k: (MODES.index(k[0]), k[1], (DTYPE_ORDER + (k[2],)).index(k[2])))
        times, fastest, slowest = (v.reindex(pd.MultiIndex.from_tuples(ran, names=v.index.names))
                                   for v in (times, fastest, slowest))
        # a panel per mode, side by side while few shapes share a panel, one above the other past that
        most = max(len(times.loc[m]) for m in modes) * len(baselines)
        wide = most > 9
        panel = (max(6.2, 1.2 + 0.5 * most), 4.2)
        fig, axes = plt.subplots(len(modes) if wide else 1, 1 if wide else len(modes), squeeze=False,
                                 figsize=(panel[0], panel[1] * len(modes)) if wide else (panel[0] * len(modes), panel[1]))
        for ax, mode in zip(axes.flat, modes):
            t = times.loc[mode]
            shapes = [f"width {w}\n{dt}" for w, dt in t.index]
            bar = 0.8 / len(baselines)
            for j, backend in enumerate(baselines):
                ratio = t[backend] / t["triton-stack"]
                # the whisker: the baseline's fastest fifth of calls against the stack's slowest, and the other
                # way round
                low, high = ratio_range(fastest.loc[mode, backend], slowest.loc[mode, backend],
                                        fastest.loc[mode, "triton-stack"], slowest.loc[mode, "triton-stack"])
                x = np.arange(len(t)) + (j - (len(baselines) - 1) / 2) * bar
                what = "eager" if backend == "torch" else backend
                ax.bar(x, ratio, bar, color=BACKEND_COLORS[backend], label=f"over {what}",
                       yerr=np.stack([(ratio - low).clip(lower=0), (high - ratio).clip(lower=0)]),
                       error_kw=dict(ecolor="0.35", elinewidth=1, capsize=3))
                for xi, r, top in zip(x, ratio, np.fmax(ratio, high)):  # each label above its whisker
                    if np.isfinite(r):
                        ax.annotate(f"{r:.1f}x", (xi, top), xytext=(0, 2), textcoords="offset points", ha="center",
                                    va="bottom", fontsize=8)
            targets = STACK_TARGETS[mode]
            for target, ls, color, what in ((targets[0], "--", BACKEND_COLORS["torch"], "eager"),
                                            (targets[1], ":", BACKEND_COLORS["compile-cudagraphs"], "CUDA graphs")):
                ax.axhline(target, ls=ls, color=color, lw=1.4, label=f"target over {what}")
            ax.axhline(1.0, color="grey", lw=0.8)
            ax.set_yscale("log")
            ratios = (t[baselines].to_numpy() / t[["triton-stack"]].to_numpy()).ravel()
            highs = (slowest.loc[mode][baselines].to_numpy() / fastest.loc[mode][["triton-stack"]].to_numpy()).ravel()
            # a call cut short can leave a shape half measured
            top = max(*ratios[np.isfinite(ratios)], *highs[np.isfinite(highs)], *targets)
            ax.set_ylim(min(0.8, ax.get_ylim()[0]), top * 2.5)  # room for the bars' labels
            # the targets are the ticks that matter: label them, with the decades
            ticks = sorted({*targets, *(10.0 ** k for k in range(0, int(np.log10(top * 2.5)) + 1))})
            ax.set_yticks(ticks, [f"{v:g}x" for v in ticks])
            ax.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            ax.set_xticks(np.arange(len(t)), shapes)
            ax.set(title=mode, ylabel="speed-up of the depth-fused stack")
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, frameon=False)
        fig.tight_layout(rect=(0, 0.08 / axes.shape[0], 1, 1 - 0.08 / axes.shape[0]))
        fig.suptitle(f"The depth-fused stack at its targets: depth {depth}, batch {batch} — {label}")
        out.append(Figure(f"Depth-fused stack against its targets ({label})", fig,
                          f"How many times faster one step of a {depth}-layer stack runs fused (triton-stack) than "
                          "eager PyTorch and than CUDA graphs (compile-cudagraphs: the net compiled whole; "
                          "compile-layers-cudagraphs: each layer compiled once, the whole step one graph), per "
                          "width and dtype; a whisker runs from the baseline's fastest fifth of calls against the "
                          "stack's slowest to the other way round. The lines are the targets: a bar above its line "
                          "meets it (the black bar, eager's; the blue ones, CUDA graphs').",
                          f"stack-targets-{slug}"))
    return out


def precision_figures(df: pd.DataFrame) -> list[Figure]:
    """What TF32 buys over IEEE fp32: for every dense highway shape a backend ran both ways (the harness's
    `tf32` and `fp32` rows), the IEEE step's time over the TF32 step's, against depth. GPU rows only: a CPU
    computes the two alike."""
    ok = _dense_highway(df)
    ok = ok[(ok["device_type"] == "cuda") & ok["dtype"].isin(["fp32", "tf32"])] if not ok.empty else ok
    out = []
    for label, slug, _, d in _by_device(ok):
        times = {q: d.pivot_table(index=["depth", "width", "batch", "backend", "mode"], columns="dtype",
                                  values=f"{q}_ms", aggfunc="last") for q in ("median", "p20", "p80")}
        if not {"fp32", "tf32"} <= set(times["median"].columns):
            continue
        low, high = ratio_range(times["p20"]["fp32"], times["p80"]["fp32"], times["p20"]["tf32"], times["p80"]["tf32"])
        ratio = pd.DataFrame({"tf32_speedup": times["median"]["fp32"] / times["median"]["tf32"], "low": low,
                              "high": high})
        ratio = ratio.dropna(subset=["tf32_speedup"]).reset_index()
        if ratio.empty:
            continue
        g = _against_depth(ratio, "tf32_speedup", "IEEE time ÷ TF32 time",
                           f"What TF32 buys over IEEE fp32 — {label}", band=("low", "high"))
        log_scale(g.axes)
        for ax in g.axes.flat:
            ax.axhline(1.0, color="0.4", linewidth=0.8, linestyle="--")
        out.append(Figure(f"TF32 against IEEE fp32 ({label})", g.figure,
                          "The same fp32 tensors timed at torch's two float32 precisions, every backend of a row at "
                          "the same one: a step's time with IEEE dots (torch's default, the FMA units) over its "
                          "time with TF32 dots (the tensor cores), per backend; the shaded band runs from IEEE's "
                          "fastest fifth of calls against TF32's slowest to the other way round. Above the dashed "
                          "line TF32 is faster. Past width 64 the depth-fused stack runs only at TF32, so it has no "
                          "points there.",
                          f"precision-{slug}"))
    return out


def kernel_count_figures(df: pd.DataFrame) -> list[Figure]:
    """Kernels a step runs on the GPU against depth, per backend, dense highway stacks: the launches that
    per-layer backends pay and the depth-fused stack does not. GPU rows only (a CPU has no kernels to count)."""
    out = []
    for label, slug, _, d in _by_device(_dense_highway(df, "kernels_per_step")):
        g = _against_depth(d, "kernels_per_step", "GPU kernels per step", f"Kernels per step against depth — {label}",
                           by_shape=False, estimator="max")
        log_scale(g.axes)
        out.append(Figure(f"Kernels per step ({label})", g.figure,
                          "GPU kernels one step runs (torch.profiler; the most over widths and dtypes), per backend. "
                          "Per-layer backends grow with depth; the depth-fused stack stays flat. Under CUDA graphs "
                          "(compile-cudagraphs, compile-layers-cudagraphs) the host launches graphs, whose kernels "
                          "still count here.",
                          f"kernels-{slug}"))
    return out


def weight_streaming_figures(df: pd.DataFrame) -> list[Figure]:
    """How fast dense highway stacks stream their weights, against depth: % of the device's peak memory
    bandwidth on a GPU in the peak table, GB/s elsewhere. The depth-fused stack moves little but its weights,
    so this is how near it comes to the memory's limit; per-layer backends move activations too."""
    if "pct_peak_bw_weights" not in df.columns:
        return []
    out = []
    for label, slug, device_type, dd in _by_device(_dense_highway(df, "weight_gbps")):
        peak = dd["pct_peak_bw_weights"].notna().all()
        y, ylabel = ("pct_peak_bw_weights", "% of peak bandwidth") if peak else ("weight_gbps", "weight GB/s")
        what = ("as a share of the device's peak memory bandwidth (the vendor's figure)" if peak else
                "in GB/s (no peak bandwidth is known for this device)")
        for dtype, d in _by_dtype(dd):
            # bytes over time: the slowest fifth of calls streams at median/p80 of the median's rate
            d = d.assign(slowest=d[y] * d["median_ms"] / d["p80_ms"], fastest=d[y] * d["median_ms"] / d["p20_ms"])
            g = _against_depth(d, y, ylabel, f"Weight streaming against depth, {dtype} — {label}",
                               band=("slowest", "fastest"))
            if peak:  # from 0, and up to 100% only where a line comes near it: narrow stacks stream a few percent
                top = min(100.0, 1.15 * float(np.nanmax(d[["fastest", y]].to_numpy())))
                for ax in g.axes.flat:
                    ax.set_ylim(0, top)
            out.append(Figure(f"Weight streaming, {dtype} ({label})", g.figure,
                              "The bytes of [W_H | W_T] and the biases a step must move (fwd: once; fwd + bwd: read "
                              "twice, dW written once; train: and the SGD update), divided by the step's median time, "
                              + what + "; the shaded band spans the slowest and the fastest fifth of the calls. The "
                              "depth-fused stack (triton-stack) keeps activations on chip, so its weights are nearly "
                              "all it moves." + _cpu_note(d, device_type), f"weight-streaming-{slug}-{dtype}"))
    return out


# --- population --------------------------------------------------------------------------------------------

def population_figures(df: pd.DataFrame) -> list[Figure]:
    """Trials per second against the population size P, one by one (dashed) and as one population (solid),
    per backend; and the speed-up of the population, per device."""
    ok = df[df["status"] == STATUS_OK] if not df.empty else df
    if ok.empty:
        return []
    out = []
    for label, slug, device_type, d in _by_device(ok):
        d = d.assign(net=[f"{m}, depth {dp}, width {w}, {t}" for m, dp, w, t in
                          zip(d["model"], d["depth"], d["width"], d["dtype"])])
        # the speed-up's band runs from the population's slowest fifth of calls against one by one's fastest
        # fifth to the other way round: what a noisy machine could have made of the same code
        low, high = ratio_range(d["one_by_one_p20_ms"], d["one_by_one_p80_ms"], d["population_p20_ms"],
                                d["population_p80_ms"])
        d = d.assign(speedup_low=low, speedup_high=high)
        long = pd.concat([d.assign(arrangement=arrangement, rate=d[rate],
                                   slowest=d["population"] / (d[f"{t}_p80_ms"] * 1e-3),
                                   fastest=d["population"] / (d[f"{t}_p20_ms"] * 1e-3))
                          for arrangement, rate, t in (("population", "trials_per_s", "population"),
                                                       ("one by one", "one_by_one_trials_per_s", "one_by_one"))],
                         ignore_index=True)
        nets = sorted(d["net"].unique())
        # a row per net: its rates and its speed-up side by side, each net's x axis under the other's
        fig, axes = plt.subplots(len(nets), 2, figsize=(12, 0.4 + 3.6 * len(nets)), squeeze=False)
        for (ax_rate, ax_speed), net in zip(axes, nets):
            sel = long[long["net"] == net]
            colors = backend_palette(sel["backend"])
            sns.lineplot(sel, x="population", y="rate", hue="backend", style="arrangement",
                         style_order=["population", "one by one"], markers=True, ax=ax_rate, errorbar=None, **colors)
            sns.move_legend(ax_rate, "best", fontsize=8, title=None)
            _spread_band(ax_rate, sel, "population", "slowest", "fastest", colors["palette"],
                         by=["backend", "arrangement"])
            ax_rate.set(xscale="log", yscale="log", title=net, xlabel="trials P", ylabel="trial train steps / s")
            speed = d[d["net"] == net]
            sns.lineplot(speed, x="population", y="speedup", hue="backend", markers=True, marker="o", ax=ax_speed,
                         errorbar=None, legend=False, **backend_palette(speed["backend"]))
            _spread_band(ax_speed, speed, "population", "speedup_low", "speedup_high", colors["palette"])
            ax_speed.axhline(1.0, color="grey", lw=0.8, ls=":")
            first = speed.iloc[0]
            for where, model, depth, width, trials, target in POPULATION_TARGETS:
                if (where, model, depth, width) == (device_type, first["model"], first["depth"], first["width"]):
                    ax_speed.axhline(target, color="crimson", lw=1.0, ls="--")
                    ax_speed.plot([trials], [target], marker="*", ms=12, color="crimson", ls="none",
                                  label=f"target: {target:g}x at P = {trials}")
                    ax_speed.legend(loc="lower right", fontsize=8)
            ax_speed.set(xscale="log", title="population ÷ one by one", xlabel="trials P", ylabel="speed-up")
            sizes = sorted(speed["population"].unique())
            crowded = any(b / a < 1.5 for a, b in zip(sizes, sizes[1:]))  # 100 and 128 side by side on a log axis
            for ax in (ax_rate, ax_speed):
                ax.set_xticks(sizes, labels=sizes, rotation=45 if crowded else 0)
                ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            log_scale(ax_rate)  # rates within one decade get no major tick on a log axis: the steps between labelled
        fig.suptitle(f"Population training: P trials at once against one after another — {label}")
        fig.tight_layout()
        out.append(Figure(f"Population training ({label})", fig,
                          "A row per net. Left: trial train steps per second (fwd + bwd + SGD step of every trial), "
                          "trained as one population (solid) or as P nets one after another (dashed), timed in "
                          "alternation in one run; the shaded bands span the slowest and the fastest fifth of the "
                          "calls. Right: the population's speed-up; its band runs from the population's slowest "
                          "fifth against one by one's fastest to the other way round (the dotted line is 1; a red "
                          "star and dashed line mark the target where this net has one)."
                          + _cpu_note(d, device_type), f"population-{slug}"))
    return out
