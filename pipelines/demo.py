"""Stage: the one-command demo on an embedded SQLite CRM."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from leadscore.crm.database import connect
from leadscore.crm.funnel import funnel_by_channel
from leadscore.crm.history import load_history
from leadscore.crm.simulator import SimulationConfig
from leadscore.pipelines.simulate import SimulationSummary, simulate_into_crm
from leadscore.progress import Progress

DEFAULT_DIRECTORY = Path("leadscore-demo")


@dataclass(frozen=True)
class DemoResult:
    crm_file: Path
    replaced: bool
    summary: SimulationSummary
    funnel: pd.DataFrame


def run_demo(
    directory: Path = DEFAULT_DIRECTORY,
    leads: int = 20_000,
    seed: int = 42,
    progress: Progress = Progress(),
) -> DemoResult:
    """Simulate a CRM into ``directory/crm.db`` (replacing the demo's own earlier file) and read its funnel back."""
    directory.mkdir(parents=True, exist_ok=True)
    crm_file = directory / "crm.db"
    replaced = crm_file.exists()
    for leftover in (crm_file, crm_file.with_name("crm.db-wal"), crm_file.with_name("crm.db-shm")):
        leftover.unlink(missing_ok=True)
    engine = connect(str(crm_file))
    try:
        summary = simulate_into_crm(engine, SimulationConfig(leads=leads, seed=seed), progress=progress)
        funnel = funnel_by_channel(load_history(engine, progress=progress))
    finally:
        engine.dispose()
    return DemoResult(crm_file=crm_file, replaced=replaced, summary=summary, funnel=funnel)
