"""Reading Tryton's leads and opportunities into leadscore's data model (``CrmHistory``).

Where each part comes from:

* **leads**: every ``sale.opportunity``, in any state. ``created_at`` is its
  creation in Tryton, or the start of its ``start_date`` when that day is
  earlier (a lead keyed in late, or imported). The company is the party's
  name; the country the opportunity's address's, else the party's first
  address's; the e-mail domain the opportunity's contact's, else the party's
  e-mail; the owner the employee. Channel and campaign are the names of the
  ``marketing_campaign`` module's medium and campaign; industry, company size,
  job title, seniority and department the leadscore Tryton module's fields.
* **stage changes**: from Tryton's own record history of opportunities
  (``sale.opportunity`` keeps every version: ``_history``). Each version
  whose state differs from the one before is a change at that version's
  time. A record created already closed (imported) has no recorded
  transition: its close is placed at the start of its ``end_date``, the day
  Tryton gives for it. Tryton's states map onto leadscore's stages by
  ``TRYTON_STAGES``, which ``--map-stage`` overrides.
* **activities**: the leadscore Tryton module's ``leadscore.activity``
  records, which website and marketing integrations fill.
* **campaign costs**: none; Tryton keeps no spend per channel.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import numpy as np
import pandas as pd
from leadscore.crm.conform import conform
from leadscore.crm.history import PROFILE_COLUMNS, CrmHistory, sort_by_lead_and_time
from leadscore.crm.tryton.connection import TrytonDatabase

from leadscore.progress import Progress

# Tryton's opportunity states as leadscore's stages. A Tryton "opportunity" is a lead sales has accepted (it needs a
# party and an employee): leadscore's sql. "converted" means a sale (a quotation) exists: leadscore's opportunity.
# A sale that is confirmed makes the opportunity "won": a customer.
TRYTON_STAGES = {
    "lead": "lead",
    "opportunity": "sql",
    "converted": "opportunity",
    "won": "customer",
    "lost": "disqualified",
    "cancelled": "disqualified",
}
CLOSING_STATES = ("won", "lost", "cancelled")
READ_BATCH = 10_000  # records read through the ORM at once: one progress step, bounded memory
OPPORTUNITY_FIELDS = (
    "create_date", "start_date", "state", "party.name", "party.email", "contact.type", "contact.value",
    "address.country.name", "employee.rec_name", "marketing_medium.name", "marketing_campaign.name",
    "lead_industry", "lead_company_size", "lead_job_title", "lead_seniority", "lead_department",
)


def read_tryton_history(
    tryton: TrytonDatabase,
    activities_before: datetime | None = None,
    progress: Progress | None = None,
    stage_map: Mapping[str, str] | None = None,
    rejects: list[tuple[int, str]] | None = None,
) -> CrmHistory:
    """Tryton's leads, stage changes and activities as leadscore's history (module docstring).

    The signature is ``serve.compute.HistoryReader``'s: ``activities_before`` leaves out activities a snapshot
    cannot use, ``stage_map`` maps Tryton's states over ``TRYTON_STAGES``, and ``rejects`` collects the leads
    whose records break leadscore's rules instead of refusing them all (``crm.conform``).
    """
    progress = progress or Progress()
    with tryton.transaction(readonly=True) as pool:
        from trytond.transaction import Transaction

        # Country names are translatable in Tryton; read in English, the language its records are stored in, so
        # that the values do not change with the language of the user the job runs as.
        with Transaction().set_context(language="en"):
            leads = _read_leads(pool, progress)
        versions = _read_versions(pool)
        activities, latest_activity = _read_activities(pool, activities_before, progress)
    stage_changes = _stage_changes(versions, leads)
    mapping = {**TRYTON_STAGES, **(stage_map or {})}
    as_of = _latest_moment(leads["created_at"], stage_changes["changed_at"], latest_activity)
    leads, activities, stage_changes, notes = conform(leads, activities, stage_changes, mapping, None, rejects)
    for column in PROFILE_COLUMNS:  # as the SQL reader gives them: categories of text
        leads[column] = leads[column].astype(object).astype("category")
    activities["type"] = activities["type"].astype("category")
    return CrmHistory(
        leads=leads,
        activities=sort_by_lead_and_time(activities, "occurred_at"),
        stage_changes=sort_by_lead_and_time(stage_changes, "changed_at"),
        campaign_costs=pd.DataFrame({"channel": pd.Series(dtype=object), "month": pd.Series(dtype="datetime64[s]"),
                                     "cost": pd.Series(dtype=float)}),
        as_of=as_of,
        notes=tuple(notes),
    )


def _read_leads(pool, progress: Progress) -> pd.DataFrame:
    Opportunity = pool.get("sale.opportunity")
    ids = [record.id for record in Opportunity.search([], order=[("id", "ASC")])]
    rows: list[dict] = []
    with progress.task("Reading Tryton leads", total=len(ids)) as advance:
        for start in range(0, len(ids), READ_BATCH):
            batch = ids[start:start + READ_BATCH]
            rows += Opportunity.read(batch, list(OPPORTUNITY_FIELDS))
            advance(len(batch))
    countries = _party_countries(pool, {_related(row, "party", "id") for row in rows} - {None})
    created = _times([row["create_date"] for row in rows])
    started = pd.to_datetime(pd.Series([row["start_date"] for row in rows], dtype=object)).astype("datetime64[s]")
    # A start day earlier than the record means the lead existed before Tryton knew it: it counts from that day.
    created_at = created.where(~(started < created.dt.normalize()), started)
    return pd.DataFrame({
        "id": np.array([row["id"] for row in rows], dtype=np.int64),
        "created_at": created_at.to_numpy(dtype="datetime64[s]"),
        "channel": [_related(row, "marketing_medium", "name") for row in rows],
        "campaign": [_related(row, "marketing_campaign", "name") for row in rows],
        "company": [_related(row, "party", "name") for row in rows],
        "industry": [row["lead_industry"] or None for row in rows],
        "company_size": [row["lead_company_size"] or None for row in rows],
        "country": [_related(row, "address", "country.", "name")
                    or countries.get(_related(row, "party", "id")) for row in rows],
        "job_title": [row["lead_job_title"] or None for row in rows],
        "seniority": [row["lead_seniority"] or None for row in rows],
        "department": [row["lead_department"] or None for row in rows],
        "email_domain": [_email_domain(row) for row in rows],
        "lifecycle_stage": [row["state"] for row in rows],
        "owner": [_related(row, "employee", "rec_name") for row in rows],
    })


def _related(row: dict, *path: str):
    """A value read through Tryton's dotted names (``party.name`` arrives as ``{"party.": {"name": ...}}``)."""
    value = row.get(path[0] + ".")
    for key in path[1:]:
        if value is None:
            return None
        value = value.get(key)
    return value or None


