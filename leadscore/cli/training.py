"""Commands that build feature tables, train models and promote them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import pandas as pd
import typer
from rich.table import Table
from rich.text import Text

from leadscore.cli.common import (
    CrmOption,
    DropOption,
    FitOption,
    IdOption,
    KeepOption,
    LabelsOption,
    MapStageOption,
    ModelNameOption,
    NaValueOption,
    PositiveOption,
    TargetOption,
    TimeFormatOption,
    TimeOption,
    TrackingOption,
    app,
    column_labels,
    console,
    crm_engine,
    errors,
    flat_roles,
    number,
    parse_day,
    percent,
    read_crm_training_table,
    stage_map_from,
    user_errors,
)
from leadscore.errors import LeadscoreError
from leadscore.progress import for_console


@app.command()
@user_errors
def features(
    out: Annotated[
        Path,
        typer.Option("--out", help="File to write the feature table to: .parquet (keeps the feature registry, for "
                     "`train --table`) or .csv (the values only)."),
    ],
    crm: CrmOption = None,
    cutoff: Annotated[
        Optional[str],
        typer.Option(help="Snapshot date, YYYY-MM-DD: features see only activities before it. "
                          "Required by the cutoff policy; with the mql policy, keeps MQLs before it."),
    ] = None,
    policy: Annotated[
        str,
        typer.Option(help="cutoff: every lead still open at --cutoff; mql: each lead at the moment it became MQL."),
    ] = "cutoff",
    horizon_days: Annotated[
        int, typer.Option(help="Label: converted when the lead became a customer within this many days.", min=1)
    ] = 90,
    data: Annotated[
        Optional[Path], typer.Option(help="Read a flat table (CSV or Parquet, one row per lead) instead of the CRM.")
    ] = None,
    id: IdOption = None,
    target: TargetOption = None,
    time_column: TimeOption = None,
    time_format: TimeFormatOption = None,
    drop: DropOption = None,
    na_value: NaValueOption = None,
    fit: FitOption = None,
    positive: PositiveOption = None,
    keep: KeepOption = None,
    labels: LabelsOption = None,
    map_stage: MapStageOption = None,
) -> None:
    """Write a point-in-time feature table with labels, from the CRM or from a flat lead table."""
    from leadscore.files import check_folder, check_table_suffix
    from leadscore.pipelines.snapshot import SnapshotPolicy, snapshot_from_crm

    check_table_suffix(out)
    check_folder(out)
    began = time.perf_counter()
    if data is not None:
        from leadscore.features.flat import load_flat_table

        roles = flat_roles(id, target, time_column, time_format, drop, na_value, fit, positive, keep)
        table = load_flat_table(data, roles, column_labels(labels))
    else:
        try:
            chosen = SnapshotPolicy(policy)
        except ValueError:
            raise LeadscoreError(f"--policy {policy!r}: choose cutoff or mql.") from None
        with for_console(console) as progress:
            with crm_engine(crm) as engine:
                table = snapshot_from_crm(
                    engine, chosen, parse_day(cutoff, "--cutoff"), horizon_days, progress, stage_map_from(map_stage)
                )
    table.write(out)
    positives = int(table.target.sum())
    console.print(
        f"Wrote {len(table.frame):,} rows × {len(table.registry)} features to {out} in "
        f"{time.perf_counter() - began:.1f} s ({table.source}); {positives:,} converted "
        f"({positives / max(len(table.frame), 1):.1%})."
    )
    notes = list(table.notes)
    if out.suffix.lower() == ".csv":
        notes.append("CSV holds the values only: `leadscore train --table` needs the .parquet file, which keeps the "
                     "feature registry.")
    for note in notes:
        console.print(f"Note: {note}", style="yellow")


def print_training(result) -> None:
    """The validation choice and the held-out comparison, in marketer's notation."""
    console.print(f"Split: {result.split.description}.")
    choice = Table(
        title="Candidates out of fold (each fold predicted by a model that never saw it)",
        title_justify="left",
    )
    steady = "steady_lead_over_logistic" in result.validation
    headers = ("Candidate", "Mean fold AUC", "AUC per fold", "PR AUC", "Brier (calibrated)", "Recent rows weighted",
               "Weights", *(("Steady lead over logistic",) if steady else ()))
    for header in headers:
        choice.add_column(header, justify="right" if header in ("Mean fold AUC", "PR AUC", "Brier (calibrated)") else "left")
    for name, row in result.validation.iterrows():
        chosen = " (chosen)" if name == result.validation.index[0] else ""
        choice.add_row(f"{name}{chosen}", number(row.roc_auc), row.fold_auc, number(row.pr_auc),
                       number(row.calibrated_brier, 4), row.recent_rows_weighted, row.weights,
                       *((row.steady_lead_over_logistic,) if steady else ()))
    console.print(choice)
    metrics = result.evaluation.metrics
    held = Table(
        title=f"Held-out leads: {int(metrics.iloc[0].rows):,} rows, {int(metrics.iloc[0].positives):,} converted "
        f"({metrics.iloc[0].base_rate:.1%})",
        title_justify="left",
    )
    held.add_column("")
    for name in metrics.index:
        held.add_column(name, justify="right")
    lines = [
        ("ROC AUC", "roc_auc", number), ("PR AUC", "pr_auc", number), ("Brier score", "brier", lambda v: number(v, 4)),
        ("Log loss", "log_loss", lambda v: number(v, 4)), ("Calibration error (ECE)", "ece", lambda v: percent(v)),
        ("Lift, top 5%", "lift_top_5", lambda v: number(v, 2)), ("Lift, top 10%", "lift_top_10", lambda v: number(v, 2)),
        ("Lift, top 20%", "lift_top_20", lambda v: number(v, 2)),
        ("Conversions captured, top 10%", "capture_top_10", percent),
    ]
    for label, key, show in lines:
        held.add_row(label, *(show(metrics.loc[name, key]) for name in metrics.index))
    console.print(held)
    model = result.model
    console.print(
        f"Model: {model.kind} ({', '.join(f'{k} {v:.1f}' for k, v in model.summary['weights'].items())}), "
        f"{model.summary['calibration']} calibration, {len(model.features)} features."
    )
    print_tiers(result)
    print_importances(result)
    for note in result.notes:
        console.print(f"Note: {note}", style="yellow")


