"""Tryton as the CRM: a real Tryton database on SQLite, made with trytond-admin as an administrator would, filled
with leads drawn from the simulated CRM, scored by `leadscore score --crm tryton://...`, and read back through
Tryton's own API (its pool and transactions, and proteus for what an integration adds).

trytond serves one database backend per process: with ``LEADSCORE_TRYTON_BACKEND=postgresql``, the same tests run
on Tryton databases in PostgreSQL (``tests/test_tryton_postgresql.py`` runs them so, in a process of their own)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from leadscore.crm.simulator import SimulationConfig, simulate
from leadscore.serve.score_writer import utc_now
from typer.testing import CliRunner

from leadscore.cli import app

BACKEND = os.environ.get("LEADSCORE_TRYTON_BACKEND", "sqlite")
# On PostgreSQL a Tryton database is a database of the server: named for this process, dropped at the end.
DATABASE = "leads" if BACKEND == "sqlite" else f"leadscore_tryton_{os.getpid()}"
BARE = "bare" if BACKEND == "sqlite" else f"{DATABASE}_bare"  # a Tryton database without leadscore's module
IMPORTED = SimulationConfig(leads=3_000, seed=23, months=18)  # loaded into Tryton; the model learns from small_crm
# Tryton's state for a lead last seen at each of leadscore's stages (Tryton has no MQL: such a lead is still a lead).
STATE_OF_STAGE = {"lead": "lead", "mql": "lead", "sql": "opportunity", "opportunity": "converted",
                  "customer": "won", "disqualified": "lost"}
COUNTRY_CODES = {"United States": "US", "United Kingdom": "GB", "Germany": "DE", "France": "FR", "Canada": "CA",
                 "India": "IN", "Netherlands": "NL", "Australia": "AU", "Brazil": "BR", "Spain": "ES",
                 "Sweden": "SE", "Singapore": "SG"}
FORECAST = 0.35  # a salesperson's own conversion_probability on the opportunities sales work: never overwritten
OPEN_STATES = ("lead", "opportunity", "converted")
runner = CliRunner()


class TrytondAdmin:
    """What a Tryton administrator runs, in the background: an empty SQLite file, then trytond-admin initialises the
    database and activates modules."""

    def __init__(self, config: Path, database: str, *arguments: str) -> None:
        folder = config.parent
        if BACKEND == "sqlite":
            (folder / f"{database}.sqlite").touch()
        else:
            _postgresql(f'CREATE DATABASE "{database}"')
        password = folder / "admin-password"
        password.write_text("not-a-real-secret\n")
        self.config = config
        self.process = subprocess.Popen(
            [str(Path(sys.executable).with_name("trytond-admin")), "-c", str(config), "-d", database, *arguments,
             "--email", "admin@example.com"],
            env={**os.environ, "TRYTONPASSFILE": str(password)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )

    def wait(self) -> Path:
        _, errors = self.process.communicate(timeout=600)
        assert self.process.returncode == 0, errors[-4000:]
        return self.config


def _postgresql(statement: str) -> None:
    """One statement on the test server, outside a transaction (as CREATE and DROP DATABASE must be)."""
    import psycopg
    from conftest import POSTGRES_URL

    url = sa.make_url(POSTGRES_URL).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as connection:
        connection.execute(statement)


@pytest.fixture(scope="module")
def tryton_admin(tmp_path_factory, request) -> TrytondAdmin:
    folder = tmp_path_factory.mktemp("tryton")
    config = folder / "trytond.conf"
    if BACKEND == "sqlite":
        config.write_text(f"[database]\nuri = sqlite://\npath = {folder}\n")
    else:
        from conftest import POSTGRES_URL

        request.getfixturevalue("postgres_server")  # fails under CI=true, else skips, when there is no server
        server = sa.make_url(POSTGRES_URL).set(drivername="postgresql", database="")
        config.write_text(f"[database]\nuri = {server.render_as_string(hide_password=False)}\n")
        for database in (DATABASE, BARE):
            drop = f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'
            request.addfinalizer(lambda statement=drop: _postgresql(statement))
    return TrytondAdmin(config, DATABASE, "-u", "leadscore", "--activate-dependencies")


@pytest.fixture(scope="module")
def tryton_config(tryton_admin: TrytondAdmin, model_store: str) -> Path:
    # The model trains (model_store) while trytond-admin builds the database: two processes, half the wait.
    return tryton_admin.wait()


@pytest.fixture(scope="module")
def tryton_url(tryton_config: Path) -> str:
    return f"tryton://{tryton_config}?database={DATABASE}&scores={tryton_config.parent / 'scores.db'}"


@pytest.fixture(scope="module")
def model_store(tmp_path_factory, small_crm) -> str:
    """A CRM model trained on the simulated history, champion in its own MLflow store."""
    from leadscore.pipelines.registry import promote
    from leadscore.pipelines.tracking import log_training
    from leadscore.pipelines.train import (
        TrainingConfig,
        crm_training_table,
        train_model,
    )

    uri = f"sqlite:///{tmp_path_factory.mktemp('tryton_model') / 'mlflow.db'}"
    table = crm_training_table(small_crm.history())
    log_training(train_model(table, TrainingConfig(candidates=("lightgbm",), folds=2, refit=False)), uri=uri)
    promote(uri=uri)
    return uri


@dataclass(frozen=True)
class Filled:
    """What the fill put into Tryton: the moment its leads are scored at, the company, and an employee of it."""

    as_of: datetime
    company: int
    employee: int


@pytest.fixture(scope="module")
def filled(tryton_url: str, model_store: str) -> Filled:
    """Some 340 leads of a simulated CRM, moved in time so that its last moment is the scoring moment, put into
    Tryton as an import would (each record created in its state, closed ones with their end date); then a few
    leads closed and a few taken on by sales through Tryton's own workflow buttons, as users do."""
    from leadscore.crm.tryton.connection import TrytonDatabase, parse_tryton_url

    TrytonDatabase(parse_tryton_url(tryton_url))  # loads Tryton's configuration and modules into this process
    from trytond.pool import Pool
    from trytond.transaction import Transaction

    history = simulate(IMPORTED).history()
    # An hour ahead: every Tryton write of this module's tests happens before the moment they score at.
    as_of = utc_now() + timedelta(hours=1)
    shift = pd.Timestamp(as_of) - history.as_of
    last = history.stage_changes.groupby("lead_id").tail(1).set_index("lead_id")
    stage = last["stage"].astype(str).reindex(history.leads["id"]).fillna("lead")
    rng = np.random.default_rng(5)
    picked = np.concatenate([
        stage.index[stage.isin(["sql", "opportunity"])],  # the few the simulation has: Tryton's worked records
        rng.choice(stage.index[stage.isin(["lead", "mql"])], 200, replace=False),
        rng.choice(stage.index[stage == "customer"], 60, replace=False),  # enough wins to learn from Tryton alone
        rng.choice(stage.index[stage == "disqualified"], 40, replace=False),
    ])
    leads = history.leads.set_index("id").loc[picked]
    with Transaction().start(DATABASE, 0):
        pool = Pool(DATABASE)
        Party, Opportunity, Activity = (pool.get(name) for name in ("party.party", "sale.opportunity",
                                                                      "leadscore.activity"))
        currency, = pool.get("currency.currency").create([{"name": "Euro", "code": "EUR", "symbol": "€"}])
        seller, = Party.create([{"name": "Our Company"}])
        company, = pool.get("company.company").create([{"party": seller.id, "currency": currency.id}])
        # The user integrations and the job work as: a member of the company whose leads they touch.
        User = pool.get("res.user")
        User.write(User.search([("login", "=", "admin")]),
                   {"companies": [("add", [company.id])], "company": company.id})
        names = ["Sales Team", *sorted(leads["owner"].dropna().astype(str).unique())]
        employees = pool.get("company.employee").create(
            [{"party": party.id, "company": company.id} for party in Party.create([{"name": name} for name in names])])
        owners = {name: employee.id for name, employee in zip(names, employees)}
        countries = dict(zip(COUNTRY_CODES, (country.id for country in pool.get("country.country").create(
            [{"name": name, "code": code} for name, code in COUNTRY_CODES.items()]))))
        media = _by_name(pool.get("marketing.medium"), leads["channel"])
        campaigns = _by_name(pool.get("marketing.campaign"), leads["campaign"])
        parties = Party.create([{
            "name": lead.company,
            "addresses": [("create", [{"country": countries[lead.country]}])] if pd.notna(lead.country) else [],
            "contact_mechanisms": ([("create", [{"type": "email", "value": f"contact@{lead.email_domain}"}])]
                                   if pd.notna(lead.email_domain) else []),
        } for lead in leads.itertuples()])
        values = []
        for lead, party in zip(leads.itertuples(), parties):
            state = STATE_OF_STAGE[stage[lead.Index]]
            record = {
                "party": party.id, "state": state, "start_date": (lead.created_at + shift).date(),
                "marketing_medium": media.get(lead.channel), "marketing_campaign": campaigns.get(lead.campaign),
                "lead_industry": _text(lead.industry), "lead_company_size": _text(lead.company_size),
                "lead_job_title": _text(lead.job_title), "lead_seniority": _text(lead.seniority),
                "lead_department": _text(lead.department),
                "employee": owners[lead.owner] if pd.notna(lead.owner) else
                owners["Sales Team"] if state != "lead" else None,
            }
            if state != "lead":
                record["conversion_probability"] = FORECAST
            if state in ("won", "lost"):
                record["end_date"] = (last.loc[lead.Index, "changed_at"] + shift).date()
            values.append(record)
        with Transaction().set_context(company=company.id):
            opportunities = Opportunity.create(values)
        tryton_id = dict(zip(leads.index, (record.id for record in opportunities)))
        done = history.activities[history.activities["lead_id"].isin(leads.index)]
        Activity.create([{
            "opportunity": tryton_id[row.lead_id], "occurred_at": (row.occurred_at + shift).to_pydatetime(),
            "type": row.type, "detail": _text(row.detail),
        } for row in done.itertuples()])
    with Transaction().start(DATABASE, 0, context={"company": company.id}):
        Opportunity = Pool(DATABASE).get("sale.opportunity")
        fresh = Opportunity.search([("state", "=", "lead")], order=[("id", "ASC")], limit=6)
        Opportunity.lost(fresh[:3])
        Opportunity.write(fresh[3:], {"employee": owners["Sales Team"]})
        Opportunity.opportunity(fresh[3:])
    return Filled(as_of.replace(microsecond=0), company.id, owners["Sales Team"])


