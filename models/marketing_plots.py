"""The marketing report's charts: drivers, effect curves, current scores and weekly movement, as PNG files.

Same conventions as ``models.plots``: matplotlib's object API on an Agg
canvas, business labels only, units in every axis title.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from leadscore.models.plots import FAMILY_COLOURS, save_png

TIER_COLOURS = {"none": "#b8c2cc", "mql": "#f2b705", "sql": "#1b9e5a"}
TIER_NAMES = {"none": "Not qualified", "mql": "MQL", "sql": "SQL"}
LABEL_WIDTH = 34  # characters per line of a wrapped axis label: long business labels must not overlap


def _canvas(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _wrapped(text: str, width: int = LABEL_WIDTH) -> str:
    return "\n".join(textwrap.wrap(text, width)) or text


def driver_plot(table: pd.DataFrame, path) -> Path:
    """Bars of each field's share of the score's movement, annotated with its typical effect on a promising lead.

    ``table``: rows in rank order with ``label``, ``family``, ``share`` (0-1) and ``typical_points``.
    """
    shown = table.iloc[::-1]
    figure = _canvas(8.5, 0.42 * len(shown) + 1.7)
    axes = figure.add_subplot()
    shares = 100 * shown["share"].to_numpy(dtype=float)
    axes.barh([_wrapped(label) for label in shown["label"]], shares, color=[FAMILY_COLOURS[f] for f in shown["family"]])
    for place, (share, points) in enumerate(zip(shares, shown["typical_points"])):
        axes.text(share, place, f"  {points:.1f} pts", va="center", fontsize=9, color="0.25")
    axes.set_xlim(0, max(shares.max() * 1.25, 1) if len(shares) else 1)
    axes.set_xlabel("Share of what moves the scores (%); label: typical points on a top-10 % lead", fontsize=10)
    axes.set_title("What drives the score", fontsize=13)
    axes.grid(True, axis="x", color="0.9")
    axes.tick_params(labelsize=10)
    axes.legend(handles=[Patch(color=FAMILY_COLOURS["fit"], label="Fit: who the lead is"),
                         Patch(color=FAMILY_COLOURS["engagement"], label="Engagement: what the lead did")],
                fontsize=9, loc="lower right")
    return save_png(figure, path)


def effect_plot(curves: dict[str, pd.DataFrame], path) -> Path:
    """One panel per behaviour: the average effect on the probability of the leads at each count."""
    figure = _canvas(4.4 * max(len(curves), 1), 4.0)
    panels = figure.subplots(1, max(len(curves), 1), squeeze=False)[0]
    for place, (axes, (label, curve)) in enumerate(zip(panels, curves.items())):
        positions = np.arange(len(curve))
        axes.axhline(0, color="0.6", linewidth=1)
        axes.plot(positions, curve["mean_points"], marker="o", linewidth=2, color=FAMILY_COLOURS["engagement"])
        axes.set_xticks(positions, curve["step"], fontsize=9)
        axes.set_title(_wrapped(label, 40), fontsize=11)
        axes.set_xlabel("Times the lead did it", fontsize=10)
        if place == 0:  # one axis title for the row: repeated, it crowds the narrow panels
            axes.set_ylabel("Effect on the probability (pts)", fontsize=10)
        axes.grid(True, color="0.9")
    return save_png(figure, path)


def score_distribution_plot(probability: np.ndarray, tier: np.ndarray, mql: float, sql: float, path) -> Path:
    """How many open leads sit at each probability, coloured by tier, with the two thresholds marked."""
    figure = _canvas(8.5, 3.8)
    axes = figure.add_subplot()
    percent = 100 * np.asarray(probability, dtype=float)
    top = max(float(np.quantile(percent, 0.995)) if len(percent) else 1.0, 100 * sql * 1.15, 1.0)
    edges = np.linspace(0, top, 41)
    clipped = np.minimum(percent, top)
    bottom = np.zeros(len(edges) - 1)
    for name in ("none", "mql", "sql"):
        counts = np.histogram(clipped[tier == name], edges)[0]
        axes.bar(edges[:-1], counts, width=np.diff(edges), bottom=bottom, align="edge",
                 color=TIER_COLOURS[name], label=f"{TIER_NAMES[name]} ({int((tier == name).sum()):,})")
        bottom += counts
    for threshold, name in ((mql, "MQL"), (sql, "SQL")):
        axes.axvline(100 * threshold, color="0.3", linestyle="--", linewidth=1)
        axes.text(100 * threshold, 0.97, f" {name} from {100 * threshold:.3g} %", fontsize=9, rotation=90, va="top",
                  transform=axes.get_xaxis_transform())
    axes.set_yscale("symlog", linthresh=10)
    axes.set_xlabel("Probability of conversion (%); the last bar holds every lead above it", fontsize=10)
    axes.set_ylabel("Open leads", fontsize=10)
    axes.set_title("Current scores of the open leads", fontsize=13)
    axes.legend(fontsize=9, loc="center right")
    axes.grid(True, axis="y", color="0.9")
    return save_png(figure, path)


def movement_plot(weekly: pd.DataFrame, path) -> Path:
    """Leads entering MQL and SQL each week."""
    figure = _canvas(8.5, 3.6)
    axes = figure.add_subplot()
    positions = np.arange(len(weekly))
    axes.bar(positions - 0.2, weekly["mql_entries"], 0.4, color=TIER_COLOURS["mql"], label="Entered MQL (or SQL)")
    axes.bar(positions + 0.2, weekly["sql_entries"], 0.4, color=TIER_COLOURS["sql"], label="Entered SQL")
    axes.set_xticks(positions, [f"{week:%d %b}" for week in pd.to_datetime(weekly["week"])], fontsize=9,
                    rotation=45 if len(weekly) > 8 else 0)
    axes.set_xlabel("Week starting", fontsize=10)
    axes.set_ylabel("Leads", fontsize=10)
    axes.set_title("Leads entering each tier, week by week", fontsize=13)
    axes.legend(fontsize=9)
    axes.grid(True, axis="y", color="0.9")
    return save_png(figure, path)
