"""Stage: the one-command demo on an embedded SQLite CRM and a local MLflow store."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from leadscore.crm.database import connect
from leadscore.crm.scores import read_score_movement
from leadscore.errors import LeadscoreError
from leadscore.crm.funnel import funnel_by_channel
from leadscore.crm.sql import load_history
from leadscore.crm.simulator import SimulationConfig
from leadscore.models.rules import HandSetScoring
from leadscore.pipelines.report import write_report
from leadscore.pipelines.simulate import SimulationSummary, simulate_into_crm
from leadscore.pipelines.tracking import Decision, LoggedRun, log_training, promote
from leadscore.pipelines.train import TrainingConfig, TrainingResult, crm_training_table, train_model
from leadscore.pipelines.worth import channel_worth
from leadscore.progress import Progress
from leadscore.serve.nightly import ScoringOptions, ScoringReport, score_crm

DEFAULT_DIRECTORY = Path("leadscore-demo")
DEMO_MARKER = ".leadscore-demo"
SCORING_WEEKS = 8  # weekly runs of the nightly job, so that the report has score movement to show


@dataclass(frozen=True)
class DemoResult:
    crm_file: Path
    replaced: bool
    summary: SimulationSummary
    funnel: pd.DataFrame
    training: TrainingResult
    logged: LoggedRun
    promotion: Decision
    report: Path
    scoring: ScoringReport


def _claim(directory: Path) -> None:
    """Make ``directory`` the demo's own, refusing a folder that holds anything the demo did not write.

    The demo replaces its CRM and MLflow store on every run; ``--dir .`` or
    ``--dir ~`` must not delete a crm.db or mlflow.db that someone else put there.
    """
    marker = directory / DEMO_MARKER
    if directory.exists() and not directory.is_dir():
        raise LeadscoreError(f"--dir {directory}: that is a file. Name a folder for the demo's files.")
    if directory.is_dir() and not marker.exists() and any(directory.iterdir()):
        raise LeadscoreError(
            f"--dir {directory}: the folder already holds files the demo did not write. The demo replaces its CRM "
            "and MLflow store on every run, so it only works in a new or empty folder, or in one of its own: "
            "choose another --dir."
        )
    directory.mkdir(parents=True, exist_ok=True)
    marker.write_text("Written by `leadscore demo`, which replaces the files of this folder on every run.\n")


def run_demo(
    directory: Path = DEFAULT_DIRECTORY,
    leads: int = 20_000,
    seed: int = 42,
    progress: Progress = Progress(),
) -> DemoResult:
    """Simulate a CRM into ``directory/crm.db``, read its funnel, train a model and make it champion, run the
    nightly job once a week for the last ``SCORING_WEEKS`` weeks (every open lead scored and written back into
    the CRM), then write the report, score movement included.

    The demo owns ``directory``: its CRM and MLflow store are replaced on every run. The simulated history
    ends before today, so the job scores the leads open at its records' moments, not now.
    """
    _claim(directory)
    crm_file = directory / "crm.db"
    replaced = crm_file.exists()
    for name in ("crm.db", "crm.db-wal", "crm.db-shm", "mlflow.db"):
        (directory / name).unlink(missing_ok=True)
    shutil.rmtree(directory / "mlruns", ignore_errors=True)
    engine = connect(str(crm_file), writable=True)
    try:
        summary = simulate_into_crm(engine, SimulationConfig(leads=leads, seed=seed), progress=progress)
        history = load_history(engine, progress=progress)
    finally:
        engine.dispose()
    table = crm_training_table(history, progress=progress)
    training = train_model(table, TrainingConfig(seed=seed), HandSetScoring.default(), progress)
    store = f"sqlite:///{(directory / 'mlflow.db').resolve()}"
    worth = channel_worth(history, training.model, pd.Timestamp(history.as_of).to_pydatetime(), progress=progress)
    logged = log_training(training, uri=store, report_folder=directory / "report", progress=progress,
                          channel_worth=worth)
    promotion = promote(uri=store)
    funnel = funnel_by_channel(history)
    scoring = _score_weekly(crm_file, store, pd.Timestamp(history.as_of), progress)
    engine = connect(str(crm_file))
    try:
        with engine.connect() as connection:
            movement = read_score_movement(connection)
    finally:
        engine.dispose()
    with progress.task("Writing the marketing report", total=1) as advance:
        report = write_report(logged.model_uri, directory / "report.html", store, funnel, worth=worth,
                              history=history, movement=movement)
        advance(1)
    return DemoResult(
        crm_file=crm_file,
        replaced=replaced,
        summary=summary,
        funnel=funnel,
        training=training,
        logged=logged,
        promotion=promotion,
        report=report,
        scoring=scoring,
    )


def _score_weekly(crm_file: Path, store: str, last: pd.Timestamp, progress: Progress) -> ScoringReport:
    """The nightly job once a week, oldest first, the last run at ``last``; the last run's report.

    One run would leave the score history a single snapshot: the weekly runs give
    it the entries into MQL and SQL that the report's score movement counts.
    """
    engine = connect(str(crm_file), writable=True)
    try:
        for weeks_back in range(SCORING_WEEKS - 1, -1, -1):
            as_of = (last - pd.Timedelta(weeks=weeks_back)).to_pydatetime()
            report = score_crm(engine, ScoringOptions(tracking_uri=store, as_of=as_of), progress)
    finally:
        engine.dispose()
    return report