def _by_name(Model, names: pd.Series) -> dict[str, int]:
    """One record per distinct name (Tryton's marketing parameters), by the name as leadscore has it."""
    distinct = sorted(names.dropna().astype(str).unique())
    return dict(zip(distinct, (record.id for record in Model.create([{"name": name} for name in distinct]))))


def _text(value) -> str | None:
    return None if pd.isna(value) else str(value)


def _score(url: str, store: str, as_of: datetime) -> dict:
    result = runner.invoke(app, ["score", "--crm", url, "--tracking-uri", store, "--as-of", as_of.isoformat(),
                                 "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def _opportunities() -> pd.DataFrame:
    """Every opportunity as Tryton holds it, with the number of versions its record history keeps."""
    from trytond.pool import Pool
    from trytond.transaction import Transaction

    with Transaction().start(DATABASE, 0, readonly=True):
        Opportunity = Pool(DATABASE).get("sale.opportunity")
        rows = Opportunity.search_read([], fields_names=[
            "state", "conversion_probability", "leadscore_probability", "leadscore_tier", "leadscore_reasons",
            "leadscore_model_version", "leadscore_scored_at"])
        frame = pd.DataFrame(rows, dtype=object).set_index("id").sort_index()
        frame = frame.astype({"conversion_probability": float, "leadscore_probability": float})
        frame["leadscore_scored_at"] = pd.to_datetime(frame["leadscore_scored_at"]).astype("datetime64[s]")
        revisions = Opportunity.history_revisions(list(frame.index))  # (time, record id, user) per version
        frame["revisions"] = pd.Series([record for _, record, _ in revisions]).value_counts().reindex(frame.index)
    return frame


def _lead_scores(url: str) -> pd.DataFrame:
    engine = sa.create_engine(f"sqlite:///{url.split('&scores=')[1]}")
    try:
        with engine.connect() as connection:
            return pd.read_sql(sa.text("SELECT * FROM lead_scores"), connection).set_index("lead_id").sort_index()
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def unscored(filled: Filled) -> pd.DataFrame:
    """Tryton's opportunities as the fill left them, before any scoring."""
    return _opportunities()


@pytest.fixture(scope="module")
def first_run(tryton_url: str, model_store: str, filled: Filled, unscored: pd.DataFrame) -> dict:
    return _score(tryton_url, model_store, filled.as_of)


def test_the_reader_maps_a_known_opportunity_field_by_field(tryton_url: str, filled: Filled):
    from leadscore.crm.tryton.connection import TrytonDatabase, parse_tryton_url
    from leadscore.crm.tryton.reader import read_tryton_history
    from trytond.pool import Pool
    from trytond.transaction import Transaction

    today = utc_now().date()
    with Transaction().start(DATABASE, 0, context={"company": filled.company}):
        pool = Pool(DATABASE)
        Party, Opportunity = pool.get("party.party"), pool.get("sale.opportunity")
        germany, = pool.get("country.country").search([("code", "=", "DE")])
        france, = pool.get("country.country").search([("code", "=", "FR")])
        party, = Party.create([{
            "name": "Northwind Traders",
            "addresses": [("create", [{"country": germany.id}, {"country": france.id}])],
            "contact_mechanisms": [("create", [{"type": "email", "value": "info@northwind.example"},
                                               {"type": "email", "value": "Ann.Lee@Northwind-Traders.example"}])],
        }])
        medium = pool.get("marketing.medium").from_name("Webinar")
        campaign = pool.get("marketing.campaign").from_name("Spring webinar 2026")
        known, imported = Opportunity.create([{
            "party": party.id, "contact": party.contact_mechanisms[1].id, "start_date": today - timedelta(days=10),
            "employee": filled.employee, "marketing_medium": medium.id, "marketing_campaign": campaign.id,
            "lead_industry": "logistics", "lead_company_size": "201-1000", "lead_job_title": "Head of Operations",
            "lead_seniority": "director", "lead_department": "operations",
        }, {
            "party": party.id, "state": "won", "employee": filled.employee, "start_date": today - timedelta(days=40),
            "end_date": today - timedelta(days=5),
        }])
        pool.get("leadscore.activity").create([
            {"opportunity": known.id, "occurred_at": datetime.combine(today, datetime.min.time()) - timedelta(days=9),
             "type": "webinar_registration"},
            {"opportunity": known.id, "occurred_at": datetime.combine(today, datetime.min.time()) - timedelta(days=2),
             "type": "pricing_page_view"},
            {"opportunity": known.id, "occurred_at": datetime.combine(today, datetime.min.time()) + timedelta(days=3),
             "type": "demo_request"},
        ])
    for transition in ("opportunity", "lost"):  # each in its own transaction, as two clicks of a salesperson
        with Transaction().start(DATABASE, 0, context={"company": filled.company}):
            Opportunity = Pool(DATABASE).get("sale.opportunity")
            getattr(Opportunity, transition)([Opportunity(known.id)])

    tryton = TrytonDatabase(parse_tryton_url(tryton_url))
    history = read_tryton_history(tryton, activities_before=datetime.combine(today, datetime.min.time()))
    lead = history.leads.set_index("id").loc[known.id]
    assert lead["created_at"] == pd.Timestamp(today - timedelta(days=10))  # the start date, earlier than the record
    expected = {"channel": "webinar", "campaign": "spring webinar 2026", "company": "Northwind Traders",
                "industry": "logistics", "company_size": "201-1000", "country": "Germany",
                "job_title": "Head of Operations", "seniority": "director", "department": "operations",
                "email_domain": "northwind-traders.example", "lifecycle_stage": "disqualified", "owner": "Sales Team"}
    assert {column: lead[column] for column in expected} == expected
    changes = history.stage_changes[history.stage_changes["lead_id"] == known.id]
    assert changes["stage"].astype(str).tolist() == ["sql", "disqualified"]
    assert changes["changed_at"].is_monotonic_increasing
    assert changes["changed_at"].min() >= pd.Timestamp(today)  # when the buttons were pressed
    closed = history.stage_changes[history.stage_changes["lead_id"] == imported.id]
    assert closed["stage"].astype(str).tolist() == ["customer"]
    assert closed["changed_at"].tolist() == [pd.Timestamp(today - timedelta(days=5))]  # created closed: its end date
    done = history.activities[history.activities["lead_id"] == known.id]
    assert done["type"].astype(str).tolist() == ["webinar_registration", "pricing_page_view"]  # not the later one
    assert history.as_of >= pd.Timestamp(today) + pd.Timedelta(days=3)  # the latest activity counts, read or not

    remapped = read_tryton_history(tryton, stage_map={"opportunity": "opportunity"})
    again = remapped.stage_changes[remapped.stage_changes["lead_id"] == known.id]
    assert again["stage"].astype(str).tolist() == ["opportunity", "disqualified"]


def test_the_module_shows_leadscore_on_the_lead_form_and_list(filled):
    from trytond.pool import Pool
    from trytond.transaction import Transaction

    with Transaction().start(DATABASE, 0, readonly=True):
        pool = Pool(DATABASE)
        Opportunity, Activity = pool.get("sale.opportunity"), pool.get("leadscore.activity")
        form = Opportunity.fields_view_get(view_type="form")
        assert {"leadscore_tier", "leadscore_probability", "leadscore_reasons", "leadscore_model_version",
                "leadscore_scored_at", "lead_industry", "lead_seniority", "leadscore_activities"} <= set(form["fields"])
        assert 'id="leadscore"' in form["arch"]
        assert "leadscore_tier" in Opportunity.fields_view_get(view_type="tree")["fields"]
        assert {"occurred_at", "type", "detail"} <= set(Activity.fields_view_get(view_type="tree")["fields"])
        assert Activity.fields_get(["type"])["type"]["selection"][0] == ("page_view", "Viewed a web page")


def test_every_open_lead_gets_its_score_in_tryton_and_closed_ones_are_left_alone(tryton_url, unscored, first_run):
    tryton = _opportunities()
    scores = _lead_scores(tryton_url)
    open_ = tryton[tryton["state"].isin(OPEN_STATES)]
    assert first_run["status"] == "complete" and first_run["rejected"] == 0
    assert first_run["scored"] == first_run["written"] == len(open_) == len(scores) > 230
    assert scores.index.equals(open_.index)

    rounded = scores["probability"].round(4)
    assert open_["leadscore_probability"].equals(rounded)
    assert open_["leadscore_tier"].tolist() == scores["tier"].tolist()
    assert open_["leadscore_model_version"].eq("leadscore/1").all()
    assert open_["leadscore_reasons"].fillna("").tolist() == scores["reason_text"].fillna("").tolist()
    assert open_["leadscore_reasons"].notna().mean() > 0.8
    assert (open_["leadscore_scored_at"] == pd.to_datetime(scores["scored_at"])).all()

    leads = tryton[tryton["state"] == "lead"]
    assert len(leads) > 150
    assert leads["conversion_probability"].equals(rounded.reindex(leads.index))
    assert leads["conversion_probability"].between(0, 1).all()
    assert (leads["conversion_probability"] * 10_000).round(6).mod(1).eq(0).all()  # four digits, as Tryton's field
    # Records sales work on keep their conversion_probability: the salesperson's forecast (or Tryton's default).
    worked = tryton.index[tryton["state"].isin(["opportunity", "converted"])]
    assert len(worked) > 10
    assert tryton.loc[worked, "conversion_probability"].equals(unscored.loc[worked, "conversion_probability"])

    closed = tryton.index[~tryton["state"].isin(OPEN_STATES)]
    assert len(closed) >= 60 and tryton.loc[closed, "leadscore_tier"].isna().all()
    pd.testing.assert_frame_equal(tryton.loc[closed], unscored.loc[closed])  # not written at all: no new version


def test_a_rerun_writes_nothing_and_adds_no_record_nor_version(tryton_url, model_store, filled, first_run):
    before, scores_before = _opportunities(), _lead_scores(tryton_url)
    again = _score(tryton_url, model_store, filled.as_of)
    assert (again["written"], again["history_rows"], again["unchanged"]) == (0, 0, first_run["scored"])
    pd.testing.assert_frame_equal(_opportunities(), before)  # the same records, values and history versions
    pd.testing.assert_frame_equal(_lead_scores(tryton_url), scores_before)


def test_a_lead_that_did_more_is_rescored_and_only_it_is_rewritten(tryton_url, tryton_config, model_store, filled,
                                                                     first_run, monkeypatch):
    from proteus import Model
    from proteus import config as proteus_config

    before, scores_before = _opportunities(), _lead_scores(tryton_url)
    quiet = scores_before[before["state"].reindex(scores_before.index).eq("lead")].nsmallest(4, "probability").index
    # What a website integration does, with Tryton's scripting client: one record per event, at its time.
    # proteus leaves the database's name in $TRYTOND_DATABASE_URI, where a later trytond process would read it as
    # its database URI: monkeypatch takes it away after the test.
    monkeypatch.setenv("TRYTOND_DATABASE_URI", "")
    proteus_config.set_trytond(DATABASE, config_file=str(tryton_config))
    Activity, Opportunity = Model.get("leadscore.activity"), Model.get("sale.opportunity")
    Activity.save([Activity(opportunity=Opportunity(int(lead)), type=kind, detail=page,
                            occurred_at=filled.as_of - timedelta(hours=hours))
                   for lead in quiet
                   for kind, page, hours in (("pricing_page_view", "/pricing", 5), ("pricing_page_view", "/pricing", 4),
                                             ("demo_request", "/demo", 3), ("free_trial_signup", "/trial", 2))])

    later = _score(tryton_url, model_store, filled.as_of)
    scores = _lead_scores(tryton_url)
    rescored = scores.index[scores["run_id"] == later["run_id"]]
    assert later["written"] == len(quiet) and sorted(rescored) == sorted(quiet)
    assert (scores.loc[quiet, "probability"] > scores_before.loc[quiet, "probability"]).all()
    after = _opportunities()
    assert after.loc[quiet, "conversion_probability"].equals(scores.loc[quiet, "probability"].round(4))
    assert after.loc[quiet, "leadscore_tier"].tolist() == scores.loc[quiet, "tier"].tolist()
    assert (after.loc[quiet, "revisions"] == before.loc[quiet, "revisions"] + 1).all()  # one write each
    untouched = after.index.difference(quiet)
    pd.testing.assert_frame_equal(after.loc[untouched], before.loc[untouched])  # and nothing else


def test_a_lost_score_store_resends_every_score_and_tryton_gets_no_duplicate_write(tryton_url, model_store, filled,
                                                                                   first_run):
    before = _opportunities()
    store = Path(tryton_url.split("&scores=")[1])
    for path in store.parent.glob(store.name + "*"):  # the file, its write-ahead log and its lock
        path.unlink()
    again = _score(tryton_url, model_store, filled.as_of)
    assert again["written"] == again["scored"] == first_run["scored"]  # all new to leadscore: all sent again
    pd.testing.assert_frame_equal(_opportunities(), before)  # Tryton held them all already: no write, no version


def test_a_database_tryton_lacks_or_without_the_module_is_refused_naming_the_fix(tryton_config, tryton_url,
                                                                                  model_store, filled):
    TrytondAdmin(tryton_config, BARE, "--all").wait()
    never_made = tryton_config.parent / "never-made-scores.db"
    cases = {
        f"tryton://{tryton_config}?database=nowhere&scores={never_made}": ["no database 'nowhere'", "trytond-admin"],
        tryton_url.replace(f"database={DATABASE}", f"database={BARE}"): ["not activated", "-u leadscore"],
        f"tryton://{tryton_config.parent / 'missing.conf'}?database={DATABASE}": ["no Tryton configuration file"],
        tryton_url.replace("&scores", "&colour=blue&scores"): ["unknown parameter colour"],
        tryton_url + "&user=nobody": ["no user 'nobody'"],
        f"tryton://{tryton_config}?database={DATABASE}&colour=1&scores=postgresql://app:hunter2secret@127.0.0.1:1/s":
            ["unknown parameter colour"],
    }
    for url, phrases in cases.items():
        result = runner.invoke(app, ["score", "--crm", url, "--tracking-uri", model_store,
                                     "--as-of", filled.as_of.isoformat()])
        assert result.exit_code == 2, (url, result.output)
        for phrase in phrases:
            assert phrase in " ".join(result.output.split()), (url, result.output)
        assert "hunter2secret" not in result.output
    assert not never_made.exists()  # refused before leadscore's own store was created


def test_the_sink_skips_an_opportunity_deleted_since_the_job_read_it(tryton_url, first_run):
    from leadscore.crm.tryton.connection import TrytonDatabase, parse_tryton_url
    from leadscore.crm.tryton.writer import TrytonScoreSink

    before = _opportunities()
    lead, gone = int(before.index[before["state"] == "lead"][0]), int(before.index.max()) + 1_000
    rows = pd.DataFrame({"lead_id": [lead, gone], "probability": [0.123456, 0.5], "tier": ["sql", "mql"],
                         "reason_text": ["Requested a demo", ""], "model_name": "leadscore", "model_version": "7",
                         "scored_at": np.datetime64("2030-01-01T00:00:00", "s")})
    TrytonScoreSink(TrytonDatabase(parse_tryton_url(tryton_url))).write(rows)
    after = _opportunities()
    assert after.index.equals(before.index)  # nothing made up for the id Tryton no longer has
    assert after.loc[lead, ["conversion_probability", "leadscore_probability", "leadscore_tier", "leadscore_reasons",
                            "leadscore_model_version"]].tolist() == [0.1235, 0.1235, "sql", "Requested a demo",
                                                                     "leadscore/7"]
    assert after.loc[lead, "leadscore_scored_at"] == pd.Timestamp("2030-01-01")


def test_training_learns_from_the_history_tryton_keeps(tryton_url, filled):
    """`leadscore train --crm tryton://...` builds its table here: every row a Tryton opportunity, the wins its labels.
    (Training itself is the same as on any CRM; its cost stays out of this module.)"""
    from leadscore.cli.common import read_crm_training_table
    from leadscore.progress import Progress

    tryton = _opportunities()
    _, table = read_crm_training_table(tryton_url, None, 90, 1, Progress())
    converted = set(table.frame.loc[table.target == 1, table.id_column])
    assert set(table.frame[table.id_column]) <= set(tryton.index)
    assert len(converted) >= 30 and converted <= set(tryton.index[tryton["state"] == "won"])


def test_the_tryton_module_loads_none_of_leadscores_scoring_libraries():
    """A Tryton server imports the module: it must need Tryton and leadscore's vocabularies only."""
    code = ("import sys, leadscore.crm.tryton.module.opportunity, leadscore.crm.tryton.module.activity\n"
            "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('numpy', 'pandas', 'sqlalchemy', 'mlflow', 'lightgbm', 'sklearn'))))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == ""
