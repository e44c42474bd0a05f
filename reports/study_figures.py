"""The convergence study's figures: training curves and final loss against depth (the paper's Figure 1), the
gate-bias rules, the carry path at initialization, and a trained net's gates and lesions (its Figures 2 to 4).
Every function returns a list of `Figure`, drawn from a results table and never from typed-in numbers, and
empty when the data for it is missing.
"""
from matplotlib.lines import Line2D
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from highway.bench.schema import GATE_AUTO, GATE_SEARCH, STATUS_OK
from highway.reports.figure_style import Figure, depth_axis, log_scale
from highway.reports.summaries import TOP, arm_names, best_runs, chance_loss

MODEL_COLORS = {"plain": "#d55e00", "highway": "#0072b2"}
CARRY_FLOOR = 1e-12  # the carry figure's y axis goes no lower


def arm_palette(arms) -> dict:
    """plain orange, searched highway blue, other highway arms (fixed or auto gate bias) in further colours."""
    extra = iter(["#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#999999"])
    return {a: MODEL_COLORS.get(a) or next(extra) for a in sorted(arms, key=lambda a: (a != "plain", a))}


def _image(ax, values, cmap, **kw):
    ax.grid(False)
    return ax.imshow(values, aspect="auto", cmap=cmap, interpolation="nearest", **kw)


# --- convergence ---------------------------------------------------------------------------------------

def _curves(df: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    keep = df.merge(trials, on=["model", "depth", "trial"])
    return keep[keep["status"] == STATUS_OK]


def convergence_figures(df: pd.DataFrame) -> list[Figure]:
    if df.empty:
        return []
    out = []
    for (study, dataset), raw in df.groupby(["study", "dataset"]):
        d = raw.assign(model=arm_names(raw))
        final = d.sort_values("epoch").groupby(["model", "depth", "trial"]).tail(1)
        final = final[final["status"] == STATUS_OK]
        if final.empty:
            continue
        best = final.loc[final.groupby(["model", "depth"])["train_loss"].idxmin(), ["model", "depth", "trial"]]
        top = final.sort_values("train_loss").groupby(["model", "depth"]).head(TOP)[["model", "depth", "trial"]]
        n_top = int(top.groupby(["model", "depth"]).size().max())
        depths = sorted(d["depth"].unique())
        arms = sorted(d["model"].unique(), key=lambda a: (a != "plain", a))  # plain on top, as in the paper
        palette = dict(zip(depths, sns.color_palette("viridis", len(depths))))
        # A row per net and a colour per depth, as the paper draws it: depth against depth within a net, and the
        # nets one above the other on one y scale, where a style per net would tangle the lines of two nets. The
        # top-N column only where it differs from the best run's.
        panels = [(best, "best run per depth")] + ([(top, f"mean of the top {n_top} runs")] if n_top > 1 else [])
        fig, axes = plt.subplots(len(arms), len(panels), figsize=(1.5 + 6 * len(panels), 0.4 + 3.2 * len(arms)),
                                 sharex=True, sharey=True, squeeze=False)
        for row, arm in zip(axes, arms):
            widths = "/".join(str(int(w)) for w in sorted(d.loc[d["model"] == arm, "width"].dropna().unique()))
            for ax, (trials, title) in zip(row, panels):
                curves = _curves(d[d["model"] == arm], trials)
                curves = curves.groupby(["depth", "epoch"])["train_loss"].mean().reset_index()
                sns.lineplot(curves, x="epoch", y="train_loss", hue="depth", hue_order=depths, palette=palette,
                             ax=ax, marker="o", markersize=4, legend=False)
                ax.set(title=f"{arm}{f', width {widths}' if widths else ''}: {title}", xlabel="epoch",
                       ylabel="training cross-entropy")
                log_scale(ax)
                ax.xaxis.get_major_locator().set_params(integer=True)
        # every depth in the legend, whichever net and panel ran it
        axes[0, -1].legend([Line2D([], [], color=palette[k], marker="o", markersize=4) for k in depths],
                           [str(k) for k in depths], title="depth", fontsize=9, loc="upper left",
                           bbox_to_anchor=(1.01, 1))
        nets = " and ".join(sorted({a.split(" ")[0] for a in arms}, key=lambda a: a != "plain"))  # those it ran
        fig.suptitle(f"Optimization of {nets} nets ({dataset}, study '{study}') — cf. the paper's Figure 1")
        fig.tight_layout()
        right = (f" Right: mean curve of the best {n_top} trials (fewer where fewer finished)." if n_top > 1 else
                 " One trial a depth finished, so its run is all there is to show (no mean of the top trials).")
        out.append(Figure(f"Training curves by depth: study '{study}' ({dataset})", fig,
                          "Training-set cross-entropy per epoch (epoch 0: at initialization), a row per net and a "
                          "colour per depth, every panel on one y scale. "
                          f"{'Left: each' if n_top > 1 else 'Each'} depth's best trial by final loss.{right}",
                          f"curves-{study}"))

        if len(depths) < 2:  # a loss against depth needs depths to compare
            continue
        best = best_runs(raw)
        top = int(best["top"].max()) if len(best) else TOP
        summary = best.rename(columns={"best_loss": "best trial", "top_mean_loss": f"mean of the top {top}"}).melt(
            id_vars=["model", "depth"], value_vars=["best trial", f"mean of the top {top}"], var_name="statistic",
            value_name="final_loss")
        fig, ax = plt.subplots(figsize=(7, 4.5))
        sns.lineplot(summary, x="depth", y="final_loss", hue="model", style="statistic", markers=True,
                     palette=arm_palette(arms), ax=ax)
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), title=None, fontsize=9)
        ax.set(xlabel="depth (hidden layers)", ylabel="final training cross-entropy",
               title=f"Final training loss against depth ({dataset})")
        log_scale(ax)
        depth_axis(ax, depths)
        fig.tight_layout()
        out.append(Figure(f"Final loss against depth: study '{study}' ({dataset})", fig,
                          f"Final training loss of the best trial and the mean of the best {top}, per depth. Diverged "
                          "trials are left out of both.", f"final-loss-{study}"))
    return out


