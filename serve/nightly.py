"""The nightly scoring job: every open lead of a CRM scored, explained and written back, safe to rerun and to kill.

In order, with nothing written before the checks pass:

1. check the CRM's tables and the model (it must resolve, and its features
   must be ones the CRM's history provides);
2. take the CRM's job lock (a second job exits, or waits with ``wait``),
   and mark runs left ``running`` by a dead process as ``failed``;
3. read the history as of ``as_of`` (activities before it only), leaving out
   leads whose records break the CRM's rules as rejects; build the features
   of every open lead with the training code;
4. score them all and measure drift against the reference the model keeps:
   above the holding level, write nothing but the run (``held``);
5. explain them chunk by chunk and write each chunk in one transaction: a
   lead's row only when its score, tier, reasons or model changed; a history
   row only when the change is material (tier, a move of ``history_points``,
   or a new model); each with why the score changed since its last one.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import sqlalchemy as sa

from leadscore.crm import scores as crm_scores
from leadscore.crm.sql import load_history
from leadscore.errors import LeadscoreError
from leadscore.features.build import build_features
from leadscore.features.crm_features import CRM_FEATURES, foreign_features, require_crm_model
from leadscore.features.snapshots import open_leads_at
from leadscore.features.timeline import unknown_activity_types
from leadscore.models.changes import describe_change, describe_changes, field_matrix
from leadscore.models.explain import MIN_REASON_POINTS, ReasonRule, business_fields
from leadscore.models.reasons import field_labels, text_as_objects
from leadscore.models.scoring import Scorer
from leadscore.pipelines.registry import ResolvedModel, resolve_model
from leadscore.progress import Progress
from leadscore.serve.workers import ChunkScorer, available_cores

CHUNK_ROWS = 50_000
SCORE_COLUMNS = ("lead_id", "probability", "tier", "fit_score", "engagement_score", "reasons", "reason_text",
                 "field_log_odds", "trend", "change", "change_text", "unseen", "model_name", "model_version", "run_id",
                 "feature_schema", "scored_at")
EXIT_HELD, EXIT_LOCKED = 3, 4


@dataclass(frozen=True)
class ScoringOptions:
    model_uri: str = "models:/leadscore@champion"
    tracking_uri: str | None = None
    as_of: datetime | None = None  # naive UTC; None: now
    allow_drift: bool = False
    dry_run: bool = False
    history_points: float = 1.0  # a probability move of this many points or more goes to the history
    wait: bool = False
    stage_map: dict[str, str] = field(default_factory=dict)
    workers: int = 0  # processes explaining chunks at once; 0: one per available core
    min_reason_points: float = MIN_REASON_POINTS  # a field moving a lead less is no reason

    def __post_init__(self) -> None:
        ReasonRule(self.min_reason_points)  # a bad value is refused before the job takes the CRM's lock


@dataclass
class ScoringReport:
    """What a run did, for the summary a person reads and the JSON a cron log keeps."""

    run_id: str
    status: str  # complete, held, dry run
    model: str
    as_of: str
    open_leads: int = 0
    scored: int = 0
    written: int = 0
    unchanged: int = 0
    rejected: int = 0
    history_rows: int = 0
    tiers: dict[str, int] = field(default_factory=dict)
    rejects: dict[str, int] = field(default_factory=dict)  # reason: leads
    unseen: dict[str, int] = field(default_factory=dict)  # feature=value: leads
    drift: dict | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    failed_runs: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {key: getattr(self, key) for key in ("open_leads", "scored", "written", "unchanged", "rejected",
                                                     "history_rows")}

    def as_dict(self) -> dict:
        return {key: value for key, value in self.__dict__.items()}


def score_crm(engine: sa.Engine, options: ScoringOptions = ScoringOptions(), progress: Progress = Progress()) -> ScoringReport:
    """Run the job on the CRM behind ``engine`` (see the module docstring); the report says what it did."""
    began = time.perf_counter()
    as_of = options.as_of or datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    if not options.dry_run:
        with engine.connect() as connection:
            crm_scores.require_scoring_tables(connection)
    resolved = resolve_model(options.model_uri, options.tracking_uri)
    _require_crm_features(resolved)
    report = ScoringReport(run_id=uuid.uuid4().hex, status="dry run" if options.dry_run else "running",
                           model=f"{resolved.name} version {resolved.version}", as_of=f"{as_of:%Y-%m-%d %H:%M:%S}")
    if options.dry_run:
        _run(engine, resolved, options, as_of, report, progress)
    else:
        with crm_scores.job_lock(engine, options.wait):
            started = _now()
            with engine.begin() as connection:
                report.failed_runs = crm_scores.fail_dead_runs(connection, started)
                crm_scores.start_run(connection, report.run_id, resolved.name, resolved.version, as_of, started)
            try:
                _run(engine, resolved, options, as_of, report, progress)
            except BaseException as error:
                report.status = "failed"
                _finish(engine, report, str(error) or type(error).__name__)
                raise
            _finish(engine, report, _message(report))
    report.seconds = round(time.perf_counter() - began, 2)
    return report


def _require_crm_features(resolved: ResolvedModel) -> None:
    require_crm_model(
        resolved.model.features, f"{resolved.name} version {resolved.version}",
        "the nightly job scores models trained on the CRM (`leadscore train --crm`). Score a flat table with "
        "`leadscore predict`. Nothing was written.",
    )


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)


def _run(engine, resolved: ResolvedModel, options: ScoringOptions, as_of: datetime, report: ScoringReport,
         progress: Progress) -> None:
    rejects: list[tuple[int, str]] = []
    history = load_history(engine, activities_before=as_of, progress=progress, stage_map=options.stage_map,
                           rejects=rejects)
    report.notes += list(history.notes)
    unknown = unknown_activity_types(history.activities)
    if unknown:
        report.notes.append("Activities of types the model has no feature for were left out: "
                            + ", ".join(f"{name} ({count:,})" for name, count in list(unknown.items())[:10]) + ".")
    report.rejected = len(rejects)
    report.rejects = dict(Counter(reason for _, reason in rejects).most_common())
    features = build_features(history, open_leads_at(history, as_of), CRM_FEATURES, progress)
    report.open_leads = len(features) + len(rejects)
    model = resolved.model
    with progress.task("Scoring the open leads", total=1) as advance:
        probability = model.predict_proba(features) if len(features) else np.zeros(0)
        advance(1)
    drift = _measure_drift(model, features, probability, report)
    if not options.dry_run:
        with engine.begin() as connection:
            crm_scores.write_rejects(connection, report.run_id, rejects)
    if drift is not None and drift.status == "hold" and not options.allow_drift:
        report.status = "held"
        return
    with engine.connect() as connection:
        previous = crm_scores.previous_scores(connection) if not options.dry_run or _has_scores(connection) else None
    writer = _ChunkWriter(engine, resolved, options, report, previous)
    # Workers take seconds to start: a job of one chunk explains it here.
    workers = 1 if len(features) <= CHUNK_ROWS else options.workers or available_cores()
    chunks = (features.iloc[start:start + CHUNK_ROWS] for start in range(0, len(features), CHUNK_ROWS))
    with progress.task("Explaining and writing scores", total=len(features)) as advance, writer, \
            ChunkScorer(model, workers, explain=True, fields=True, source="the CRM",
                        min_reason_points=options.min_reason_points) as scorer:
        for chunk, scored in scorer.scored(chunks):
            writer.write(chunk, scored)
            advance(len(chunk))
    if report.status == "running":
        report.status = "complete"


def _has_scores(connection: sa.Connection) -> bool:
    return "lead_scores" in sa.inspect(connection).get_table_names()


def _measure_drift(model, features: pd.DataFrame, probability: np.ndarray, report: ScoringReport):
    reference = getattr(model, "drift", None)
    if reference is None:
        report.notes.append("The model keeps no drift reference (trained by an earlier leadscore): drift was not "
                            "checked. Retrain it to have every run checked.")
        return None
    if not len(features):
        return None
    measured = reference.measure(features[model.features], probability)
    report.drift = measured.as_dict()
    if measured.status != "ok":
        report.notes.append(measured.message)
    return measured


class _ChunkWriter:
    """Scores, compares and writes one chunk of open leads at a time, each chunk in one transaction.

    Writing happens on a thread of its own, one chunk behind: the database works on chunk k (the drivers
    release the interpreter while they wait on it) while the next chunk is being explained.
    """

    def __init__(self, engine, resolved: ResolvedModel, options: ScoringOptions, report: ScoringReport,
                 previous: pd.DataFrame | None) -> None:
        self.engine, self.resolved, self.options, self.report = engine, resolved, options, report
        self.previous = previous
        self.fields = business_fields(resolved.model.registry, resolved.model.features)[0]
        self.labels = field_labels(resolved.model.registry, resolved.model.features)
        self.schema_hash = str(resolved.model.summary.get("fingerprint", {}).get("schema_hash", ""))[:16]
        self.earlier_scorers: dict[tuple[str, str], Scorer | None] = {}
        self.pending: queue.Queue = queue.Queue(maxsize=1)
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._write_pending, name="leadscore scores writer", daemon=True)

    def __enter__(self) -> _ChunkWriter:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.pending.put(None)
        self.thread.join()
        if self.failure is not None and exc_info[0] is None:
            raise self.failure

    def wait(self) -> None:
        """Until every chunk handed over so far is committed."""
        self.pending.join()
        if self.failure is not None:
            raise self.failure

    def _write_pending(self) -> None:
        while (item := self.pending.get()) is not None:
            try:
                if self.failure is None:
                    with self.engine.begin() as connection:
                        crm_scores.write_scores(connection, *item)
            except BaseException as error:  # raised in the main thread, at its next hand-over or at the end
                self.failure = error
            finally:
                self.pending.task_done()
        self.pending.task_done()

    def write(self, chunk: pd.DataFrame, scored: pd.DataFrame) -> None:
        report = self.report
        report.scored += len(scored)
        for tier, count in scored["tier"].value_counts().items():
            report.tiers[tier] = report.tiers.get(tier, 0) + int(count)
        for cell in scored["unseen"][scored["unseen"] != ""]:
            for entry in cell.split("; "):
                report.unseen[entry] = report.unseen.get(entry, 0) + 1
        rows, history = self._rows(chunk, scored)
        report.unchanged += len(scored) - len(rows)
        report.written += len(rows)
        report.history_rows += int(history.sum())
        if self.options.dry_run or not len(rows):
            return
        if self.failure is not None:
            raise self.failure
        # History rows copy the score and its sentences, but not the reasons and field log-odds as data: only the
        # latest score is ever compared or explained again, and those two are most of a row's bytes (3 kB of 4).
        self.pending.put((rows, rows[history.to_numpy()].assign(reasons=None, field_log_odds=None)))

    def _rows(self, chunk: pd.DataFrame, scored: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
        """The rows to write (new or changed scores) and which of them go to the history."""
        version = self.resolved.version
        reason_text = np.array(["\n".join(r for r in reasons if r) for reasons in
                                zip(scored["reason_1"], scored["reason_2"], scored["reason_3"])], dtype=object)
        previous = self.previous.reindex(scored["lead_id"]) if self.previous is not None else None
        if previous is None:
            known = np.zeros(len(scored), dtype=bool)
        else:
            known = previous["probability"].notna().to_numpy()
            same = (
                known
                & (previous["model_version"].astype(str).to_numpy() == version)
                & (previous["probability"].to_numpy() == scored["probability"].to_numpy())
                & (previous["tier"].to_numpy() == scored["tier"].to_numpy())
                & (previous["reason_text"].fillna("").to_numpy() == reason_text)
                & (previous["unseen"].fillna("").to_numpy() == scored["unseen"].to_numpy())
            )
        # An unchanged score is not rewritten: it would only cost the CRM's write budget.
        keep = np.flatnonzero(~same) if previous is not None else np.arange(len(scored))
        earlier_today = self._earlier_models_today(chunk, scored, previous, keep)
        trends, changes, change_texts, material = self._changes(scored, previous, known, keep, earlier_today)
        kept = scored.iloc[keep]
        rows = pd.DataFrame(text_as_objects({
            "lead_id": kept["lead_id"].to_numpy(dtype=np.int64),
            "probability": kept["probability"].to_numpy(dtype=float),
            "tier": kept["tier"].to_numpy(),
            "fit_score": kept["fit_score"].astype(float).to_numpy(),
            "engagement_score": kept["engagement_score"].astype(float).to_numpy(),
            "reasons": kept["reasons"].to_numpy(),
            "reason_text": reason_text[keep],
            "field_log_odds": kept["field_log_odds"].to_numpy(),
            "trend": trends,
            "change": changes,
            "change_text": change_texts,
            "unseen": kept["unseen"].replace("", None).to_numpy(),
            "model_name": self.resolved.name,
            "model_version": version,
            "run_id": self.report.run_id,
            "feature_schema": self.schema_hash,
            "scored_at": np.full(len(keep), np.datetime64(_now(), "s")),
        }), columns=list(SCORE_COLUMNS))
        return rows, pd.Series(material, dtype=bool)

    def _changes(self, scored, previous, known, keep, earlier_today) -> tuple[list, list, list, np.ndarray]:
        """Trend, change as JSON, its sentence and whether it is material, for each kept row."""
        version = self.resolved.version
        trends = np.full(len(keep), "new", dtype=object)
        changes = np.full(len(keep), None, dtype=object)
        texts = np.full(len(keep), "First score", dtype=object)
        material = np.ones(len(keep), dtype=bool)
        if previous is None:
            return trends.tolist(), changes.tolist(), texts.tolist(), material
        probability, tier, fields = (scored[name].to_numpy()[keep] for name in ("probability", "tier", "field_log_odds"))
        before_probability, before_tier, before_version, before_fields = (
            previous[name].to_numpy()[keep] for name in ("probability", "tier", "model_version", "field_log_odds"))
        was_known = known[keep]
        same_model = was_known & (before_version.astype(str) == version)
        if same_model.any():
            names = self.fields
            described = describe_changes(
                probability[same_model], tier[same_model], field_matrix(fields[same_model], names),
                before_probability[same_model], before_tier[same_model], field_matrix(before_fields[same_model], names),
                names, version, self.labels, self.options.history_points,
            )
            for column, values in zip((trends, changes, texts, material), described):
                column[same_model] = values
        for position in np.flatnonzero(was_known & ~same_model).tolist():
            stored = before_fields[position]
            before = {
                "probability": float(before_probability[position]),
                "tier": before_tier[position],
                "model_version": before_version[position],
                "field_log_odds": json.loads(stored) if isinstance(stored, str) else (stored or {}),
            }
            change = describe_change(float(probability[position]), tier[position], json.loads(fields[position]),
                                     version, before, self.labels, self.options.history_points,
                                     earlier_today.get(int(keep[position])))
            trends[position], texts[position], material[position] = change.trend, change.text, change.material
            changes[position] = json.dumps(change.data)
        return trends.tolist(), changes.tolist(), texts.tolist(), material

    def _earlier_models_today(self, chunk, scored, previous, rows: np.ndarray) -> dict[int, tuple[float, dict]]:
        """For ``rows`` last scored by another model: that model's probability and fields on today's record."""
        if previous is None:
            return {}
        other = np.zeros(len(scored), dtype=bool)
        other[rows] = True
        other &= previous["model_version"].notna().to_numpy() & (previous["model_version"].astype(str).to_numpy()
                                                                  != self.resolved.version)
        found = {}
        for (name, version), rows in pd.Series(np.flatnonzero(other)).groupby(
            [previous["model_name"].to_numpy()[other], previous["model_version"].astype(str).to_numpy()[other]]
        ):
            scorer = self._earlier_scorer(name, version)
            if scorer is None:
                continue
            positions = rows.to_numpy()
            earlier = scorer.score(chunk.iloc[positions], explain=True, fields=True, source="the CRM")
            for position, probability, points in zip(positions, earlier["probability"], earlier["field_log_odds"]):
                found[int(position)] = (float(probability), json.loads(points))
        return found

    def _earlier_scorer(self, name: str, version: str) -> Scorer | None:
        key = (name, version)
        if key not in self.earlier_scorers:
            try:
                earlier = resolve_model(f"models:/{name}/{version}", self.options.tracking_uri)
                usable = not foreign_features(earlier.model.features)
                self.earlier_scorers[key] = Scorer(earlier.model) if usable else None
            except LeadscoreError:
                self.earlier_scorers[key] = None  # deleted from the registry: the change is the model's alone
        return self.earlier_scorers[key]


def _finish(engine, report: ScoringReport, message: str) -> None:
    with engine.begin() as connection:
        crm_scores.finish_run(connection, report.run_id, report.status, _now(), report.counts(), report.drift,
                              _summary(report), message)


def _summary(report: ScoringReport) -> dict:
    return {"tiers": report.tiers, "rejects": report.rejects, "unseen": dict(Counter(report.unseen).most_common(50)),
            "notes": report.notes}


def _message(report: ScoringReport) -> str:
    if report.status == "held":
        return "Held by drift: nothing written to lead_scores; the last good scores stay. " + (
            report.drift or {}).get("message", "")
    return (f"Scored {report.scored:,} open leads: {report.written:,} written, {report.unchanged:,} unchanged, "
            f"{report.rejected:,} rejected, {report.history_rows:,} history rows.")
