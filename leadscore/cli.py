"""The ``leadscore`` command line: thin wrappers around the pipeline stages."""

from __future__ import annotations

import functools
import os
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Optional

import pandas as pd
import sqlalchemy as sa
import typer
from typer.exceptions import TyperException
from rich.console import Console
from rich.table import Table
from rich.text import Text

from leadscore.errors import LeadscoreError
from leadscore.progress import for_console
from leadscore.redact import redact, url_secrets
from leadscore.settings import configured_crm_url, configured_currency, crm_url_from_env

app = typer.Typer(
    help="Lead-conversion scoring learned from CRM history.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)
crm_app = typer.Typer(help="Create and inspect the CRM database.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(crm_app, name="crm")

# Piped output (CI logs, files) gets room for the funnel table instead of rich's 80 columns. Markup is off:
# channel names, file names and column names are the user's text, and "[/b]" in them must print as it is.
console = Console(width=None if sys.stdout.isatty() else 120, markup=False, highlight=False)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else 120, markup=False, highlight=False)

CrmOption = Annotated[
    Optional[str],
    typer.Option(
        "--crm",
        help="CRM database: an SQLAlchemy URL (sqlite:///crm.db, postgresql://user@host/db) or an SQLite "
        "file path. Default: $LEADSCORE_CRM, else sqlite:///leadscore.db.",
        show_default=False,
    ),
]
AppendOption = Annotated[
    bool, typer.Option("--append", help="Keep the tables already in the database and add to them.")
]
ForceOption = Annotated[
    bool,
    typer.Option("--force", help="Delete leadscore's tables (never other tables) and start empty."),
]


def _flat_roles(id, target, time_column, time_format, drop, na_value, fit, positive, keep):
    from leadscore.features.flat import ColumnRoles

    if target is None:
        raise LeadscoreError(
            "A flat table needs --target COLUMN, the column saying whether each lead converted. --id COLUMN is "
            "optional: without it, leads are numbered by their row."
        )
    return ColumnRoles(
        id=id,
        target=target,
        time=time_column,
        time_format=time_format,
        drop=tuple(drop or ()),
        na_values=tuple(na_value or ()),
        fit=tuple(fit or ()),
        keep=tuple(keep or ()),
        positive=positive,
    )


def _column_labels(labels: str | None):
    from leadscore.features.column_labels import read_column_labels

    return read_column_labels(labels) if labels else None


def _crm_training_table(crm, map_stage, horizon_days: int, cutoff_every: int, progress):
    """The CRM's history, and as the training table: one row per lead open at each monthly cutoff (train and
    backtest)."""
    from leadscore.crm.sql import load_history
    from leadscore.pipelines.train import crm_training_table

    with _engine(crm) as engine:
        history = load_history(engine, progress=progress, stage_map=_stage_map(map_stage))
    return history, crm_training_table(history, horizon_days, cutoff_every, progress=progress)


IdOption = Annotated[
    Optional[str],
    typer.Option("--id", help="Flat table: the lead id column. Default: none, leads are numbered by their row "
                              "(row_number, 1 for the first row), and predict numbers rows the same way."),
]
TargetOption = Annotated[Optional[str], typer.Option(help="Flat table: the outcome column.")]
TimeOption = Annotated[
    Optional[str], typer.Option("--time", help="Flat table: a date column, for forward-in-time splits.")
]
TimeFormatOption = Annotated[
    Optional[str],
    typer.Option(help="Flat table: how --time writes dates, in strftime codes, e.g. %d/%m/%Y. "
                      "Default: the one format that reads every date; ambiguous dates are refused."),
]
DropOption = Annotated[Optional[list[str]], typer.Option(help="Flat table: a column to leave out (repeat the option).")]
NaValueOption = Annotated[
    Optional[list[str]], typer.Option(help="Flat table: a value meaning missing, e.g. Select (repeatable).")
]
FitOption = Annotated[
    Optional[list[str]],
    typer.Option(help="Flat table: a column describing who the lead is (repeatable). Default: columns named like "
                      "country, city, industry, occupation, job, age; the rest is engagement."),
]
PositiveOption = Annotated[
    Optional[str], typer.Option(help="Flat table: the target value meaning converted, when not 1/yes/true.")
]
KeepOption = Annotated[
    Optional[list[str]],
    typer.Option(help="Flat table: keep this column although it looks like an identifier (repeatable)."),
]
LabelsOption = Annotated[
    Optional[str],
    typer.Option(help="Flat table: a YAML file giving columns business labels, families (fit or engagement) and "
                      "reason sentences; x-education names the one shipped for the X Education leads."),
]
MapStageOption = Annotated[
    Optional[list[str]],
    typer.Option(
        "--map-stage",
        help="CRM: read one of your CRM's stage names as a leadscore stage, e.g. won=customer (repeatable).",
    ),
]
ModelNameOption = Annotated[str, typer.Option(help="Name of the model in the MLflow registry.")]
ModelOption = Annotated[
    str, typer.Option(help="Model URI: models:/leadscore@champion, models:/leadscore/3 or runs:/RUN_ID/model.")
]
MinReasonPointsOption = Annotated[
    float,
    typer.Option(help="A field is a reason only when it moves the lead's probability by at least this many points "
                      "(and carries a tenth of what moves the lead); a lead with none says nothing stands out.", min=0),
]
CurrencyOption = Annotated[
    Optional[str],
    typer.Option(help="Currency the CRM's campaign costs are in, shown beside every cost (default: "
                      "$LEADSCORE_CURRENCY, else USD).", show_default=False),
]
TrackingOption = Annotated[
    Optional[str],
    typer.Option(help="MLflow tracking URI. Default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db.", show_default=False),
]


def _secrets(values) -> tuple[str, ...]:
    """Passwords of every URI the command was given, by option or environment, to keep out of any output."""
    candidates = [value for value in values if isinstance(value, str)]
    candidates += [os.environ.get(name) for name in ("LEADSCORE_CRM", "MLFLOW_TRACKING_URI")]
    return tuple(secret for value in candidates for secret in url_secrets(value))


def _fail(label: str, message: str, secrets: tuple[str, ...], status: int) -> typer.Exit:
    errors.print(Text.assemble((label, "bold red"), " ", redact(message, secrets)), soft_wrap=True)
    return typer.Exit(status)


def user_errors(command):
    """Print a user error as one message and exit with status 2; a bug keeps its traceback, passwords masked."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        secrets = _secrets([*args, *kwargs.values()])
        try:
            return command(*args, **kwargs)
        except LeadscoreError as error:
            raise _fail("Error:", str(error), secrets, 2) from None
        except sa.exc.DBAPIError as error:
            # The database's own words name the problem: a server down, a permission, a lock, a constraint.
            raise _fail("Database error:", str(error.orig).strip(), secrets, 2) from None
        except KeyboardInterrupt:
            raise _fail("Interrupted:", "stopped before the end; files and CRM writes are all-or-nothing, so nothing half-written was kept.", secrets, 130) from None
        except (typer.Exit, typer.Abort, TyperException):
            raise
        except Exception:
            details = redact(traceback.format_exc(), secrets)
            raise _fail("Unexpected error (a bug in leadscore; please report it with these lines):", "\n" + details,
                        secrets, 1) from None

    return wrapper


def _stage_map(pairs: list[str] | None) -> dict[str, str]:
    from leadscore.crm.conform import parse_stage_map

    return parse_stage_map(pairs or [])


@contextmanager
def _engine(crm: str | None, *, writable: bool = False) -> Iterator[sa.Engine]:
    """The CRM's engine for one command; its connections are closed when the command ends (SQLite locks)."""
    from leadscore.crm.database import connect

    engine = connect(crm or crm_url_from_env(), writable=writable)
    try:
        yield engine
    finally:
        engine.dispose()


def _day(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.combine(date.fromisoformat(value), datetime.min.time())
    except ValueError:
        raise LeadscoreError(f"{option} {value!r} is not a date: use YYYY-MM-DD, e.g. 2025-06-01.") from None


def _percent(value: float) -> str:
    return "—" if pd.isna(value) else f"{value:.1%}"


def _money(value: float) -> str:
    return "—" if pd.isna(value) else f"{value:,.0f}"


def print_funnel(funnel: pd.DataFrame, currency: str | None = None) -> None:
    currency = currency or configured_currency()
    table = Table(title=f"Funnel conversion and acquisition cost per channel (costs in {currency})", title_justify="left")
    for header in ("Channel", "Leads", "Lead→MQL", "MQL→SQL", "SQL→Opp.", "Opp.→Customer", "Lead→Customer",
                   "Cost / MQL", "Cost / SQL"):
        table.add_column(header, justify="left" if header == "Channel" else "right")
    for row in funnel.itertuples(index=False):
        table.add_row(
            row.channel_label,
            f"{row.leads:,}",
            _percent(row.lead_to_mql),
            _percent(row.mql_to_sql),
            _percent(row.sql_to_opportunity),
            _percent(row.opportunity_to_customer),
            _percent(row.lead_to_customer),
            _money(row.cost_per_mql),
            _money(row.cost_per_sql),
            end_section=row.channel == funnel["channel"].iloc[-2] if len(funnel) > 1 else False,
        )
    console.print(table)
    console.print(
        "A lead counts at a stage once it reached it or any later one. Leads created near the end of the "
        "history may still progress.",
        style="dim",
    )


def _print_rows(rows: dict[str, int]) -> None:
    console.print(", ".join(f"{name}: {count:,}" for name, count in rows.items()))


@crm_app.command("init")
@user_errors
def crm_init(crm: CrmOption = None, append: AppendOption = False, force: ForceOption = False) -> None:
    """Create the CRM tables (leads, activities, stage_changes, campaign_costs, lead_scores, lead_score_history)."""
    from leadscore.crm.database import WriteMode, display_url, prepare

    with _engine(crm, writable=True) as engine, engine.begin() as connection:
        prepare(connection, WriteMode.from_flags(append, force), empty_schema_is_fine=False, command="crm init")
    console.print(f"CRM tables ready in {display_url(engine)}.")


@crm_app.command("describe")
@user_errors
def crm_describe(crm: CrmOption = None) -> None:
    """Show the tables of the CRM database and their row counts."""
    from leadscore.crm.database import describe, display_url

    with _engine(crm) as engine:
        counts = describe(engine)
    if not counts:
        console.print(f"{display_url(engine)} holds no tables. Create them with `leadscore crm init`.")
        return
    table = Table(title=display_url(engine), title_justify="left")
    table.add_column("Table")
    table.add_column("Rows", justify="right")
    for name, rows in counts.items():
        table.add_row(name, f"{rows:,}")
    console.print(table)


@app.command()
@user_errors
def simulate(
    crm: CrmOption = None,
    leads: Annotated[int, typer.Option(help="Number of leads to simulate.", min=1)] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same CRM.")] = 42,
    months: Annotated[int, typer.Option(help="Length of the simulated history, in months.", min=1, max=120)] = 24,
    start: Annotated[str, typer.Option(help="First day of the history (the first of a month), YYYY-MM-DD.")] = "2024-01-01",
    append: AppendOption = False,
    force: ForceOption = False,
) -> None:
    """Write a realistic simulated B2B CRM history (leads, activities, stage changes, costs)."""
    from leadscore.crm.database import WriteMode, display_url
    from leadscore.crm.simulator import SimulationConfig
    from leadscore.pipelines.simulate import simulate_into_crm

    config = SimulationConfig(leads=leads, seed=seed, months=months, start=_day(start, "--start").date())
    began = time.perf_counter()
    with _engine(crm, writable=True) as engine, for_console(console) as progress:
        summary = simulate_into_crm(engine, config, WriteMode.from_flags(append, force), progress)
    console.print(
        f"Simulated {config.leads:,} leads from {config.start} to {config.end} into {display_url(engine)} "
        f"in {time.perf_counter() - began:.1f} s."
    )
    _print_rows(summary.rows)


@app.command()
@user_errors
def funnel(
    crm: CrmOption = None,
    map_stage: MapStageOption = None,
    expected: Annotated[
        bool,
        typer.Option("--expected", help="Also what each channel's leads of the last 30 and 90 days are expected to "
                                        "bring (scored by --model), next to how such estimates held a horizon ago."),
    ] = False,
    model: Annotated[str, typer.Option(help="Model URI for --expected.")] = "models:/leadscore@champion",
    tracking_uri: TrackingOption = None,
    as_of: Annotated[
        Optional[str], typer.Option(help="With --expected: the day to look back from, YYYY-MM-DD (default: the CRM's end).")
    ] = None,
    horizon_days: Annotated[
        int, typer.Option(help="With --expected: the model's horizon, as trained (--horizon-days of train).", min=1)
    ] = 90,
    currency: CurrencyOption = None,
) -> None:
    """Print funnel conversion rates and cost per MQL and SQL, per channel; with --expected, channel worth."""
    from leadscore.crm.funnel import funnel_by_channel
    from leadscore.crm.sql import load_history

    stage_map = _stage_map(map_stage)
    moment = _day(as_of, "--as-of") if as_of else None  # a mistyped date is refused before the CRM is read
    with _engine(crm) as engine, for_console(console) as progress:
        history = load_history(engine, progress=progress, stage_map=stage_map)
    print_funnel(funnel_by_channel(history), currency)
    if expected:
        from leadscore.pipelines.registry import load_model
        from leadscore.pipelines.worth import channel_worth
        from leadscore.worth_view import print_worth

        moment = moment or pd.Timestamp(history.as_of).to_pydatetime()
        with for_console(console) as progress:
            worth = channel_worth(history, load_model(model, tracking_uri), moment, horizon_days, progress=progress)
        print_worth(console, worth, horizon_days, currency or configured_currency())
    for note in history.notes:
        console.print(f"Note: {note}", style="yellow")


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

        roles = _flat_roles(id, target, time_column, time_format, drop, na_value, fit, positive, keep)
        table = load_flat_table(data, roles, _column_labels(labels))
    else:
        try:
            chosen = SnapshotPolicy(policy)
        except ValueError:
            raise LeadscoreError(f"--policy {policy!r}: choose cutoff or mql.") from None
        with for_console(console) as progress:
            with _engine(crm) as engine:
                table = snapshot_from_crm(
                    engine, chosen, _day(cutoff, "--cutoff"), horizon_days, progress, _stage_map(map_stage)
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


def _number(value: float, digits: int = 3) -> str:
    return "—" if pd.isna(value) else f"{value:.{digits}f}"


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
        choice.add_row(f"{name}{chosen}", _number(row.roc_auc), row.fold_auc, _number(row.pr_auc),
                       _number(row.calibrated_brier, 4), row.recent_rows_weighted, row.weights,
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
        ("ROC AUC", "roc_auc", _number), ("PR AUC", "pr_auc", _number), ("Brier score", "brier", lambda v: _number(v, 4)),
        ("Log loss", "log_loss", lambda v: _number(v, 4)), ("Calibration error (ECE)", "ece", lambda v: _percent(v)),
        ("Lift, top 5%", "lift_top_5", lambda v: _number(v, 2)), ("Lift, top 10%", "lift_top_10", lambda v: _number(v, 2)),
        ("Lift, top 20%", "lift_top_20", lambda v: _number(v, 2)),
        ("Conversions captured, top 10%", "capture_top_10", _percent),
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
            threshold = "—" if pd.isna(row.threshold) else f">= {_percent(row.threshold)}"
        per_week = "—" if pd.isna(row.leads_per_week) else f"{row.leads_per_week:,.1f}"
        table.add_row(name, threshold, f"{int(row.leads):,}", per_week, _percent(row.conversion_rate),
                      _percent(row.share_of_conversions))
    console.print(table)


def print_importances(result, top: int = 10) -> None:
    importances = result.insight.importances.head(top)
    ranked = "champion_rank" in importances.columns and importances["champion_rank"].notna().any()
    table = Table(title="What moves the score most on the held-out leads (mean absolute SHAP per business field)", title_justify="left")
    for header in ("Rank", "Field", "Family", "Average effect", "Share", *(("Rank change",) if ranked else ())):
        table.add_column(header, justify="left" if header in ("Field", "Family") else "right")
    for _, row in importances.iterrows():
        cells = [str(int(row["rank"])), row["label"], row["family"], f"{row.mean_abs_points:.2f} pts", _percent(row.share)]
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

            roles = _flat_roles(id, target, time_column, time_format, drop, na_value, fit, positive, keep)
            feature_table = load_flat_table(data, roles, _column_labels(labels))
        elif table is not None:
            from leadscore.features.table import FeatureTable

            feature_table = FeatureTable.read_parquet(table)
        else:
            history, feature_table = _crm_training_table(crm, map_stage, horizon_days, cutoff_every, progress)
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


@app.command()
@user_errors
def predict(
    data: Annotated[
        Path,
        typer.Option(help="Flat file (CSV or Parquet) with the model's feature columns and lead id; a model trained "
                          "without --id numbers the rows instead (row_number, 1 for the first row)."),
    ],
    out: Annotated[
        Path,
        typer.Option(help="Where to write the id, probability, tier and never-seen values of every row (.csv or .parquet)."),
    ],
    model: ModelOption = "models:/leadscore@champion",
    tracking_uri: TrackingOption = None,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="Add each row's fit and engagement scores (0-100), its top three reasons as sentences "
            "(reason_1..reason_3) and all six reasons as JSON (reasons).",
        ),
    ] = False,
    min_reason_points: MinReasonPointsOption = 0.5,
) -> None:
    """Write the calibrated probability of conversion of every row of a file, with its tier and reasons if asked."""
    from leadscore.pipelines.predict import predict_file

    with for_console(console) as progress:
        scored = predict_file(model, data, out, tracking_uri, explain, progress, min_reason_points)
    from leadscore.models.tiers import TIER_DISPLAY

    counts = scored["tier"].value_counts()
    tiers = ", ".join(f"{counts.get(code, 0):,} {TIER_DISPLAY[code]}" for code in ("sql", "mql", "none"))
    console.print(
        f"Scored {len(scored):,} rows with {model}: mean probability {scored['probability'].mean():.1%}; {tiers}; "
        f"wrote {out}."
    )
    new = scored["unseen"].astype(bool)
    if new.any():
        examples = "; ".join(pd.Series(scored.loc[new, "unseen"].str.split("; ").explode()).value_counts().index[:5])
        console.print(
            f"Note: {int(new.sum()):,} rows hold values the model never saw at training (e.g. {examples}): they are "
            "scored like rare values, and their reasons say so (column unseen).",
            style="yellow",
        )


def _moment(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=None)
    except ValueError:
        raise LeadscoreError(f"{option} {value!r} is not a time: use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS (UTC).") from None


@app.command()
@user_errors
def score(
    crm: CrmOption = None,
    model: Annotated[
        str, typer.Option(help="Model URI: models:/leadscore@champion, models:/leadscore/3.")
    ] = "models:/leadscore@champion",
    tracking_uri: TrackingOption = None,
    as_of: Annotated[
        Optional[str],
        typer.Option(help="Score the leads open at this time (UTC), seeing only activities before it. Default: now."),
    ] = None,
    allow_drift: Annotated[
        bool, typer.Option("--allow-drift", help="Write the scores even when drift is above the holding level.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Score and report what would be written, writing nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object (for a cron log).")] = False,
    history_points: Annotated[
        float,
        typer.Option(help="Add a history row when the probability moved by at least this many points (or the tier "
                          "or the model changed).", min=0),
    ] = 1.0,
    wait: Annotated[
        bool, typer.Option("--wait", help="When another scoring job holds the CRM, wait for it instead of exiting 4.")
    ] = False,
    map_stage: MapStageOption = None,
    workers: Annotated[
        int, typer.Option(help="Processes explaining leads at once; 0: one per core this job may use.", min=0)
    ] = 0,
    min_reason_points: MinReasonPointsOption = 0.5,
) -> None:
    """Score every open lead of the CRM and write probability, tier and reasons back: the nightly job.

    Exit status: 0 done, 2 a problem to fix (named in the message), 3 held by drift (nothing written),
    4 another scoring job holds the CRM.
    """
    import json

    from leadscore.crm.scores import JobLocked
    from leadscore.serve.nightly import EXIT_HELD, EXIT_LOCKED, ScoringOptions, score_crm

    options = ScoringOptions(
        model_uri=model, tracking_uri=tracking_uri, as_of=_moment(as_of, "--as-of"), allow_drift=allow_drift,
        dry_run=dry_run, history_points=history_points, wait=wait, stage_map=_stage_map(map_stage), workers=workers,
        min_reason_points=min_reason_points,
    )
    try:
        with _engine(crm, writable=not dry_run) as engine, for_console(errors if as_json else console) as progress:
            result = score_crm(engine, options, progress)
    except JobLocked as locked:
        errors.print(Text.assemble(("Locked:", "bold yellow"), " ", str(locked)), soft_wrap=True)
        raise typer.Exit(EXIT_LOCKED) from None
    if as_json:
        print(json.dumps(result.as_dict(), default=str))
    else:
        print_scoring(result)
    if result.status == "held":
        raise typer.Exit(EXIT_HELD)


def print_scoring(result) -> None:
    from leadscore.models.tiers import TIER_DISPLAY

    verb = {"complete": "Scored", "held": "Held", "dry run": "Dry run: would have scored"}.get(result.status, "Scored")
    console.print(
        f"{verb} {result.scored:,} of {result.open_leads:,} open leads as of {result.as_of} with {result.model} "
        f"in {result.seconds:.1f} s: {result.written:,} written, {result.unchanged:,} unchanged, "
        f"{result.rejected:,} rejected, {result.history_rows:,} history rows (run {result.run_id})."
    )
    if result.tiers:
        console.print("Tiers: " + ", ".join(f"{result.tiers.get(code, 0):,} {TIER_DISPLAY[code]}" for code in ("sql", "mql", "none")))
    for reason, count in list(result.rejects.items())[:10]:
        console.print(f"Rejected {count:,} leads: {reason}.", style="yellow")
    if result.unseen:
        listing = ", ".join(f"{value} ({count:,})" for value, count in sorted(result.unseen.items(), key=lambda i: -i[1])[:8])
        console.print(f"Values the model never saw at training, scored like rare ones: {listing}.", style="yellow")
    for run in result.failed_runs:
        console.print(f"Marked run {run} failed: its process ended before it finished.", style="yellow")
    for note in result.notes:
        console.print(f"Note: {note}", style="yellow")
    if result.status == "held":
        console.print("Held by drift: nothing was written to lead_scores, the last good scores stay. Check the data, "
                      "retrain, or rerun with --allow-drift to write anyway.", style="bold red")


@app.command()
@user_errors
def report(
    out: Annotated[Path, typer.Option(help="Where to write the HTML page, e.g. report.html.")],
    model: ModelOption = "models:/leadscore@champion",
    crm: Annotated[
        Optional[str],
        typer.Option(help="CRM whose funnel and costs the report shows (an SQLAlchemy URL or SQLite file). "
                     "Default: $LEADSCORE_CRM, when set."),
    ] = None,
    tracking_uri: TrackingOption = None,
    map_stage: MapStageOption = None,
    currency: CurrencyOption = None,
) -> None:
    """Write one self-contained HTML page: for marketing the funnel, what each channel's new leads are worth, how
    well the score finds converters, its drivers, tiers, three example leads and the scores' movement; then an
    appendix for data scientists."""
    from leadscore.crm.funnel import funnel_by_channel
    from leadscore.crm.scores import read_score_movement
    from leadscore.crm.sql import load_history
    from leadscore.pipelines.report import write_report

    funnel, note, history, movement = None, "", None, None
    source = crm or configured_crm_url()
    if source:
        with _engine(source) as engine:
            history = load_history(engine, stage_map=_stage_map(map_stage))
            with engine.connect() as connection:
                movement = read_score_movement(connection)
        funnel = funnel_by_channel(history)
    else:
        note = "No CRM was given (--crm or $LEADSCORE_CRM): funnel rates and costs come from the CRM."
    write_report(model, out, tracking_uri, funnel, note, history, movement=movement, currency=currency)
    console.print(f"Wrote the report of {model} to {out}.")


@app.command()
@user_errors
def serve(
    model: ModelOption = "models:/leadscore@champion",
    crm: Annotated[
        Optional[str],
        typer.Option(help="CRM to read leads' history from when a request names them by id (an SQLAlchemy URL or "
                          "SQLite file). Without it, requests send each lead's profile and activities.",
                     show_default=False),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(help="Processes, each with the model loaded once.", min=1)] = 1,
    tracking_uri: TrackingOption = None,
) -> None:
    """Serve POST /score (probability, tier, fit and engagement, reasons), GET /health, GET /model and the OpenAPI
    schema (/docs), with the model loaded once."""
    import os

    import uvicorn

    from leadscore.crm.database import connect
    from leadscore.pipelines.registry import resolve_model
    from leadscore.serve.api import SERVE_SETTINGS, create_app

    resolved = resolve_model(model, tracking_uri)  # a model that cannot load is refused here, not by each worker
    engine = connect(crm) if crm else None
    console.print(f"Serving {resolved.name} version {resolved.version} at http://{host}:{port} (API docs at /docs); "
                  "Ctrl+C stops.")
    if workers == 1:
        uvicorn.run(create_app(resolved, engine), host=host, port=port, log_level="warning")
        return
    os.environ.update({name: value for name, value in zip(SERVE_SETTINGS, (resolved.uri, tracking_uri or "", crm or ""))})
    uvicorn.run("leadscore.serve.api:app_from_environment", factory=True, host=host, port=port, workers=workers,
                log_level="warning")


@app.command()
@user_errors
def demo(
    directory: Annotated[Path, typer.Option("--dir", help="Folder for the demo's files.")] = Path("leadscore-demo"),
    leads: Annotated[int, typer.Option(help="Number of leads to simulate.", min=100)] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
) -> None:
    """Simulate a CRM in DIR/crm.db, print its funnel, train and register a model in DIR/mlflow.db, write the report,
    and score every open lead back into the CRM."""
    from leadscore.pipelines.demo import run_demo

    began = time.perf_counter()
    with for_console(console) as progress:
        result = run_demo(directory, leads=leads, seed=seed, progress=progress)
    if result.replaced:
        console.print(f"Replaced the previous demo in {directory}.", style="dim")
    _print_rows(result.summary.rows)
    print_funnel(result.funnel)
    print_training(result.training)
    console.print(result.promotion.message, style="green")
    print_scoring(result.scoring)
    store = result.logged.tracking_uri
    console.print(
        f"Demo CRM: sqlite:///{result.crm_file}, scores in its tables lead_scores, lead_score_history and "
        f"scoring_runs (rerun the job with `leadscore score --crm {result.crm_file} --tracking-uri {store} "
        f"--as-of '{result.scoring.as_of}'`); MLflow store: {store} (browse it with `mlflow ui --backend-store-uri "
        f"{store}`); plots and metrics.json in {result.logged.artifacts}; marketing report: {result.report}. "
        f"Done in {time.perf_counter() - began:.0f} s."
    )


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
    from leadscore.pipelines.backtest import BacktestConfig, log_backtest, parse_cadences, run_backtest
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
        start=_day(start, "--start"),
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

            roles = _flat_roles(id, target, time_column, time_format, drop, na_value, fit, positive, keep)
            feature_table = load_flat_table(data, roles, _column_labels(labels))
        else:
            feature_table = _crm_training_table(crm, map_stage, horizon_days, cutoff_every, progress)[1]
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
        summary.add_row(row.cadence, f"{row.models:,}", _number(row.roc_auc), _number(row.mean_period_auc),
                        _number(row.brier, 4), _percent(row.ece), _percent(row.mean_predicted), _percent(row.observed_rate))
    console.print(summary)
    periods = Table(title=f"Per period of {result.config.period_days} days: AUC, Brier score, mean predicted",
                    title_justify="left", caption="— : a period of one outcome has no AUC.", caption_justify="left")
    for header in ("Period from", "Leads", "Observed", *result.cadences["cadence"]):
        periods.add_column(header, justify="left" if header == "Period from" else "right")
    # Every cadence scores the same leads: a period's leads and observed rate are one figure.
    for first, group in result.periods.groupby("period_start", sort=True):
        cells = [f"{_number(r.roc_auc)} {_number(r.brier, 4)} {_percent(r.mean_predicted)}"
                 for r in group.itertuples(index=False)]
        periods.add_row(f"{first:%Y-%m-%d}", f"{group['rows'].iloc[0]:,}", _percent(group["observed_rate"].iloc[0]), *cells)
    console.print(periods)
    for note in result.notes:
        console.print(f"Note: {note}", style="yellow")


if __name__ == "__main__":
    app()
