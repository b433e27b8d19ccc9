"""The scoring API: one model loaded once, a lead scored the moment a form handler or a CRM webhook sends it.

``POST /score`` takes leads as such a caller has them: a CRM model's leads by
profile and activities (or, when the service reads a CRM, by id, their
history read from it), a flat-table model's leads as rows of its columns.
Either way they go through the features and the ``Scorer`` the nightly job
uses: there is no second scoring path. ``GET /health``, ``GET /model`` and
the OpenAPI schema (``/openapi.json``, ``/docs``) describe the service.

The endpoints are ``async`` and score inline: one request at a time per
process, so nothing a request touches can race with another. The service
scales by processes (``leadscore serve --workers N``), each holding the model
once; the model, the scorer and the CRM engine are read-only after start.
"""

from __future__ import annotations

import gc
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated

import numpy as np
import pandas as pd
from fastapi import FastAPI, HTTPException, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from leadscore.arrays import object_array
from leadscore.crm.conform import PLAUSIBLE_FROM, PLAUSIBLE_UNTIL, conform
from leadscore.crm.history import PROFILE_COLUMNS, CrmHistory, sort_by_lead_and_time
from leadscore.crm.vocabulary import ACTIVITY_TYPES, TIERS
from leadscore.errors import LeadscoreError
from leadscore.features import CRM_FEATURES, open_leads_at
from leadscore.features.build import build_features
from leadscore.features.crm_features import foreign_features
from leadscore.models.scoring import Scorer
from leadscore.pipelines.registry import ResolvedModel
from leadscore.serve.score_writer import utc_now

MOST_LEADS = 1_000  # per request: a webhook sends one, a form batch a few hundred
MOST_ACTIVITIES = 10_000  # per lead
LEAD_ID = Field(ge=0, le=2**63 - 1, description="The lead's id in the CRM, a whole number.")
Value = str | float | int | bool | None
# The range of times the CRM's reading rules accept, so that a time the API takes is one conform takes.
EARLIEST, LATEST = (pd.Timestamp(bound).to_pydatetime() for bound in (PLAUSIBLE_FROM, PLAUSIBLE_UNTIL))


def _utc_in_range(moment: datetime) -> datetime:
    """Naive UTC, as leadscore keeps times, within the CRM's range (an offset is applied, then dropped)."""
    try:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment
    except OverflowError:
        raise ValueError("is out of range once its offset is applied") from None
    if not EARLIEST <= moment < LATEST:
        raise ValueError(f"must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC)")
    return moment.replace(microsecond=0)


Moment = Annotated[datetime, AfterValidator(_utc_in_range)]


