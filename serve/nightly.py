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

With ``out`` (a data lake's folder) the CRM is only read: step 2 is skipped
and every scored lead goes to Parquet files instead (``serve.score_files``).
"""

from __future__ import annotations

import functools
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from leadscore.crm import scores as crm_scores
from leadscore.crm.sql import load_history
from leadscore.features.crm_features import require_crm_model
from leadscore.models.explain import MIN_REASON_POINTS, ReasonRule
from leadscore.pipelines.registry import ResolvedModel, resolve_model
from leadscore.progress import Progress
from leadscore.errors import LeadscoreError
from leadscore.serve.compute import Compute, HistoryReader, LocalCompute
from leadscore.serve.score_files import ParquetRun
from leadscore.serve.score_writer import ScoreSink, ScoreWriter, utc_now

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
    out: Path | None = None  # a data lake's folder: every scored lead to Parquet files there; the CRM is only read

    def __post_init__(self) -> None:
        ReasonRule(self.min_reason_points)  # a bad value is refused before the job takes the CRM's lock
        if self.dry_run and self.out is not None:
            raise LeadscoreError("--dry-run writes nothing and --out writes Parquet files: choose one.")

    @property
    def writes_crm(self) -> bool:
        return not self.dry_run and self.out is None


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
    files: str | None = None  # the run's folder of Parquet files, with ``out``

    def counts(self) -> dict[str, int]:
        return {key: getattr(self, key) for key in ("open_leads", "scored", "written", "unchanged", "rejected",
                                                     "history_rows")}

    def as_dict(self) -> dict:
        return {key: value for key, value in self.__dict__.items()}


def score_crm(engine: sa.Engine, options: ScoringOptions = ScoringOptions(), progress: Progress = Progress(), *,
              compute: Compute | None = None, read_history: HistoryReader | None = None,
              sink: ScoreSink | None = None) -> ScoringReport:
    """Run the job on the CRM behind ``engine`` (see the module docstring); the report says what it did.

    ``engine`` holds leadscore's tables (lead_scores, its history, the runs and the lock). By default the leads'
    history is read from it too; ``read_history`` reads it elsewhere (another CRM's API), and ``sink`` also writes
    each new or changed score there. ``compute`` chooses where features and explanations are computed (default:
    this machine). With ``options.out`` every scored lead goes to Parquet files in that folder instead, and neither
    the CRM nor ``sink`` is written.
    """
    compute = compute or LocalCompute()
    read_history = read_history or functools.partial(load_history, engine)
    began = time.perf_counter()
    as_of = options.as_of or utc_now()
    if options.writes_crm:
        with engine.connect() as connection:
            crm_scores.require_scoring_tables(connection)
    resolved = resolve_model(options.model_uri, options.tracking_uri)
    _require_crm_features(resolved)
    report = ScoringReport(run_id=uuid.uuid4().hex, status="dry run" if options.dry_run else "running",
                           model=f"{resolved.name} version {resolved.version}", as_of=f"{as_of:%Y-%m-%d %H:%M:%S}")
    if options.out is not None:
        # Nothing is written to the CRM, so no lock is taken: a lake run can read a replica, beside a CRM job.
        with ParquetRun(options.out, report.run_id, as_of) as lake:
            _run(engine, resolved, options, as_of, report, progress, compute, read_history, sink, lake)
            report.files = str(lake.folder)
            report.seconds = round(time.perf_counter() - began, 2)
            lake.finish(report.as_dict())
        return report
    if options.dry_run:
        _run(engine, resolved, options, as_of, report, progress, compute, read_history, sink)
    else:
        with crm_scores.job_lock(engine, options.wait):
            started = utc_now()
            with engine.begin() as connection:
                report.failed_runs = crm_scores.fail_dead_runs(connection, started)
                crm_scores.start_run(connection, report.run_id, resolved.name, resolved.version, as_of, started)
            try:
                _run(engine, resolved, options, as_of, report, progress, compute, read_history, sink)
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


def _run(engine, resolved: ResolvedModel, options: ScoringOptions, as_of: datetime, report: ScoringReport,
         progress: Progress, compute: Compute, read_history: HistoryReader, sink: ScoreSink | None,
         lake: ParquetRun | None = None) -> None:
    found = compute.open_leads(read_history, as_of, options.stage_map, progress)
    features, rejects = found.features, found.rejects
    report.notes += found.notes
    report.rejected = len(rejects)
    report.rejects = dict(Counter(reason for _, reason in rejects).most_common())
    report.open_leads = len(features) + len(rejects)
    model = resolved.model
    with progress.task("Scoring the open leads", total=1) as advance:
        probability = model.predict_proba(features) if len(features) else np.zeros(0)
        advance(1)
    drift = _measure_drift(model, features, probability, report)
    if lake is not None:
        lake.write_rejects(rejects)
    elif not options.dry_run:
        with engine.begin() as connection:
            crm_scores.write_rejects(connection, report.run_id, rejects)
    if drift is not None and drift.status == "hold" and not options.allow_drift:
        report.status = "held"
        return
    if lake is not None:
        writer = lake.scores(resolved, report)
    else:
        with engine.connect() as connection:
            previous = crm_scores.previous_scores(connection) if not options.dry_run or _has_scores(connection) else None
        writer = ScoreWriter(engine, resolved, options, report, previous, sink)
    with progress.task("Explaining and writing scores", total=len(features)) as advance, writer, \
            compute.explained(model, features, options.workers, options.min_reason_points) as scored_chunks:
        for chunk, scored in scored_chunks:
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


def _finish(engine, report: ScoringReport, message: str) -> None:
    with engine.begin() as connection:
        crm_scores.finish_run(connection, report.run_id, report.status, utc_now(), report.counts(), report.drift,
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
