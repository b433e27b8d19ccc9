"""The report's sections for marketing: in leads, points, shares and money, never in the model's own vocabulary.

Every count is of leads, each held-out lead once with its best score (the
tier table's rule), so the header, the tiers, the gains and the examples
count the same people. What the model's machinery measures in rows or in
log-odds lives in the appendix (``report_appendix``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.crm.movement import ScoreMovement
from leadscore.models import marketing_plots, plots
from leadscore.models.effects import PROMISING_SHARE, actionable_fields, drivers, effect_curve
from leadscore.models.explain import Explainer
from leadscore.models.reasons import field_labels, format_percent, reason_records
from leadscore.models.tiers import TIER_DISPLAY
from leadscore.pipelines.report_html import Html, count, e, image, money, number, rate, rule, table

TOP_DRIVERS = 12
EXPLAINED_LEADS = 5_000  # held-out leads the drivers are measured on: shares and curves are steady well before
GAINS_TOPS = (0.05, 0.10, 0.20)
SCORE = "score: leadscore model"
HANDSET = "score: Hand-set points (raw)"
FUNNEL_STEPS = (
    ("lead_to_mql", "Lead → MQL"),
    ("mql_to_sql", "MQL → SQL"),
    ("sql_to_opportunity", "SQL → opportunity"),
    ("opportunity_to_customer", "Opportunity → customer"),
    ("lead_to_customer", "Lead → customer"),
)


@dataclass(frozen=True)
class HeldOutLeads:
    """Each held-out lead once: the row of its best score, whether it converted, its tier."""

    rows: pd.DataFrame  # one held-out row per lead, the one with the lead's highest probability
    converted: np.ndarray
    tier: np.ndarray
    forward: bool
    time_column: str | None

    @classmethod
    def of(cls, run, model) -> HeldOutLeads:
        held, metrics = run.held_out, run.metrics
        target = metrics.get("target_column") or "converted"
        best = held.sort_values(SCORE, ascending=False, kind="stable").drop_duplicates(model.id_column)
        converted = held.groupby(model.id_column)[target].max().reindex(best[model.id_column]).to_numpy(dtype=int)
        forward = metrics.get("split_forward", str(metrics.get("split", "")).startswith("forward"))
        return cls(best.reset_index(drop=True), converted, model.tiers.assign(best[SCORE].to_numpy()), forward,
                   metrics.get("time_column"))

    def __len__(self) -> int:
        return len(self.rows)

    def described(self) -> str:
        """Which leads were held out, in words that match how they were chosen."""
        if self.forward and self.time_column in self.rows.columns:
            times = pd.to_datetime(self.rows[self.time_column])
            return f"the newest leads, from {times.min():%d %b %Y} to {times.max():%d %b %Y}"
        return "a random share of the leads, set aside before training" if not self.forward else "the newest leads"


def model_words(model_uri: str) -> str:
    """"version 3 of leadscore" for models:/leadscore/3; the URI itself goes to the appendix."""
    if model_uri.startswith("models:/"):
        name, _, rest = model_uri[len("models:/"):].partition("/")
        if "@" in name:
            name, alias = name.split("@", 1)
            return f"the {alias} model of {name}"
        return f"version {rest} of {name}"
    return "the model of one training run"


def header(model_uri: str, model, run, held: HeldOutLeads, currency: str) -> str:
    trained = pd.Timestamp(model.summary.get("trained_at") or "now")
    converted = int(held.converted.sum())
    return (
        "<h1>Lead scoring report</h1>"
        f"<p class='lede'>The score of {e(model_words(model_uri))}, trained {trained:%d %b %Y} on "
        f"{e(run.metrics['fingerprint'].get('source', 'a table'))}, checked on {len(held):,} leads it never saw "
        f"({e(held.described())}): {converted:,} of them ({rate(converted / max(len(held), 1))}) converted. "
        f"Probabilities are percentages; effects are percentage points (pts) of the probability; costs are in "
        f"{e(currency)}.</p>"
    )


def funnel_section(funnel: pd.DataFrame | None, image_path: Path | None, note: str, currency: str) -> str:
    head = "<h2>Funnel by channel</h2>"
    if funnel is None:
        return head + f"<p class='note'>{e(note or 'No CRM was given (--crm): funnel rates and costs come from the CRM.')}</p>"
    header_row = ["Channel", "Leads", "MQLs", "SQLs", "Customers", *(label for _, label in FUNNEL_STEPS),
                  f"Cost per MQL ({currency})", f"Cost per SQL ({currency})"]
    rows = []
    for _, row in funnel.iterrows():
        cells = [row["channel_label"], *(count(row[c]) for c in ("leads", "mqls", "sqls", "customers"))]
        cells += [rate(row[step]) for step, _ in FUNNEL_STEPS]
        cells += [money(row["cost_per_mql"], ""), money(row["cost_per_sql"], "")]
        rows.append((cells, "total" if row["channel"] == "total" else ""))
    return (
        head
        + "<p class='lede'>How leads from each channel move down the funnel, and what each MQL and SQL cost.</p>"
        + table(header_row, rows)
        + rule("A lead counts in every stage it has reached so far; a step's rate is the share of the leads at one "
               "stage that reached the next; a cost is the channel's campaign spend divided by the leads that "
               "reached the stage.")
        + image(image_path, "Conversion rates and cost per SQL by channel")
    )


def worth_section(worth: pd.DataFrame | None, currency: str) -> str:
    """The leads of the widest window per channel, priced before their outcomes arrive, beside the same
    estimate made one horizon earlier and what those leads then became."""
    if worth is None:
        return ""
    worth = worth[worth["days"] == worth["days"].max()]  # the widest window: most leads, steadiest figures
    recent = worth[worth["cohort"] == "recent"].set_index("channel")
    matured = worth[worth["cohort"] == "matured"].set_index("channel")
    days = int(recent["days"].iloc[0])
    earlier = (recent["created_to"].iloc[0] - matured["created_to"].iloc[0]).days if len(matured) else days
    header_row = ["Channel", f"Leads, last {days} days", "Expected customers", f"Cost ({currency})",
                  f"Expected cost per customer ({currency})", f"Leads, {earlier} days earlier", "Expected then",
                  "Became customers"]
    rows = []
    for channel, row in recent.iterrows():
        before = matured.loc[channel] if channel in matured.index else None
        cells = [row["channel_label"], count(row["leads"]), f"{row['expected_customers']:,.1f} ± {row['spread']:,.1f}",
                 money(row["cost"], ""), money(row["expected_cost_per_customer"], "")]
        cells += ([count(before["leads"]), f"{before['expected_customers']:,.1f} ± {before['spread']:,.1f}",
                   count(before["realised_customers"])] if before is not None else ["—", "—", "—"])
        rows.append((cells, "total" if channel == "total" else ""))
    start, end = recent["created_from"].iloc[0], recent["created_to"].iloc[0]
    return (
        "<h2>What each channel's new leads are worth</h2>"
        f"<p class='lede'>Leads created from {start:%d %b %Y} to {end:%d %b %Y}, before their outcomes are known, "
        f"beside the same estimate made {earlier} days earlier for that period's leads and how many of them became "
        "customers.</p>"
        + table(header_row, rows)
        + rule("Expected customers: those the leads already are, plus each open lead's probability, give or take two "
               "standard deviations; expected cost per customer: the channel's spend over those days divided by them.")
        + "<p class='note'>The earlier estimate uses today's model, which may have learned from those leads' "
        "outcomes: it flatters the record. Costs spread each month's spend over its days.</p>"
    )


def gains_section(held: HeldOutLeads) -> str:
    """How many converters working the best-scored leads first finds, against today's hand-set points."""
    scorers = {"leadscore": held.rows[SCORE].to_numpy()}
    if HANDSET in held.rows.columns:
        scorers["today's hand-set points"] = held.rows[HANDSET].to_numpy()
    total = int(held.converted.sum())
    rows = []
    for top in GAINS_TOPS:
        worked = max(1, int(round(top * len(held))))
        cells = [f"Best {100 * top:.0f} %", count(worked)]
        for score in scorers.values():
            found = int(held.converted[np.argsort(-score, kind="stable")[:worked]].sum())
            cells.append(f"{found:,} ({rate(found / total) if total else '—'})")
        rows.append((cells, ""))
    title = "on the newest leads" if held.forward else "on leads set aside at random"
    return (
        f"<h2>How well the score finds the leads that convert, {title}</h2>"
        f"<p class='lede'>Working the {len(held):,} held-out leads best score first: how many of the {total:,} that "
        "converted each ranking finds.</p>"
        + table(["Leads worked", "Leads", *(f"Converters found by {name}" for name in scorers)], rows)
        + rule("Each lead counts once, with its best score; a converter is a lead that converted within the "
               "horizon the model predicts.")
    )


