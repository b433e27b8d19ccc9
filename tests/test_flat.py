"""Flat lead tables: column roles, type inference and the errors users see."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leadscore.errors import LeadscoreError
from leadscore.features import FeatureTable
from leadscore.features.column_labels import default_family, parse_column_labels, read_column_labels
from leadscore.features.flat import (
    ColumnRoles,
    flat_feature_table,
    load_flat_table,
    numbered_rows,
    read_table_file,
    readable,
)
from leadscore.features.parsing import NumberFormat, ReadingRule
from leadscore.features.sentences import describe

X_EDUCATION_LEAKY = (
    "Tags", "Lead Quality", "Lead Profile", "Last Activity", "Last Notable Activity",
    "Asymmetrique Activity Index", "Asymmetrique Profile Index", "Asymmetrique Activity Score",
    "Asymmetrique Profile Score",
)


@pytest.fixture
def frame() -> pd.DataFrame:
    """Sixty leads with a null in every kind of column."""
    n = 60
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "lead": [f"L{i:03d}" for i in range(n)],
            "won": ["yes" if i % 3 == 0 else "no" for i in range(n)],
            "visits": [None if i == 5 else float(i % 7) for i in range(n)],
            "minutes": [str(i * 2) if i != 8 else "Select" for i in range(n)],  # numbers as text, one placeholder
            "source": ["Google" if i % 2 else ("Select" if i == 4 else "Referral") for i in range(n)],
            "country": [None if i == 3 else ("India" if i % 4 else "UAE") for i in range(n)],
            "constant": "same",
            "notes": [f"free text {i}" for i in range(n)],
            "signup": pd.date_range("2024-01-01", periods=n, freq="D").astype(str),
            "score": rng.normal(size=n),
        }
    )


ROLES = ColumnRoles(id="lead", target="won", na_values=("Select",), fit=("country",), drop=("score",))


def test_columns_are_inferred_and_placeholders_read_as_missing(frame):
    table = flat_feature_table(frame, ROLES, source="leads.csv")
    kinds = {spec.name: spec.kind for spec in table.registry}
    assert kinds == {"visits": "numeric", "minutes": "numeric", "source": "categorical", "country": "categorical"}
    assert pd.isna(table.frame.loc[8, "minutes"]) and table.frame.loc[9, "minutes"] == 18.0
    assert pd.isna(table.frame.loc[4, "source"])
    assert table.registry["country"].family == "fit"
    assert table.registry["visits"].family == "engagement"
    assert table.target.dtype == bool and table.target.sum() == 20
    assert "score" not in table.frame.columns
    assert any("'constant'" in note and "single value" in note for note in table.notes)
    assert any("'notes'" in note and "identifier" in note for note in table.notes)
    assert any("'signup'" in note and "dates" in note for note in table.notes)
    assert any("stratified split" in note for note in table.notes)


def test_a_time_column_is_parsed_and_kept_out_of_the_features(frame):
    table = flat_feature_table(frame, ROLES.model_copy(update={"time": "signup"}))
    assert table.time_column == "signup"
    assert table.frame["signup"].dtype.kind == "M"
    assert "signup" not in table.registry
    assert not any("stratified" in note for note in table.notes)


def test_readable_labels_come_from_column_names():
    assert readable("TotalVisits") == "Total Visits"
    assert readable("emp.var.rate") == "Emp var rate"
    assert readable("days_since_last_call") == "Days since last call"
    assert readable("Page Views Per Visit") == "Page Views Per Visit"


@pytest.mark.parametrize(
    "values, positive, converted",
    [
        ([0, 1, 1, 0], None, [False, True, True, False]),
        (["Yes", "no", "YES", "No"], None, [True, False, True, False]),
        ([True, False, False, True], None, [True, False, False, True]),
        (["won", "lost", "open", "won"], "won", [True, False, False, True]),
    ],
)
def test_targets_in_common_spellings(values, positive, converted):
    frame = pd.DataFrame({"id": range(4), "y": values, "x": [1.0, 2.0, 3.0, 4.0]})
    table = flat_feature_table(frame, ColumnRoles(id="id", target="y", positive=positive))
    assert table.target.tolist() == converted


@pytest.mark.parametrize(
    "change, roles, message",
    [
        (lambda f: f, ColumnRoles(id="Lead", target="won"), r"--id 'Lead': .* no such column\. Did you mean 'lead'\?"),
        (lambda f: f, ColumnRoles(id="lead", target="converted"), r"--target 'converted': .* no such column"),
        (lambda f: f, ColumnRoles(id="lead", target="won", drop=("nope",)), r"--drop 'nope'"),
        (lambda f: f.assign(lead="same"), ROLES, r"repeats 1 ids on 60 rows .*'same'.* each lead once"),
        (lambda f: f.assign(lead=[None] + list(f["lead"][1:])), ROLES, r"id column 'lead' is empty on 1 of 60 rows"),
        (lambda f: f.assign(won="no"), ROLES, r"says 'not converted' on all 60 rows"),
        (lambda f: f.assign(won=[None] + list(f["won"][1:])), ROLES, r"target column 'won' is empty on 1 of 60 rows"),
        (lambda f: f.assign(won=["a", "b", "c"] * 20), ROLES, r"3 distinct values .* --positive"),
        (lambda f: f, ROLES.model_copy(update={"positive": "maybe"}), r"--positive 'maybe' never occurs"),
        (lambda f: f.assign(signup=["soon"] + list(f["signup"][1:])), ROLES.model_copy(update={"time": "signup"}),
         r"time column 'signup' .* not a date on 1 of 60 rows, e.g. 'soon' \(its other rows hold ISO dates"),
        (lambda f: f.assign(signup=["03/04/2025"] * 60), ROLES.model_copy(update={"time": "signup"}),
         r"time column 'signup' of leads.csv has 60 of 60 rows whose date depends on the format: '03/04/2025' is "
         r"3 April 2025 with %d/%m/%Y but 4 March 2025 with %m/%d/%Y\. .* --time-format %d/%m/%Y"),
        (lambda f: f, ROLES.model_copy(update={"time_format": "%d/%m/%Y"}), r"--time-format %d/%m/%Y needs .* --time COLUMN"),
        (lambda f: f.iloc[:0], ROLES, r"leads.csv has no rows, only column names: .* Export the table again"),
        (lambda f: f[["lead", "won", "score"]], ColumnRoles(id="lead", target="won", drop=("score",)), r"no usable feature column"),
    ],
)
def test_bad_tables_fail_with_a_message_naming_the_column_and_the_fix(frame, change, roles, message):
    with pytest.raises(LeadscoreError, match=message):
        flat_feature_table(change(frame), roles, source="leads.csv")


def test_unreadable_files_are_named_with_the_fix(tmp_path, frame):
    with pytest.raises(LeadscoreError, match=r"missing\.csv: there is no such file"):
        read_table_file(tmp_path / "missing.csv")
    with pytest.raises(LeadscoreError, match="it is a folder"):
        read_table_file(tmp_path)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(LeadscoreError, match=r"empty\.csv: the file is empty"):
        read_table_file(tmp_path / "empty.csv")
    (tmp_path / "broken.parquet").write_bytes(b"this is not parquet")
    with pytest.raises(LeadscoreError, match=r"broken\.parquet.*Parquet"):
        read_table_file(tmp_path / "broken.parquet")
    (tmp_path / "leads.xlsx").write_bytes(b"PK")
    with pytest.raises(LeadscoreError, match="reads CSV .* and Parquet"):
        read_table_file(tmp_path / "leads.xlsx")
    (tmp_path / "ragged.csv").write_text('a,b\n1,2\n3,"4\n')
    with pytest.raises(LeadscoreError, match=r"ragged\.csv"):
        read_table_file(tmp_path / "ragged.csv")


def test_csv_delimiter_and_parquet_are_read_alike(tmp_path, frame):
    frame.to_csv(tmp_path / "leads.csv", sep=";", index=False)
    frame.to_parquet(tmp_path / "leads.parquet")
    from_csv = load_flat_table(tmp_path / "leads.csv", ROLES)
    from_parquet = load_flat_table(tmp_path / "leads.parquet", ROLES)
    assert from_csv.registry.to_frame()[["name", "kind"]].equals(from_parquet.registry.to_frame()[["name", "kind"]])
    pd.testing.assert_series_equal(from_csv.target, from_parquet.target)
    assert from_csv.source == "leads.csv"


def test_latin1_csv_is_read(tmp_path):
    (tmp_path / "leads.csv").write_bytes("id,won,city\n1,1,São Paulo\n2,0,Zürich\n3,0,Köln\n".encode("latin-1"))
    table = load_flat_table(tmp_path / "leads.csv", ColumnRoles(id="id", target="won"))
    assert table.frame["city"].astype(str).tolist() == ["São Paulo", "Zürich", "Köln"]


def test_day_first_dates_are_read_day_first_on_every_row(frame):
    days = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.random.default_rng(1).integers(0, 700, 2_000), unit="D")
    leads = pd.DataFrame({"lead": range(2_000), "won": [1, 0] * 1_000, "visits": np.arange(2_000) % 9,
                          "signup": days.strftime("%d/%m/%Y")})
    table = flat_feature_table(leads, ColumnRoles(id="lead", target="won", time="signup"))
    assert (table.frame["signup"] == days).all()
    written = pd.DataFrame({"lead": range(4), "won": [1, 0, 1, 0], "visits": range(4),
                            "signup": ["03/04/2025", "05/04/2025", "12/12/2025", "01/02/2025"]})
    settled = flat_feature_table(written, ColumnRoles(id="lead", target="won", time="signup", time_format="%m/%d/%Y"))
    assert settled.frame["signup"].dt.strftime("%Y-%m-%d").tolist() == ["2025-03-04", "2025-05-04", "2025-12-12", "2025-01-02"]


def _csv(tmp_path, rows: list[str], sep: str = ",") -> Path:
    path = tmp_path / "leads.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_numeric_column_with_three_question_marks_stays_numeric(tmp_path):
    # The export that cost 0.05 of AUC: three '?' turned a number into a category of a thousand levels.
    rows = ["lead,won,minutes"] + [f"L{i},{i % 2},{'?' if i in (5, 50, 500) else i * 3}" for i in range(1_000)]
    table = load_flat_table(_csv(tmp_path, rows), ColumnRoles(id="lead", target="won"))
    assert table.registry["minutes"].kind == "numeric"
    assert table.frame["minutes"].isna().sum() == 3 and table.frame.loc[6, "minutes"] == 18.0
    assert "Read 3 values of 'minutes' as missing, not numbers: '?' ×3." in table.notes
    assert table.reading.numbers["minutes"].missing == ("?",)


def test_decimal_commas_in_a_semicolon_file_are_numbers(tmp_path):
    rows = ["lead;won;amount;price"] + [f"L{i};{i % 2};{i},5;{i % 30 + 1}.{i % 10}00" for i in range(60)]
    table = load_flat_table(_csv(tmp_path, rows), ColumnRoles(id="lead", target="won"))
    assert table.registry["amount"].kind == "numeric" and table.registry["price"].kind == "numeric"
    assert table.frame.loc[12, "amount"] == 12.5
    assert table.frame.loc[12, "price"] == 13_200  # 13.200 in a file of decimal commas: thirteen thousand two hundred
    assert any("Read 'amount' with decimal commas" in note for note in table.notes)
    assert any("Read 'price' with decimal commas, as the other columns of leads.csv write numbers" in note
               for note in table.notes)


def test_csv_values_are_read_as_written(tmp_path):
    rows = ["lead,won,newsletter,visits"] + [f"00{i},{i % 2},{'True' if i % 3 else 'false'},{i}" for i in range(8)]
    table = load_flat_table(_csv(tmp_path, rows), ColumnRoles(id="lead", target="won"))
    assert table.frame["lead"].tolist()[:2] == ["000", "001"]  # ids keep their leading zeros
    assert table.registry["newsletter"].kind == "numeric" and table.frame["newsletter"].tolist()[:2] == [0.0, 1.0]


def test_the_reading_rule_survives_the_parquet_feature_table(tmp_path):
    rows = ["lead;won;amount;source"] + [f"L{i};{i % 2};{'?' if i == 3 else f'{i},5'};Select" for i in range(60)]
    table = load_flat_table(_csv(tmp_path, rows), ColumnRoles(id="lead", target="won", na_values=("Select",)))
    table.to_parquet(tmp_path / "table.parquet")
    assert FeatureTable.read_parquet(tmp_path / "table.parquet").reading == table.reading
    assert table.reading.numbers["amount"] == NumberFormat(",", ("?",)) and table.reading.na_values == ("Select",)
    # A table written before the rule existed kept only its missing-value markers.
    import pyarrow.parquet as pq

    stored = pq.read_table(tmp_path / "table.parquet")
    about = json.loads(stored.schema.metadata[b"leadscore"])
    about["na_values"] = about.pop("reading")["na_values"]
    metadata = {**stored.schema.metadata, b"leadscore": json.dumps(about).encode()}
    pq.write_table(stored.replace_schema_metadata(metadata), tmp_path / "old.parquet")
    assert FeatureTable.read_parquet(tmp_path / "old.parquet").reading == ReadingRule(na_values=("Select",))


def test_a_file_with_no_rows_is_refused(tmp_path, frame):
    (tmp_path / "header.csv").write_text("lead,won,visits\n")
    frame.iloc[:0].to_parquet(tmp_path / "empty.parquet")
    for name in ("header.csv", "empty.parquet"):
        with pytest.raises(LeadscoreError, match=rf"{name} has no rows, only column names"):
            load_flat_table(tmp_path / name, ColumnRoles(id="lead", target="won"))


def test_a_table_without_id_numbers_its_rows_as_predict_does(frame):
    table = flat_feature_table(frame, ColumnRoles(target="won", na_values=("Select",)), source="leads.csv")
    assert table.id_column == "row_number"
    assert table.frame["row_number"].tolist() == list(range(1, 61))
    assert "lead" not in table.registry
    assert any(note.startswith("No id column: leads are numbered by their row in leads.csv") for note in table.notes)
    assert any("Dropped 'lead'" in note and "--id 'lead'" in note for note in table.notes)
    new = frame.iloc[10:13]
    assert numbered_rows(new, "row_number")["row_number"].tolist() == [1, 2, 3]
    assert numbered_rows(new, "lead") is new  # a model with an id reads it from the file
    own = new.assign(row_number=[7, 8, 9])
    assert numbered_rows(own, "row_number")["row_number"].tolist() == [7, 8, 9]
    with pytest.raises(LeadscoreError, match=r"leads.csv has a column 'row_number'.* --id row_number .* or rename it"):
        flat_feature_table(frame.assign(row_number=1), ColumnRoles(target="won"), source="leads.csv")


def test_identifier_like_columns_are_dropped_unless_kept(frame):
    numbered = frame.assign(**{"Lead Number": np.arange(660_000, 660_060)})
    table = flat_feature_table(numbered, ROLES)
    assert "Lead Number" not in table.registry and "Lead Number" not in table.frame
    assert ("Dropped 'Lead Number': a distinct whole number on every row, like an identifier. Keep it with "
            "--keep 'Lead Number' if it is a feature.") in table.notes
    kept = flat_feature_table(numbered, ROLES.model_copy(update={"keep": ("Lead Number", "notes")}))
    assert kept.registry["Lead Number"].kind == "numeric" and kept.registry["notes"].kind == "categorical"
    assert any(note.startswith("Kept 'Lead Number' as a feature (--keep)") for note in kept.notes)
    small = flat_feature_table(numbered.iloc[:40], ROLES)  # too few rows to tell an identifier from a measure
    assert "Lead Number" in small.registry
    with pytest.raises(LeadscoreError, match=r"--drop 'score' and --keep 'score': say one or the other"):
        flat_feature_table(frame, ROLES.model_copy(update={"keep": ("score",)}))
    with pytest.raises(LeadscoreError, match=r"--keep 'Lead Nmber': .* Did you mean 'Lead Number'"):
        flat_feature_table(numbered, ROLES.model_copy(update={"keep": ("Lead Nmber",)}))


COUNTS = [0, 0, 0, 1, 2, 0, 3]
MEASURES = [34.0, 51.0, 28.0, 45.0, 39.0, 62.0, 30.0]


@pytest.mark.parametrize(
    "column, values, kind, family",
    [
        ("Country", ["India", "UAE"], "categorical", "fit"),
        ("City", ["Pune", "Mumbai"], "categorical", "fit"),
        ("industry", ["retail", "software"], "categorical", "fit"),
        ("What is your current occupation", ["Student", "Unemployed"], "categorical", "fit"),
        ("CompanySize", ["1-10", "11-50"], "categorical", "fit"),
        ("job_title", ["CTO", "analyst"], "categorical", "fit"),
        ("age", MEASURES, "numeric", "fit"),
        ("marital", ["single", "married"], "categorical", "fit"),
        ("Number of employees", MEASURES, "numeric", "fit"),
        ("TotalVisits", COUNTS, "numeric", "engagement"),
        ("Total Time Spent on Website", MEASURES, "numeric", "engagement"),
        ("Page Views Per Visit", MEASURES, "numeric", "engagement"),
        ("Last Activity", ["Email Opened", "SMS Sent"], "categorical", "engagement"),
        ("campaign", COUNTS, "numeric", "engagement"),
        ("day_of_week", ["mon", "tue"], "categorical", "engagement"),
        ("How did you hear about X Education", ["Online Search", "Other"], "categorical", "engagement"),
        ("Company page views", COUNTS, "numeric", "engagement"),  # a behaviour word wins over a profile word
        ("Job applications", COUNTS, "numeric", "engagement"),  # a tally of events, whatever it names
        ("euribor3m", MEASURES, "numeric", "engagement"),  # no word known: engagement
    ],
)
def test_families_follow_the_column_name_and_shape(column, values, kind, family):
    assert default_family(column, pd.Series(values), kind) == family


def test_fit_and_the_labels_file_override_the_families_of_names(frame):
    labels = parse_column_labels("columns:\n  country:\n    family: engagement\n  source:\n    family: fit\n", "l.yaml")
    roles = ColumnRoles(id="lead", target="won", drop=("score",), fit=("visits", "source"))
    table = flat_feature_table(frame, roles, labels=labels)
    families = {spec.name: spec.family for spec in table.registry}
    assert families == {"visits": "fit", "minutes": "engagement", "source": "fit", "country": "engagement"}
    assert any(note.startswith("Fit (who the lead is): 'visits', 'source';") for note in table.notes)
    by_name = flat_feature_table(frame, ColumnRoles(id="lead", target="won", drop=("score",)))
    assert {spec.name for spec in by_name.registry if spec.family == "fit"} == {"country"}
    assert any(note.startswith("Fit (who the lead is): 'country', by their names; the other 3 features count as "
                               "engagement") for note in by_name.notes)
    behaviour = flat_feature_table(frame.drop(columns="country"), ColumnRoles(id="lead", target="won"))
    assert any(note.startswith("No column reads as describing who the lead is") and "--fit COLUMN" in note
               for note in behaviour.notes)


LABELS = """
columns:
  source:
    label: Lead source
    family: engagement
    description: The channel the lead came through.
    sentence:
      Google: Came through a Google search
      value: Came through {value}
      missing: Lead source unknown
  visits:
    label: Website visits
    sentence: {"0": Never visited the website, "1": Visited once, value: "{label}: {value}", digits: "0"}
  country: Country of the lead
  Flag: {sentence: {"Yes": Said yes, "No": Said no}}
