"""Flat lead tables from the command line: dates, numbers as exports write them, empty files, tables
without an id, identifier-like columns and labels files.

Training and scoring share one MLflow store per module, in a temporary folder.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.features import FeatureTable
from leadscore.features.flat import ColumnRoles, load_flat_table

runner = CliRunner()
ROWS = 1_500


def run(*arguments) -> object:
    return runner.invoke(app, [str(a) for a in arguments])


def _user_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in " ".join(result.output.split()), result.output


def _european_export(rows: int = ROWS, seed: int = 0) -> str:
    """A ';' file with decimal commas, three '?' for unknown visits and day-first dates, as some CRMs export."""
    rng = np.random.default_rng(seed)
    visits = rng.poisson(3, rows)
    amount = np.round(rng.gamma(2.0, 600.0, rows), 2)
    country = np.random.default_rng(seed + 1).choice(["France", "Germany", "Spain"], rows)
    logit = -2 + 0.4 * visits + 0.0008 * amount + np.where(country == "Germany", 0.8, 0.0)
    won = rng.random(rows) < 1 / (1 + np.exp(-logit))
    days = pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 900, rows), unit="D")
    lines = ["lead;won;visits;amount;source;signup;country"]
    for i in range(rows):
        shown_visits = "?" if i in (7, 70, 700) else str(visits[i])
        shown_amount = f"{amount[i]:,.2f}".replace(",", " ").replace(".", ",").replace(" ", ".")  # 1.234,56
        lines.append(f"L{i:05d};{'yes' if won[i] else 'no'};{shown_visits};{shown_amount};"
                     f"{rng.choice(['ads', 'seo', 'event'])};{days[i]:%d/%m/%Y};{country[i]}")
    return "\n".join(lines) + "\n"


def test_ambiguous_dates_are_refused_and_settled_with_time_format(tmp_path):
    leads = tmp_path / "leads.csv"
    days = pd.date_range("2025-01-01", periods=12, freq="MS").repeat(5)  # every day is the 1st: both orders read
    pd.DataFrame({"lead": range(60), "won": [0, 1] * 30, "visits": np.arange(60) % 7,
                  "signup": days.strftime("%d/%m/%Y")}).to_csv(leads, index=False)
    common = ["features", "--data", leads, "--id", "lead", "--target", "won", "--time", "signup",
              "--out", tmp_path / "f.parquet"]
    _user_error(run(*common), "time column 'signup' of leads.csv has 55 of 60 rows whose date depends on the format",
                "'01/02/2025' is 1 February 2025 with %d/%m/%Y but 2 January 2025 with %m/%d/%Y",
                "--time-format %d/%m/%Y")
    assert run(*common, "--time-format", "%d/%m/%Y").exit_code == 0
    assert (FeatureTable.read_parquet(tmp_path / "f.parquet").frame["signup"] == days).all()
    _user_error(run(*common, "--time-format", "%Y-%m-%d"),
                "does not match --time-format %Y-%m-%d on 60 of 60 rows (e.g. '01/01/2025')", "Fix those rows")


def test_day_first_dates_decimal_commas_and_placeholders_from_the_command_line(tmp_path):
    leads = tmp_path / "leads.csv"
    leads.write_text(_european_export())
    out = tmp_path / "f.parquet"
    result = run("features", "--data", leads, "--id", "lead", "--target", "won", "--time", "signup", "--out", out)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "Read 3 values of 'visits' as missing, not numbers: '?' ×3." in text
    assert "Read 'amount' with decimal commas, as its values show" in text
    table = FeatureTable.read_parquet(out)
    assert {spec.name: spec.kind for spec in table.registry} == {"visits": "numeric", "amount": "numeric",
                                                                 "source": "categorical", "country": "categorical"}
    assert table.frame["signup"].min() >= pd.Timestamp("2023-01-01")
    assert table.frame["signup"].max() < pd.Timestamp("2023-01-01") + pd.Timedelta(days=900)


LABELS = """
columns:
  visits:
    label: Website visits
    sentence: {"0": Never visited the website, "1": Visited the website once, value: "Visited the website {value} times"}
  country:
    label: Country of the company
    sentence: "Based in {value}"
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained from the command line on the European export, without --id and with a labels file."""
    folder = tmp_path_factory.mktemp("flat_cli")
    leads = folder / "leads.csv"
    leads.write_text(_european_export())
    (folder / "labels.yaml").write_text(LABELS)
    store = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        result = run("train", "--data", leads, "--target", "won", "--time", "signup", "--labels", folder / "labels.yaml",
                     "--time-format", "%d/%m/%Y", "--min-positives", 50, "--candidates", "logistic",
                     "--model-name", "flat", "--tracking-uri", store)
    assert result.exit_code == 0, result.output
    table = load_flat_table(leads, ColumnRoles(target="won", time="signup"))
    return {"folder": folder, "store": store, "leads": leads, "table": table, "output": " ".join(result.output.split())}


def _predict(trained, data, out: str = "scores.csv", *options):
    return run("predict", "--data", data, "--out", trained["folder"] / out, "--model", "models:/flat/1",
               "--tracking-uri", trained["store"], *options)


def test_scoring_reads_placeholders_and_decimal_commas_as_training_did(trained):
    from leadscore.pipelines.tracking import load_model

    folder, table = trained["folder"], trained["table"]
    model = load_model("models:/flat/1", trained["store"])
    # Two leads, and the three whose visits are '?', written exactly as the training file writes them.
    lines = trained["leads"].read_text().splitlines()
    rows = [0, 1, 7, 70, 700]
    (folder / "new.csv").write_text("\n".join([lines[0], *(lines[row + 1] for row in rows)]) + "\n")
    assert all(";?;" in lines[row + 1] for row in rows[2:]) and "," in lines[1].split(";")[3]
    scored = _predict(trained, folder / "new.csv")
    assert scored.exit_code == 0, scored.output
    written = pd.read_csv(folder / "scores.csv")
    np.testing.assert_allclose(written["probability"], model.predict_proba(table.frame.iloc[rows]), rtol=1e-12)
    # '?' scores as an unknown number of visits, '1.234,56' as 1234.56.
    unknown = table.frame.iloc[[7]].assign(visits=np.nan)
    assert written["probability"].iloc[2] == pytest.approx(model.predict_proba(unknown)[0], rel=1e-12)
    amount = lines[1].split(";")[3]
    assert table.frame["amount"].iloc[0] == float(amount.replace(".", "").replace(",", "."))

    odd = lines[2].split(";")
    odd[2] = "unknown"  # a placeholder training never saw
    (folder / "odd.csv").write_text("\n".join([lines[0], lines[1], ";".join(odd), lines[8]]) + "\n")
    _user_error(_predict(trained, folder / "odd.csv"), "Column 'visits' of odd.csv is not a number on 1 of 3 rows",
                "(e.g. 'unknown')", "decimal points, '?' as missing", "Fix those values or leave them empty")


def test_files_without_rows_are_refused_with_the_file_name(trained, tmp_path):
    header = tmp_path / "header.csv"
    header.write_text("lead;won;visits;amount;source;signup\n")
    pd.DataFrame({"lead": pd.Series([], dtype="str"), "visits": pd.Series([], dtype=float)}).to_parquet(
        tmp_path / "empty.parquet")
    for data in (header, tmp_path / "empty.parquet"):
        _user_error(_predict(trained, data), f"{data.name} has no rows, only column names",
                    "Score a file that holds at least one lead")
    for command in ("features", "train"):
        _user_error(run(command, "--data", header, "--id", "lead", "--target", "won", "--out", tmp_path / "f.parquet")
                    if command == "features" else
                    run(command, "--data", header, "--id", "lead", "--target", "won", "--tracking-uri", trained["store"]),
                    "header.csv has no rows, only column names", "Export the table again with its rows")


@pytest.fixture(scope="module")
def explained(trained) -> pd.DataFrame:
    """The training file scored again with its reasons."""
    scored = _predict(trained, trained["leads"], "all.csv", "--explain")
    assert scored.exit_code == 0, scored.output
    return pd.read_csv(trained["folder"] / "all.csv")


def test_a_table_without_id_is_numbered_by_row_in_training_and_in_predict(trained, explained):
    from leadscore.pipelines.tracking import load_model

    said = trained["output"]
    assert "No id column: leads are numbered by their row in leads.csv (row_number" in said
    assert "Dropped 'lead': a distinct text value on every row" in said and "--id 'lead'" in said
    folder, table, written = trained["folder"], trained["table"], explained
    model = load_model("models:/flat/1", trained["store"])
    assert model.id_column == "row_number" and "lead" not in model.features
    assert written.columns[0] == "row_number" and written["row_number"].tolist() == list(range(1, ROWS + 1))
    assert table.frame["row_number"].tolist() == list(range(1, ROWS + 1))
    np.testing.assert_allclose(written["probability"], model.predict_proba(table.frame), rtol=1e-12)
    lines = trained["leads"].read_text().splitlines()
    (folder / "three.csv").write_text("\n".join([lines[0], *lines[101:104]]) + "\n")
    assert _predict(trained, folder / "three.csv", "three.csv").exit_code == 0
    assert pd.read_csv(folder / "three.csv")["row_number"].tolist() == [1, 2, 3]


def test_labels_and_families_reach_the_reasons(trained, explained):
    from leadscore.pipelines.tracking import load_model

    model = load_model("models:/flat/1", trained["store"])
    assert model.registry["visits"].label == "Website visits"
    assert model.registry["country"].family == "fit"  # by its name; no --fit
    assert {model.registry[name].family for name in ("visits", "amount", "source")} == {"engagement"}
    written = explained
    assert written["fit_score"].nunique() > 1  # not "fit 50" for every lead
    sentences = written[["reason_1", "reason_2", "reason_3"]].fillna("").to_numpy().ravel().tolist()
    assert any(s.startswith("Based in Germany") for s in sentences)
    assert any(s.startswith("Visited the website") or s.startswith("Never visited") for s in sentences)


def test_identifier_columns_are_dropped_unless_kept(tmp_path):
    leads = tmp_path / "leads.csv"
    pd.DataFrame({"Lead Number": np.arange(600_001, 600_061), "won": [0, 1, 1] * 20, "visits": np.arange(60) % 5,
                  "city": ["Pune", "Mumbai"] * 30}).to_csv(leads, index=False)
    out = tmp_path / "f.parquet"
    dropped = run("features", "--data", leads, "--target", "won", "--out", out)
    assert dropped.exit_code == 0, dropped.output
    said = " ".join(dropped.output.split())
    assert "Dropped 'Lead Number': a distinct whole number on every row, like an identifier." in said
    assert "Keep it with --keep 'Lead Number' if it is a feature" in said
    assert "Fit (who the lead is): 'city', by their names" in said
    assert "Lead Number" not in FeatureTable.read_parquet(out).registry
    kept = run("features", "--data", leads, "--target", "won", "--keep", "Lead Number", "--out", out)
    assert kept.exit_code == 0, kept.output
    assert "Kept 'Lead Number' as a feature (--keep)" in " ".join(kept.output.split())
    assert FeatureTable.read_parquet(out).registry["Lead Number"].kind == "numeric"
    _user_error(run("features", "--data", leads, "--target", "won", "--keep", "Lead Nmber", "--out", out),
                "--keep 'Lead Nmber'", "Did you mean 'Lead Number'")


def test_a_bad_labels_file_is_refused_naming_the_file_the_key_and_the_fix(tmp_path):
    leads = tmp_path / "leads.csv"
    pd.DataFrame({"won": [0, 1] * 30, "visits": np.arange(60) % 5, "city": ["Pune", "Mumbai"] * 30}).to_csv(
        leads, index=False)
    labels = tmp_path / "labels.yaml"
    common = ["features", "--data", leads, "--target", "won", "--labels", labels, "--out", tmp_path / "f.parquet"]
    labels.write_text("columns:\n  visits:\n    family: behaviour\n")
    _user_error(run(*common), "labels.yaml: column 'visits': family 'behaviour' is not one of fit, engagement")
    labels.write_text("columns:\n  Citty: Home town\n")
    _user_error(run(*common), "labels.yaml: the entry 'Citty' names no column of leads.csv. Did you mean 'city'?")
    _user_error(run("features", "--data", leads, "--target", "won", "--labels", tmp_path / "nope.yaml",
                    "--out", tmp_path / "f.parquet"), "nope.yaml: there is no such file", "x-education")