def drivers_section(explainer: Explainer, run, held: HeldOutLeads, scratch: Path) -> str:
    sample = held.rows.sample(n=min(len(held), EXPLAINED_LEADS), random_state=0) if len(held) else held.rows
    found = drivers(explainer, sample)
    typical = found.typical_points()
    ranked = run.importances.head(TOP_DRIVERS).assign(typical_points=lambda t: typical.reindex(t.index).fillna(0).to_numpy())
    has_champion = "champion_rank" in ranked.columns and ranked["champion_rank"].notna().any()
    header_row = ["Rank", "Field", "Kind", f"Typical effect on a top-{100 * PROMISING_SHARE:.0f} % lead",
                  "Share of what moves the scores"] + (["Against the champion"] if has_champion else [])
    rows = []
    for field, row in ranked.iterrows():
        cells = [str(int(row["rank"])), row["label"], "Fit" if row["family"] == "fit" else "Engagement",
                 f"{row['typical_points']:.1f} pts", rate(row["share"])]
        rows.append((cells + ([_rank_change(row)] if has_champion else []), ""))
    shares = run.metrics.get("family_shares", {})
    split = " and ".join(f"{'fit' if k == 'fit' else 'engagement'} {rate(v)}" for k, v in sorted(shares.items()))
    plot = marketing_plots.driver_plot(ranked, scratch / "drivers.png")
    behaviours = actionable_fields(found, list(run.importances.index))
    curves = {run.importances.loc[f, "label"]: effect_curve(found.tallies[f][1], found.points[:, found.fields.index(f)])
              for f in behaviours}
    effects = ""
    if curves:
        effects = (
            "<h3>How the score grows with what the lead does</h3>"
            + image(marketing_plots.effect_plot(curves, scratch / "effects.png"), "Effect of each behaviour")
            + rule("The average effect on the probability of the held-out leads that did it that many times: the "
                   "behaviours among the strongest drivers that a campaign can ask for.")
        )
    return (
        "<h2>What drives the score</h2>"
        f"<p class='lede'>Fit is who the lead is, engagement what the lead did; of what moves the scores, {e(split)}."
        "</p>"
        + table(header_row, rows, text_columns=(1, 2))
        + rule(f"Typical effect: how far the field moves, up or down, the probability of a lead ranked in the top "
               f"{100 * PROMISING_SHARE:.0f} %; share: its part of all the movement in the held-out leads' scores.")
        + image(plot, "What drives the score")
        + effects
    )


