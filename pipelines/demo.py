"""Stage: the one-command demo on an embedded SQLite CRM and a local MLflow store."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from leadscore.crm.database import connect
from leadscore.crm.funnel import funnel_by_channel
from leadscore.crm.history import load_history
from leadscore.crm.simulator import SimulationConfig
from leadscore.models.rules import HandSetScoring
from leadscore.pipelines.report import write_report
from leadscore.pipelines.simulate import SimulationSummary, simulate_into_crm
from leadscore.pipelines.tracking import Decision, LoggedRun, log_training, promote
from leadscore.pipelines.train import TrainingConfig, TrainingResult, crm_training_table, train_model
from leadscore.progress import Progress

DEFAULT_DIRECTORY = Path("leadscore-demo")


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


def run_demo(
    directory: Path = DEFAULT_DIRECTORY,
    leads: int = 20_000,
    seed: int = 42,
    progress: Progress = Progress(),
) -> DemoResult:
    """Simulate a CRM into ``directory/crm.db``, read its funnel, train a model, make it champion, write its report.

    The demo owns ``directory``: its CRM and MLflow store are replaced on every run.
    """
    directory.mkdir(parents=True, exist_ok=True)
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
    logged = log_training(training, uri=store, report_folder=directory / "report", progress=progress)
    promotion = promote(uri=store)
    funnel = funnel_by_channel(history)
    with progress.task("Writing the marketing report", total=1) as advance:
        report = write_report(logged.model_uri, directory / "report.html", store, funnel)
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
    )
