"""The ``leadscore`` command line: thin wrappers around the pipeline stages."""

from __future__ import annotations

import functools
import sys
import time
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Optional

import pandas as pd
import sqlalchemy as sa
import typer
from rich.console import Console
from rich.table import Table

from leadscore.errors import LeadscoreError
from leadscore.progress import RichProgress
from leadscore.settings import crm_url_from_env

app = typer.Typer(
    help="Lead-conversion scoring learned from CRM history.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)
crm_app = typer.Typer(help="Create and inspect the CRM database.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(crm_app, name="crm")

# Piped output (CI logs, files) gets room for the funnel table instead of rich's 80 columns.
console = Console(width=None if sys.stdout.isatty() else 120)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else 120)

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


def user_errors(command):
    """Print a user error as one line and exit with status 2; leave bugs their traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except LeadscoreError as error:
            errors.print(f"[bold red]Error:[/] {error}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except sa.exc.OperationalError as error:
            errors.print(f"[bold red]Database error:[/] {error.orig}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def _engine(crm: str | None) -> sa.Engine:
    from leadscore.crm.database import connect

    return connect(crm or crm_url_from_env())


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


def print_funnel(funnel: pd.DataFrame) -> None:
    table = Table(title="Funnel conversion and acquisition cost per channel", title_justify="left")
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

    engine = _engine(crm)
    with engine.begin() as connection:
        prepare(connection, WriteMode.from_flags(append, force), empty_schema_is_fine=False, command="crm init")
    console.print(f"CRM tables ready in {display_url(engine)}.")


@crm_app.command("describe")
@user_errors
def crm_describe(crm: CrmOption = None) -> None:
    """Show the tables of the CRM database and their row counts."""
    from leadscore.crm.database import describe, display_url

    engine = _engine(crm)
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
    engine = _engine(crm)
    began = time.perf_counter()
    with RichProgress(console) as progress:
        summary = simulate_into_crm(engine, config, WriteMode.from_flags(append, force), progress)
    console.print(
        f"Simulated {config.leads:,} leads from {config.start} to {config.end} into {display_url(engine)} "
        f"in {time.perf_counter() - began:.1f} s."
    )
    _print_rows(summary.rows)


@app.command()
@user_errors
def funnel(crm: CrmOption = None) -> None:
    """Print funnel conversion rates and cost per MQL and SQL, per channel."""
    from leadscore.crm.funnel import funnel_by_channel
    from leadscore.crm.history import load_history

    with RichProgress(console) as progress:
        history = load_history(_engine(crm), progress=progress)
    print_funnel(funnel_by_channel(history))


@app.command()
@user_errors
def features(
    out: Annotated[Path, typer.Option("--out", help="Parquet file to write the feature table to.")],
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
    id: Annotated[Optional[str], typer.Option("--id", help="Flat table: the lead id column.")] = None,
    target: Annotated[Optional[str], typer.Option(help="Flat table: the outcome column.")] = None,
    time_column: Annotated[
        Optional[str], typer.Option("--time", help="Flat table: a date column, for forward-in-time splits.")
    ] = None,
    drop: Annotated[
        Optional[list[str]], typer.Option(help="Flat table: a column to leave out (repeat the option).")
    ] = None,
    na_value: Annotated[
        Optional[list[str]], typer.Option(help="Flat table: a value meaning missing, e.g. Select (repeatable).")
    ] = None,
    fit: Annotated[
        Optional[list[str]],
        typer.Option(help="Flat table: a column describing who the lead is (repeatable); the rest is engagement."),
    ] = None,
    positive: Annotated[
        Optional[str], typer.Option(help="Flat table: the target value meaning converted, when not 1/yes/true.")
    ] = None,
) -> None:
    """Write a point-in-time feature table with labels, from the CRM or from a flat lead table."""
    from leadscore.pipelines.snapshot import SnapshotPolicy, snapshot_from_crm

    began = time.perf_counter()
    if data is not None:
        from leadscore.features.flat import ColumnRoles, load_flat_table

        if id is None or target is None:
            raise LeadscoreError("A flat table needs --id COLUMN and --target COLUMN.")
        roles = ColumnRoles(
            id=id,
            target=target,
            time=time_column,
            drop=tuple(drop or ()),
            na_values=tuple(na_value or ()),
            fit=tuple(fit or ()),
            positive=positive,
        )
        table = load_flat_table(data, roles)
    else:
        try:
            chosen = SnapshotPolicy(policy)
        except ValueError:
            raise LeadscoreError(f"--policy {policy!r}: choose cutoff or mql.") from None
        with RichProgress(console) as progress:
            table = snapshot_from_crm(_engine(crm), chosen, _day(cutoff, "--cutoff"), horizon_days, progress)
    table.to_parquet(out)
    positives = int(table.target.sum())
    console.print(
        f"Wrote {len(table.frame):,} rows × {len(table.registry)} features to {out} in "
        f"{time.perf_counter() - began:.1f} s ({table.source}); {positives:,} converted "
        f"({positives / max(len(table.frame), 1):.1%})."
    )
    for note in table.notes:
        console.print(f"Note: {note}", style="yellow")


@app.command()
@user_errors
def demo(
    directory: Annotated[Path, typer.Option("--dir", help="Folder for the demo's files.")] = Path("leadscore-demo"),
    leads: Annotated[int, typer.Option(help="Number of leads to simulate.", min=100)] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
) -> None:
    """Simulate a CRM in DIR/crm.db and print its funnel per channel."""
    from leadscore.pipelines.demo import run_demo

    began = time.perf_counter()
    with RichProgress(console) as progress:
        result = run_demo(directory, leads=leads, seed=seed, progress=progress)
    if result.replaced:
        console.print(f"Replaced the previous demo CRM {result.crm_file}.", style="dim")
    _print_rows(result.summary.rows)
    print_funnel(result.funnel)
    console.print(
        f"Demo CRM: {result.crm_file} (sqlite:///{result.crm_file}); done in {time.perf_counter() - began:.1f} s."
    )


if __name__ == "__main__":
    app()