def _email_domain(row: dict) -> str | None:
    contact = row.get("contact.") or {}
    address = contact.get("value") if contact.get("type") == "email" else _related(row, "party", "email")
    if not address or "@" not in address:
        return None
    return address.rsplit("@", 1)[1].strip().lower() or None


def _party_countries(pool, parties: set[int]) -> dict[int, str]:
    """Each party's country: that of its first address (Tryton's address order) that has one."""
    if not parties:
        return {}
    Address = pool.get("party.address")
    found: dict[int, str] = {}
    for row in Address.search_read([("party", "in", sorted(parties)), ("country", "!=", None)],
                                   fields_names=["party", "country.name"]):
        found.setdefault(row["party"], _related(row, "country", "name"))
    return found


def _read_versions(pool) -> pd.DataFrame:
    """Every version Tryton's history keeps of every opportunity: its state, end date and time, oldest first."""
    from sql import Column
    from sql.conditionals import Coalesce
    from trytond.transaction import Transaction

    history = pool.get("sale.opportunity").__table_history__()
    cursor = Transaction().connection.cursor()
    version = Column(history, "__id")
    cursor.execute(*history.select(
        history.id, history.state, history.end_date, Coalesce(history.write_date, history.create_date), version,
        order_by=[history.id.asc, version.asc],
    ))
    rows = cursor.fetchall()
    return pd.DataFrame({
        "id": np.array([row[0] for row in rows], dtype=np.int64),
        "state": pd.Series([row[1] for row in rows], dtype=object),
        "end_date": pd.to_datetime(pd.Series([row[2] for row in rows], dtype=object)).astype("datetime64[s]"),
        "moment": _times([row[3] for row in rows]).to_numpy(dtype="datetime64[s]"),
    })


