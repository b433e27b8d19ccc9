"""The MLflow store and registry when things go wrong: passwords, wrong stores, missing aliases, races, kills.

Each case was met by a user. Stores live in temporary folders, or in PostgreSQL
databases and schemas created for the test and dropped afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.errors import LeadscoreError
from leadscore.pipelines import tracking
from leadscore.pipelines.runs import INCOMPLETE_TAG, process_tags
from leadscore.pipelines.store import prepare_store
from test_tracking import _leads, _train, table  # noqa: F401  (the tracking tests' flat table fixture)

runner = CliRunner()
PASSWORD = "Hunter2-Secret"
PAUSE_HOOK = "LEADSCORE_TEST_PAUSE_BEFORE_ALIAS"


def _one_line(result) -> str:
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def migrated_store(tmp_path_factory) -> Path:
    """An empty MLflow store, made once: MLflow takes several seconds to create and migrate its tables."""
    import mlflow

    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}")
    return path


@pytest.fixture
def store(migrated_store, tmp_path, monkeypatch) -> str:
    """A store of this test's own, holding MLflow's tables and nothing else yet."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    shutil.copy(migrated_store, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def leads_csv(tmp_path) -> Path:
    path = tmp_path / "leads.csv"
    _leads(n=600).to_csv(path, index=False)
    return path


@pytest.fixture
def new_rows(tmp_path) -> Path:
    path = tmp_path / "new.csv"
    _leads(n=20, seed=3).drop(columns=["won"]).to_csv(path, index=False)
    return path


def _train_arguments(csv: Path, store: str) -> list[str]:
    return ["train", "--data", str(csv), "--id", "lead", "--target", "won", "--min-positives", "20",
            "--candidates", "logistic", "--model-name", "leads", "--tracking-uri", store]


def _read_commands(new_rows: Path, tmp_path: Path, store: str, model: str = "models:/leads@champion") -> dict[str, list[str]]:
    common = ["--tracking-uri", store]
    return {
        "promote": ["promote", "--model-name", "leads", *common],
        "predict": ["predict", "--data", str(new_rows), "--out", str(tmp_path / "scores.csv"), "--model", model, *common],
        "report": ["report", "--out", str(tmp_path / "report.html"), "--model", model, *common],
    }


@pytest.fixture
def postgres_database(postgres_server):
    """A new, empty PostgreSQL database of its own (an MLflow store wants a whole database); dropped afterwards."""
    server = sa.engine.make_url(postgres_server)
    name = f"leadscore_mlflow_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield server.set(database=name)
    with admin.connect() as connection:
        # MLflow keeps its connections pooled for the life of the process.
        connection.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


# --- 1. the tracking URI's password never prints ----------------------------------------------------------


