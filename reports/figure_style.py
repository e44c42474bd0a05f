"""The report's look, shared by its figures: the theme, the `Figure` record a figure function returns, and
axes written as a person reads them (log scales labelled 200, 60, 10k; depth axes that name the depths).

Importing this module changes no matplotlib or seaborn setting: figures are drawn inside `report_style()`,
which applies the report's theme for as long as the `with` block lasts. With no display, matplotlib
draws off screen by itself.
"""
import contextlib
from dataclasses import dataclass

import matplotlib
import matplotlib.pyplot as plt
from matplotlib import ticker
import numpy as np
import seaborn as sns


@contextlib.contextmanager
def report_style():
    """The report's look (seaborn's whitegrid theme, colour-blind palette), restored on exit."""
    theme = {**sns.axes_style("whitegrid"), **sns.plotting_context("notebook"),
             "axes.prop_cycle": matplotlib.cycler(color=sns.color_palette("colorblind")),
             # a report draws all its figures before it saves (and closes) each: two dozen open is expected
             "figure.max_open_warning": 0}
    with matplotlib.rc_context(theme):
        yield


@dataclass
class Figure:
    title: str
    fig: plt.Figure
    caption: str
    slug: str


def depth_axis(ax, depths):
    depths = sorted(set(depths))
    if len(depths) == 1:  # one depth (a run of the targets alone): a span around it, not a range of zero width
        ax.set_xlim(depths[0] / 2, depths[0] * 2)
    ax.set_xscale("log")
    ax.set_xticks(depths, [str(d) for d in depths])
    ax.xaxis.set_minor_locator(ticker.NullLocator())  # the depths alone; the y axis keeps its minor ticks


def _plain_number(value: float) -> str:
    """200, 60, 0.5, 10k, 1M: how a person writes a time or a rate on an axis."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


class _PlainLogFormatter(ticker.LogFormatter):
    """matplotlib's choice of which log ticks to label, each label written as `_plain_number` writes it."""

    def _num_to_string(self, x, vmin, vmax):
        return _plain_number(x)


def log_scale(axes, axis="y"):
    """Log-scaled y (or x) axes labelled in plain numbers (200, 60, 10k, 0.01) rather than 2×10², 6×10¹, 10⁴,
    10⁻²: the decades, and within a range under one decade a few steps between them too."""
    for ax in np.ravel(axes):
        getattr(ax, f"set_{axis}scale")("log")
        scale = getattr(ax, f"{axis}axis")
        scale.set_major_formatter(_PlainLogFormatter(labelOnlyBase=False))
        scale.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))
