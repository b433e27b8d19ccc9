"""Writing a scoring run's results: only new or changed scores, each chunk in one transaction, one chunk behind.

A ``ScoreSink`` (a CRM written through its own API, such as Tryton) receives
the same rows inside that transaction: when the sink fails, the chunk's
``lead_scores`` rows roll back with it, so the next run sends them again
instead of believing them written. Sinks write keyed by lead, so a resent row
replaces, never duplicates.
"""

from __future__ import annotations

import json
import queue
import threading
from datetime import datetime, timezone
from typing import Protocol

import numpy as np
import pandas as pd

from leadscore.crm import scores as crm_scores
from leadscore.errors import LeadscoreError
from leadscore.features.crm_features import foreign_features
from leadscore.models.changes import describe_change, describe_changes, field_matrix
from leadscore.models.explain import business_fields
from leadscore.models.reasons import field_labels, text_as_objects
from leadscore.models.scoring import Scorer
from leadscore.pipelines.registry import ResolvedModel, resolve_model

SCORE_COLUMNS = ("lead_id", "probability", "tier", "fit_score", "engagement_score", "reasons", "reason_text",
                 "field_log_odds", "trend", "change", "change_text", "unseen", "model_name", "model_version", "run_id",
                 "feature_schema", "scored_at")


class ScoreSink(Protocol):
    def write(self, rows: pd.DataFrame) -> None:
        """Write ``rows`` (``SCORE_COLUMNS``, new or changed scores only) keyed by ``lead_id``; raise to roll back."""


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)


def count_scored(report, scored: pd.DataFrame) -> None:
    """Add a chunk's leads, tiers and never-seen values to the run's report."""
    report.scored += len(scored)
    for tier, count in scored["tier"].value_counts().items():
        report.tiers[tier] = report.tiers.get(tier, 0) + int(count)
    for cell in scored["unseen"][scored["unseen"] != ""]:
        for entry in cell.split("; "):
            report.unseen[entry] = report.unseen.get(entry, 0) + 1


def reason_texts(scored: pd.DataFrame) -> np.ndarray:
    """Each lead's reasons for, as the sentences a marketer reads, one a line."""
    return np.array(["\n".join(r for r in reasons if r) for reasons in
                     zip(scored["reason_1"], scored["reason_2"], scored["reason_3"])], dtype=object)


def feature_schema_hash(resolved: ResolvedModel) -> str:
    """The first 16 characters of the model's feature-schema hash: rows scored on the same columns share it."""
    return str(resolved.model.summary.get("fingerprint", {}).get("schema_hash", ""))[:16]


class ScoreWriter:
    """Scores, compares and writes one chunk of open leads at a time, each chunk in one transaction.

    Writing happens on a thread of its own, one chunk behind: the database works on chunk k (the drivers
    release the interpreter while they wait on it) while the next chunk is being explained.
    """

    def __init__(self, engine, resolved: ResolvedModel, options, report, previous: pd.DataFrame | None,
                 sink: ScoreSink | None = None) -> None:
        self.engine, self.resolved, self.options, self.report = engine, resolved, options, report
        self.previous, self.sink = previous, sink
        self.fields = business_fields(resolved.model.registry, resolved.model.features)[0]
        self.labels = field_labels(resolved.model.registry, resolved.model.features)
        self.schema_hash = feature_schema_hash(resolved)
        self.earlier_scorers: dict[tuple[str, str], Scorer | None] = {}
        self.pending: queue.Queue = queue.Queue(maxsize=1)
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._write_pending, name="leadscore scores writer", daemon=True)

    def __enter__(self) -> ScoreWriter:
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
                        if self.sink is not None:
                            self.sink.write(item[0])
            except BaseException as error:  # raised in the main thread, at its next hand-over or at the end
                self.failure = error
            finally:
                self.pending.task_done()
        self.pending.task_done()

    def write(self, chunk: pd.DataFrame, scored: pd.DataFrame) -> None:
        report = self.report
        count_scored(report, scored)
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
        reason_text = reason_texts(scored)
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
            "scored_at": np.full(len(keep), np.datetime64(utc_now(), "s")),
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