class Activity(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str = Field(min_length=1, max_length=40, description="One of the activity types of GET /model.")
    occurred_at: Moment = Field(description="When it happened (UTC when no offset is given).")


class Lead(BaseModel):
    """A CRM model's lead as a form or webhook has it: its profile and what it did."""

    model_config = ConfigDict(extra="forbid")
    id: int = LEAD_ID
    created_at: Moment = Field(description="When the person became a lead (UTC when no offset is given).")
    channel: str = Field("", max_length=40)
    campaign: str | None = Field(None, max_length=120)
    company: str | None = Field(None, max_length=200)
    industry: str | None = Field(None, max_length=60)
    company_size: str | None = Field(None, max_length=20)
    country: str | None = Field(None, max_length=60)
    job_title: str | None = Field(None, max_length=120)
    seniority: str | None = Field(None, max_length=40)
    department: str | None = Field(None, max_length=60)
    email_domain: str | None = Field(None, max_length=120)
    activities: list[Activity] = Field(default_factory=list, max_length=MOST_ACTIVITIES)


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    leads: list[Lead] = Field(default_factory=list, max_length=MOST_LEADS,
                              description="CRM model: leads by profile and activities.")
    lead_ids: list[int] = Field(default_factory=list, max_length=MOST_LEADS,
                                description="CRM model, service started with --crm: leads read from the CRM.")
    rows: list[dict[str, Value]] = Field(default_factory=list, max_length=MOST_LEADS,
                                         description="Flat-table model: one object per lead, its id and columns.")
    as_of: Moment | None = Field(None, description="The moment to score at; activities after it are ignored. "
                                                     "Default: now.")


class Reason(BaseModel):
    field: str
    label: str
    points: float
    sentence: str


class ScoredLead(BaseModel):
    lead_id: int | str
    probability: float
    tier: str = Field(description=f"One of {', '.join(TIERS)}.")
    fit_score: float | None
    engagement_score: float | None
    reasons_for: list[Reason]
    reasons_against: list[Reason]
    sentences: list[str] = Field(description="The reasons for, as a marketer reads them.")
    tier_reasons: str
    nothing_stands_out: str | None
    unseen: list[str] = Field(description="Values the model never saw at training, as column=value.")


class ScoreResponse(BaseModel):
    model: str
    model_version: str
    as_of: datetime
    leads: list[ScoredLead]


@dataclass(frozen=True)
class Service:
    """What every request reads and none writes."""

    resolved: ResolvedModel
    scorer: Scorer
    engine: object | None  # the CRM's SQLAlchemy engine, for lead ids
    crm_model: bool


def create_app(resolved: ResolvedModel, engine=None) -> FastAPI:
    """The service for one loaded model; ``engine`` (a CRM) lets requests name leads by id."""
    scorer = Scorer(resolved.model)
    scorer.explainer  # built now, once, not by whichever request comes first
    service = Service(resolved, scorer, engine, not foreign_features(resolved.model.features))
    app = FastAPI(title="leadscore", version=resolved.version,
                  description="Probability of conversion, tier and reasons for each lead, from one registered model.")

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": resolved.name, "model_version": resolved.version}

    @app.get("/model")
    async def model_description() -> dict:
        return describe(service)

    @app.post("/score", response_model=ScoreResponse)
    async def score(request: ScoreRequest) -> Response:
        # Already a validated ScoreResponse: serialised once, not checked again against response_model (which
        # still describes it in the OpenAPI schema).
        return Response(score_request(service, request).model_dump_json(), media_type="application/json")

    return app


def describe(service: Service) -> dict:
    model = service.resolved.model
    tiers = model.tiers
    fields = [{"name": name, "label": model.registry[name].label, "kind": model.registry[name].kind,
               "family": model.registry[name].family} for name in model.features]
    return {
        "name": service.resolved.name, "version": service.resolved.version, "uri": service.resolved.uri,
        "kind": model.kind, "id_column": model.id_column,
        "thresholds": {"mql": tiers.mql, "sql": tiers.sql, "rule": tiers.description} if tiers else None,
        "input": "leads (profile and activities)" if service.crm_model else "rows (the table's columns)",
        "profile_fields": list(Lead.model_fields) if service.crm_model else None,
        "activity_types": [activity.code for activity in ACTIVITY_TYPES] if service.crm_model else None,
        "reads_lead_ids": service.engine is not None and service.crm_model,
        "features": fields,
    }


def _invalid(location: list, message: str) -> HTTPException:
    """A 422 in FastAPI's own shape: the field's location and what is wrong with it."""
    return HTTPException(status_code=422, detail=[{"loc": ["body", *location], "msg": message, "type": "value_error"}])


def score_request(service: Service, request: ScoreRequest) -> ScoreResponse:
    as_of = request.as_of or utc_now()
    given = [name for name in ("leads", "lead_ids", "rows") if getattr(request, name)]
    if len(given) != 1:
        raise _invalid([], "give exactly one of leads, lead_ids or rows" + (f" (got {', '.join(given)})" if given else ""))
    kind = given[0]
    if service.crm_model and kind == "rows":
        raise _invalid(["rows"], "this model was trained on the CRM: send leads (profile and activities) or lead_ids")
    if not service.crm_model and kind != "rows":
        raise _invalid([kind], "this model was trained on a flat table: send rows with its columns (GET /model)")
    if kind == "lead_ids" and service.engine is None:
        raise _invalid(["lead_ids"], "the service reads no CRM: start it with --crm to score leads by id, or send "
                                     "their profile and activities as leads")
    if kind == "rows":
        frame = _rows(service, request.rows)
    else:
        history = _history(request.leads, as_of) if kind == "leads" else _crm_history(service, request.lead_ids, as_of)
        frame = build_features(history, open_leads_at(history, as_of), CRM_FEATURES)
        if kind == "lead_ids":
            missing = sorted(set(request.lead_ids) - set(frame["lead_id"].tolist()))
            if missing:
                raise _invalid(["lead_ids"], f"{len(missing)} lead(s) are not open leads of the CRM as of "
                                             f"{as_of:%Y-%m-%d %H:%M:%S}: {', '.join(map(str, missing[:10]))}")
    try:
        scored = service.scorer.score_columns(frame, explain=True, source="the request")
    except LeadscoreError as error:
        raise _invalid([kind], str(error)) from error
    id_column = service.resolved.model.id_column
    rows = [dict(zip(scored, values)) for values in zip(*(column.tolist() for column in scored.values()))]
    return ScoreResponse(model=service.resolved.name, model_version=service.resolved.version, as_of=as_of,
                         leads=[_scored_lead(row, id_column) for row in rows])


def _history(leads: list[Lead], as_of: datetime) -> CrmHistory:
    """The request's leads as a CRM history: the same reading rules (``conform``) and features as the CRM's."""
    seen: dict[int, int] = {}
    for position, lead in enumerate(leads):
        if lead.id in seen:
            raise _invalid(["leads", position, "id"], f"lead {lead.id} is also lead number {seen[lead.id]} of this request")
        seen[lead.id] = position
        if lead.created_at >= as_of:
            raise _invalid(["leads", position, "created_at"], f"lead {lead.id} was created at or after as_of "
                                                               f"({as_of:%Y-%m-%d %H:%M:%S}): it is not a lead yet then")
    # Frames of typed arrays: the types pandas would otherwise infer and convert, at a fixed cost per column.
    profile = {name: object_array([getattr(lead, name, None) for lead in leads])
               for name in PROFILE_COLUMNS if name != "lifecycle_stage"}
    frame = pd.DataFrame({"id": np.array([lead.id for lead in leads], dtype=np.int64),
                          "created_at": np.array([lead.created_at for lead in leads], dtype="datetime64[s]"),
                          **profile, "lifecycle_stage": object_array(["lead"] * len(leads))})
    known = [(lead.id, a.occurred_at, a.type) for lead in leads for a in lead.activities
             if a.occurred_at < as_of]  # what happened after the moment scored is not known then
    activities = pd.DataFrame({"lead_id": np.array([event[0] for event in known], dtype=np.int64),
                               "occurred_at": np.array([event[1] for event in known], dtype="datetime64[s]"),
                               "type": object_array([event[2] for event in known])})
    stages = pd.DataFrame({"lead_id": np.empty(0, np.int64), "stage": np.empty(0, object),
                           "changed_at": np.empty(0, "datetime64[s]")})
    try:
        leads_frame, activities, stages, _ = conform(frame, activities, stages)
    except LeadscoreError as error:
        raise _invalid(["leads"], str(error)) from error
    costs = pd.DataFrame({"channel": np.empty(0, object), "month": np.empty(0, "datetime64[s]"),
                          "cost": np.empty(0, float)})
    return CrmHistory(leads_frame, sort_by_lead_and_time(activities, "occurred_at"), stages, costs, pd.Timestamp(as_of))


def request_leads(history: CrmHistory, lead_ids) -> list[dict]:
    """``lead_ids`` of ``history`` as ``POST /score`` takes them (``leads``): profile and activities, times as ISO
    text, which is what a CRM webhook or a form handler sends. For clients written in Python, tests and benchmarks."""
    profile = [name for name in Lead.model_fields if name not in ("id", "created_at", "channel", "activities")]
    leads = history.leads.set_index("id").loc[list(lead_ids)]
    activities = history.activities[history.activities["lead_id"].isin(list(lead_ids))].groupby("lead_id")
    bodies = []
    for lead_id, lead in leads.iterrows():
        own = activities.get_group(lead_id) if lead_id in activities.groups else history.activities.iloc[:0]
        bodies.append({
            "id": int(lead_id), "created_at": lead["created_at"].isoformat(), "channel": str(lead["channel"]),
            **{name: None if pd.isna(lead[name]) else str(lead[name]) for name in profile},
            "activities": [{"type": str(kind), "occurred_at": at.isoformat()}
                           for kind, at in zip(own["type"], own["occurred_at"])],
        })
    return bodies


def _crm_history(service: Service, lead_ids: list[int], as_of: datetime) -> CrmHistory:
    from leadscore.crm.sql import load_history

    try:
        return load_history(service.engine, activities_before=as_of, lead_ids=lead_ids)
    except LeadscoreError as error:  # the CRM's records of these leads break its rules: the message names them
        raise _invalid(["lead_ids"], str(error)) from error


def _rows(service: Service, rows: list[dict[str, Value]]) -> pd.DataFrame:
    model = service.resolved.model
    missing = [position for position, row in enumerate(rows) if model.id_column not in row]
    if missing:
        raise _invalid(["rows", missing[0], model.id_column], f"{len(missing)} row(s) lack the lead id "
                                                             f"{model.id_column!r}")
    frame = pd.DataFrame(rows)
    for name in model.features:
        if name not in frame.columns:
            frame[name] = None  # a column the caller does not have reads as missing, as in a file
    return frame


def _scored_lead(row: dict, id_column: str) -> ScoredLead:
    reasons = json.loads(row["reasons"])

    def listed(items: list[dict]) -> list[Reason]:
        return [Reason(field=r["field"], label=r["label"], points=r["points"], sentence=r["sentence"]) for r in items]

    lead_id = row[id_column]
    return ScoredLead(
        lead_id=int(lead_id) if isinstance(lead_id, (int, np.integer)) else str(lead_id),
        probability=float(row["probability"]), tier=row["tier"],
        fit_score=_number(row.get("fit_score")), engagement_score=_number(row.get("engagement_score")),
        reasons_for=listed(reasons["for"]), reasons_against=listed(reasons["against"]),
        sentences=[row[f"reason_{n}"] for n in (1, 2, 3) if row.get(f"reason_{n}")],
        tier_reasons=row.get("tier_reasons") or "", nothing_stands_out=reasons.get("nothing_stands_out"),
        unseen=[item for item in str(row.get("unseen") or "").split("; ") if item],
    )


def _number(value) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


# Objects a request may leave before the collector's youngest pass: default 700, which a request's frames pass
# many times over, each pass with a chance of a full one.
YOUNG_OBJECTS_BEFORE_COLLECTING = 50_000


def settle_collector() -> None:
    """Tune Python's garbage collector for a serving process, once the model is loaded.

    The half a million objects loaded at start (the model, MLflow, pandas) live as long as the process: frozen,
    the collector's full passes no longer walk them, and with a higher threshold for its youngest pass a request
    pays for a collection every few requests instead of several times. On this 2-core machine the p95 latency of
    a single lead went from 19.7-20.9 ms to 16.9-18.7 ms (benchmarks/api_speed.py's requests, A/B runs).
    Only the serving process calls it: it changes the process's collector, which a library must leave alone.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_OBJECTS_BEFORE_COLLECTING, *gc.get_threshold()[1:])


SERVE_SETTINGS = ("LEADSCORE_SERVE_MODEL", "LEADSCORE_SERVE_TRACKING_URI", "LEADSCORE_SERVE_CRM")


def app_from_environment() -> FastAPI:
    """The app of one worker process (``uvicorn --factory``, as ``leadscore serve --workers N`` starts them):
    each loads the model and opens the CRM named by the ``LEADSCORE_SERVE_*`` variables itself."""
    from leadscore.crm.database import connect
    from leadscore.pipelines.registry import resolve_model

    model, tracking, crm = (os.environ.get(name) or None for name in SERVE_SETTINGS)
    app = create_app(resolve_model(model or "models:/leadscore@champion", tracking), connect(crm) if crm else None)
    settle_collector()
    return app
