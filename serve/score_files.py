"""A scoring run's results as Parquet files for a data lake (``leadscore score --out DIR``).

A run writes one folder, ``DIR/run-<as of>-<run id>/``:

* ``scores/part-00000.parquet``, ``scores/part-00001.parquet``, ...: every
  lead the run scored, one file per chunk, one schema, with the run's id and
  moment on every row (``pd.read_parquet(".../scores")`` reads the run);
* ``rejects.parquet``: the leads left out, and why;
* ``run.json``: the run's summary (counts, tiers, drift, notes), as ``--json``
  prints it.

The folder is built as ``DIR/.run-<as of>-<run id>.partial`` and renamed when
the run ends, so a reader listing ``DIR/run-*`` only ever sees whole runs (a
killed run leaves its hidden ``.partial`` folder, which is safe to delete).
Each file inside is written atomically too.

Every scored lead is written, changed or not: a lake keeps each run's scores
and answers "what changed" by joining two runs on ``lead_id``, so the CRM's
change detection, trends and history rows do not apply, and the CRM's tables
are not written (see the README for why).
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from leadscore.errors import LeadscoreError
from leadscore.files import atomic_path
from leadscore.pipelines.registry import ResolvedModel
from leadscore.serve.score_writer import count_scored, feature_schema_hash, reason_texts, utc_now

SCORE_SCHEMA = pa.schema([
    ("lead_id", pa.int64()),
    ("probability", pa.float64()),
    ("tier", pa.string()),
    ("fit_score", pa.float64()),
    ("engagement_score", pa.float64()),
    ("reasons", pa.string()),  # JSON, as in the CRM's lead_scores
    ("reason_text", pa.string()),
    ("field_log_odds", pa.string()),  # JSON
    ("unseen", pa.string()),  # null when every value was seen at training
    ("model_name", pa.string()),
    ("model_version", pa.string()),
    ("run_id", pa.string()),
    ("as_of", pa.timestamp("s")),
    ("feature_schema", pa.string()),
    ("scored_at", pa.timestamp("s")),
])
SCORES = "scores"  # the sub-folder of a run's score files: a folder of one schema, for readers that read folders
REJECT_SCHEMA = pa.schema([("lead_id", pa.int64()), ("reason", pa.string()), ("run_id", pa.string())])


def check_out_folder(folder: Path) -> Path:
    """``folder`` made ready to receive runs, or a ``LeadscoreError`` saying why it cannot, before any work."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise LeadscoreError(f"--out {folder}: that is a file. --out names a folder, which receives one sub-folder "
                             "of Parquet files per run.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise LeadscoreError(f"--out {folder}: cannot create the folder ({error.strerror}).") from error
    probe = folder / ".leadscore-write-check"
    try:
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise LeadscoreError(f"--out {folder}: the folder is not writable ({error.strerror}). Write somewhere else.") \
            from error
    return folder


class ParquetRun:
    """One run's folder (module docstring): ``scores(...)`` writes each scored chunk, ``finish`` the summary.

    Used as a context manager: leaving it on an error removes the unfinished folder.
    """

    def __init__(self, root: Path, run_id: str, as_of: datetime) -> None:
        self.run_id, self.as_of = run_id, as_of
        name = f"run-{as_of:%Y%m%dT%H%M%S}-{run_id}"
        root = Path(root).expanduser()
        self.folder, self.partial = root / name, root / f".{name}.partial"

    def __enter__(self) -> Self:
        (self.partial / SCORES).mkdir(parents=True)
        return self

    def __exit__(self, kind, *exc_info) -> None:
        if kind is not None:
            shutil.rmtree(self.partial, ignore_errors=True)

    def scores(self, resolved: ResolvedModel, report) -> ScoreFiles:
        return ScoreFiles(self, resolved, report)

    def write_rejects(self, rejects: list[tuple[int, str]]) -> None:
        table = pa.table({"lead_id": [lead for lead, _ in rejects], "reason": [reason for _, reason in rejects],
                          "run_id": [self.run_id] * len(rejects)}, schema=REJECT_SCHEMA)
        self.write_table(table, "rejects.parquet")

    def finish(self, summary: dict) -> Path:
        """Write the run's summary and move the folder into place: from now on readers see the whole run."""
        with atomic_path(self.partial / "run.json") as temporary:
            temporary.write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
        self.partial.rename(self.folder)
        return self.folder

    def write_table(self, table: pa.Table, name: str) -> None:
        with atomic_path(self.partial / name) as temporary:
            pq.write_table(table, temporary)


class ScoreFiles:
    """Writes each scored chunk of a run to its next part file, as ``ScoreWriter`` writes them to the CRM."""

    def __init__(self, run: ParquetRun, resolved: ResolvedModel, report) -> None:
        self.run, self.resolved, self.report = run, resolved, report
        self.schema_hash = feature_schema_hash(resolved)
        self.files = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    def write(self, chunk: pd.DataFrame, scored: pd.DataFrame) -> None:
        """Every lead of ``scored``, changed or not; the report counts them all as written."""
        count_scored(self.report, scored)
        rows = pd.DataFrame({
            "lead_id": scored["lead_id"].to_numpy(dtype=np.int64),
            "probability": scored["probability"].to_numpy(dtype=float),
            "tier": scored["tier"].to_numpy(dtype=object),
            "fit_score": scored["fit_score"].to_numpy(dtype=float),
            "engagement_score": scored["engagement_score"].to_numpy(dtype=float),
            "reasons": scored["reasons"].to_numpy(dtype=object),
            "reason_text": reason_texts(scored),
            "field_log_odds": scored["field_log_odds"].to_numpy(dtype=object),
            "unseen": scored["unseen"].replace("", None).to_numpy(dtype=object),
            "model_name": self.resolved.name,
            "model_version": str(self.resolved.version),
            "run_id": self.run.run_id,
            "as_of": np.datetime64(self.run.as_of, "s"),
            "feature_schema": self.schema_hash,
            "scored_at": np.datetime64(utc_now(), "s"),
        })
        self.run.write_table(pa.Table.from_pandas(rows, schema=SCORE_SCHEMA, preserve_index=False),
                             f"{SCORES}/part-{self.files:05d}.parquet")
        self.files += 1
        self.report.written += len(rows)