def gate_bias_figures(df: pd.DataFrame) -> list[Figure]:
    """Final training loss against depth for plain, fixed and auto gate biases, with the best of any random
    search on the same data at the same epoch."""
    if df.empty or not (df["gate_rule"] == GATE_AUTO).any():
        return []
    out = []
    for (study, dataset), d in df[df["gate_rule"] == GATE_AUTO].groupby(["study", "dataset"]):
        arms = df[(df["study"] == study) & (df["dataset"] == dataset)]
        epoch = int(arms["epoch"].max())
        rows = arms[arms["epoch"] == epoch].assign(arm=lambda t: arm_names(t))
        search = df[(df["dataset"] == dataset) & (df["gate_rule"] == GATE_SEARCH) & (df["epoch"] == epoch)]
        if not search.empty:
            rows = pd.concat([rows, search.assign(arm=f"highway (best of search, {search['study'].iloc[0]})")])
        ok = rows[rows["status"] == STATUS_OK].groupby(["arm", "depth"])["train_loss"].min().reset_index()
        failed = rows[rows["status"] != STATUS_OK][["arm", "depth"]].drop_duplicates()
        failed = failed.merge(ok[["arm", "depth"]], how="left", indicator=True).query("_merge == 'left_only'")
        fig, ax = plt.subplots(figsize=(8.5, 4.8))
        palette = arm_palette(ok["arm"].unique())
        # a line per arm over the depths it ran, broken where every run of it diverged: no line through a
        # depth that has no loss, and an x there above the rest
        depths = sorted(rows["depth"].unique())
        for arm, color in palette.items():
            loss = ok[ok["arm"] == arm].set_index("depth")["train_loss"]
            ran = rows.loc[rows["arm"] == arm, "depth"].unique()
            ax.plot([k for k in depths if k in ran], [loss.get(k, np.nan) for k in depths if k in ran], marker="o",
                    color=color, label=arm)
        for r in failed.itertuples():
            ax.scatter([r.depth], [ok["train_loss"].max() * 1.3], marker="x", color=palette.get(r.arm, "k"), s=60,
                       label="every run diverged" if r.Index == failed.index[0] else None)
        ax.legend()
        ax.set(xlabel="depth (hidden layers)", ylabel=f"training cross-entropy after epoch {epoch}",
               title=f"Transform-gate bias rules against depth ({dataset}, study '{study}')")
        log_scale(ax)
        depth_axis(ax, sorted(rows["depth"].unique()))
        chance = chance_loss(arms)
        if chance is not None:
            ax.axhline(chance, ls=":", color="gray")
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), title=None, fontsize=9)
        fig.tight_layout()
        out.append(Figure(f"Gate-bias rules against depth: study '{study}' ({dataset})", fig,
                          f"Training loss after {epoch} epochs with one fixed learning rate and momentum. The dotted "
                          "line is chance (ln of the number of classes); an x marks a depth where every run of that "
                          "arm diverged, and its line breaks there. The random search's best is at the same epoch, "
                          "where it ran.", f"gate-bias-{study}"))
    return out


