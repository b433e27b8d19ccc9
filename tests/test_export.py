"""`leadscore export`: the files' exact format, only changed scores sent, refused rows retried until accepted,
rate limits waited out, bad key mappings refused, tokens never printed.

The CRM of the flow tests is scored for real by the nightly job (a model trained once for the module); the
CRMs at the other end are the in-repo fakes (tests/fakes), which enforce their vendors' documented rules.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from fakes import FakeHubSpot, FakeSalesforce, served
from fakes.salesforce import LEAD_FIELDS, MAX_UPLOAD_BASE64_BYTES
from leadscore.crm import hubspot, salesforce, schema
from leadscore.crm.bulk import write_frame
from leadscore.crm.database import WriteMode, connect, prepare
from leadscore.crm.export import render_scores, truncate_reasons
from leadscore.crm.export_keys import KeyMapping, key_mapping
from leadscore.crm.remote import Waits, open_client
from leadscore.crm.simulator import SimulationConfig
from leadscore.pipelines.export import EXIT_REFUSED, ExportOptions, export_scores
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.errors import LeadscoreError

SF_TOKEN = "00D5g000004XyZ!AQ8AQHs.sfTokenThatMustNeverPrint"
HS_TOKEN = "pat-na1-0b1c2d3e-hsTokenThatMustNeverPrint"
runner = CliRunner()


# --- a CRM scored by the nightly job, trained once for the module ---------------------------------------


@pytest.fixture(scope="module")
def scored_crm_file(tmp_path_factory) -> Path:
    from leadscore.crm.simulator import simulate
    from leadscore.pipelines.registry import promote
    from leadscore.pipelines.simulate import simulate_into_crm
    from leadscore.pipelines.tracking import log_training
    from leadscore.pipelines.train import (
        TrainingConfig,
        crm_training_table,
        train_model,
    )
    from leadscore.serve.nightly import ScoringOptions, score_crm

    folder = tmp_path_factory.mktemp("export_crm")
    store = f"sqlite:///{folder / 'mlflow.db'}"
    table = crm_training_table(simulate(SimulationConfig(leads=3_000, seed=11, months=18)).history())
    log_training(train_model(table, TrainingConfig(candidates=("lightgbm",), min_positives=30)), uri=store)
    promote(uri=store)
    engine = connect(f"sqlite:///{folder / 'crm.db'}", writable=True)
    simulate_into_crm(engine, SimulationConfig(leads=800, seed=12, months=18))
    report = score_crm(engine, ScoringOptions(tracking_uri=store, as_of=datetime(2025, 6, 30), workers=1))
    engine.dispose()
    assert report.status == "complete" and report.written > 300
    return folder / "crm.db"


@pytest.fixture
def crm(scored_crm_file, tmp_path) -> sa.Engine:
    """A fresh copy of the scored CRM, writable."""
    shutil.copy(scored_crm_file, tmp_path / "crm.db")
    engine = connect(f"sqlite:///{tmp_path / 'crm.db'}", writable=True)
    yield engine
    engine.dispose()


@pytest.fixture
def out(tmp_path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def _lead_ids(engine: sa.Engine) -> list[int]:
    with engine.connect() as connection:
        return connection.execute(sa.select(schema.lead_scores.c.lead_id)).scalars().all()


def _ledger(engine: sa.Engine) -> pd.DataFrame:
    with engine.connect() as connection:
        return pd.read_sql(sa.select(schema.crm_exports), connection).set_index("lead_id")


def _salesforce(fake: FakeSalesforce, key: str = salesforce.KEY_FIELD, sleeps: list | None = None, **target):
    mapping = key_mapping(key, salesforce.RECORD_IDS, salesforce.key_field_problem)
    client = open_client("https://acme.my.salesforce.com", SF_TOKEN, transport=fake.transport())
    poll = salesforce.Poll(sleep=(sleeps.append if sleeps is not None else lambda seconds: None))
    return salesforce.SalesforceTarget(mapping, **target), salesforce.BulkIngest(client, poll=poll)


def _hubspot(fake: FakeHubSpot, sleeps: list | None = None, key: str = "hs_object_id", attempts: int = 6):
    mapping = key_mapping(key, hubspot.RECORD_IDS, hubspot.key_property_problem)
    client = open_client("https://api.hubapi.com", HS_TOKEN, transport=fake.transport())
    waits = Waits(attempts=attempts, sleep=(sleeps.append if sleeps is not None else lambda seconds: None))
    return hubspot.HubSpotTarget(mapping), hubspot.BatchUpdate(client, waits)


def _rescore(engine: sa.Engine, changes: dict[int, dict]) -> None:
    """Change lead_scores as a later nightly run would: the values given per lead, and scored_at moved on."""
    with engine.begin() as connection:
        for lead, values in changes.items():
            connection.execute(schema.lead_scores.update().where(schema.lead_scores.c.lead_id == lead)
                               .values({**values, "scored_at": datetime(2025, 7, 1, 2, 0)}))


# --- the files, exactly -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "limit", "expected"), [
    ("Attended a webinar.", 255, "Attended a webinar."),
    ("Attended a webinar.\nViewed the pricing page 3 times.\nWorks in Software.", 52,
     "Attended a webinar.\nViewed the pricing page 3 times."),
    ("Attended a webinar. Viewed the pricing page 3 times.", 30, "Attended a webinar."),
    ("Viewed the pricing page eleven times this month", 30, "Viewed the pricing page…"),
    ("Supercalifragilisticexpialidocious", 20, "Supercalifragilisti…"),
])
def test_reasons_are_cut_after_the_last_whole_sentence_that_fits(text, limit, expected):
    cut = truncate_reasons(text, limit)
    assert cut == expected and len(cut) <= limit


def _hand_made_scores() -> pd.DataFrame:
    """Three leads: a null in every column that may hold one, a value needing CSV quotes, a long reason."""
    return pd.DataFrame({
        "lead_id": [101, 102, 103],
        "probability": [0.123456, 0.9, 0.00004],
        "tier": ["mql", "sql", "none"],
        "fit_score": [41.6, np.nan, 0.0],
        "engagement_score": [12.0, 99.5, np.nan],
        "reason_text": ['Works in "Financial services", 5,000+ staff.\nAttended a webinar.', None,
                        "Viewed the pricing page 3 times. " * 12],
        "model_version": ["7", "7", "7"],
        "scored_at": pd.to_datetime(["2025-12-31 02:00:05", "2025-12-31 02:00:06", "2025-12-31 02:00:07"]),
    })


def test_rendering_rounds_cuts_and_keeps_nulls_without_touching_the_scores():
    scores = _hand_made_scores()
    before = scores.copy()
    rendered = render_scores(scores, reasons_length=120)
    pd.testing.assert_frame_equal(scores, before)
    assert rendered["probability"].tolist() == [0.1235, 0.9, 0.0]
    assert rendered["fit_score"].tolist()[::2] == [42, 0] and pd.isna(rendered["fit_score"][1])
    assert pd.isna(rendered["engagement_score"][2]) and rendered["reason_text"][1] is None
    assert len(rendered["reason_text"][2]) <= 120 and rendered["reason_text"][2].endswith("times.")


def test_salesforce_csv_has_the_fields_header_four_decimals_and_na_for_nulls():
    rows = render_scores(_hand_made_scores(), reasons_length=255)
    rows["record_key"] = rows["lead_id"].astype(str)
    (part,) = salesforce.csv_parts(rows, "Leadscore_Lead_Id__c", salesforce.MAX_FILE_BYTES)
    text = part.content.decode("utf-8")
    assert "\r" not in text and text.endswith("\n")
    header, first = text.split("\n")[:2]
    assert header == ("Leadscore_Lead_Id__c,Leadscore_Probability__c,Leadscore_Tier__c,Leadscore_Fit_Score__c,"
                      "Leadscore_Engagement_Score__c,Leadscore_Reasons__c,Leadscore_Model_Version__c,"
                      "Leadscore_Scored_At__c")
    assert first == '101,0.1235,mql,42,12,"Works in ""Financial services"", 5,000+ staff.'
    parsed = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [row["Leadscore_Probability__c"] for row in parsed] == ["0.1235", "0.9000", "0.0000"]
    assert parsed[0]["Leadscore_Reasons__c"] == 'Works in "Financial services", 5,000+ staff.\nAttended a webinar.'
    assert parsed[1]["Leadscore_Fit_Score__c"] == parsed[1]["Leadscore_Reasons__c"] == salesforce.NULL
    assert parsed[2]["Leadscore_Engagement_Score__c"] == salesforce.NULL
    assert [row["Leadscore_Scored_At__c"] for row in parsed] == [
        "2025-12-31T02:00:05.000Z", "2025-12-31T02:00:06.000Z", "2025-12-31T02:00:07.000Z"]
    assert set(parsed[0]) <= set(LEAD_FIELDS)  # every column is a field the fake org (and the guide) has


def test_salesforce_files_stay_within_the_size_limit_and_hold_every_row_once():
    scores = pd.concat([_hand_made_scores()] * 400, ignore_index=True)
    scores["lead_id"] = np.arange(1, len(scores) + 1)
    rows = render_scores(scores, reasons_length=255)
    rows["record_key"] = rows["lead_id"].astype(str)
    parts = list(salesforce.csv_parts(rows, "Leadscore_Lead_Id__c", max_bytes=20_000))
    assert len(parts) > 5 and all(len(part.content) <= 20_000 for part in parts)
    read = [pd.read_csv(io.BytesIO(part.content), dtype=str, keep_default_na=False) for part in parts]
    assert pd.concat(read)["Leadscore_Lead_Id__c"].tolist() == rows["record_key"].tolist()
    assert parts[0].start == 0 and parts[-1].stop == len(rows)
    assert all(before.stop == after.start for before, after in itertools.pairwise(parts))
    # The default size leaves room for Salesforce's base64 encoding (4 bytes for 3) under its upload limit.
    assert -(-salesforce.MAX_FILE_BYTES // 3) * 4 <= MAX_UPLOAD_BASE64_BYTES == 150_000_000


def test_hubspot_batches_hold_at_most_100_inputs_keyed_by_record_id_or_unique_property():
    scores = pd.concat([_hand_made_scores()] * 84, ignore_index=True)
    scores["lead_id"] = np.arange(1, len(scores) + 1)
    rows = render_scores(scores, reasons_length=hubspot.REASONS_LENGTH)
    rows["record_key"] = rows["lead_id"].astype(str)
    bodies = hubspot.batch_bodies(rows, KeyMapping("hs_object_id", by_record_id=True))
    assert [len(body["inputs"]) for body in bodies] == [100, 100, 52]
    first = bodies[0]["inputs"][0]
    assert first == {"id": "1", "properties": {
        "leadscore_probability": "0.1235", "leadscore_tier": "mql", "leadscore_fit_score": "42",
        "leadscore_engagement_score": "12", "leadscore_reasons": rows["reason_text"][0],
        "leadscore_model_version": "7", "leadscore_scored_at": "1767146405000"}}
    assert bodies[0]["inputs"][1]["properties"]["leadscore_fit_score"] == ""  # an empty string clears it
    by_property = hubspot.batch_bodies(rows.head(3), KeyMapping("leadscore_lead_id", by_record_id=False))
    assert all(entry["idProperty"] == "leadscore_lead_id" for entry in by_property[0]["inputs"])
    parts = list(hubspot.jsonl_parts(rows, KeyMapping("hs_object_id", True), requests_per_file=2))
    assert [(part.rows, part.requests) for part in parts] == [(200, 2), (52, 1)]
    assert [len(json.loads(line)["inputs"]) for line in parts[0].content.decode().splitlines()] == [100, 100]


def test_salesforce_results_are_matched_by_key_whatever_their_order():
    successful = b'"sf__Id","sf__Created",Leadscore_Lead_Id__c,Leadscore_Tier__c\n00Q3,false,3,sql\n00Q1,false,1,mql\n'
    failed = (b'"sf__Id","sf__Error",Leadscore_Lead_Id__c,Leadscore_Tier__c\n'
              b'00Q2,"STRING_TOO_LONG:Leadscore Reasons: data value too large:Leadscore_Reasons__c --",2,none\n')
    unprocessed = b"Leadscore_Lead_Id__c,Leadscore_Tier__c\n4,mql\n"
    outcome = salesforce.row_outcomes(["1", "2", "3", "4", "5"], "Leadscore_Lead_Id__c", successful, failed,
                                      unprocessed, job_message="InvalidBatch : too many retries").set_index("key")
    assert outcome["accepted"].to_dict() == {"1": True, "2": False, "3": True, "4": False, "5": False}
    assert outcome.loc["2", "error"].startswith("STRING_TOO_LONG:")
    assert outcome.loc["4", "error"] == "Salesforce did not process this row: InvalidBatch : too many retries"
    assert outcome.loc["5", "error"] == "Salesforce reported no result for this row."


# --- only changed scores are sent, refused ones until accepted ---------------------------------------------


@pytest.mark.parametrize("crm_name", ["salesforce", "hubspot"])
def test_a_second_export_sends_only_the_scores_that_changed(crm, out, crm_name):
    leads = _lead_ids(crm)
    if crm_name == "salesforce":
        fake = FakeSalesforce(SF_TOKEN)
        fake.add_leads(leads)
        target, sender = _salesforce(fake)
    else:
        fake = FakeHubSpot(HS_TOKEN)
        fake.add_contacts(leads)
        target, sender = _hubspot(fake)
    first = export_scores(crm, target, ExportOptions(out, push=True), sender)
    assert first.pending == first.sent == first.tally.accepted == len(leads) and first.exit_status == 0
    assert _ledger(crm)["status"].eq("accepted").all() and len(_ledger(crm)) == len(leads)

    moved, reworded, unseen = leads[0], leads[1], leads[2]
    with crm.connect() as connection:
        old = connection.execute(sa.select(schema.lead_scores.c.probability)
                                 .where(schema.lead_scores.c.lead_id == unseen)).scalar_one()
    _rescore(crm, {moved: {"probability": 0.4321}, reworded: {"reason_text": "Requested a demo."},
                   # moves less than the fourth decimal the CRM shows: rewritten by the job, not worth a call
                   unseen: {"probability": old + 1e-7}})
    second = export_scores(crm, target, ExportOptions(out, push=True), sender)
    assert second.pending == second.sent == second.tally.accepted == 2
    if crm_name == "salesforce":
        assert fake.lead(moved)["Leadscore_Probability__c"] == "0.4321"
        assert fake.lead(reworded)["Leadscore_Reasons__c"] == "Requested a demo."
        assert pd.read_csv(second.files[0].path)["Leadscore_Lead_Id__c"].tolist() == sorted([moved, reworded])
    else:
        assert fake.contacts[str(moved)]["leadscore_probability"] == "0.4321"
        assert sorted(int(entry["id"]) for entry in fake.requests[-1]["inputs"]) == sorted([moved, reworded])
    ledger = _ledger(crm)
    assert ledger.loc[moved, "probability"] == 0.4321 and ledger.loc[moved, "attempts"] == 1
    third = export_scores(crm, target, ExportOptions(out, push=True), sender)
    assert third.pending == third.sent == 0 and third.files == [] and len(third.removed) == 1
    everything = export_scores(crm, target, ExportOptions(out, push=True, resend_all=True), sender)
    assert everything.sent == everything.tally.accepted == len(leads)


def test_refused_rows_are_recorded_and_sent_again_until_salesforce_accepts_them(crm, out):
    leads = _lead_ids(crm)
    fake = FakeSalesforce(SF_TOKEN, polls_before_done=2)
    fake.add_leads(leads)
    fake.lock_once = {str(leads[3]), str(leads[4])}  # a record lock: Salesforce refuses the row this time only
    sleeps = []
    target, sender = _salesforce(fake, sleeps=sleeps)
    first = export_scores(crm, target, ExportOptions(out, push=True), sender)
    assert sleeps == [2.0, 4.0]  # the job answered InProgress twice: waited, doubling
    assert first.tally.refused == {"UNABLE_TO_LOCK_ROW": 2} and first.exit_status == EXIT_REFUSED
    ledger = _ledger(crm)
    refused = ledger.loc[[leads[3], leads[4]]]
    assert refused["status"].eq("failed").all() and refused["error"].str.startswith("UNABLE_TO_LOCK_ROW:").all()
    assert refused["accepted_at"].isna().all() and refused["attempts"].eq(1).all()

    second = export_scores(crm, target, ExportOptions(out, push=True), sender)
    assert second.sent == second.tally.accepted == 2 and second.exit_status == 0
    assert _ledger(crm).loc[[leads[3], leads[4]], "attempts"].eq(2).all()
    assert fake.lead(leads[3])["Leadscore_Tier__c"] == _ledger(crm).loc[leads[3], "tier"]


def test_reasons_longer_than_the_field_are_refused_by_salesforce_and_accepted_once_cut_to_fit(crm, out):
    leads = _lead_ids(crm)
    fake = FakeSalesforce(SF_TOKEN, polls_before_done=0)
    fake.add_leads(leads)
    sentence = "Viewed the pricing page {} times in the last thirty days, more than most leads of their channel do."
    long = "\n".join(sentence.format(count) for count in (3, 5, 8))  # 3 lines of 100 characters
    _rescore(crm, {leads[0]: {"reason_text": long}, leads[1]: {"reason_text": long}})
    target, sender = _salesforce(fake, reasons_length=1000)  # longer than the org's Text Area (255)
    first = export_scores(crm, target, ExportOptions(out, push=True), sender)
    assert first.tally.refused == {"STRING_TOO_LONG": 2} and first.tally.accepted == len(leads) - 2
    target, sender = _salesforce(fake)  # the field's own length
    second = export_scores(crm, target, ExportOptions(out, push=True), sender)
    assert second.sent == second.tally.accepted == 2
    assert fake.lead(leads[0])["Leadscore_Reasons__c"] == "\n".join(long.split("\n")[:2])


def test_a_hubspot_contact_that_does_not_exist_yet_is_refused_then_sent_when_it_does(crm, out):
    leads = _lead_ids(crm)
    fake = FakeHubSpot(HS_TOKEN)
    fake.add_contacts(leads[1:])
    target, sender = _hubspot(fake)
    first = export_scores(crm, target, ExportOptions(out, push=True), sender)
    assert first.tally.refused == {"OBJECT_NOT_FOUND": 1} and first.tally.accepted == len(leads) - 1
    assert _ledger(crm).loc[leads[0], "status"] == "failed"
    fake.add_contacts(leads[:1])
    second = export_scores(crm, target, ExportOptions(out, push=True), sender)
    assert second.sent == second.tally.accepted == 1 and fake.contacts[str(leads[0])]["leadscore_tier"]


def test_429_is_waited_out_as_long_as_retry_after_says(crm, out):
    fake = FakeHubSpot(HS_TOKEN)
    fake.add_contacts(_lead_ids(crm))
    fake.throttle = [3, None, 0.5]  # the second 429 names no wait: HubSpot's ten-second window
    sleeps = []
    target, sender = _hubspot(fake, sleeps)
    result = export_scores(crm, target, ExportOptions(out, push=True), sender)
    assert sleeps == [3.0, 10.0, 0.5] and result.exit_status == 0 and result.tally.accepted == result.pending


def test_a_rate_limit_that_outlasts_the_waits_stops_the_export_and_the_next_one_resumes(crm, out):
    leads = _lead_ids(crm)
    fake = FakeHubSpot(HS_TOKEN)
    fake.add_contacts(leads)
    target, sender = _hubspot(fake, attempts=3)
    fake.throttle = [None] * 3  # three answers of 429 on the first batch: as many as the attempts allowed
    stopped = export_scores(crm, target, ExportOptions(out, push=True), sender)
    assert stopped.stopped.startswith("HubSpot answered 429") and stopped.exit_status == EXIT_REFUSED
    assert stopped.sent == 100 and stopped.unsent == len(leads) - 100 and stopped.tally.accepted == 0
    resumed = export_scores(crm, target, ExportOptions(out, push=True), sender)
    assert resumed.sent == resumed.tally.accepted == len(leads) and resumed.exit_status == 0


def test_an_unknown_field_fails_the_job_and_the_export_exits_2_naming_the_field(crm, out, monkeypatch):
    fields = {name: spec for name, spec in LEAD_FIELDS.items() if name != "Leadscore_Tier__c"}
    fake = FakeSalesforce(SF_TOKEN, fields=fields, polls_before_done=0)
    fake.add_leads(_lead_ids(crm))
    with served(fake.handle) as url:
        monkeypatch.setenv("SALESFORCE_INSTANCE_URL", url)
        monkeypatch.setenv("SALESFORCE_ACCESS_TOKEN", SF_TOKEN)
        result = runner.invoke(app, ["export", "--to", "salesforce", "--out", str(out), "--push",
                                     "--crm", crm.url.database])
    assert result.exit_code == 2, result.output
    assert "Field name not found : Leadscore_Tier__c" in result.output
    assert "Create the field Leadscore_Tier__c on Lead" in result.output and "edit access" in result.output
    assert _ledger(crm)["status"].eq("failed").all()  # recorded, and sent again once the field exists


# --- the command line ---------------------------------------------------------------------------------


def test_without_push_the_files_are_written_and_crm_exports_is_left_alone(crm, out):
    result = runner.invoke(app, ["export", "--to", "hubspot", "--out", str(out), "--crm", crm.url.database])
    assert result.exit_code == 0, result.output
    scores = len(_lead_ids(crm))
    assert f"{scores:,} of {scores:,} scores to send" in result.output
    assert f"Wrote {out / 'hubspot-contacts-001.jsonl'} ({scores:,} rows" in result.output
    assert "Not sent (no --push)" in result.output and "the next export writes these rows again" in result.output
    assert _ledger(crm).empty  # crm init made the table; nothing was recorded in it
    again = runner.invoke(app, ["export", "--to", "hubspot", "--out", str(out), "--crm", crm.url.database, "--json"])
    assert json.loads(again.output)["pending"] == scores


def test_a_key_file_updates_salesforce_records_by_their_own_id(crm, out, tmp_path):
    leads = _lead_ids(crm)
    fake = FakeSalesforce(SF_TOKEN, polls_before_done=0)
    ids = fake.add_leads(leads)
    pd.DataFrame({"lead_id": list(ids), "Id": list(ids.values())}).to_csv(tmp_path / "keys.csv", index=False)
    target, sender = _salesforce(fake, key=str(tmp_path / "keys.csv"))
    result = export_scores(crm, target, ExportOptions(out, push=True), sender)
    assert result.tally.accepted == len(leads) and target.job_settings()["operation"] == "update"
    assert pd.read_csv(result.files[0].path, nrows=0).columns[0] == "Id"
    assert _ledger(crm).loc[leads[0], "record_key"] == ids[leads[0]]


def test_leads_missing_from_the_key_file_are_left_out_and_counted(crm, out, tmp_path):
    leads = _lead_ids(crm)
    fake = FakeSalesforce(SF_TOKEN, polls_before_done=0)
    ids = fake.add_leads(leads[: len(leads) // 2])
    pd.DataFrame({"lead_id": list(ids), "Id": list(ids.values())}).to_csv(tmp_path / "half.csv", index=False)
    target, sender = _salesforce(fake, key=str(tmp_path / "half.csv"))
    result = export_scores(crm, target, ExportOptions(out, push=True), sender)
    assert result.unmapped == len(leads) - len(ids) and result.sent == result.tally.accepted == len(ids)
    pd.DataFrame({"lead_id": [10**9], "Id": ["00Q5g0000000999AAA"]}).to_csv(tmp_path / "other.csv", index=False)
    target, sender = _salesforce(fake, key=str(tmp_path / "other.csv"))
    with pytest.raises(LeadscoreError, match=f"None of the {len(leads):,} leads to send has a row in"):
        export_scores(crm, target, ExportOptions(out, push=True), sender)


def test_a_job_still_running_at_the_deadline_stops_the_export_and_its_rows_go_again(crm, out):
    fake = FakeSalesforce(SF_TOKEN, polls_before_done=3)
    fake.add_leads(_lead_ids(crm))
    mapping = key_mapping(salesforce.KEY_FIELD, salesforce.RECORD_IDS, salesforce.key_field_problem)
    client = open_client("https://acme.my.salesforce.com", SF_TOKEN, transport=fake.transport())
    clock = iter(range(0, 10_000, 600))  # ten minutes pass between two looks at the job
    poll = salesforce.Poll(timeout=1_200, sleep=lambda seconds: None, clock=lambda: next(clock))
    target, sender = salesforce.SalesforceTarget(mapping), salesforce.BulkIngest(client, poll=poll)
    result = export_scores(crm, target, ExportOptions(out, push=True), sender)
    assert result.stopped.endswith("did not finish within 1200 s") and result.exit_status == EXIT_REFUSED
    assert _ledger(crm)["error"].str.contains("was still InProgress after 1200 s").all()


@pytest.mark.parametrize(("to", "rows", "column", "said"), [
    ("salesforce", "lead_id,Id\n1,00Q5g0000000001AAA\nx7,00Q5g0000000002AAA\n", "lead_id",
     "holds 1 of 2 rows that are not whole numbers"),
    ("salesforce", "lead_id,Id\n1,00Q5g0000000001AAA\n2,12345\n3,00Q5g0000000003\n", "Id",
     "holds 1 of 3 rows that are not record ids (15 or 18 letters and digits"),
    ("salesforce", "lead_id,Id\n1,00Q5g0000000001AAA\n1,00Q5g0000000002AAA\n", "lead_id",
     "gives 1 leads more than one Id (2 of 2 rows), e.g. lead 1"),
    ("hubspot", "lead_id,hs_object_id\n1,501\n2,501\n3,502\n", "hs_object_id",
     "gives 1 records to more than one lead (2 of 3 rows), e.g. 501 for leads 1, 2"),
    ("hubspot", "lead_id,contact_id\n1,501\n", "hs_object_id", "has no column 'hs_object_id'"),
])
def test_a_bad_key_file_exits_2_naming_the_column_the_rows_and_the_fix(crm, out, tmp_path, to, rows, column, said):
    (tmp_path / "keys.csv").write_text(rows)
    result = runner.invoke(app, ["export", "--to", to, "--out", str(out), "--crm", crm.url.database,
                                 "--key", str(tmp_path / "keys.csv")])
    assert result.exit_code == 2, result.output
    assert column in result.output and said in result.output, result.output
    assert list(out.iterdir()) == []


def test_keys_salesforce_cannot_take_and_a_missing_folder_are_refused_before_any_work(crm, out):
    missing = runner.invoke(app, ["export", "--to", "salesforce", "--out", str(out / "nowhere"), "--crm",
                                  crm.url.database])
    assert missing.exit_code == 2 and "the folder does not exist" in missing.output
    for key, said in (("Id", "Give a mapping file with the columns lead_id and Id"),
                      ("Email", "an External ID field is a custom field"),
                      ("missing.csv", "missing.csv: there is no such file")):
        result = runner.invoke(app, ["export", "--to", "salesforce", "--out", str(out), "--crm", crm.url.database,
                                     "--key", key])
        assert result.exit_code == 2 and said in result.output.replace("\n", " "), result.output


def test_the_token_never_prints_not_even_in_a_traceback(crm, out, monkeypatch):
    fake = FakeHubSpot("another-token-the-account-expects")
    fake.add_contacts(_lead_ids(crm))
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", HS_TOKEN)
    with served(fake.handle) as url:
        refused = runner.invoke(app, ["export", "--to", "hubspot", "--out", str(out), "--push", "--base-url", url,
                                      "--crm", crm.url.database])
        assert refused.exit_code == 2 and "HubSpot refused the access token" in refused.output
        assert HS_TOKEN not in refused.output

        def leaky(self, method, url, **kwargs):
            raise RuntimeError(f"connection reset while sending Authorization: Bearer {HS_TOKEN}")

        monkeypatch.setattr("httpx.Client.request", leaky)
        crashed = runner.invoke(app, ["export", "--to", "hubspot", "--out", str(out), "--push", "--base-url", url,
                                      "--crm", crm.url.database])
    assert crashed.exit_code == 1 and "Traceback" in crashed.output and "Bearer ***" in crashed.output
    assert HS_TOKEN not in crashed.output


def test_a_table_named_crm_exports_that_is_not_leadscores_is_never_written(crm, out):
    with crm.begin() as connection:  # another application's table, where leadscore's would be
        connection.exec_driver_sql("DROP TABLE crm_exports")
        connection.exec_driver_sql("CREATE TABLE crm_exports (id INTEGER PRIMARY KEY, payload TEXT)")
    fake = FakeHubSpot(HS_TOKEN)
    target, sender = _hubspot(fake)
    with pytest.raises(LeadscoreError, match="holds a table crm_exports that is not leadscore's"):
        export_scores(crm, target, ExportOptions(out, push=True), sender)
    assert fake.requests == []


# --- the ledger on both databases -----------------------------------------------------------------------


def test_the_ledger_keeps_accepted_values_and_failures_on_sqlite_and_postgresql(crm_url, out):
    engine = connect(crm_url, writable=True)
    with engine.begin() as connection:
        prepare(connection, WriteMode.REFUSE, empty_schema_is_fine=True, command="test")
        write_frame(connection, schema.leads, pd.DataFrame({"id": [101, 102, 103], "channel": "webinar",
                                                            "created_at": pd.Timestamp("2025-01-02")}))
        scores = _hand_made_scores().assign(model_name="leadscore")
        write_frame(connection, schema.lead_scores, scores)
    fake = FakeHubSpot(HS_TOKEN)
    fake.add_contacts([101, 103])
    target, sender = _hubspot(fake)
    first = export_scores(engine, target, ExportOptions(out, push=True), sender, clock=lambda: datetime(2026, 1, 5))
    ledger = _ledger(engine)
    assert first.tally.accepted == 2 and ledger.loc[102, "status"] == "failed" and pd.isna(ledger.loc[102, "tier"])
    assert ledger.loc[101, "fit_score"] == 42 and ledger.loc[103, "reason_text"] == scores["reason_text"][2]
    assert pd.Timestamp(ledger.loc[101, "accepted_at"]) == pd.Timestamp("2026-01-05")
    # Read back, the accepted values compare equal to the next rendering: only the refused lead goes again.
    second = export_scores(engine, target, ExportOptions(out, push=True), sender, clock=lambda: datetime(2026, 1, 6))
    assert second.pending == second.sent == 1 and _ledger(engine).loc[102, "attempts"] == 2
    engine.dispose()
