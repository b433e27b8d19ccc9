"""The nightly job on a Dask cluster writes, row for row, what the job on one machine writes.

Two worker processes of one thread each (a ``LocalCluster``, as ``dask worker --nthreads 1 --nworkers 2`` runs
them) score a simulated CRM read in several ranges of lead ids and explained in several chunks; a second copy of the
same CRM is scored by the local engine, and the two CRMs' ``lead_scores`` must match exactly, as must the runs'
counts, rejects, drift figures and notes. A run to Parquet (``--out``) through the CLI must hold the same scores, a
worker dying mid-run must cost nothing but time, and the ranges' features must equal the whole CRM's on SQLite and
PostgreSQL. Some of the CRM's records break its rules, so that rejects are compared too, and some activities are of
a type no model knows.

About 40 s on a quiet 2-core machine (150 s when other jobs share its cores): training the model (about 8 s), the
workers' first imports, then scoring 1,700 open leads a few times.
"""

from __future__ import annotations

import functools
import itertools
import json
import multiprocessing
import os
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.crm import schema
from leadscore.crm.database import connect
from leadscore.crm.simulator import SimulationConfig
from leadscore.crm.sql import HistoryAtUrl, lead_id_ranges, load_history
from leadscore.errors import LeadscoreError
from leadscore.pipelines.simulate import simulate_into_crm
from leadscore.progress import Progress
from leadscore.serve.compute import LocalCompute
from leadscore.serve.nightly import ScoringOptions, score_crm

distributed = pytest.importorskip("distributed")
from leadscore.serve import dask_compute  # imports distributed: after the skip above
from leadscore.serve.dask_compute import DaskCompute

TRAINING = SimulationConfig(leads=3_000, seed=11, months=24)
CONFIG = SimulationConfig(leads=2_500, seed=12, months=24)
AS_OF = datetime(2025, 12, 31)
PARTS = 5  # ranges of lead ids, so that each of the two workers reads several
CHUNK_ROWS = 300  # about six chunks of the 1,700 open leads, so that both workers explain some
COMPARED = ["lead_id", "probability", "tier", "fit_score", "engagement_score", "reasons", "reason_text",
            "field_log_odds", "unseen", "model_name", "model_version", "feature_schema"]
runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """A CRM model trained on another simulated history, champion in its own MLflow store."""
    from leadscore.crm.simulator import simulate
    from leadscore.pipelines.registry import promote
    from leadscore.pipelines.tracking import log_training
    from leadscore.pipelines.train import TrainingConfig, crm_training_table, train_model

    uri = f"sqlite:///{tmp_path_factory.mktemp('dask_store') / 'mlflow.db'}"
    table = crm_training_table(simulate(TRAINING).history())
    log_training(train_model(table, TrainingConfig(candidates=("lightgbm",), refit=False, folds=3)), uri=uri)
    promote(uri=uri)
    return uri


@pytest.fixture(scope="module")
def scheduler() -> str:
    """Two worker processes of one thread and 1.5 GB each: what ``dask worker --nthreads 1 --nworkers 2`` starts."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="1.5GiB",
                                  dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def _simulated_crm(path: Path) -> sa.Engine:
    """The simulated CRM with broken records (two leads rejected) and activities of a type no model has."""
    engine = connect(str(path), writable=True)
    simulate_into_crm(engine, CONFIG)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE activities SET occurred_at = '2024-99-99' WHERE id IN (10, 40000)")
        connection.exec_driver_sql("UPDATE activities SET type = 'podcast_listen' WHERE id % 97 = 0")
    return engine


def _options(store: str, **changes) -> ScoringOptions:
    # The training history is younger than the scored one: drift would hold every run, and is compared instead.
    return ScoringOptions(tracking_uri=store, as_of=AS_OF, allow_drift=True, **changes)


def _table(engine: sa.Engine, table: sa.Table) -> pd.DataFrame:
    with engine.connect() as connection:
        return pd.read_sql(sa.select(table), connection)


@pytest.fixture(scope="module")
def local_run(store, tmp_path_factory):
    """The local engine's run on one copy of the CRM: its report, lead_scores and rejects."""
    engine = _simulated_crm(tmp_path_factory.mktemp("local") / "crm.db")
    report = score_crm(engine, _options(store))
    scores = _table(engine, schema.lead_scores).sort_values("lead_id", ignore_index=True)
    rejects = _table(engine, schema.score_rejects)
    engine.dispose()
    return report, scores, rejects