@pytest.mark.postgres
def test_no_command_prints_the_tracking_password(postgres_database, leads_csv, new_rows, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    # Trust authentication ignores the password, so the store works and every message gets a chance to leak it.
    store = postgres_database.set(password=PASSWORD).render_as_string(hide_password=False)
    shown = store.replace(PASSWORD, "***")
    trained = runner.invoke(app, _train_arguments(leads_csv, store))
    assert trained.exit_code == 0, trained.output
    assert f"to {shown};" in _one_line(trained)
    outputs = [trained.output]
    commands = _read_commands(new_rows, tmp_path, store)
    promoted = runner.invoke(app, commands["promote"])
    assert promoted.exit_code == 0 and "first champion" in promoted.output
    outputs.append(promoted.output)
    for command in ("predict", "report"):
        arguments = _read_commands(new_rows, tmp_path, store, model="runs:/0123456789abcdef/model")[command]
        failed = runner.invoke(app, arguments)
        assert failed.exit_code == 2 and "Traceback" not in failed.output
        assert "Cannot load the model 'runs:/0123456789abcdef/model' from " + shown in _one_line(failed)
        outputs.append(failed.output)
    captured = capfd.readouterr()
    for text in (*outputs, captured.out, captured.err):
        assert PASSWORD not in text


@pytest.mark.parametrize("command", ["train", "promote", "predict", "report"])
def test_a_raw_at_sign_in_the_password_leaks_through_no_error(command, leads_csv, new_rows, tmp_path, capfd):
    # SQLAlchemy ends the password at its first '@' and reads "ssw0rd-x@127.0.0.1" as the host name,
    # which the driver then quotes in its error.
    store = "postgresql+psycopg://app:p@ssw0rd-x@127.0.0.1:5432/mlflow"
    arguments = _train_arguments(leads_csv, store) if command == "train" else _read_commands(new_rows, tmp_path, store)[command]
    began = time.perf_counter()
    result = runner.invoke(app, arguments)
    assert result.exit_code == 2, result.output
    assert "postgresql+psycopg://app:***@127.0.0.1:5432/mlflow" in _one_line(result)
    assert "%40" in result.output  # the fix: percent-encode the '@'
    captured = capfd.readouterr()
    for text in (result.output, captured.out, captured.err):
        assert "ssw0rd" not in text
    assert time.perf_counter() - began < 20  # refused at once, not after MLflow's minutes of connection retries


# --- 2. reading never creates a store ---------------------------------------------------------------------


@pytest.mark.postgres
def test_read_only_commands_leave_a_database_without_mlflow_store_untouched(postgres_url, new_rows, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    engine = sa.create_engine(postgres_url)
    with engine.begin() as connection:  # the CRM's database, given by mistake
        connection.execute(sa.text("CREATE TABLE leads (id integer primary key)"))
    try:
        for name, arguments in _read_commands(new_rows, tmp_path, postgres_url).items():
            result = runner.invoke(app, arguments)
            text = _one_line(result)
            assert result.exit_code == 2, (name, result.output)
            assert "No MLflow store at postgresql+psycopg://postgres@127.0.0.1" in text and "leads" in text
            assert "leadscore train" in text and "--tracking-uri" in text and "MLFLOW_TRACKING_URI" in text
        monkeypatch.setenv("MLFLOW_TRACKING_URI", postgres_url)
        from_environment = runner.invoke(app, ["predict", "--data", str(new_rows), "--out", str(tmp_path / "s.csv")])
        assert from_environment.exit_code == 2 and "set by MLFLOW_TRACKING_URI" in _one_line(from_environment)
        assert sa.inspect(engine).get_table_names() == ["leads"]
    finally:
        engine.dispose()


def test_read_only_commands_create_no_sqlite_store(new_rows, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    before = sorted(tmp_path.iterdir())
    predicted = runner.invoke(app, ["predict", "--data", str(new_rows), "--out", str(tmp_path / "scores.csv")])
    assert predicted.exit_code == 2
    text = _one_line(predicted)
    assert f"No MLflow store at sqlite:///mlflow.db (the default): {tmp_path / 'mlflow.db'} does not exist" in text
    assert "leadscore train" in text
    for arguments in _read_commands(new_rows, tmp_path, f"sqlite:///{tmp_path / 'elsewhere' / 'mlflow.db'}").values():
        assert runner.invoke(app, arguments).exit_code == 2
    assert sorted(tmp_path.iterdir()) == before  # no database file, lock, artifact folder or empty folder

    crm = tmp_path / "crm.db"
    with sa.create_engine(f"sqlite:///{crm}").begin() as connection:
        connection.execute(sa.text("CREATE TABLE leads (id integer primary key)"))
    refused = runner.invoke(app, _read_commands(new_rows, tmp_path, f"sqlite:///{crm}")["predict"])
    assert refused.exit_code == 2 and "holds no MLflow tables" in _one_line(refused)
    assert sa.inspect(sa.create_engine(f"sqlite:///{crm}")).get_table_names() == ["leads"]


# --- 3. a model or alias that is not there ----------------------------------------------------------------


def test_predict_and_report_before_any_promotion_say_to_promote(table, store, new_rows, tmp_path):
    tracking.log_training(_train(table), uri=store)  # registered as leadscore version 1, challenger
    common = ["--tracking-uri", store]
    commands = {
        "predict": ["predict", "--data", str(new_rows), "--out", str(tmp_path / "s.csv"), *common],
        "report": ["report", "--out", str(tmp_path / "report.html"), *common],
    }
    for name, arguments in commands.items():
        result = runner.invoke(app, arguments)
        text = _one_line(result)
        assert result.exit_code == 2 and "Traceback" not in result.output, (name, result.output)
        assert f"Cannot load the model 'models:/leadscore@champion' from {store}: no version of model 'leadscore' is " \
               "champion yet (version 1 is challenger)" in text
        assert "leadscore promote" in text and "--model models:/leadscore@challenger" in text

        unknown = runner.invoke(app, [*arguments, "--model", "models:/leads@champion"])
        assert unknown.exit_code == 2
        assert "no model is named 'leads' there (it holds: leadscore)" in _one_line(unknown)
        assert "leadscore train" in _one_line(unknown)

    missing = runner.invoke(app, [*commands["predict"], "--model", "models:/leadscore/4"])
    assert missing.exit_code == 2
    assert "model 'leadscore' has no version 4 (its only version is 1)" in _one_line(missing)
    assert "--model models:/leadscore/1" in _one_line(missing)


# --- 4. concurrent first runs on a new store --------------------------------------------------------------


def _leadscore(*arguments: str, **environment: str) -> subprocess.Popen:
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"} | environment
    return subprocess.Popen([sys.executable, "-m", "leadscore.cli", *arguments], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_two_first_trains_on_a_new_store_both_succeed(leads_csv, tmp_path):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    processes = [_leadscore(*_train_arguments(leads_csv, store)) for _ in range(2)]
    outputs = [process.communicate(timeout=180)[0] for process in processes]
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output
    import mlflow

    client = mlflow.MlflowClient(store)
    versions = client.search_model_versions("name = 'leads'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    experiments = [e.name for e in client.search_experiments()]
    assert experiments.count("leadscore") == 1
    assert {run.info.status for run in client.search_runs([client.get_experiment_by_name("leadscore").experiment_id])} == {"FINISHED"}


@pytest.mark.postgres
def test_two_processes_create_a_new_postgresql_store_once(postgres_database, tmp_path):
    url = postgres_database.render_as_string(hide_password=False)
    code = f"from leadscore.pipelines.store import prepare_store; print(prepare_store({url!r}))"
    processes = [subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, text=True, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT) for _ in range(2)]
    outputs = [process.communicate(timeout=120)[0] for process in processes]
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output
    assert len({output.strip().splitlines()[-1] for output in outputs}) == 1  # one leadscore experiment


def test_train_names_a_store_it_cannot_create_before_training(leads_csv, tmp_path):
    result = runner.invoke(app, _train_arguments(leads_csv, f"sqlite:///{leads_csv}/mlflow.db"))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"Cannot prepare the MLflow store at sqlite:///{leads_csv}/mlflow.db" in _one_line(result)
    assert "Choosing the model" not in result.output  # refused before training, not after


def test_experiment_creation_survives_a_concurrent_creator(store, monkeypatch):
    import mlflow

    created = prepare_store(store)
    # Another process creates the experiment between this one's look-up and its creation.
    looked_up = mlflow.MlflowClient.get_experiment_by_name
    answers = iter([None])
    monkeypatch.setattr(mlflow.MlflowClient, "get_experiment_by_name",
                        lambda self, name: next(answers, None) or looked_up(self, name))
    assert prepare_store(store) == created


def test_a_deleted_experiment_is_named_with_the_fix(store):
    import mlflow

    experiment = prepare_store(store)
    mlflow.MlflowClient(store).delete_experiment(experiment)
    with pytest.raises(LeadscoreError, match=f"experiment 'leadscore' .*deleted.*mlflow experiments restore --experiment-id {experiment}"):
        prepare_store(store)


# --- 5. a killed train ------------------------------------------------------------------------------------


def test_a_killed_train_is_failed_and_its_orphan_version_tagged_by_the_next(store, leads_csv, tmp_path):
    paused = tmp_path / "paused"
    process = _leadscore(*_train_arguments(leads_csv, store), **{PAUSE_HOOK: str(paused)})
    deadline = time.monotonic() + 90
    while not paused.exists():
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "train never reached the point between registering and aliasing"
        time.sleep(0.1)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    import mlflow

    client = mlflow.MlflowClient(store)
    experiment = client.get_experiment_by_name("leadscore").experiment_id
    [killed] = client.search_runs([experiment])
    orphan = client.get_model_version("leads", "1")
    assert killed.info.status == "RUNNING" and orphan.aliases == []
    assert "held_out.pr_auc" in orphan.tags  # tags are given at registration, in the same step

    retrained = runner.invoke(app, _train_arguments(leads_csv, store))
    assert retrained.exit_code == 0, retrained.output
    assert "version 2 as challenger" in _one_line(retrained)
    assert client.get_run(killed.info.run_id).info.status == "FAILED"
    assert "died" in client.get_run(killed.info.run_id).data.tags["leadscore.failure"]
    orphan = client.get_model_version("leads", "1")
    assert orphan.aliases == [] and "never became challenger" in orphan.tags[INCOMPLETE_TAG]
    assert runner.invoke(app, ["promote", "--model-name", "leads", "--tracking-uri", store]).exit_code == 0
    assert str(client.get_model_version_by_alias("leads", "champion").version) == "2"


def test_a_version_that_cannot_be_named_challenger_is_tagged_incomplete(table, store, monkeypatch):
    import mlflow

    def refuse(self, name, alias, version):
        raise mlflow.exceptions.MlflowException("the database went away")

    monkeypatch.setattr(mlflow.MlflowClient, "set_registered_model_alias", refuse)
    with pytest.raises(mlflow.exceptions.MlflowException, match="went away"):
        tracking.log_training(_train(table), "leads", store)
    version = mlflow.MlflowClient(store).get_model_version("leads", "1")
    assert version.aliases == [] and "failed" in version.tags[INCOMPLETE_TAG]


def test_only_runs_of_dead_processes_on_this_host_are_failed(store):
    import mlflow

    experiment = prepare_store(store)
    client = mlflow.MlflowClient(store)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])  # a process that has come and gone
    gone.wait()
    ours = process_tags()
    runs = {
        "alive": client.create_run(experiment, tags=ours),
        "elsewhere": client.create_run(experiment, tags=ours | {"leadscore.host": "another-machine", "leadscore.pid": str(gone.pid)}),
        "dead": client.create_run(experiment, tags=ours | {"leadscore.pid": str(gone.pid)}),
        "pid reused": client.create_run(experiment, tags=ours | {"leadscore.process_started": "1"}),
        "not ours": client.create_run(experiment),
    }
    prepare_store(store)
    status = {name: client.get_run(run.info.run_id).info.status for name, run in runs.items()}
    assert status == {"alive": "RUNNING", "elsewhere": "RUNNING", "dead": "FAILED", "pid reused": "FAILED",
                      "not ours": "RUNNING"}