def _stage_changes(versions: pd.DataFrame, leads: pd.DataFrame) -> pd.DataFrame:
    """One row per change of state, at the time Tryton recorded it (module docstring)."""
    # A deleted opportunity's last version has no state: it is no lead any more, and neither are its versions.
    versions = versions[versions["id"].isin(leads["id"]) & versions["state"].notna()]
    before = versions.groupby("id", sort=False)["state"].shift()
    first = before.isna()
    changed = (first & (versions["state"] != "lead")) | (~first & (versions["state"] != before))
    changes = versions[changed]
    moment = changes["moment"].to_numpy(dtype="datetime64[s]")
    # Created already closed: the transition happened outside Tryton, on the day its end date gives.
    imported_close = (first[changed] & changes["state"].isin(CLOSING_STATES) & changes["end_date"].notna()).to_numpy()
    created_at = leads.set_index("id")["created_at"].reindex(changes["id"]).to_numpy(dtype="datetime64[s]")
    closed_on = np.maximum(changes["end_date"].to_numpy(dtype="datetime64[s]"), created_at)
    return pd.DataFrame({
        "lead_id": changes["id"].to_numpy(dtype=np.int64),
        "stage": changes["state"].to_numpy(dtype=object),
        "changed_at": np.where(imported_close, closed_on, moment),
    })


def _read_activities(pool, before: datetime | None, progress: Progress) -> tuple[pd.DataFrame, pd.Timestamp]:
    """The activities before ``before`` (all when None), and the latest activity time of all."""
    from sql.aggregate import Max
    from trytond.transaction import Transaction

    Activity = pool.get("leadscore.activity")
    table = Activity.__table__()
    cursor = Transaction().connection.cursor()
    where = table.occurred_at < Activity._fields["occurred_at"].sql_format(before) if before is not None else None
    with progress.task("Reading Tryton activities", total=None) as advance:
        cursor.execute(*table.select(table.opportunity, table.occurred_at, table.type, where=where))
        rows = cursor.fetchall()
        advance(len(rows))
    cursor.execute(*table.select(Max(table.occurred_at)))
    latest = cursor.fetchone()[0]
    activities = pd.DataFrame({
        "lead_id": np.array([row[0] for row in rows], dtype=np.int64),
        "occurred_at": _times([row[1] for row in rows]).to_numpy(dtype="datetime64[s]"),
        "type": pd.Series([row[2] for row in rows], dtype=object),
    })
    return activities, (_times([latest]).iloc[0] if latest is not None else pd.NaT)


def _times(values: list) -> pd.Series:
    """Tryton's timestamps (datetimes, or text where SQLite computed them) as seconds, naive UTC as Tryton keeps."""
    text = pd.Series([None if value is None else str(value) for value in values], dtype=object)
    return pd.to_datetime(text, format="ISO8601").astype("datetime64[s]")


def _latest_moment(*times) -> pd.Timestamp:
    """The latest time the CRM records: labels whose horizon ends after it are not known yet."""
    latest = [pd.Timestamp(value.max()) if isinstance(value, pd.Series) else value for value in times]
    known = [moment for moment in latest if not pd.isna(moment)]
    return max(known) if known else pd.NaT
