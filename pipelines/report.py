"""Stage: one self-contained HTML page for marketing about a logged model.

Everything it shows comes from the model's training run (metrics, tier
volumes, importances, plots, held-out leads) and, when a CRM is given, from
the CRM's funnel. Images are embedded, there is no script and nothing is
fetched, so the file opens offline and can be mailed as it is.
"""

from __future__ import annotations

import base64
import html
import json
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.crm.history import CrmHistory
from leadscore.errors import LeadscoreError
from leadscore.features.crm_features import foreign_features
from leadscore.files import check_folder, write_text
from leadscore.models import plots
from leadscore.models.explain import Explainer
from leadscore.models.reasons import field_labels, format_percent, reason_records
from leadscore.models.model import LeadScoringModel
from leadscore.models.tiers import TIER_DISPLAY
from leadscore.pipelines.registry import load_model
from leadscore.pipelines.store import read_store, shown, store_error
from leadscore.pipelines.worth import channel_worth

EXAMPLE_TIERS = ("sql", "mql", "none")
TOP_IMPORTANCES = 15
FUNNEL_STEPS = (
    ("lead_to_mql", "Lead → MQL"),
    ("mql_to_sql", "MQL → SQL"),
    ("sql_to_opportunity", "SQL → opportunity"),
    ("opportunity_to_customer", "Opportunity → customer"),
    ("lead_to_customer", "Lead → customer"),
)


@dataclass(frozen=True)
class RunFiles:
    """What the model's training run logged, read back from MLflow."""

    run_id: str
    folder: Path
    metrics: dict
    importances: pd.DataFrame
    tiers: pd.DataFrame
    held_out: pd.DataFrame

    def image(self, name: str) -> Path | None:
        path = self.folder / name
        return path if path.exists() else None


def read_run(model_uri: str, scratch: Path, uri: str | None = None) -> RunFiles:
    read_store(uri)  # refuses a store that does not exist rather than letting MLflow create it
    import mlflow

    try:
        run_id = mlflow.models.get_model_info(model_uri).run_id
        folder = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="evaluation", dst_path=str(scratch)))
    except mlflow.exceptions.MlflowException as error:
        raise store_error(f"Cannot read the run of {model_uri!r} from {shown(uri)}", error, uri) from error
    missing = [name for name in ("metrics.json", "importances.csv", "tiers.csv", "holdout.parquet") if not (folder / name).exists()]
    if missing:
        raise LeadscoreError(
            f"The run of {model_uri!r} lacks {', '.join(missing)}: it was trained by an older leadscore. Retrain it "
            "with `leadscore train` to get a report."
        )
    return RunFiles(
        run_id=run_id,
        folder=folder,
        metrics=json.loads((folder / "metrics.json").read_text()),
        importances=pd.read_csv(folder / "importances.csv", index_col="field"),
        tiers=pd.read_csv(folder / "tiers.csv", index_col="tier"),
        held_out=pd.read_parquet(folder / "holdout.parquet"),
    )


def write_report(
    model_uri: str, out: Path, uri: str | None = None, funnel: pd.DataFrame | None = None, crm_note: str = "",
    history: CrmHistory | None = None, worth: pd.DataFrame | None = None,
) -> Path:
    """Write the marketing report of ``model_uri`` to ``out``; ``funnel`` is ``funnel_by_channel`` of the CRM,
    ``history`` the CRM itself, whose recent leads a CRM model prices by channel, unless ``worth`` (its
    ``channel_worth``) is given already."""
    if out.suffix.lower() not in (".html", ".htm"):
        raise LeadscoreError(f"--out {out}: the report is an HTML page; name it e.g. report.html.")
    check_folder(out)
    model = load_model(model_uri, uri)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        run = read_run(model_uri, scratch, uri)
        funnel_image = plots.funnel_plot(funnel, scratch / "funnel.png") if funnel is not None else None
        if worth is None and history is not None and not foreign_features(model.features):
            worth = channel_worth(history, model, pd.Timestamp(history.as_of).to_pydatetime())
        page = _page(model_uri, model, run, funnel, funnel_image, crm_note, worth)
    return write_text(out, page)


# --- the page -----------------------------------------------------------------------------------