def print_tiers(result) -> None:
    tiers = result.model.tiers
    # The description explains empty or rank-based tiers, so it sits under the table, in full, not in its title.
    table = Table(
        title="Tiers on the held-out leads; a lead counts once, in its highest tier",
        title_justify="left",
        caption=f"Tiers by {tiers.description}.",
        caption_justify="left",
    )
    for header in ("Tier", "Threshold", "Leads", "Leads per week", "Conversion rate", "Share of conversions"):
        table.add_column(header, justify="left" if header == "Tier" else "right")
    for name, row in result.insight.tiers.iterrows():
        if name == "Hand-set MQL":
            threshold = f">= {row.threshold:g} points"
        else:
            threshold = "—" if pd.isna(row.threshold) else f">= {percent(row.threshold)}"
        per_week = "—" if pd.isna(row.leads_per_week) else f"{row.leads_per_week:,.1f}"
        table.add_row(name, threshold, f"{int(row.leads):,}", per_week, percent(row.conversion_rate),
                      percent(row.share_of_conversions))
    console.print(table)


def print_importances(result, top: int = 10) -> None:
    importances = result.insight.importances.head(top)
    ranked = "champion_rank" in importances.columns and importances["champion_rank"].notna().any()
    table = Table(title="What moves the score most on the held-out leads (mean absolute SHAP per business field)", title_justify="left")
    for header in ("Rank", "Field", "Family", "Average effect", "Share", *(("Rank change",) if ranked else ())):
        table.add_column(header, justify="left" if header in ("Field", "Family") else "right")
    for _, row in importances.iterrows():
        cells = [str(int(row["rank"])), row["label"], row["family"], f"{row.mean_abs_points:.2f} pts", percent(row.share)]
        if ranked:
            cells.append("new" if pd.isna(row.champion_rank) else f"{int(row.rank_change):+d}")
        table.add_row(*cells)
    console.print(table)