"""


def test_labels_give_features_their_words_and_sentences(frame):
    labels = parse_column_labels(LABELS, "labels.yaml")
    assert labels.words("Flag").sentence == {"Yes": "Said yes", "No": "Said no"}  # YAML's yes stays text
    table = flat_feature_table(frame.assign(Flag=["Yes", "No"] * 30), ROLES, labels=labels)
    registry = table.registry
    assert registry["source"].label == "Lead source"
    assert registry["source"].description == "The channel the lead came through."
    assert registry["country"].label == "Country of the lead" and registry["country"].family == "fit"
    assert registry["minutes"].label == "Minutes" and registry["minutes"].sentence is None
    assert describe(registry["source"], "Google") == "Came through a Google search"
    assert describe(registry["source"], "Referral") == "Came through Referral"
    assert describe(registry["source"], None) == "Lead source unknown"
    assert describe(registry["visits"], 0.0) == "Never visited the website"
    assert describe(registry["visits"], 1.2) == "Visited once"
    assert describe(registry["visits"], 6.0) == "Website visits: 6"
    assert describe(registry["Flag"], "Yes") == "Said yes"


def test_columns_of_one_field_fold_into_one_reason_and_share_a_family(frame):
    from leadscore.models.explain import business_fields

    windows = frame.assign(visits_30d=frame["visits"] * 3)
    labels = parse_column_labels(
        "columns:\n"
        "  visits:\n    label: Website visits, last 7 days\n    field: Website visits\n"
        "  visits_30d:\n    label: Website visits, last 30 days\n    field: Website visits\n", "labels.yaml")
    table = flat_feature_table(windows, ROLES, labels=labels)
    fields, index = business_fields(table.registry, table.registry.names)
    assert "Website visits" in fields and "visits" not in fields and "visits_30d" not in fields
    names = table.registry.names
    assert index[names.index("visits")] == index[names.index("visits_30d")]
    assert table.registry["visits"].business_label == "Website visits"
    mixed = parse_column_labels(
        "columns:\n  visits:\n    field: Activity\n  country:\n    field: Activity\n", "labels.yaml")
    with pytest.raises(LeadscoreError, match=r"labels.yaml: the columns of field 'Activity' fall in two families "
                                             r"\(engagement: 'visits'; fit: 'country'\)"):
        flat_feature_table(windows, ROLES, labels=mixed)
    clash = parse_column_labels("columns:\n  visits_30d:\n    field: visits\n", "labels.yaml")
    with pytest.raises(LeadscoreError, match=r"field 'visits' has the name of a column outside it"):
        flat_feature_table(windows, ROLES, labels=clash)


@pytest.mark.parametrize(
    "text, message",
    [
        ("columns:\n  visits:\n    family: behaviour\n",
         r"labels.yaml: column 'visits': family 'behaviour' is not one of fit, engagement\. Write family: fit"),
        ("columns:\n  visits:\n    sentence: Came through {value\n",
         r"labels.yaml: column 'visits', sentence for 'value': .* has a lone brace\. Write \{value\}"),
        ("columns:\n  visits:\n    sentence: From {country}\n",
         r"labels.yaml: column 'visits', sentence for 'value': 'From \{country\}' uses \{country\}, but a template "
         r"knows only \{value\}"),
        ("columns:\n  visits:\n    sentence: {value: 'Visited {value:.1f} times'}\n",
         r"uses \{value:\.1f\}, but a template knows only"),
        ("columns:\n  visits:\n    sentence: {digits: two}\n", r"digits 'two' must be a whole number from 0 to 6"),
        ("columns:\n  visits:\n    sentence: {'0': ''}\n", r"sentence for '0': the template must be non-empty text"),
        ("columns:\n  visits:\n    labl: Visits\n", r"column 'visits': unknown key 'labl'\. An entry knows label, family"),
        ("columns:\n  visits:\n    label: ''\n", r"column 'visits': the label must be non-empty text"),
        ("columns:\n  visits:\n    field: ''\n", r"column 'visits': field must be the name of the business field"),
        ("columns:\n  visits:\n    field: [a]\n", r"column 'visits': field must be the name of the business field"),
        ("columns:\n  visits: [a, b]\n", r"column 'visits': write a label, or a mapping"),
        ("visits: Visits\n", r"labels.yaml: the file must hold one mapping, `columns`"),
        ("columns:\n  visits: A\n  visits: B\n",
         r"labels.yaml is not valid YAML at line 3, column 3: the key 'visits' is written twice"),
        ("columns: [\n", r"labels.yaml is not valid YAML at line 2, column 1: expected the node content.* Fix that line"),
    ],
)
def test_a_bad_labels_file_names_the_file_the_key_and_the_fix(text, message):
    with pytest.raises(LeadscoreError, match=message):
        parse_column_labels(text, "labels.yaml")


@pytest.mark.parametrize(
    "text, message",
    [
        ("columns:\n  Countri: Country\n",
         r"labels.yaml: the entry 'Countri' names no column of leads.csv\. Did you mean 'country'\? Write the column's"),
        ("columns:\n  visits:\n    sentence: {'1.0': Visited once}\n",
         r"column 'visits': the sentence for '1\.0' would never be used, .* write it '1'"),
        ("columns:\n  visits:\n    sentence: {once: Visited once}\n",
         r"the sentence for 'once' would never be used, .* key it by a number, 'missing' or 'value'"),
    ],
)
def test_labels_that_do_not_fit_the_table_are_refused(frame, text, message):
    with pytest.raises(LeadscoreError, match=message):
        flat_feature_table(frame, ROLES, source="leads.csv", labels=parse_column_labels(text, "labels.yaml"))


def test_labels_files_are_read_by_path_or_shipped_name(tmp_path):
    (tmp_path / "labels.yaml").write_text(LABELS)
    assert read_column_labels(tmp_path / "labels.yaml").words("country").label == "Country of the lead"
    shipped = read_column_labels("x-education")
    assert shipped.source == "x_education_labels.yaml" and shipped.words("TotalVisits").family == "engagement"
    with pytest.raises(LeadscoreError, match=r"--labels .*nope.yaml: there is no such file\. .* shipped one: x-education"):
        read_column_labels(tmp_path / "nope.yaml")
    with pytest.raises(LeadscoreError, match="it is a folder"):
        read_column_labels(tmp_path)


@pytest.mark.shared_data
def test_x_education_leads_read_with_their_documented_roles(shared_data):
    roles = ColumnRoles(id="Prospect ID", target="Converted", drop=X_EDUCATION_LEAKY + ("Lead Number",), na_values=("Select",))
    table = load_flat_table(shared_data / "x-education-leads" / "Leads.csv", roles)
    assert len(table.frame) == 9_240
    assert int(table.target.sum()) == 3_561
    assert table.registry["TotalVisits"].kind == "numeric"
    assert table.registry["Lead Source"].kind == "categorical"
    assert table.registry["TotalVisits"].label == "Total Visits"
    assert "Magazine" not in table.registry  # one value only
    assert "Select" not in table.frame["Specialization"].cat.categories
    assert not set(X_EDUCATION_LEAKY) & set(table.frame.columns)


@pytest.mark.shared_data
def test_bank_marketing_semicolons_and_yes_no_target(shared_data):
    frame = read_table_file(shared_data / "uci-bank-marketing" / "bank-additional-full.csv")
    table = flat_feature_table(frame.assign(row=range(len(frame))), ColumnRoles(id="row", target="y", drop=("duration",)))
    assert len(table.frame) == 41_188
    assert int(table.target.sum()) == 4_640
    assert table.registry["euribor3m"].kind == "numeric"
    assert table.registry["job"].kind == "categorical"
    fit = {spec.name for spec in table.registry if spec.family == "fit"}
    assert fit == {"age", "job", "marital", "education", "default", "housing", "loan"}


@pytest.mark.shared_data
def test_x_education_without_id_with_its_shipped_labels(shared_data):
    labels = read_column_labels("x-education")
    roles = ColumnRoles(target="Converted", drop=X_EDUCATION_LEAKY, na_values=("Select",))
    table = load_flat_table(shared_data / "x-education-leads" / "Leads.csv", roles, labels)
    assert table.id_column == "row_number" and table.frame["row_number"].iloc[-1] == 9_240
    assert not {"Prospect ID", "Lead Number"} & set(table.registry.names)
    fit = {spec.name for spec in table.registry if spec.family == "fit"}
    assert fit == {"Country", "City", "Specialization", "What is your current occupation",
                   "What matters most to you in choosing a course"}
    assert table.registry["TotalVisits"].label == "Website visits"
    assert describe(table.registry["Lead Source"], "Google") == "Came through Google"
    # The shipped words agree with the rule a table without labels gets.
    by_name = {spec.name for spec in table.registry if default_family(spec.name, table.frame[spec.name], spec.kind) == "fit"}
    assert by_name == fit
