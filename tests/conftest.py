"""Shared fixtures: a seeded simulated CRM, and CRM databases on SQLite and PostgreSQL.

PostgreSQL tests run against the server named by ``LEADSCORE_TEST_POSTGRES``
(default: the project machine's 127.0.0.1:5432, database ``test``), each in a
fresh schema dropped afterwards. When the server is missing they skip, except
under ``CI=true`` where they fail. Browser tests share one headless Chromium and
follow the same rule when Chromium or chromedriver is missing; Spark tests share one
local Spark session and follow it when Java or pyspark is missing.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from leadscore.settings import shared_data_dir

POSTGRES_URL = os.environ.get("LEADSCORE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def small_crm():
    """A 3,000-lead simulated CRM over 18 months; never mutate it."""
    from leadscore.crm.simulator import SimulationConfig, simulate

    return simulate(SimulationConfig(leads=3_000, seed=7, months=18))


@pytest.fixture(scope="session")
def postgres_server() -> str:
    engine = sa.create_engine(POSTGRES_URL)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as error:
        message = f"PostgreSQL is not reachable at {POSTGRES_URL}: {error.orig}"
        if _in_ci():
            pytest.fail(message + " (CI=true: PostgreSQL tests must run)")
        pytest.skip(message)
    finally:
        engine.dispose()
    return POSTGRES_URL


@pytest.fixture
def postgres_url(postgres_server: str):
    """A URL whose connections work in a fresh schema of their own."""
    schema = f"leadscore_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_server)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in postgres_server else "?"
    yield f"{postgres_server}{separator}options=-csearch_path%3D{schema}"
    with admin.begin() as connection:
        connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def crm_url(request, tmp_path: Path) -> str:
    """An empty CRM database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'crm.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    folder = shared_data_dir()
    if not folder.is_dir():
        pytest.skip(f"the public datasets are not at {folder}: set LEADSCORE_SHARED_DATA")
    return folder


@pytest.fixture(scope="session")
def chromium():
    """A headless Chromium shared by the session: ``chromium.render(html, screenshot)``."""
    import browser

    missing = [str(path) for path in (browser.CHROMIUM, browser.CHROMEDRIVER) if not path.is_file()]
    if missing:
        message = f"{' and '.join(missing)} not found: `make test` installs Chromium and chromedriver"
        if _in_ci():
            pytest.fail(message + " (CI=true: browser tests must run)")
        pytest.skip(message)
    with browser.launch() as session:
        yield session


@pytest.fixture(scope="session")
def spark():
    """A local Spark session on two cores, shared by the session: no UI, 1 GB, errors only in the log."""
    java = Path(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME") else shutil.which("java")
    missing = []
    if java is None or not Path(java).is_file():
        missing.append("Java 17 or newer (`apt-get install openjdk-17-jre-headless`)")
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        missing.append('pyspark (`pip install -e ".[dev]"`)')
    if missing:
        message = f"{' and '.join(missing)} not found"
        if _in_ci():
            pytest.fail(message + " (CI=true: Spark tests must run)")
        pytest.skip(message)
    # Spark starts its Python workers with $PYSPARK_PYTHON, else the first python3 on PATH, which need not be
    # this environment's; the variable is read once, when the session starts.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYSPARK_PYTHON", sys.executable)
        session = (SparkSession.builder.master("local[2]").appName("leadscore-tests")
                   .config("spark.ui.enabled", "false")
                   .config("spark.driver.memory", "1g")
                   .config("spark.sql.shuffle.partitions", "2")
                   .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                   .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