def carry_figures(carry: pd.DataFrame) -> list[Figure]:
    """The signal that reaches each layer at initialization, per gate-bias rule: the product of carry fractions."""
    if carry.empty:
        return []
    out = []
    for (study, dataset), d in carry.groupby(["study", "dataset"]):
        rules = sorted(d["gate_rule"].unique())
        depths = sorted(d["depth"].unique())
        palette = dict(zip(depths, sns.color_palette("viridis", len(depths))))
        # The y axis reaches down to what this study's curves reach (and below the 0.5 line), not past 1e-12: a
        # fixed bias carries 1e-56 to layer 1000, and decades of nothing would flatten every other curve.
        lowest = d["carried"][d["carried"] > 0].min()
        bottom = float(np.clip(lowest / 2, CARRY_FLOOR, 0.25))
        fig, axes = plt.subplots(1, len(rules), figsize=(max(10.0, 1.2 + 5.6 * len(rules)), 4.4), sharey=True,
                                 squeeze=False)
        for ax, rule in zip(axes.flat, rules):
            sel = d[d["gate_rule"] == rule]
            sns.lineplot(sel, x="layer", y="carried", hue="depth", hue_order=depths, palette=palette, ax=ax,
                         errorbar=None, legend=False)
            log_scale(ax)
            log_scale(ax, axis="x")
            ax.set(ylim=(bottom, 1.5), xlabel="highway layer", ylabel="input fraction carried to this layer",
                   title="gate bias drawn by the search (trial 0)" if rule == GATE_SEARCH else f"gate bias: {rule}")
            ax.axhline(0.5, ls=":", color="gray")
        axes[0, -1].legend([Line2D([], [], color=palette[k]) for k in depths], [str(k) for k in depths],
                           title="depth", fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1))
        fig.suptitle(f"Carry path at initialization ({dataset}, study '{study}'): mean of ∏(1 − T) over data")
        fig.tight_layout()
        below = (f" Curves that fall below {CARRY_FLOOR:g} leave the axis; the lowest reaches {lowest:.2g}."
                 if lowest < CARRY_FLOOR else "")
        out.append(Figure(f"Signal along the carry path at initialization: study '{study}' ({dataset})", fig,
                          "For each depth, the mean over training samples and blocks of the product of carry "
                          "fractions (1 − T) up to each layer. The dotted line is the `keep` = 0.5 that the auto "
                          f"rule aims the last layer at.{below}", f"carry-{study}"))
    return out


# --- gates and lesions ---------------------------------------------------------------------------------

