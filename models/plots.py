"""Evaluation charts for the training report, written as PNG files.

Figures are drawn with matplotlib's object API on an Agg canvas rather than
through pyplot: no display is needed, no figure lingers in pyplot's registry,
and importing this module does not switch the backend of a notebook that
imports the package.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.axes import Axes
from matplotlib.figure import Figure

DPI = 150
SIZE = (7.0, 5.5)
GAINS_MARKS = (5, 10, 20)
# Room above the highest point so the last marker and the legend do not touch the frame.
HEADROOM = 1.08


def _figure() -> tuple[Figure, Axes]:
    figure = Figure(figsize=SIZE, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.grid(True, color="0.9")
    axes.tick_params(labelsize=10)
    return figure, axes


def _save(figure: Figure, path) -> Path:
    path = Path(path)
    figure.savefig(path, dpi=DPI, format="png")
    return path


def reliability_plot(curves: dict[str, pd.DataFrame], path) -> Path:
    """Observed conversion rate against predicted probability, one line per model.

    Parameters
    ----------
    curves : dict of str to pandas.DataFrame
        Legend name to the output of ``reliability_curve``.
    path : str or Path
        Where to write the PNG.

    Returns
    -------
    Path
        ``path``.
    """
    figure, axes = _figure()
    highest = 0.0
    for name, curve in curves.items():
        predicted, observed = 100 * curve["mean_predicted"], 100 * curve["observed_rate"]
        axes.plot(predicted, observed, marker="o", markersize=5, linewidth=1.8, label=name)
        highest = max(highest, predicted.max(), observed.max())
    # Conversion probabilities are mostly a few percent: a fixed 0-100 % frame would crush every
    # curve into its corner, so the frame follows the data and the diagonal spans it.
    limit = min(100.0, highest * HEADROOM) if highest > 0 else 100.0
    axes.plot([0, limit], [0, limit], linestyle="--", color="0.5", linewidth=1.2, label="Perfect calibration")
    axes.set_xlim(0, limit)
    axes.set_ylim(0, limit)
    axes.set_aspect("equal")
    axes.set_xlabel("Predicted probability (%)", fontsize=12)
    axes.set_ylabel("Observed conversion rate (%)", fontsize=12)
    axes.set_title("Calibration on the held-out leads", fontsize=13)
    axes.legend(fontsize=10, loc="upper left")
    return _save(figure, path)


def gains_plot(curves: dict[str, pd.DataFrame], path) -> Path:
    """Share of conversions captured against share of leads contacted, one line per model.

    Parameters
    ----------
    curves : dict of str to pandas.DataFrame
        Legend name to the output of ``gains_curve``.
    path : str or Path
        Where to write the PNG.

    Returns
    -------
    Path
        ``path``.
    """
    figure, axes = _figure()
    for name, curve in curves.items():
        leads, captured = 100 * curve["share_of_leads"], 100 * curve["share_of_conversions"]
        (line,) = axes.plot(leads, captured, linewidth=1.8, label=name)
        # The marks sit on the curve itself, so a reader sees each model's capture at the usual cuts.
        axes.plot(GAINS_MARKS, np.interp(GAINS_MARKS, leads, captured), "o", color=line.get_color(), markersize=5)
    axes.plot([0, 100], [0, 100], linestyle="--", color="0.5", linewidth=1.2, label="Random order")
    for mark in GAINS_MARKS:
        axes.axvline(mark, color="0.75", linestyle=":", linewidth=1)
    axes.set_xlim(0, 100)
    axes.set_ylim(0, 100)
    axes.set_xticks([0, *GAINS_MARKS, 40, 60, 80, 100])
    axes.set_xlabel("Leads contacted, best scores first (%)", fontsize=12)
    axes.set_ylabel("Conversions captured (%)", fontsize=12)
    axes.set_title("Gains on the held-out leads", fontsize=13)
    axes.legend(fontsize=10, loc="lower right")
    return _save(figure, path)