def _rank_change(row) -> str:
    if pd.isna(row.get("champion_rank")):
        return "new"
    change = int(row["rank_change"])
    if change == 0:
        return "="
    return Html(f"<span class='{'up' if change > 0 else 'down'}'>{'▲' if change > 0 else '▼'} {abs(change)}</span>")


def tier_section(model, run) -> str:
    tiers = model.tiers
    saved = run.tiers
    weeks = _weeks(saved)
    rows = []
    for name, code, threshold in (("SQL", "sql", f"{format_percent(tiers.sql)} or more"),
                                  ("MQL", "mql", f"{format_percent(tiers.mql)} to {format_percent(tiers.sql)}"),
                                  ("none", "none", f"below {format_percent(tiers.mql)}")):
        row = saved.loc[name]
        rows.append(([TIER_DISPLAY[code].capitalize() if code == "none" else name, threshold, count(row["leads"]),
                      number(row["leads"] / weeks) if weeks else "—", count(row["converted"]),
                      rate(row["conversion_rate"]), rate(row["share_of_conversions"])], ""))
    total = saved.loc[["SQL", "MQL", "none"]]
    converted = int(total["converted"].sum())
    rows.append((["All held-out leads", "", count(total["leads"].sum()),
                  number(total["leads"].sum() / weeks) if weeks else "—", count(converted),
                  rate(converted / max(total["leads"].sum(), 1)), "100 %"], "total"))
    if "Hand-set MQL" in saved.index:
        row = saved.loc["Hand-set MQL"]
        rows.append((["Today's hand-set MQLs, for comparison", f"{row['threshold']:g} points or more", count(row["leads"]),
                      number(row["leads"] / weeks) if weeks else "—", count(row["converted"]),
                      rate(row["conversion_rate"]), rate(row["share_of_conversions"])], "aside"))
    span = f" spread over the {weeks:.1f} weeks the held-out leads span" if weeks else ""
    return (
        "<h2>Tiers</h2>"
        f"<p class='lede'>Tiers by {e(tiers.description)}.</p>"
        + table(["Tier", "Probability", "Leads", "A week", "Converted", "Conversion rate", "Share of all converters"], rows)
        + rule(f"Each held-out lead is counted once, in the highest tier it reached; an MQL here is an MQL that is not "
               f"(yet) an SQL; a week: the tier's leads{span}.")
    )