def test_dask_scoring_writes_what_the_local_engine_writes_row_for_row(local_run, store, scheduler, tmp_path):
    local, local_scores, local_rejects = local_run
    engine = _simulated_crm(tmp_path / "crm.db")
    ranges = lead_id_ranges(engine, PARTS)
    leads_per_part = [len(load_history(engine, lead_id_range=part, rejects=[]).leads) for part in ranges]
    assert len(ranges) == PARTS and min(leads_per_part) > 0  # the premise: every part holds leads of its own
    with DaskCompute(scheduler, parts=PARTS, chunk_rows=CHUNK_ROWS) as compute:
        report = score_crm(engine, _options(store), compute=compute, read_history=HistoryAtUrl.of(engine))
    assert report.status == local.status == "complete"
    assert report.scored > 5 * CHUNK_ROWS and report.counts() == local.counts()
    assert (report.tiers, report.rejects, report.unseen) == (local.tiers, local.rejects, local.unseen)
    assert report.drift == local.drift
    # Notes of one part are told with its range; the unknown activity types of all parts add up to the local note.
    assert [note for note in report.notes if "no feature for" in note] == [
        note for note in local.notes if "no feature for" in note] != []
    scores = _table(engine, schema.lead_scores).sort_values("lead_id", ignore_index=True)
    pd.testing.assert_frame_equal(scores.drop(columns=["run_id", "scored_at"]),
                                  local_scores.drop(columns=["run_id", "scored_at"]), check_exact=True)
    rejects = _table(engine, schema.score_rejects)
    assert len(rejects) == 2 and rejects["run_id"].eq(report.run_id).all()
    assert sorted(zip(rejects["lead_id"], rejects["reason"])) == sorted(zip(local_rejects["lead_id"],
                                                                            local_rejects["reason"]))
    engine.dispose()


