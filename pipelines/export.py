"""Stage: write every lead score that changed as Salesforce or HubSpot files, and with ``push`` send them and record
what the CRM accepted in ``crm_exports``.

The order makes every step safe to kill and to rerun: the files are written first (atomically); each file is
then sent and its outcomes recorded in one transaction before the next is sent. A killed export leaves the
ledger saying what was accepted so far; the next one sends the rest, and sending a value twice is harmless.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pandas as pd
import sqlalchemy as sa
from leadscore.crm.export import (
    Delivery,
    Part,
    Tally,
    check_score_tables,
    ensure_ledger,
    pending_rows,
    read_ledger,
    read_scores,
    record_outcomes,
    render_scores,
)
from leadscore.crm.export_keys import KeyMapping

from leadscore.errors import LeadscoreError
from leadscore.files import write_bytes
from leadscore.progress import Progress
from leadscore.serve.score_writer import utc_now

EXIT_REFUSED = 3  # some rows were refused or left unsent: recorded, and sent again by the next export


class Target(Protocol):
    key: KeyMapping
    name: str
    stem: str
    suffix: str
    crm: str
    reasons_length: int

    def parts(self, rows: pd.DataFrame): ...

    def describe(self) -> str: ...


class Sender(Protocol):
    def deliver(self, target, part: Part, keys: list[str]) -> Delivery: ...


@dataclass(frozen=True)
class ExportOptions:
    out: Path
    push: bool = False
    resend_all: bool = False  # every score, changed or not: after the CRM's fields were emptied, say


@dataclass(frozen=True)
class WrittenFile:
    path: Path
    rows: int
    bytes: int
    requests: int
    start: int
    stop: int


@dataclass
class ExportResult:
    target: str
    description: str
    scores: int = 0  # rows of lead_scores
    pending: int = 0  # of them, to send: changed since the CRM last accepted them, or refused last time
    unmapped: int = 0  # to send, but without a record in the key mapping file
    files: list[WrittenFile] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)  # files of an earlier export that this one no longer has
    pushed: bool = False
    sent: int = 0
    tally: Tally = field(default_factory=Tally)
    jobs: list[str] = field(default_factory=list)
    stopped: str | None = None
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def unsent(self) -> int:
        return self.pending - self.sent if self.pushed else 0

    @property
    def exit_status(self) -> int:
        return EXIT_REFUSED if self.pushed and (self.tally.refused_rows or self.unsent) else 0

    def as_dict(self) -> dict:
        return {
            "target": self.target, "description": self.description, "scores": self.scores, "pending": self.pending,
            "unmapped": self.unmapped, "pushed": self.pushed, "sent": self.sent, "accepted": self.tally.accepted,
            "refused": self.tally.refused, "unsent": self.unsent, "stopped": self.stopped, "jobs": self.jobs,
            "files": [{"path": str(file.path), "rows": file.rows, "bytes": file.bytes, "requests": file.requests}
                      for file in self.files],
            "removed": [str(path) for path in self.removed], "seconds": round(self.seconds, 2),
            "phases": {name: round(value, 2) for name, value in self.phases.items()},
        }


def export_scores(engine: sa.Engine, target: Target, options: ExportOptions, sender: Sender | None = None,
                  progress: Progress | None = None, clock=utc_now) -> ExportResult:
    """Write the scores ``target`` lacks into files under ``options.out``; with ``options.push``, send each file
    through ``sender`` and record the CRM's verdict on every row in ``crm_exports``.

    Without ``push`` the ledger is left as it is: the files may never be loaded, so the next export writes the
    same rows again.
    """
    if options.push and sender is None:
        raise ValueError("push needs a sender")
    progress = progress or Progress()
    check_out_folder(options.out)
    result = ExportResult(target.name, target.describe(), pushed=options.push)
    began = mark = time.perf_counter()

    def lap(phase: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        result.phases[phase] = result.phases.get(phase, 0.0) + now - mark
        mark = now

    with engine.connect() as connection:
        check_score_tables(connection)
        scores = read_scores(connection)
        lap("read scores")
        ledger = read_ledger(connection, target.name)
        lap("read ledger")
    rendered = render_scores(scores, target.reasons_length)
    rendered["record_key"] = target.key.record_keys(rendered["lead_id"])
    pending = pending_rows(rendered, ledger, options.resend_all)
    unmapped = pending["record_key"].isna()
    if len(pending) and unmapped.all():
        raise LeadscoreError(
            f"None of the {len(pending):,} leads to send has a row in {target.key.source}: it maps other leads than "
            "the CRM scored. Export the key table again from the CRM database this one was loaded from."
        )
    pending = pending[~unmapped].reset_index(drop=True)
    result.scores, result.pending, result.unmapped = len(scores), len(pending), int(unmapped.sum())
    lap("compare")
    result.files, result.removed = write_parts(options.out, target, pending)
    lap("files")
    if options.push and len(pending):
        with engine.begin() as connection:
            ensure_ledger(connection)
        _send(engine, target, pending, result, sender, progress, clock)
        lap("send")
    result.seconds = time.perf_counter() - began
    return result


def _send(engine: sa.Engine, target: Target, pending: pd.DataFrame, result: ExportResult, sender: Sender,
          progress: Progress, clock) -> None:
    with progress.task(f"Sending to {target.crm}", total=len(pending)) as advance:
        for file in result.files:
            rows = pending.iloc[file.start:file.stop]
            keys = rows["record_key"].astype(str)
            part = Part(file.path.read_bytes(), file.start, file.stop, file.requests)
            delivery = sender.deliver(target, part, keys.tolist())
            attempted = rows[keys.isin(delivery.outcomes["key"]).to_numpy()]
            with engine.begin() as connection:
                record_outcomes(connection, target.name, attempted, delivery.outcomes, clock())
            result.sent += len(attempted)
            result.tally.add(delivery.outcomes)
            if delivery.job:
                result.jobs.append(delivery.job)
            advance(len(attempted))
            if delivery.fault:
                raise LeadscoreError(f"{delivery.fault} {_so_far(result)}")
            if delivery.stop:
                result.stopped = delivery.stop
                return


def _so_far(result: ExportResult) -> str:
    return (f"Of {result.pending:,} rows to send, {result.tally.accepted:,} were accepted and "
            f"{result.tally.refused_rows:,} refused before this, all recorded in crm_exports; the next export sends "
            "the others again.")


def check_out_folder(out: Path) -> None:
    if not out.is_dir():
        problem = "is a file" if out.exists() else "does not exist"
        raise LeadscoreError(f"--out {out}: the folder {problem}. Name an existing folder; create it first if need be.")


def write_parts(out: Path, target: Target, rows: pd.DataFrame) -> tuple[list[WrittenFile], list[Path]]:
    """Write ``rows`` as ``target``'s files, each atomically; remove the files of an earlier export beyond them,
    so that the folder holds exactly this export's files."""
    written = []
    for number, part in enumerate(target.parts(rows), 1):
        path = out / f"{target.stem}-{number:03d}{target.suffix}"
        write_bytes(path, part.content)
        written.append(WrittenFile(path, part.rows, len(part.content), part.requests, part.start, part.stop))
    ours = re.compile(rf"{re.escape(target.stem)}-\d{{3,}}{re.escape(target.suffix)}")
    kept = {file.path.name for file in written}
    removed = sorted(path for path in out.iterdir() if ours.fullmatch(path.name) and path.name not in kept)
    for path in removed:
        path.unlink()
    return written, removed
