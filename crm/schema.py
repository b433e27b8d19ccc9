"""The CRM data model every connector maps onto.

Five kinds of record, one table each:

* ``leads``: who the lead is (profile) and where it came from (channel, campaign);
* ``activities``: what the lead did, one row per event, open-ended ``type``;
* ``stage_changes``: the funnel history, one row each time the stage changed;
* ``campaign_costs``: what each channel cost per month;
* ``lead_scores`` and ``lead_score_history``: the model's write-back.

All times are naive UTC at one-second resolution. On SQLite they are stored as
ISO 8601 text (``2024-03-01T09:30:00``) so that string comparison in SQL is time
comparison.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from leadscore.crm.vocabulary import STAGES, TIERS

Timestamp = sa.DateTime().with_variant(
    sqlite.DATETIME(
        storage_format="%(year)04d-%(month)02d-%(day)02dT%(hour)02d:%(minute)02d:%(second)02d",
        regexp=r"(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)",
    ),
    "sqlite",
)

metadata = sa.MetaData()


def _one_of(column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    allowed = ", ".join(f"'{value}'" for value in values)
    return sa.CheckConstraint(f"{column} IN ({allowed})", name=f"ck_{column}_known")


leads = sa.Table(
    "leads",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("channel", sa.String(40), nullable=False),
    sa.Column("campaign", sa.String(120)),
    sa.Column("company", sa.String(200)),
    sa.Column("industry", sa.String(60)),
    sa.Column("company_size", sa.String(20)),
    sa.Column("country", sa.String(60)),
    sa.Column("job_title", sa.String(120)),
    sa.Column("seniority", sa.String(40)),
    sa.Column("department", sa.String(60)),
    sa.Column("email_domain", sa.String(120)),
    sa.Column("lifecycle_stage", sa.String(20), nullable=False, server_default="lead"),
    sa.Column("owner", sa.String(120)),
    _one_of("lifecycle_stage", tuple(stage.code for stage in STAGES)),
    sa.Index("ix_leads_created_at", "created_at"),
)

# Activity types stay open-ended: a real CRM carries types of its own, which the
# feature layer counts in totals. A CHECK here would also halve SQLite insert speed.
activities = sa.Table(
    "activities",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("lead_id", sa.ForeignKey("leads.id"), nullable=False),
    sa.Column("occurred_at", Timestamp, nullable=False),
    sa.Column("type", sa.String(40), nullable=False),
    sa.Column("detail", sa.String(200)),
    sa.Index("ix_activities_lead_time", "lead_id", "occurred_at"),
)

stage_changes = sa.Table(
    "stage_changes",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("lead_id", sa.ForeignKey("leads.id"), nullable=False),
    sa.Column("stage", sa.String(20), nullable=False),
    sa.Column("changed_at", Timestamp, nullable=False),
    _one_of("stage", tuple(stage.code for stage in STAGES)),
    sa.Index("ix_stage_changes_lead_time", "lead_id", "changed_at"),
)

campaign_costs = sa.Table(
    "campaign_costs",
    metadata,
    sa.Column("channel", sa.String(40), primary_key=True),
    sa.Column("month", sa.Date, primary_key=True),
    sa.Column("cost", sa.Numeric(14, 2), nullable=False),
    sa.CheckConstraint("cost >= 0", name="ck_cost_not_negative"),
)


def _score_columns() -> list[sa.Column]:
    return [
        sa.Column("probability", sa.Float, nullable=False),
        sa.Column("tier", sa.String(10), nullable=False),
        sa.Column("fit_score", sa.Float),
        sa.Column("engagement_score", sa.Float),
        sa.Column("reasons", sa.JSON),
        sa.Column("model_name", sa.String(120), nullable=False),
        sa.Column("model_version", sa.String(40), nullable=False),
        sa.Column("scored_at", Timestamp, nullable=False),
        sa.CheckConstraint("probability >= 0 AND probability <= 1"),
        _one_of("tier", TIERS),
    ]


lead_scores = sa.Table(
    "lead_scores",
    metadata,
    sa.Column("lead_id", sa.ForeignKey("leads.id"), primary_key=True),
    *_score_columns(),
)

lead_score_history = sa.Table(
    "lead_score_history",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("lead_id", sa.ForeignKey("leads.id"), nullable=False),
    *_score_columns(),
    sa.Index("ix_lead_score_history_lead_time", "lead_id", "scored_at"),
)

TABLES = tuple(metadata.sorted_tables)
TABLE_NAMES = tuple(table.name for table in TABLES)
