"""Stage: write a simulated CRM history into a database."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from leadscore.crm import schema
from leadscore.crm.bulk import write_frame
from leadscore.crm.database import WriteMode, check_writable, prepare
from leadscore.crm.simulator import SimulatedCrm, SimulationConfig, simulate
from leadscore.progress import Progress


@dataclass(frozen=True)
class SimulationSummary:
    rows: dict[str, int]
    first_lead_id: int
    simulated: SimulatedCrm


def simulate_into_crm(
    engine: sa.Engine,
    config: SimulationConfig,
    mode: WriteMode = WriteMode.REFUSE,
    progress: Progress = Progress(),
) -> SimulationSummary:
    """Simulate ``config`` and write it in one transaction: all rows land, or none.

    With ``WriteMode.APPEND`` the new leads take ids after the highest existing
    one and their costs add to the months already recorded.
    """
    with engine.connect() as connection:
        # Refuse before spending a minute on drawing a CRM that cannot be written.
        counts = check_writable(connection, mode, empty_schema_is_fine=True, command="simulate")
        if mode is WriteMode.APPEND and counts.get("leads"):
            highest = connection.execute(sa.select(sa.func.max(schema.leads.c.id))).scalar_one()
            config = dataclasses.replace(config, first_lead_id=int(highest) + 1)
    simulated = simulate(config, progress)
    tables = (
        (schema.leads, simulated.leads),
        (schema.stage_changes, simulated.stage_changes),
        (schema.activities, simulated.activities),
    )
    rows = {}
    with engine.begin() as connection:
        prepare(connection, mode, empty_schema_is_fine=True, command="simulate")
        for table, frame in tables:
            with progress.task(f"Writing {table.name}", total=len(frame)) as advance:
                rows[table.name] = write_frame(connection, table, frame, advance)
        rows["campaign_costs"] = _add_costs(connection, simulated.campaign_costs)
    return SimulationSummary(rows=rows, first_lead_id=config.first_lead_id, simulated=simulated)


def _add_costs(connection: sa.Connection, costs: pd.DataFrame) -> int:
    """Insert new (channel, month) costs; add to the ones already recorded."""
    table = schema.campaign_costs
    existing = {
        (row.channel, row.month): row.cost for row in connection.execute(sa.select(table)).all()
    }
    fresh = costs[[(c, m) not in existing for c, m in zip(costs["channel"], costs["month"])]]
    for row in costs.itertuples(index=False):
        if (row.channel, row.month) in existing:
            connection.execute(
                table.update()
                .where(table.c.channel == row.channel, table.c.month == row.month)
                .values(cost=table.c.cost + round(float(row.cost), 2))
            )
    write_frame(connection, table, fresh)
    return len(costs)