@app.command()
@user_errors
def train(
    crm: CrmOption = None,
    data: Annotated[Optional[Path], typer.Option(help="Train on a flat table (CSV or Parquet) instead of the CRM.")] = None,
    table: Annotated[
        Optional[Path], typer.Option(help="Train on a feature table written by `leadscore features`.")
    ] = None,
    id: IdOption = None,
    target: TargetOption = None,
    time_column: TimeOption = None,
    time_format: TimeFormatOption = None,
    drop: DropOption = None,
    na_value: NaValueOption = None,
    fit: FitOption = None,
    positive: PositiveOption = None,
    keep: KeepOption = None,
    labels: LabelsOption = None,
    horizon_days: Annotated[
        int, typer.Option(help="CRM: converted means became a customer within this many days of the cutoff.", min=1)
    ] = 90,
    map_stage: MapStageOption = None,
    cutoff_every: Annotated[int, typer.Option(help="CRM: months between two training cutoffs.", min=1)] = 1,
    rules: Annotated[
        Optional[Path],
        typer.Option(help="YAML file of hand-set points to compare with. Default for a CRM: the simulated CRM's rules."),
    ] = None,
    min_positives: Annotated[int, typer.Option(help="Refuse to train with fewer converted leads.", min=1)] = 100,
    allow_leaky: Annotated[
        Optional[list[str]],
        typer.Option(help="Use this feature even if it looks like leakage (repeatable)."),
    ] = None,
    exclude: Annotated[Optional[list[str]], typer.Option(help="Leave out this feature (repeatable).")] = None,
    candidates: Annotated[
        str, typer.Option(help="Comma-separated candidates to compare: lightgbm, logistic, blend.")
    ] = "lightgbm,logistic,blend",
    seed: Annotated[int, typer.Option(help="Random seed: same data and seed give the same model.")] = 42,
    refit: Annotated[
        bool,
        typer.Option("--refit/--no-refit", help="After evaluation, refit the chosen model on every row, the held-out "
                                                "ones included, and register that one (--no-refit: the evaluated one)."),
    ] = True,
    model_name: ModelNameOption = "leadscore",
    tracking_uri: TrackingOption = None,
    report: Annotated[
        Optional[Path], typer.Option(help="Also write metrics.json and the plots to this folder.")
    ] = None,
    tier_rule: Annotated[
        str,
        typer.Option(help="How MQL and SQL thresholds are chosen: capacity (team sizes) or precision (each lead's own "
                          "probability against a target; by rank where the base rate already reaches the target)."),
    ] = "precision",
    mql_per_week: Annotated[
        Optional[float],
        typer.Option(help="Capacity rule: leads the SDR team works a week (MQLs). Precision rule: rank by capacity "
                          "where the base rate reaches a target.", min=0),
    ] = None,
    sql_per_week: Annotated[
        Optional[float],
        typer.Option(help="Capacity rule: leads the AE team works a week (SQLs). Precision rule: as --mql-per-week.",
                     min=0),
    ] = None,
    mql_precision: Annotated[
        float, typer.Option(help="Precision rule: a lead is an MQL when its own probability is at least this (0.1 = 10 %).",
                            min=0, max=1)
    ] = 0.10,
    sql_precision: Annotated[
        float, typer.Option(help="Precision rule: a lead is an SQL when its own probability is at least this (0.3 = 30 %).",
                            min=0, max=1)
    ] = 0.30,
    sql_share: Annotated[
        float, typer.Option(help="Ranking without capacities: SQLs are this share of leads, the most likely (0.1 = top 10 %).",
                            min=0, max=1)
    ] = 0.10,
    mql_share: Annotated[
        float, typer.Option(help="Ranking without capacities: MQLs are this share of leads, ranked just below the SQLs.",
                            min=0, max=1)
    ] = 0.20,
    leads_per_week: Annotated[
        Optional[float],
        typer.Option(help="Capacity rule on a table without time column: new leads arriving a week.", min=0),
    ] = None,
) -> None:
    """Train a calibrated conversion model, compare it with the baselines, and register it in MLflow as challenger.

    A held-out ROC AUC above 0.99 ends with a probable-leak warning naming the suspect features, and tags the run
    and the version leadscore.probable_leak: training completes, `leadscore promote` refuses it without --force.
    """
    from leadscore.models.rules import HandSetScoring
    from leadscore.models.tiers import TierConfig
    from leadscore.pipelines.store import prepare_store, shown
    from leadscore.pipelines.tracking import log_training
    from leadscore.pipelines.train import TrainingConfig, train_model

    sources = [option for option, value in (("--crm", crm), ("--data", data), ("--table", table)) if value is not None]
    if len(sources) > 1:
        raise LeadscoreError(f"Train on one source at a time: {' and '.join(sources)} were both given.")
    config = TrainingConfig(
        horizon_days=horizon_days,
        min_positives=min_positives,
        allow_leaky=tuple(allow_leaky or ()),
        exclude=tuple(exclude or ()),
        candidates=tuple(c.strip() for c in candidates.split(",") if c.strip()),
        seed=seed,
        tiers=TierConfig(tier_rule, mql_per_week, sql_per_week, mql_precision, sql_precision, leads_per_week,
                         sql_share=sql_share, mql_share=mql_share),
        refit=refit,
    )
    prepare_store(tracking_uri)  # before training: a wrong store fails now, and concurrent first runs create it once
    with for_console(console) as progress:
        if data is not None:
            from leadscore.features.flat import load_flat_table

            roles = flat_roles(id, target, time_column, time_format, drop, na_value, fit, positive, keep)
            feature_table = load_flat_table(data, roles, column_labels(labels))
        elif table is not None:
            from leadscore.features.table import FeatureTable

            feature_table = FeatureTable.read_parquet(table)
        else:
            history, feature_table = read_crm_training_table(crm, map_stage, horizon_days, cutoff_every, progress)
        scoring = HandSetScoring.from_yaml(rules) if rules else (HandSetScoring.default() if data is None else None)
        result = train_model(feature_table, config, scoring, progress)
        worth = None
        if data is None and table is None:
            from leadscore.pipelines.worth import channel_worth

            worth = channel_worth(history, result.model, pd.Timestamp(history.as_of).to_pydatetime(), horizon_days,
                                  progress=progress)
        logged = log_training(result, model_name, tracking_uri, report, progress, worth)
    print_training(result)
    console.print(
        f"Logged run {logged.run_id} to {shown(logged.tracking_uri)}; registered {logged.model_name} version "
        f"{logged.version} as challenger ({logged.model_uri})."
        + (f" Report files in {report}." if report else "")
    )
    if logged.probable_leak:
        # Last and on stderr: the line a cron log or a redirected run must not bury.
        errors.print(Text.assemble(
            ("Warning: probable leak.", "bold red"), f" Version {logged.version}: {logged.probable_leak} It is tagged "
            "leadscore.probable_leak, on its run too, and `leadscore promote` refuses it. Check that each feature named "
            "is known before the cutoff, and leave out any that is not (--exclude); if all are, the table is that "
            "separable and `leadscore promote --force` promotes it."), soft_wrap=True)


