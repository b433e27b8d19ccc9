"""Commands on the CRM itself: create, describe, simulate, and its funnel."""

from __future__ import annotations

import time
from typing import Annotated, Optional

import pandas as pd
import typer
from rich.table import Table

from leadscore.cli.common import (
    AppendOption,
    CrmOption,
    CurrencyOption,
    ForceOption,
    MapStageOption,
    TrackingOption,
    app,
    console,
    crm_app,
    crm_engine,
    money,
    parse_day,
    percent,
    stage_map_from,
    user_errors,
)
from leadscore.progress import for_console
from leadscore.settings import configured_currency


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
            percent(row.lead_to_mql),
            percent(row.mql_to_sql),
            percent(row.sql_to_opportunity),
            percent(row.opportunity_to_customer),
            percent(row.lead_to_customer),
            money(row.cost_per_mql),
            money(row.cost_per_sql),
            end_section=row.channel == funnel["channel"].iloc[-2] if len(funnel) > 1 else False,
        )
    console.print(table)
    console.print(
        "A lead counts at a stage once it reached it or any later one. Leads created near the end of the "
        "history may still progress.",
        style="dim",
    )


def print_rows(rows: dict[str, int]) -> None:
    console.print(", ".join(f"{name}: {count:,}" for name, count in rows.items()))


@crm_app.command("init")
@user_errors
def crm_init(crm: CrmOption = None, append: AppendOption = False, force: ForceOption = False) -> None:
    """Create the CRM tables (leads, activities, stage_changes, campaign_costs, lead_scores, lead_score_history)."""
    from leadscore.crm.database import WriteMode, display_url, prepare

    with crm_engine(crm, writable=True) as engine, engine.begin() as connection:
        prepare(connection, WriteMode.from_flags(append, force), empty_schema_is_fine=False, command="crm init")
    console.print(f"CRM tables ready in {display_url(engine)}.")


@crm_app.command("describe")
@user_errors
def crm_describe(crm: CrmOption = None) -> None:
    """Show the tables of the CRM database and their row counts."""
    from leadscore.crm.database import describe, display_url

    with crm_engine(crm) as engine:
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

    config = SimulationConfig(leads=leads, seed=seed, months=months, start=parse_day(start, "--start").date())
    began = time.perf_counter()
    with crm_engine(crm, writable=True) as engine, for_console(console) as progress:
        summary = simulate_into_crm(engine, config, WriteMode.from_flags(append, force), progress)
    console.print(
        f"Simulated {config.leads:,} leads from {config.start} to {config.end} into {display_url(engine)} "
        f"in {time.perf_counter() - began:.1f} s."
    )
    print_rows(summary.rows)


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

    stage_map = stage_map_from(map_stage)
    moment = parse_day(as_of, "--as-of") if as_of else None  # a mistyped date is refused before the CRM is read
    with crm_engine(crm) as engine, for_console(console) as progress:
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