STYLE = """
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #1d2733;
       margin: 0; background: #f5f7fa; line-height: 1.45; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 32px 64px; background: #fff; }
h1 { font-size: 28px; margin: 8px 0 4px; } h2 { font-size: 21px; margin: 36px 0 8px; border-bottom: 2px solid #e3e8ef; padding-bottom: 4px; }
h3 { font-size: 16px; margin: 20px 0 6px; }
.lede { color: #52606d; margin: 0 0 12px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 14px; }
th, td { padding: 5px 10px; border-bottom: 1px solid #e3e8ef; text-align: right; }
th:first-child, td:first-child, th.text, td.text { text-align: left; }
th { background: #f0f3f7; font-weight: 600; }
tr.total td { font-weight: 600; border-top: 2px solid #c9d2dc; }
img { max-width: 100%; height: auto; display: block; margin: 8px 0 16px; }
.figures { display: flex; flex-wrap: wrap; gap: 16px; } .figures img { max-width: 520px; }
.cards { display: flex; flex-wrap: wrap; gap: 16px; }
.card { flex: 1 1 320px; border: 1px solid #dde3ea; border-radius: 8px; padding: 12px 16px; }
.card h3 { margin-top: 4px; }
.tier { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 13px; font-weight: 600; }
.tier-sql { background: #d3f2e0; color: #0b6b3a; } .tier-mql { background: #fdf0cc; color: #7a5a00; }
.tier-none { background: #eceff3; color: #52606d; }
.up { color: #0b6b3a; } .down { color: #a4262c; }
ul { margin: 4px 0 8px 18px; padding: 0; } li { margin: 2px 0; }
.note { color: #52606d; font-size: 13px; }
"""


def _page(model_uri, model: LeadScoringModel, run: RunFiles, funnel, funnel_image, crm_note, worth=None) -> str:
    metrics = run.metrics
    held = metrics["held_out"]
    first = next(iter(held.values()))
    trained = model.summary.get("trained_at", "")
    sections = [
        f"<h1>Lead scoring report</h1>"
        f"<p class='lede'>Model {_e(model_uri)} ({_e(model.kind)}, trained {_e(trained.replace('T', ' '))} on "
        f"{_e(metrics['fingerprint'].get('source', ''))}). Checked on {int(first['rows']):,} held-out leads, "
        f"{format_percent(first['base_rate'])} of which converted. Probabilities are percentages; effects are "
        "percentage points (pts) of the probability.</p>",
        _funnel_section(funnel, funnel_image, crm_note),
        _worth_section(worth),
        _comparison_section(run),
        _importance_section(run),
        _tier_section(model, run),
        _example_section(model, run),
        f"<p class='note'>Generated {datetime.now():%Y-%m-%d %H:%M} by leadscore from run {_e(run.run_id)}.</p>",
    ]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>Lead scoring report</title><style>{STYLE}</style></head>"
        f"<body><main>{''.join(sections)}</main></body></html>\n"
    )


def _funnel_section(funnel: pd.DataFrame | None, image: Path | None, note: str) -> str:
    head = "<h2>Funnel by channel</h2>"
    if funnel is None:
        return head + f"<p class='note'>{_e(note or 'No CRM was given (--crm): funnel rates and costs come from the CRM.')}</p>"
    header = ["Channel", "Leads", "MQLs", "SQLs", "Customers", *(label for _, label in FUNNEL_STEPS), "Cost per MQL", "Cost per SQL"]
    rows = []
    for _, row in funnel.iterrows():
        cells = [row["channel_label"], *(_count(row[c]) for c in ("leads", "mqls", "sqls", "customers"))]
        cells += [_rate(row[step]) for step, _ in FUNNEL_STEPS]
        cells += [_money(row["cost_per_mql"]), _money(row["cost_per_sql"])]
        rows.append((cells, "total" if row["channel"] == "total" else ""))
    return (
        head
        + "<p class='lede'>How leads from each channel move down the funnel, and what each MQL and SQL cost "
        "(campaign spend over the leads that reached the stage).</p>"
        + _table(header, rows)
        + _img(image, "Conversion rates and cost per SQL by channel")
    )


def _worth_section(worth: pd.DataFrame | None) -> str:
    """The leads of the widest window per channel, priced before their outcomes arrive, beside the same
    estimate made one horizon earlier and what those leads then became."""
    if worth is None:
        return ""
    worth = worth[worth["days"] == worth["days"].max()]  # the widest window: most leads, steadiest figures
    recent = worth[worth["cohort"] == "recent"].set_index("channel")
    matured = worth[worth["cohort"] == "matured"].set_index("channel")
    days = int(recent["days"].iloc[0])
    earlier = (recent["created_to"].iloc[0] - matured["created_to"].iloc[0]).days if len(matured) else days
    header = ["Channel", f"Leads, last {days} days", "Expected customers", "Cost", "Expected cost per customer",
              f"Leads, {earlier} days earlier", "Expected then", "Became customers"]
    rows = []
    for channel, row in recent.iterrows():
        before = matured.loc[channel] if channel in matured.index else None
        cells = [row["channel_label"], _count(row["leads"]),
                 f"{row['expected_customers']:,.1f} ± {row['spread']:,.1f}", _money(row["cost"]),
                 _money(row["expected_cost_per_customer"])]
        cells += ([_count(before["leads"]), f"{before['expected_customers']:,.1f} ± {before['spread']:,.1f}",
                   _count(before["realised_customers"])] if before is not None else ["—", "—", "—"])
        rows.append((cells, "total" if channel == "total" else ""))
    start, end = recent["created_from"].iloc[0], recent["created_to"].iloc[0]
    return (
        "<h2>What each channel's new leads are worth</h2>"
        f"<p class='lede'>Leads created from {start:%d %b %Y} to {end:%d %b %Y}, before their outcomes are known: the "
        "customers they are expected to become (those they already are, plus each open lead's probability), give or "
        "take two standard deviations, and what each expected customer costs. Beside them, the same estimate made "
        f"{earlier} days earlier for that period's leads, and how many became customers.</p>"
        + _table(header, rows)
        + "<p class='note'>The earlier estimate uses today's model, which may have learned from those leads' "
        "outcomes: it flatters the record. Costs spread each month's spend over its days.</p>"
    )


