"""How `leadscore funnel --expected` prints channel worth: recent cohorts, then how earlier estimates held."""

from __future__ import annotations

import pandas as pd
from rich.console import Console
from rich.table import Table


def _amount(value: float, digits: int = 0) -> str:
    return "—" if pd.isna(value) else f"{value:,.{digits}f}"


def _share(value: float) -> str:
    return "—" if pd.isna(value) else f"{value:.1%}"


def print_worth(console: Console, worth: pd.DataFrame, horizon_days: int, currency: str) -> None:
    for days, recent in worth[worth["cohort"] == "recent"].groupby("days", sort=True):
        start, end = recent["created_from"].iloc[0], recent["created_to"].iloc[0]
        table = Table(title=f"Leads created in the last {days} days ({start:%Y-%m-%d} to {end:%Y-%m-%d}): what they "
                            f"are expected to bring within {horizon_days} days", title_justify="left")
        for header in ("Channel", "Leads", "MQLs", "SQLs", "Customers so far", "Expected customers", f"Cost ({currency})",
                       f"Expected cost / customer ({currency})", "MQL→SQL so far", "Expected SQL→customer"):
            table.add_column(header, justify="left" if header == "Channel" else "right")
        # The line under the last channel sets the total apart (a cohort without leads has the total alone).
        last_channel = recent["channel"].iloc[-2] if len(recent) > 1 else None
        for row in recent.itertuples(index=False):
            table.add_row(row.channel_label, f"{row.leads:,}", f"{row.mqls:,}", f"{row.sqls:,}",
                          f"{row.customers_so_far:,}", f"{row.expected_customers:,.1f} ± {row.spread:,.1f}",
                          _amount(row.cost), _amount(row.expected_cost_per_customer), _share(row.mql_to_sql),
                          _share(row.expected_sql_to_customer), end_section=row.channel == last_channel)
        console.print(table)
    matured = worth[worth["cohort"] == "matured"]
    table = Table(title=f"How the estimate held {horizon_days} days ago: leads created then, expected against "
                        "realised customers", title_justify="left")
    for header in ("Channel", "Window", "Leads", "Expected customers", "Realised customers", "Within the spread"):
        table.add_column(header, justify="left" if header == "Channel" else "right")
    for row in matured.itertuples(index=False):
        inside = abs(row.realised_customers - row.expected_customers) <= row.spread
        table.add_row(row.channel_label, f"{row.days} days to {row.created_to:%Y-%m-%d}", f"{row.leads:,}",
                      f"{row.expected_customers:,.1f} ± {row.spread:,.1f}", f"{row.realised_customers:,.0f}",
                      "yes" if inside else "no", end_section=row.channel == "total")
    console.print(table)
    console.print(
        "Expected customers: those a cohort already has plus the sum of its open leads' probabilities of "
        f"converting within {horizon_days} days; ± is two standard deviations of that sum, the outcomes' chance "
        "alone, not the model's error. Cost: each month's "
        "cost spread over its days. The earlier estimates use today's model, which may have learned from those "
        "outcomes: they flatter its record.",
        style="dim",
    )
