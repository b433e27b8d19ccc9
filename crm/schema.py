"""The CRM data model every connector maps onto.

The records, one table each:

* ``leads``: who the lead is (profile) and where it came from (channel, campaign);
* ``activities``: what the lead did, one row per event, open-ended ``type``;
* ``stage_changes``: the funnel history, one row each time the stage changed;
* ``campaign_costs``: what each channel cost per month;
* ``lead_scores`` and ``lead_score_history``: the model's write-back, one row
  per lead and one per material change;
* ``scoring_runs`` and ``score_rejects``: each nightly scoring run, and the
  leads it could not score with the reason;
* ``crm_exports``: what ``leadscore export`` sent to Salesforce or HubSpot for
  each lead, and what they accepted.

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


TRENDS = ("new", "rising", "steady", "falling")
RUN_STATUSES = ("running", "complete", "failed", "held")


def _score_columns() -> list[sa.Column]:
    return [
        sa.Column("probability", sa.Float, nullable=False),
        sa.Column("tier", sa.String(10), nullable=False),
        sa.Column("fit_score", sa.Float),
        sa.Column("engagement_score", sa.Float),
        sa.Column("reasons", sa.JSON),  # the top three reasons for and against, as data
        sa.Column("reason_text", sa.Text),  # the top three reasons for, one sentence a line
        sa.Column("field_log_odds", sa.JSON),  # every business field's log-odds: what "why it changed" compares
        sa.Column("trend", sa.String(10)),  # against the score this one replaced
        sa.Column("change", sa.JSON),  # why it changed, as data
        sa.Column("change_text", sa.Text),
        sa.Column("unseen", sa.Text),  # values the model never saw at training
        sa.Column("model_name", sa.String(120), nullable=False),
        sa.Column("model_version", sa.String(40), nullable=False),
        sa.Column("run_id", sa.String(36)),
        sa.Column("feature_schema", sa.String(16)),  # hash of the features the model read
        sa.Column("scored_at", Timestamp, nullable=False),
        sa.CheckConstraint("probability >= 0 AND probability <= 1"),
        _one_of("tier", TIERS),
        _one_of("trend", TRENDS),
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
    sa.Index("ix_lead_score_history_run", "run_id"),
)

scoring_runs = sa.Table(
    "scoring_runs",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("started_at", Timestamp, nullable=False),
    sa.Column("finished_at", Timestamp),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("model_name", sa.String(120), nullable=False),
    sa.Column("model_version", sa.String(40), nullable=False),
    sa.Column("as_of", Timestamp, nullable=False),
    sa.Column("open_leads", sa.Integer),
    sa.Column("scored", sa.Integer),
    sa.Column("written", sa.Integer),
    sa.Column("unchanged", sa.Integer),
    sa.Column("rejected", sa.Integer),
    sa.Column("history_rows", sa.Integer),
    sa.Column("drift", sa.JSON),
    sa.Column("summary", sa.JSON),
    sa.Column("message", sa.Text),
    sa.Column("host", sa.String(255)),
    sa.Column("pid", sa.Integer),
    _one_of("status", RUN_STATUSES),
    sa.Index("ix_scoring_runs_started", "started_at"),
)

score_rejects = sa.Table(
    "score_rejects",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("run_id", sa.ForeignKey("scoring_runs.id"), nullable=False),
    sa.Column("lead_id", sa.BigInteger),  # no foreign key: a rejected lead may be one the CRM holds twice
    sa.Column("reason", sa.Text, nullable=False),
    sa.Index("ix_score_rejects_run", "run_id"),
)

EXPORT_STATUSES = ("accepted", "failed")

# What `leadscore export` last sent each lead's record in another CRM (Salesforce, HubSpot), and what that CRM
# accepted: a lead is sent again only when the values it would get differ from the accepted ones, or its last
# attempt failed. The values are stored as sent (rounded, truncated), so that they compare with the next export's.
crm_exports = sa.Table(
    "crm_exports",
    metadata,
    sa.Column("target", sa.String(60), primary_key=True),  # the CRM and its object: salesforce:Lead, hubspot:contacts
    sa.Column("lead_id", sa.ForeignKey("leads.id"), primary_key=True),
    sa.Column("record_key", sa.String(255)),  # what found the record: its CRM id, or leadscore's id in a key field
    sa.Column("probability", sa.Float),
    sa.Column("tier", sa.String(10)),
    sa.Column("fit_score", sa.Integer),
    sa.Column("engagement_score", sa.Integer),
    sa.Column("reason_text", sa.Text),
    sa.Column("model_version", sa.String(40)),
    sa.Column("scored_at", Timestamp),
    sa.Column("accepted_at", Timestamp),  # null until the CRM first accepted this lead's values
    sa.Column("status", sa.String(10), nullable=False),  # of the last attempt
    sa.Column("error", sa.Text),  # the CRM's words, when the last attempt failed
    sa.Column("attempts", sa.Integer, nullable=False),  # sends since the values were last accepted, that one included
    sa.Column("sent_at", Timestamp, nullable=False),
    _one_of("status", EXPORT_STATUSES),
)

# Columns added after leadscore 0.1.0 wrote its first CRMs: `crm init --append` adds them to those
# tables (all nullable, so existing rows stay valid), and a table lacking only these is still leadscore's.
ADDED_COLUMNS = {
    table: ("reason_text", "field_log_odds", "trend", "change", "change_text", "unseen", "run_id", "feature_schema")
    for table in ("lead_scores", "lead_score_history")
}

TABLES = tuple(metadata.sorted_tables)
TABLE_NAMES = tuple(table.name for table in TABLES)