def _comparison_section(run: RunFiles) -> str:
    held = run.metrics["held_out"]
    scorers = list(held)
    header = ["", *scorers]
    lines = [
        ("Ranking (ROC AUC, 0.5 is random)", "roc_auc", lambda v: f"{v:.3f}"),
        ("Calibration error", "ece", lambda v: f"{100 * v:.1f} pts"),
        ("Lift among the top 10 %", "lift_top_10", lambda v: f"{v:.2f}×"),
        ("Conversions captured by the top 10 %", "capture_top_10", lambda v: f"{100 * v:.0f} %"),
        ("Conversions captured by the top 20 %", "capture_top_20", lambda v: f"{100 * v:.0f} %"),
    ]
    rows = [([label, *(show(held[s][key]) if _finite(held[s].get(key)) else "—" for s in scorers)], "") for label, key, show in lines]
    lift_rows = []
    for scorer, records in run.metrics.get("lift", {}).items():
        for record in records:
            lift_rows.append(([scorer, f"top {100 * record['top']:.0f} %", _count(record["leads"]),
                               _rate(record["conversion_rate"]), f"{record['lift']:.2f}×", _rate(record["capture"])], ""))
    return (
        "<h2>The model against today's scoring</h2>"
        "<p class='lede'>On leads the model never saw, compared with the hand-set points and a plain logistic "
        "regression. Gains: the share of conversions found when working the best-scored leads first. "
        "Calibration: whether leads given 20 % convert 20 % of the time.</p>"
        + _table(header, rows)
        + "<div class='figures'>" + _img(run.image("gains.png"), "Gains") + _img(run.image("reliability.png"), "Calibration") + "</div>"
        + "<h3>Lift by top share</h3>"
        + _table(["Scorer", "Leads worked", "Leads", "Conversion rate", "Lift", "Conversions captured"], lift_rows, (0, 1))
    )


def _importance_section(run: RunFiles) -> str:
    table = run.importances.head(TOP_IMPORTANCES)
    has_champion = "champion_rank" in table.columns and table["champion_rank"].notna().any()
    header = ["Rank", "Field", "Kind", "Average effect", "Share of the model's movement"]
    if has_champion:
        header.append("Change against the champion")
    rows = []
    for _, row in table.iterrows():
        cells = [str(int(row["rank"])), row["label"], "Fit" if row["family"] == "fit" else "Engagement",
                 f"{row['mean_abs_points']:.2f} pts", _rate(row["share"])]
        if has_champion:
            cells.append(_rank_change(row))
        rows.append((cells, ""))
    shares = run.metrics.get("family_shares", {})
    split = ", ".join(f"{'fit' if k == 'fit' else 'engagement'} {_rate(v)}" for k, v in sorted(shares.items()))
    return (
        "<h2>What drives the score</h2>"
        f"<p class='lede'>Average effect of each field on the held-out leads' probabilities (mean absolute SHAP "
        f"value). Fit is who the lead is, engagement what the lead did; split of the model's movement: {_e(split)}.</p>"
        + _table(header, rows, text_columns=(1, 2))
        + _img(run.image("importance.png"), "Importance of each field")
        + _img(run.image("beeswarm.png"), "Effect of each field on each lead")
        + _img(run.image("dependence.png"), "Effect against the lead's value, top engagement fields")
    )


