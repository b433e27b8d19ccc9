"""Evaluation charts for the training report, written as PNG files.

Figures are drawn with matplotlib's object API on an Agg canvas rather than
through pyplot: no display is needed, no figure lingers in pyplot's registry,
and importing this module does not switch the backend of a notebook that
imports the package.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from leadscore.files import atomic_path

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


def save_png(figure: Figure, path) -> Path:
    path = Path(path)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=DPI, format="png")
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
    return save_png(figure, path)


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
    return save_png(figure, path)


FAMILY_COLOURS = {"fit": "#1f77b4", "engagement": "#ff7f0e"}


def importance_plot(table: pd.DataFrame, path, top: int = 15) -> Path:
    """Horizontal bars of mean |contribution| in percentage points, business labels, coloured by family."""
    shown = table.head(top).iloc[::-1]
    figure = Figure(figsize=(8.0, 0.38 * len(shown) + 1.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.barh(shown["label"], shown["mean_abs_points"], color=[FAMILY_COLOURS[f] for f in shown["family"]])
    legend = [Patch(color=FAMILY_COLOURS["fit"], label="Fit: who the lead is"),
              Patch(color=FAMILY_COLOURS["engagement"], label="Engagement: what the lead did")]
    axes.set_xlabel("Average effect on the probability (percentage points)", fontsize=11)
    axes.set_title("What moves the score most (held-out leads)", fontsize=13)
    axes.grid(True, axis="x", color="0.9")
    axes.tick_params(labelsize=10)
    axes.legend(handles=legend, fontsize=9, loc="lower right")
    return save_png(figure, path)


def _shap_explanation(points: np.ndarray, values: pd.DataFrame, labels: list[str]):
    import shap

    # Colour by the lead's value where it is a number; categories have no order to colour by.
    numbers = np.column_stack(
        [values[c].to_numpy(dtype=float, na_value=np.nan) if values[c].dtype.kind in "biuf" else np.full(len(values), np.nan)
         for c in values.columns]
    ) if len(values.columns) else np.zeros((len(values), 0))
    return shap.Explanation(values=points, data=numbers, feature_names=labels)


@contextmanager
def _no_pyplot_leftovers():
    """Close the pyplot figures shap opens on the side (``plt.colorbar`` and ``plt.sca`` reach for a
    current figure even when handed an axes): in a long-lived process they would pile up."""
    import matplotlib.pyplot as plt  # shap has imported it already

    before = set(plt.get_fignums())
    try:
        yield
    finally:
        for number in set(plt.get_fignums()) - before:
            plt.close(number)


def beeswarm_plot(points: np.ndarray, values: pd.DataFrame, labels: list[str], path, top: int = 12) -> Path:
    """Every held-out lead as a dot per feature: how far the feature moved its probability, coloured by its value."""
    import shap

    figure = Figure(figsize=(9.0, 0.45 * top + 2.0), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    with warnings.catch_warnings(), _no_pyplot_leftovers():
        warnings.simplefilter("ignore", RuntimeWarning)  # shap takes quantiles of all-missing value columns
        shap.plots.beeswarm(
            _shap_explanation(points, values, labels), max_display=top, ax=axes, show=False, plot_size=None,
            color_bar_label="The lead's value (low to high)",
        )
    axes.set_xlabel("Effect on the conversion probability (percentage points)", fontsize=11)
    axes.set_title("How each feature moves each lead's score", fontsize=13)
    return save_png(figure, path)


def dependence_plots(points: np.ndarray, values: pd.DataFrame, labels: list[str], columns: list[int], path) -> Path:
    """For each chosen feature, its effect on the probability against the lead's value."""
    import shap

    figure = Figure(figsize=(5.0 * max(len(columns), 1), 4.4), layout="constrained")
    FigureCanvasAgg(figure)
    explanation = _shap_explanation(points, values, labels)
    for place, column in enumerate(columns, start=1):
        axes = figure.add_subplot(1, len(columns), place)
        with _no_pyplot_leftovers():
            shap.plots.scatter(explanation[:, column], ax=axes, show=False)
        # shap writes its own "SHAP value for ..." label; marketing reads points.
        axes.set_ylabel("Effect on the probability (pts)", fontsize=10)
        axes.set_xlabel(labels[column], fontsize=10)
    figure.suptitle("How the effect grows with engagement", fontsize=13)
    return save_png(figure, path)


def funnel_plot(funnel: pd.DataFrame, path, currency: str = "") -> Path:
    """Step conversion rates per channel, and what each SQL cost (in ``currency``)."""
    channels = funnel[funnel["channel"] != "total"].iloc[::-1]
    steps = (("lead_to_mql", "Lead → MQL"), ("mql_to_sql", "MQL → SQL"), ("sql_to_opportunity", "SQL → opportunity"),
             ("opportunity_to_customer", "Opportunity → customer"))
    figure = Figure(figsize=(11.0, 0.55 * len(channels) + 1.8), layout="constrained")
    FigureCanvasAgg(figure)
    rates, costs = figure.subplots(1, 2, sharey=True, width_ratios=(2, 1))
    positions = np.arange(len(channels))
    height = 0.8 / len(steps)
    for place, (column, label) in enumerate(steps):
        rates.barh(positions + (place - (len(steps) - 1) / 2) * height, 100 * channels[column].fillna(0), height, label=label)
    rates.set_yticks(positions, channels["channel_label"])
    rates.set_xlabel("Conversion rate of the step (%)", fontsize=11)
    rates.set_title("Funnel steps by channel", fontsize=13)
    rates.legend(fontsize=9, loc="lower right")
    costs.barh(positions, channels["cost_per_sql"].fillna(0), color="0.45")
    costs.set_xlabel(f"Cost per SQL ({currency})" if currency else "Cost per SQL", fontsize=11)
    costs.set_title("What an SQL costs", fontsize=13)
    for axes in (rates, costs):
        axes.grid(True, axis="x", color="0.9")
        axes.tick_params(labelsize=10)
    return save_png(figure, path)
