"""The report's appendix for data scientists: the model's own measures, in its own vocabulary.

Marketing's sections count leads; these figures come from the training run
as logged, so they count held-out rows (a lead open at several cutoffs is
several rows) and speak of ROC AUC, calibration and SHAP values.
"""

from __future__ import annotations

import pandas as pd

from leadscore.pipelines.report_html import count, e, finite, image, rate, table


def appendix(model_uri: str, model, run, leads: int) -> str:
    metrics = run.metrics
    held = metrics["held_out"]
    first = next(iter(held.values()))
    return (
        "<section class='appendix'><h2>For data scientists</h2>"
        f"<p class='lede'>Model {e(model_uri)} ({e(model.kind)}, calibration {e(metrics.get('calibration', ''))}), "
        f"run {e(run.run_id)}. Split: {e(metrics.get('split', ''))}. Held out: {int(first['rows']):,} rows of "
        f"{leads:,} leads, base rate {rate(first['base_rate'])} per row.</p>"
        + _comparison(run)
        + _importance(run)
        + "</section>"
    )


def _comparison(run) -> str:
    held = run.metrics["held_out"]
    scorers = list(held)
    lines = [
        ("ROC AUC", "roc_auc", lambda v: f"{v:.3f}"),
        ("PR AUC", "pr_auc", lambda v: f"{v:.3f}"),
        ("Brier score", "brier", lambda v: f"{v:.4f}"),
        ("Expected calibration error", "ece", lambda v: f"{100 * v:.1f} pts"),
        ("Lift, top 10 % of rows", "lift_top_10", lambda v: f"{v:.2f}×"),
    ]
    rows = [([label, *(show(held[s][key]) if finite(held[s].get(key)) else "—" for s in scorers)], "")
            for label, key, show in lines]
    lift_rows = []
    for scorer, records in run.metrics.get("lift", {}).items():
        for record in records:
            lift_rows.append(([scorer, f"top {100 * record['top']:.0f} %", count(record["leads"]),
                               rate(record["conversion_rate"]), f"{record['lift']:.2f}×", rate(record["capture"])], ""))
    validation = run.metrics.get("validation", {})
    validation_rows = [([name, *(f"{values[k]:.4f}" if finite(values.get(k)) else "—"
                                 for k in ("roc_auc", "pr_auc", "calibrated_brier"))], "")
                       for name, values in validation.items()]
    return (
        "<h3>Held-out measures, by row</h3>"
        + table(["", *scorers], rows)
        + "<div class='figures'>" + image(run.image("gains.png"), "Gains by row")
        + image(run.image("reliability.png"), "Reliability") + "</div>"
        + table(["Scorer", "Rows", "Count", "Conversion rate", "Lift", "Capture"], lift_rows, (0, 1))
        + ("<h3>Candidates on the validation folds</h3>"
           + table(["Candidate", "ROC AUC", "PR AUC", "Calibrated Brier"], validation_rows) if validation_rows else "")
    )


def _importance(run) -> str:
    frame: pd.DataFrame = run.importances.head(20)
    rows = [([str(int(r["rank"])), r["label"], str(field), r["family"], f"{r['mean_abs_points']:.3f}",
              f"{r['mean_abs_log_odds']:.3f}", rate(r["share"])], "") for field, r in frame.iterrows()]
    return (
        "<h3>Mean absolute SHAP value per business field (held-out rows)</h3>"
        + table(["Rank", "Label", "Field", "Family", "Points", "Log-odds", "Share"], rows, (1, 2, 3))
        + image(run.image("importance.png"), "Mean absolute SHAP value per field")
        + image(run.image("beeswarm.png"), "SHAP values of each feature on each held-out row")
        + image(run.image("dependence.png"), "SHAP dependence of the strongest numeric engagement features")
    )