def _tier_section(model: LeadScoringModel, run: RunFiles) -> str:
    tiers = model.tiers
    header = ["Tier", "Threshold", "Leads", "Leads per week", "Conversion rate", "Share of all conversions"]
    rows = []
    for name, row in run.tiers.iterrows():
        if name == "Hand-set MQL":
            threshold = f"≥ {row['threshold']:g} points"
            label = "Hand-set MQL (today's rule)"
        else:
            threshold = f"≥ {format_percent(row['threshold'])}" if _finite(row["threshold"]) else "below MQL"
            label = name
        rows.append(([label, threshold, _count(row["leads"]), _number(row["leads_per_week"]), _rate(row["conversion_rate"]),
                      _rate(row["share_of_conversions"])], ""))
    return (
        "<h2>Tiers</h2>"
        f"<p class='lede'>Thresholds chosen at training: MQL from {format_percent(tiers.mql)}, SQL from "
        f"{format_percent(tiers.sql)}. Tiers by {_e(tiers.description)}. Volumes and conversion rates "
        "on the held-out leads (a lead counts once, in the highest tier it reached).</p>"
        + _table(header, rows)
    )


def _example_section(model: LeadScoringModel, run: RunFiles) -> str:
    held = run.held_out
    chosen = []
    probability = held["score: leadscore model"].to_numpy()
    tier = model.tiers.assign(probability)
    for name in EXAMPLE_TIERS:
        rows = np.flatnonzero(tier == name)
        if len(rows):
            # The tier's typical lead: the median probability, not the extreme.
            chosen.append(rows[np.argsort(probability[rows])[len(rows) // 2]])
    if not chosen:
        return ""
    examples = held.iloc[chosen]
    explanations = Explainer(model).explain(examples)
    records = reason_records(explanations, examples, model.registry, model.features)
    labels = field_labels(model.registry, model.features)
    cards = []
    for position, record in enumerate(records):
        lead = examples.iloc[position][model.id_column]
        name = record["tier"]
        shown = TIER_DISPLAY.get(name, name)
        carried = [labels[field] for field in record["carried_by"]]
        carried_text = f"<p class='note'>{_e(shown)} because of: {_e(', '.join(carried))}.</p>" if carried else ""
        cards.append(
            "<div class='card'>"
            f"<h3>Lead {_e(str(lead))} <span class='tier tier-{_e(name)}'>{_e(shown)}</span></h3>"
            f"<p>Probability of conversion <b>{format_percent(explanations.probability[position])}</b> · "
            f"fit {explanations.fit_score[position]:.0f} / engagement {explanations.engagement_score[position]:.0f}</p>"
            + carried_text
            + "<b>For</b><ul>" + "".join(f"<li class='up'>{_e(r['sentence'])}</li>" for r in record["for"]) + "</ul>"
            + "<b>Against</b><ul>" + "".join(f"<li class='down'>{_e(r['sentence'])}</li>" for r in record["against"]) + "</ul>"
            "</div>"
        )
    return (
        "<h2>Three leads and their reasons</h2>"
        "<p class='lede'>Typical held-out leads of each tier. A lead's points add up to the gap between its "
        "probability and that of a lead on which every field has its average effect "
        f"({format_percent(explanations.base_probability)}). Fit and engagement: the share of held-out leads "
        "that fit worse, or engaged less (0-100).</p>"
        f"<div class='cards'>{''.join(cards)}</div>"
    )


# --- small formatters ---------------------------------------------------------------------------


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


def _finite(value) -> bool:
    return value is not None and not pd.isna(value) and np.isfinite(float(value))


def _count(value) -> str:
    return f"{int(value):,}" if _finite(value) else "—"


def _number(value) -> str:
    return f"{float(value):,.1f}" if _finite(value) else "—"


def _rate(value) -> str:
    if not _finite(value):
        return "—"
    percent = 100 * float(value)
    return f"{percent:.0f} %" if percent >= 9.95 else f"{percent:.1f} %"


def _money(value) -> str:
    return f"{float(value):,.0f}" if _finite(value) else "—"


class _Html(str):
    """Text that is already HTML: tables put it in as it is."""


def _rank_change(row) -> str:
    if pd.isna(row.get("champion_rank")):
        return "new"
    change = int(row["rank_change"])
    if change == 0:
        return "="
    return _Html(f"<span class='{'up' if change > 0 else 'down'}'>{'▲' if change > 0 else '▼'} {abs(change)}</span>")


def _table(header: list[str], rows: list[tuple[list[str], str]], text_columns: tuple[int, ...] = (0,)) -> str:
    """An HTML table; ``text_columns`` are aligned left, the others (numbers) right."""
    align = ["text" if i in text_columns else "" for i in range(len(header))]
    head = "".join(f"<th class='{a}'>{_e(h)}</th>" for h, a in zip(header, align))
    body = "".join(
        f"<tr class='{css}'>"
        + "".join(f"<td class='{a}'>{cell if isinstance(cell, _Html) else _e(cell)}</td>" for cell, a in zip(cells, align))
        + "</tr>"
        for cells, css in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(path: Path | None, alt: str) -> str:
    if path is None:
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<img alt='{_e(alt)}' src='data:image/png;base64,{data}'>"