def _weeks(saved: pd.DataFrame) -> float | None:
    """The weeks the held-out leads span, as training counted them (None for a table without time)."""
    tiers = saved.loc[[name for name in ("SQL", "MQL", "none") if name in saved.index]]
    per_week = tiers["leads_per_week"].sum()
    return float(tiers["leads"].sum() / per_week) if np.isfinite(per_week) and per_week > 0 else None


def example_section(explainer: Explainer, run, held: HeldOutLeads) -> str:
    model = explainer.model
    chosen, how = _three_examples(held)
    if not chosen:
        return ""
    examples = held.rows.iloc[chosen].reset_index(drop=True)
    explanations = explainer.explain(examples)
    records = reason_records(explanations, examples, model.registry, model.features)
    labels = field_labels(model.registry, model.features)
    both_families = len({model.registry[f].family for f in model.features}) == 2
    names = _names(examples, run, model)
    cards = []
    for position, record in enumerate(records):
        code = held.tier[chosen[position]]
        shown = TIER_DISPLAY.get(code, code)
        carried = [labels[field] for field in record["carried_by"]]
        sub_scores = (f" · fit {explanations.fit_score[position]:.0f} / engagement "
                      f"{explanations.engagement_score[position]:.0f}") if both_families else ""
        outcome = "converted" if held.converted[chosen[position]] else "did not convert"
        cards.append(
            "<div class='card example'>"
            f"<h3>{e(names[position])} <span class='tier tier-{e(code)}'>{e(shown)}</span></h3>"
            f"<p>Probability of conversion <b>{format_percent(explanations.probability[position])}</b>{sub_scores} · "
            f"{outcome}</p>"
            + (f"<p class='note'>{e(shown)} because of: {e(', '.join(carried))}.</p>" if carried else "")
            + _reasons("For", "up", record["for"]) + _reasons("Against", "down", record["against"])
            + "</div>"
        )
    scores_note = (" Fit and engagement: the share of held-out leads that fit worse, or engaged less (0-100)."
                   if both_families else "")
    return (
        "<h2>Three leads and their reasons</h2>"
        f"<p class='lede'>{e(how)} Its reasons are the fields that moved its probability most, in points, "
        f"and whether it converted within the horizon.{e(scores_note)}</p>"
        f"<div class='cards'>{''.join(cards)}</div>"
    )


def _reasons(title: str, css: str, reasons: list[dict]) -> str:
    if not reasons:
        return f"<b>{title}</b><p class='note'>No field moves this lead's probability this way by enough to be a reason.</p>"
    return f"<b>{title}</b><ul>" + "".join(f"<li class='{css}'>{e(r['sentence'])}</li>" for r in reasons) + "</ul>"


