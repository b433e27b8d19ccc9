"""The backtest command: how often to retrain, replayed on history."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from leadscore.cli.common import (
    CrmOption,
    DropOption,
    FitOption,
    IdOption,
    KeepOption,
    LabelsOption,
    MapStageOption,
    NaValueOption,
    PositiveOption,
    TargetOption,
    TimeFormatOption,
    TimeOption,
    TrackingOption,
    app,
    column_labels,
    console,
    flat_roles,
    number,
    parse_day,
    percent,
    read_crm_training_table,
    user_errors,
)
from leadscore.errors import LeadscoreError
from leadscore.progress import for_console


@app.command()
@user_errors
def backtest(
    crm: CrmOption = None,
    data: Annotated[
        Optional[Path], typer.Option(help="Replay a flat table (CSV or Parquet) with a --time column instead of the CRM.")
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
        int, typer.Option(help="CRM: converted means became a customer within this many days of the cutoff; a row's "
                               "outcome is known that long after its cutoff.", min=1)
    ] = 90,
    map_stage: MapStageOption = None,
    cutoff_every: Annotated[int, typer.Option(help="CRM: months between two cutoffs of the training table.", min=1)] = 1,
    cadence: Annotated[
        str, typer.Option(help="Comma-separated retraining cadences to compare: never (train once, at --start) or a "
                               "number of days.")
    ] = "never,90,30,7",
    start: Annotated[
        Optional[str],
        typer.Option(help="First retraining date, YYYY-MM-DD: rows from it on are scored. Default: the first day by "
                          "which half of the rows' outcomes are known.", show_default=False),
    ] = None,
    period_days: Annotated[
        int, typer.Option(help="Report AUC, Brier score and calibration per period of this many days.", min=1)
    ] = 30,
    max_trainings: Annotated[
        int, typer.Option(help="Refuse a backtest that needs more models than this; each takes as long as a "
                               "`leadscore train`.", min=1)
    ] = 100,
    min_positives: Annotated[int, typer.Option(help="Refuse to train with fewer converted leads.", min=1)] = 100,
    allow_leaky: Annotated[
        Optional[list[str]], typer.Option(help="Use this feature even if it looks like leakage (repeatable).")
    ] = None,
    exclude: Annotated[Optional[list[str]], typer.Option(help="Leave out this feature (repeatable).")] = None,
    candidates: Annotated[
        str, typer.Option(help="Comma-separated candidates each training compares: lightgbm, logistic, blend.")
    ] = "lightgbm,logistic,blend",
    seed: Annotated[int, typer.Option(help="Random seed, the same for every training.")] = 42,
    tracking_uri: TrackingOption = None,
    report: Annotated[
        Optional[Path],
        typer.Option(help="Also write periods.csv, cadences.csv, trainings.csv and backtest.png to this folder."),
    ] = None,
) -> None:
    """Replay history to choose how often to retrain: per cadence, train on what was known at each retraining
    date, score the leads that came next, and compare AUC, Brier score and calibration period by period.
    Logs one MLflow run with the tables and the plot; registers no model."""
    from leadscore.pipelines.backtest import (
        BacktestConfig,
        log_backtest,
        parse_cadences,
        run_backtest,
    )
    from leadscore.pipelines.store import prepare_store, shown
    from leadscore.pipelines.train import TrainingConfig

    if crm is not None and data is not None:
        raise LeadscoreError("Backtest one source at a time: --crm and --data were both given.")
    if data is not None and time_column is None:
        raise LeadscoreError(f"--data {data}: a backtest replays time; name the column holding each lead's date with "
                             "--time COLUMN.")
    training = TrainingConfig(
        horizon_days=horizon_days,
        min_positives=min_positives,
        allow_leaky=tuple(allow_leaky or ()),
        exclude=tuple(exclude or ()),
        candidates=tuple(c.strip() for c in candidates.split(",") if c.strip()),
        seed=seed,
    )
    config = BacktestConfig(
        cadences=parse_cadences(cadence),
        start=parse_day(start, "--start"),
        period_days=period_days,
        label_delay_days=0 if data is not None else horizon_days,
        max_trainings=max_trainings,
        training=training,
    )
    if report is not None and report.is_file():
        raise LeadscoreError(f"--report {report}: that is a file; name a folder (it is created if missing).")
    prepare_store(tracking_uri)  # a wrong store fails now, not after an hour of training
    began = time.perf_counter()
    with for_console(console) as progress:
        if data is not None:
            from leadscore.features.flat import load_flat_table

            roles = flat_roles(id, target, time_column, time_format, drop, na_value, fit, positive, keep)
            feature_table = load_flat_table(data, roles, column_labels(labels))
        else:
            feature_table = read_crm_training_table(crm, map_stage, horizon_days, cutoff_every, progress)[1]
        result = run_backtest(feature_table, config, progress)
        logged = log_backtest(result, tracking_uri, report, progress)
    print_backtest(result)
    console.print(
        f"Backtest done in {time.perf_counter() - began:.0f} s. Logged run {logged.run_id} to {shown(logged.tracking_uri)} "
        "with the tables and the plot under backtest/" + (f"; also written to {report}." if report else ".")
    )


def print_backtest(result) -> None:
    """Each cadence over all scored leads, then period by period."""
    summary = Table(title=f"Retraining cadences on {result.source}, every lead from {result.start:%Y-%m-%d} scored "
                          "by a model of its past", title_justify="left")
    for header in ("Cadence", "Models", "AUC (pooled)", "Mean period AUC", "Brier", "ECE", "Mean predicted", "Observed"):
        summary.add_column(header, justify="left" if header == "Cadence" else "right")
    for row in result.cadences.itertuples(index=False):
        summary.add_row(row.cadence, f"{row.models:,}", number(row.roc_auc), number(row.mean_period_auc),
                        number(row.brier, 4), percent(row.ece), percent(row.mean_predicted), percent(row.observed_rate))
    console.print(summary)
    periods = Table(title=f"Per period of {result.config.period_days} days: AUC, Brier score, mean predicted",
                    title_justify="left", caption="— : a period of one outcome has no AUC.", caption_justify="left")
    for header in ("Period from", "Leads", "Observed", *result.cadences["cadence"]):
        periods.add_column(header, justify="left" if header == "Period from" else "right")
    # Every cadence scores the same leads: a period's leads and observed rate are one figure.
    for first, group in result.periods.groupby("period_start", sort=True):
        cells = [f"{number(r.roc_auc)} {number(r.brier, 4)} {percent(r.mean_predicted)}"
                 for r in group.itertuples(index=False)]
        periods.add_row(f"{first:%Y-%m-%d}", f"{group['rows'].iloc[0]:,}", percent(group["observed_rate"].iloc[0]), *cells)
    console.print(periods)
    for note in result.notes:
        console.print(f"Note: {note}", style="yellow")