def test_a_parquet_run_holds_every_scored_lead_as_the_crm_would_and_leaves_the_crm_untouched(
        local_run, store, scheduler, tmp_path):
    _, local_scores, local_rejects = local_run
    path = tmp_path / "crm.db"
    _simulated_crm(path).dispose()
    lake = tmp_path / "lake"
    result = runner.invoke(app, ["score", "--crm", str(path), "--tracking-uri", store, "--as-of", "2025-12-31",
                                 "--allow-drift", "--engine", "dask", "--scheduler", scheduler, "--out", str(lake),
                                 "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    [run] = list(lake.iterdir())  # renamed into place: no unfinished folder left beside it
    assert run.name == f"run-20251231T000000-{summary['run_id']}" and summary["files"] == str(run)
    assert sorted(path.relative_to(run).as_posix() for path in run.rglob("*.*")) == [
        "rejects.parquet", "run.json", "scores/part-00000.parquet"]
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
    rows = pd.read_parquet(run / "scores").sort_values("lead_id", ignore_index=True)
    for column in ("reasons", "field_log_odds"):  # JSON text in the files; the CRM's JSON columns read as objects
        rows[column] = rows[column].map(json.loads)
    assert summary["written"] == summary["scored"] == len(rows) == len(local_scores)
    pd.testing.assert_frame_equal(rows[COMPARED], local_scores[COMPARED], check_exact=True, check_dtype=False)
    assert rows["run_id"].eq(summary["run_id"]).all() and rows["as_of"].eq(pd.Timestamp(AS_OF)).all()
    rejects = pd.read_parquet(run / "rejects.parquet")
    assert sorted(rejects["lead_id"]) == sorted(local_rejects["lead_id"])
    crm = connect(str(path))
    assert _table(crm, schema.lead_scores).empty and _table(crm, schema.scoring_runs).empty
    crm.dispose()


def _dies_on_first_chunk(chunk, plugin: str, options: dict, marker: str):
    """On a worker: the first chunk kills its worker process, as a machine running out of memory would."""
    if not Path(marker).exists():
        Path(marker).touch()
        os._exit(1)
    return dask_compute.score_chunk(chunk, plugin, options)


def test_chunks_lost_with_a_dying_worker_are_sent_again_and_every_lead_is_written_once(
        local_run, store, scheduler, tmp_path):
    local, local_scores, _ = local_run
    engine = _simulated_crm(tmp_path / "crm.db")
    marker = tmp_path / "a worker died"

    class DyingOnce(DaskCompute):
        chunk_task = staticmethod(functools.partial(_dies_on_first_chunk, marker=str(marker)))

    with DyingOnce(scheduler, parts=PARTS, chunk_rows=CHUNK_ROWS) as compute:
        report = score_crm(engine, _options(store), compute=compute, read_history=HistoryAtUrl.of(engine))
    assert marker.exists() and report.status == "complete" and report.counts() == local.counts()
    scores = _table(engine, schema.lead_scores).sort_values("lead_id", ignore_index=True)
    pd.testing.assert_frame_equal(scores.drop(columns=["run_id", "scored_at"]),
                                  local_scores.drop(columns=["run_id", "scored_at"]), check_exact=True)
    engine.dispose()


def _reads_through_adbc(path: str) -> dict:
    """Inside a worker: is the process daemonic, and does the SQLite reader's ADBC process answer there?"""
    from leadscore.crm.bulk import ArrowReader

    engine = connect(path)
    with engine.connect() as connection, ArrowReader(connection) as reader:
        started = reader.arrow is not None
        table = reader.arrow.query("SELECT count(*) FROM leads") if started else None
    engine.dispose()
    return {"daemon": multiprocessing.current_process().daemon, "adbc": table is not None and table.num_rows == 1}


def test_a_daemonic_dask_worker_reads_sqlite_through_its_own_adbc_process(scheduler, tmp_path):
    engine = connect(str(tmp_path / "crm.db"), writable=True)
    simulate_into_crm(engine, SimulationConfig(leads=200, seed=3, months=6))
    engine.dispose()
    with distributed.Client(scheduler) as client:
        found = client.run(_reads_through_adbc, str(tmp_path / "crm.db"))
    # Daemonic workers may not start multiprocessing children; the ADBC reader is a subprocess, which they may.
    assert len(found) == 2 and all(answer == {"daemon": True, "adbc": True} for answer in found.values())


def test_workers_reading_ranges_give_every_open_lead_the_features_the_whole_crm_gives(crm_url, scheduler):
    engine = connect(crm_url, writable=True)
    simulate_into_crm(engine, CONFIG)
    local = LocalCompute().open_leads(functools.partial(load_history, engine), AS_OF, {}, Progress())
    with DaskCompute(scheduler, parts=PARTS) as compute:
        spread = compute.open_leads(HistoryAtUrl.of(engine), AS_OF, {}, Progress())
    engine.dispose()
    assert len(local.features) > 1_000 and spread.notes == local.notes and spread.rejects == local.rejects == []
    # Each part knows only its own leads' categories: values are compared, not the order of the levels.
    pd.testing.assert_frame_equal(spread.features.sort_values("lead_id", ignore_index=True),
                                  local.features.sort_values("lead_id", ignore_index=True),
                                  check_exact=True, check_categorical=False)


def test_ranges_of_lead_ids_read_every_lead_once_even_one_added_after_planning(crm_url):
    engine = connect(crm_url, writable=True)
    simulate_into_crm(engine, SimulationConfig(leads=300, seed=4, months=6))
    ranges = lead_id_ranges(engine, 4)
    assert len(ranges) == 4 and ranges[0][0] is None and ranges[-1][1] is None
    assert all(earlier[1] + 1 == later[0] for earlier, later in itertools.pairwise(ranges))
    with engine.begin() as connection:  # a lead created between planning and reading, beyond every id planned
        connection.execute(schema.leads.insert().values(id=900_000, created_at=datetime(2024, 1, 2),
                                                        channel="organic_search"))
    whole = load_history(engine)
    parts = [load_history(engine, lead_id_range=part) for part in ranges]
    assert sorted(id for part in parts for id in part.leads["id"]) == sorted(whole.leads["id"])
    assert sum(len(part.activities) for part in parts) == len(whole.activities)
    assert sum(len(part.stage_changes) for part in parts) == len(whole.stage_changes)
    assert all(part.as_of == whole.as_of for part in parts)  # the whole CRM's latest moment, in every part
    engine.dispose()


def _cli(crm: Path, store: str, *options: str):
    return runner.invoke(app, ["score", "--crm", str(crm), "--tracking-uri", store, "--as-of", "2025-12-31",
                               *options])


@pytest.mark.parametrize("options, message", [
    (["--scheduler", "tcp://127.0.0.1:8786"], "--scheduler is for the Dask engine: add --engine dask"),
    (["--dask-workers", "2"], "--dask-workers is for the Dask engine"),
    (["--engine", "dask", "--scheduler", "tcp://127.0.0.1:8786", "--dask-workers", "2"],
     "--dask-workers sizes the local cluster"),
    (["--engine", "dask", "--workers", "2"], "--workers sets this machine's explaining processes"),
    (["--out", "{file}"], "that is a file"),
    (["--out", "{folder}", "--dry-run"], "--dry-run writes nothing and --out writes Parquet files"),
])
def test_contradicting_or_impossible_options_are_refused_before_any_work(tmp_path, options, message):
    (tmp_path / "scores.parquet").write_bytes(b"not a folder")
    options = [option.format(file=tmp_path / "scores.parquet", folder=tmp_path / "lake") for option in options]
    result = _cli(tmp_path / "missing.db", "sqlite:///unused.db", *options)
    assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output


def test_an_unreachable_scheduler_is_told_with_its_address(store, tmp_path):
    import dask

    path = tmp_path / "crm.db"
    engine = connect(str(path), writable=True)
    simulate_into_crm(engine, SimulationConfig(leads=100, seed=1, months=3))
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        result = _cli(path, store, "--engine", "dask", "--scheduler", "tcp://127.0.0.1:9")
    output = " ".join(result.output.split())
    assert result.exit_code == 2 and "Could not reach the Dask scheduler at tcp://127.0.0.1:9" in output, output
    assert _table(engine, schema.scoring_runs).empty  # refused before the run began
    engine.dispose()


def test_a_scheduler_without_workers_is_refused_instead_of_waiting_forever(monkeypatch):
    monkeypatch.setattr(dask_compute, "WORKER_WAIT_SECONDS", 1)
    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster, \
            pytest.raises(LeadscoreError, match="has no workers. Start them"):
        DaskCompute(cluster.scheduler_address).__enter__()