def _three_examples(held: HeldOutLeads) -> tuple[list[int], str]:
    """One typical lead per tier when every tier has leads, else the top, the middle and the bottom of the ranking."""
    if len(held) == 0:
        return [], ""
    probability = held.rows[SCORE].to_numpy()
    members = [np.flatnonzero(held.tier == code) for code in ("sql", "mql", "none")]
    if all(len(rows) for rows in members):
        return ([int(rows[np.argsort(probability[rows], kind="stable")[len(rows) // 2]]) for rows in members],
                "The typical held-out lead of each tier: the middle one by probability.")
    order = np.argsort(-probability, kind="stable")
    picks = list(dict.fromkeys(int(order[i]) for i in (0, len(order) // 2, len(order) - 1)))
    return picks, "Not every tier holds leads, so these are the best, the middle and the last held-out lead by score."


def _names(examples: pd.DataFrame, run, model) -> list[str]:
    """Each lead by the columns a person knows it by (company, job title), else its id and its strongest fit facts."""
    columns = [c for c in run.metrics.get("lead_name_columns", []) if c in examples.columns]
    fit = run.importances.index[run.importances["family"] == "fit"][:2]
    facts = [next(n for n in model.features if model.registry[n].business_field == field) for field in fit]
    names = []
    for _, row in examples.iterrows():
        parts = [str(row[c]) for c in columns if pd.notna(row[c]) and str(row[c]).strip()]
        if parts:
            names.append(" · ".join(parts))
            continue
        shown = [f"{model.registry[n].business_label} {_value(row[n])}" for n in facts if pd.notna(row[n])]
        names.append(f"Lead {row[model.id_column]}" + (f" ({', '.join(shown)})" if shown else ""))
    return names


def _value(value) -> str:
    return f"{value:,.0f}" if isinstance(value, (int, float, np.number)) and float(value).is_integer() else str(value)


def movement_section(movement: ScoreMovement | None, model, scratch: Path) -> str:
    if movement is None:
        return ("<h2>Movement since scoring began</h2><p class='note'>No scores have been written back yet: run "
                "`leadscore score` every night and this section shows the leads entering MQL and SQL each week.</p>")
    weekly = movement.weekly
    rows = [([f"{pd.Timestamp(w):%d %b %Y}", count(m), count(s)], "")
            for w, m, s in zip(weekly["week"], weekly["mql_entries"], weekly["sql_entries"])]
    rows.append((["All weeks", count(weekly["mql_entries"].sum()), count(weekly["sql_entries"].sum())], "total"))
    channels = [([r["channel_label"], count(r["mql_entries"]), count(r["sql_entries"])],
                 "total" if r["channel"] == "total" else "") for _, r in movement.by_channel.iterrows()]
    current = movement.current
    distribution = marketing_plots.score_distribution_plot(current["probability"].to_numpy(), current["tier"].to_numpy(),
                                                           model.tiers.mql, model.tiers.sql, scratch / "scores.png")
    weeks_plot = marketing_plots.movement_plot(weekly, scratch / "movement.png") if len(weekly) else None
    return (
        "<h2>Movement since scoring began</h2>"
        f"<p class='lede'>{movement.runs:,} scoring runs from {movement.first_run:%d %b %Y} to "
        f"{movement.last_run:%d %b %Y}. When scoring began, {movement.already_mql:,} open leads were already MQL or "
        f"SQL ({movement.already_sql:,} SQL); they are not counted as entries.</p>"
        + "<div class='figures'><div>"
        + table(["Week starting", "Entered MQL or SQL", "Entered SQL"], rows)
        + "</div><div>" + table(["Channel", "Entered MQL or SQL", "Entered SQL"], channels) + "</div></div>"
        + rule("A lead enters a tier the first week a score puts it there; one that goes straight to SQL enters both.")
        + image(weeks_plot, "Leads entering each tier by week")
        + image(distribution, "Current scores of the open leads")
        + rule(f"The current score of each of the {len(current):,} open leads, coloured by tier.")
    )


def funnel_image(funnel: pd.DataFrame | None, scratch: Path, currency: str) -> Path | None:
    return plots.funnel_plot(funnel, scratch / "funnel.png", currency) if funnel is not None else None