@app.command()
@user_errors
def promote(
    model_name: ModelNameOption = "leadscore",
    metric: Annotated[str, typer.Option(help="Held-out metric the challenger must improve: pr_auc or roc_auc.")] = "pr_auc",
    rollback: Annotated[bool, typer.Option("--rollback", help="Point champion back to the previous champion.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Promote the challenger even if it loses the comparison, was flagged as a "
                                           "probable leak or was rolled back.")
    ] = False,
    tracking_uri: TrackingOption = None,
) -> None:
    """Make the challenger the champion if it earns it on its held-out leads, by a paired bootstrap of the leads:
    better than the champion beyond noise (95 % interval of the difference above zero), lower than neither
    baseline (plain logistic regression, hand-set points) beyond noise, not worse calibrated, and not flagged as a
    probable leak. A first model only has to pass the baselines.

    Exit status: 0 the challenger is champion (promoted now, or already was: a rerun changes nothing), 3 the
    champion was kept (or, with none yet, nothing promoted; the message says why), 2 a problem to fix (named in
    the message), 1 a crash. `leadscore train && leadscore promote` in cron ends non-zero whenever nothing was
    promoted. --rollback exits 0 when it rolled back.
    """
    from leadscore.pipelines import registry

    decision = registry.rollback(model_name, tracking_uri) if rollback else registry.promote(
        model_name, metric, tracking_uri, force=force)
    console.print(decision.message, style="yellow" if decision.outcome == registry.KEPT else "green")
    if decision.outcome == registry.KEPT:
        raise typer.Exit(registry.EXIT_KEPT)