def trained_net(meta: dict) -> str:
    """A sentence on the analysed net, from what its checkpoint recorded (older ones name no study or epochs)."""
    if not {"model", "depth"} <= meta.keys():
        return ""
    details = []
    if "trial" in meta:
        details.append(f"trial {meta['trial']}")
    if "activation" in meta:
        details.append(str(meta["activation"]))
    if isinstance(meta.get("gate_bias"), (int, float)):
        details.append(f"gate bias {meta['gate_bias']:.2f}")
    sentence = f" The net: the best {meta['model']} trial at depth {meta['depth']}"
    if "study" in meta:
        sentence += f" of study '{meta['study']}'"
    if details:
        sentence += f" ({', '.join(details)})"
    if "epochs" in meta:
        sentence += f", trained {meta['epochs']} epochs"
    if "train_loss" in meta:
        sentence += f", final training loss {meta['train_loss']:.3g}"
    return sentence + "."


def gate_figures(analysis) -> list[Figure]:
    g, name = analysis.gates, analysis.name
    net = trained_net(analysis.meta)
    panels = [("biases", "transform gate biases", "cividis", None), ("mean_gate", "mean transform gate", "viridis",
              (0, 1)), ("sample_gate", "transform gate, one sample", "viridis", (0, 1)),
              ("sample_output", "block output, one sample", "magma", None)]
    fig, axes = plt.subplots(1, 4, figsize=(16, 5.2), sharey=True)
    for ax, (key, title, cmap, lim) in zip(axes, panels):
        im = _image(ax, g[key], cmap, **(dict(vmin=lim[0], vmax=lim[1]) if lim else {}))
        ax.set(title=title, xlabel="block")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    axes[0].set_ylabel("highway layer")
    fig.suptitle(f"Inside the trained highway net {name} — cf. the paper's Figure 2")
    fig.tight_layout()
    out = [Figure(f"Gates of {name}", fig, "Rows are highway layers (first at the top), columns are blocks. The mean "
                  "gate is over the analysed training samples; the single-sample columns use the first one." + net,
                  f"gates-{name}")]

    diffs, classes = g["class_gate_diff"], g.get("class_names", g["classes"])  # names where the analysis knew them
    cols = min(5, len(classes))
    rows = int(np.ceil(len(classes) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), sharex=True, sharey=True, squeeze=False)
    bound = np.abs(diffs).max() or 1.0
    for ax, c, d in zip(axes.flat, classes, diffs):
        im = _image(ax, d, "RdBu_r", vmin=-bound, vmax=bound)
        ax.set_title(str(c) if "class_names" in g else f"class {c}", fontsize=10)
    for ax in axes.flat[len(classes):]:
        ax.axis("off")
    fig.colorbar(im, ax=axes, fraction=0.02, pad=0.02, label="class mean − overall mean")
    fig.suptitle(f"Per-class transform-gate activity, {name} — cf. the paper's Figure 3")
    out.append(Figure(f"Per-class gates of {name}", fig, "Each class's mean transform-gate activity minus the mean "
                      "over all samples (layers down, blocks across)." + net, f"class-gates-{name}"))

    lesion = analysis.lesion
    if not lesion.empty:
        fig, ax = plt.subplots(figsize=(8, 4))
        les = lesion[lesion["lesioned"]]
        base = lesion.loc[~lesion["lesioned"], "train_loss"].iloc[0]
        ax.plot(les["layer"], les["train_loss"], marker="o", color=MODEL_COLORS["highway"], label="one layer lesioned")
        ax.axhline(base, ls="--", color="gray", label="not lesioned")
        spread = les["train_loss"].max() / max(min(les["train_loss"].min(), base), 1e-12)
        ax.set(xlabel="lesioned highway layer", ylabel="training cross-entropy",
               title=f"Lesioning one layer at a time, {name} — cf. the paper's Figure 4")
        if spread <= 3:  # from zero, so that a change of a few percent looks like one
            ax.set_ylim(0, 1.15 * max(les["train_loss"].max(), base))
        else:
            log_scale(ax)
        ax.legend()
        fig.tight_layout()
        out.append(Figure(f"Lesions of {name}", fig, "Training loss with all transform gates of one layer closed "
                          "(T = 0, the layer copies its input)." + net, f"lesion-{name}"))
    return out
